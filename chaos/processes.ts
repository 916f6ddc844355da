/**
 * The processes of a chaos run, read from /proc: which pilots are alive, and which task processes (a task and
 * everything it started) belong to which pilot. A local pilot runs in `<workDir>/pilot-<n>/` and is a child of
 * this process; its tasks run in the same directory with `EWMS_TASK_INFILE` in their environment, which their
 * own children inherit — so a task's whole tree is found, even after its pilot died and PID 1 adopted it.
 * Any other process in a pilot's directory was started by that pilot too (a helper, a child between fork and
 * exec), and must not outlive it either.
 */
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { sep } from 'node:path';

/** A process of the run. */
export interface RunProcess {
  pid: number;
  /** The pilot directory it belongs to (`<workDir>/pilot-<n>`). */
  pilotDir: string;
  /** `pilot`: the local backend's child; `task`: anything a pilot started (a task, its children, a helper). */
  role: 'pilot' | 'task';
  /** Its command line, for reports. */
  command: string;
}

/** Every live (not zombie) process working in one of `workDir`'s pilot directories. */
export function scanRunProcesses(workDir: string): RunProcess[] {
  const prefix = `${workDir}${sep}pilot-`;
  const found: RunProcess[] = [];
  for (const entry of readdirSync('/proc')) {
    const pid = Number(entry);
    if (!Number.isInteger(pid) || pid <= 0) continue;
    let cwd: string;
    try {
      cwd = readlinkSync(`/proc/${pid}/cwd`);
    } catch {
      continue; // gone, or not ours to read
    }
    if (!cwd.startsWith(prefix)) continue;
    const stat = readProc(pid, 'stat');
    if (stat === undefined) continue;
    const afterName = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (afterName[0] === 'Z') continue; // dead, waiting to be reaped
    const ppid = Number(afterName[1]);
    const environ = readProc(pid, 'environ') ?? '';
    const pilotDir = cwd.slice(0, cwd.indexOf(sep, prefix.length) === -1 ? cwd.length : cwd.indexOf(sep, prefix.length));
    const isTask = environ.split('\0').some((kv) => kv.startsWith('EWMS_TASK_INFILE='));
    // A pilot is our own child (the local backend spawned it); anything else there was started by a pilot.
    const role = !isTask && ppid === process.pid ? 'pilot' : 'task';
    found.push({ pid, pilotDir, role, command: (readProc(pid, 'cmdline') ?? '').split('\0').join(' ').trim() });
  }
  return found;
}

/** Is `pid` still a process working in `dir` (not gone, its pid not taken by another process)? */
export function stillIn(pid: number, dir: string): boolean {
  try {
    const cwd = readlinkSync(`/proc/${pid}/cwd`);
    return cwd === dir || cwd.startsWith(`${dir}${sep}`);
  } catch {
    return false;
  }
}

function readProc(pid: number, file: string): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/${file}`, 'latin1');
  } catch {
    return undefined;
  }
}

/** An orphan: a task process still running `graceMs` after its pilot was gone. */
export interface Orphan {
  pid: number;
  pilotDir: string;
  command: string;
  /** How long after its pilot was first seen gone. */
  aliveMs: number;
}

/**
 * Watches a run's processes: task processes whose pilot is gone are orphans once they outlive `graceMs`.
 * Call `scan()` periodically (and after the run, until the grace has passed).
 */
export class OrphanWatch {
  private readonly pilotlessSince = new Map<number, number>();
  private readonly orphans = new Map<number, Orphan>();

  constructor(
    private readonly workDir: string,
    private readonly graceMs: number,
  ) {}

  /** One look at /proc; returns every live process of the run (for the caller to pick pilots from). */
  scan(now = Date.now()): RunProcess[] {
    const procs = scanRunProcesses(this.workDir);
    const livePilots = new Set(procs.filter((p) => p.role === 'pilot').map((p) => p.pilotDir));
    const seen = new Set<number>();
    for (const p of procs) {
      if (p.role !== 'task') continue;
      seen.add(p.pid);
      if (livePilots.has(p.pilotDir)) {
        this.pilotlessSince.delete(p.pid);
        continue;
      }
      const since = this.pilotlessSince.get(p.pid) ?? now;
      this.pilotlessSince.set(p.pid, since);
      if (now - since > this.graceMs) this.orphans.set(p.pid, { pid: p.pid, pilotDir: p.pilotDir, command: p.command, aliveMs: now - since });
    }
    for (const pid of this.pilotlessSince.keys()) if (!seen.has(pid)) this.pilotlessSince.delete(pid);
    return procs;
  }

  /** Orphans found so far. */
  found(): Orphan[] {
    return [...this.orphans.values()];
  }

  /** Kill every task process of the run still alive (cleanup after the count). */
  killLeftovers(): number {
    let killed = 0;
    for (const p of scanRunProcesses(this.workDir)) {
      if (p.role !== 'task') continue;
      try {
        process.kill(p.pid, 'SIGKILL');
        killed += 1;
      } catch {
        // gone meanwhile
      }
    }
    return killed;
  }
}
