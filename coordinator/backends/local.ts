/**
 * The `local` backend: N pilot processes on this machine, each started the way a condor job starts one —
 * the same `EWMS_PILOT_*` environment (from `buildPilotEnv`), a scratch directory of its own as the
 * working directory, stdout/stderr to files in it — so what works here works on the pool.
 *
 * Stopping sends SIGTERM to the pilot (it stops intake, lets in-flight tasks finish within its grace and
 * releases the rest), then SIGKILL to its whole process group after `killGraceMs` — by default long enough
 * for the pilot's own shutdown (twice its task kill grace, plus a margin) — and then to every process the pilot
 * left anywhere (its session, or carrying its marker variable): `remove()` returns only when none is left.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PILOT_NODE_FLAGS } from '../../common/pilot-node-flags.js';
import type { AdapterLogger } from '../../mq-adapters/types.js';
import { PilotBackendError } from '../errors.js';
import { LOCAL_PILOT_MARKER, pilotProcesses } from './pilot-processes.js';
import type { PilotEnvironment } from '../pilot-env.js';
import type { ClusterStatus, LocalOptions, PilotCluster, RemoveOptions } from '../types.js';

/** The pilot CLI of this package (`dist/pilot/cli.js`), found from the compiled or the source tree. */
export const DEFAULT_PILOT_CLI = findPilotCli(dirname(fileURLToPath(import.meta.url)));

function findPilotCli(start: string): string {
  const sibling = join(start, '..', '..', 'pilot', 'cli.js'); // dist/coordinator/backends → dist/pilot
  if (existsSync(sibling)) return sibling;
  for (let dir = start; dirname(dir) !== dir; dir = dirname(dir)) {
    const candidate = join(dir, 'dist', 'pilot', 'cli.js');
    if (existsSync(candidate)) return candidate;
  }
  return sibling;
}

/** Variables a condor job has from its starter besides the ones we give it. */
const BASE_ENV_KEYS = ['PATH', 'HOME', 'TMPDIR', 'LANG'] as const;

interface LocalPilot {
  index: number;
  child: ChildProcess;
  dir: string;
  stopping: boolean;
  exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  exited: Promise<void>;
}

/** N pilot processes on this machine. */
export class LocalPilotCluster implements PilotCluster {
  readonly backend = 'local';
  readonly id = `local-${randomUUID().slice(0, 8)}`;
  /** Each pilot's scratch directory lives here (`pilot-<n>/`, with `pilot.out` and `pilot.err`). */
  readonly workDir: string;
  private readonly pilots: LocalPilot[] = [];
  private readonly command: string[];
  private readonly killGraceMs: number;
  /** The work dir is a temporary one made here (not the caller's): removed once a finished run's pilots are gone. */
  private readonly ownsWorkDir: boolean;

  constructor(
    private readonly pilotEnv: PilotEnvironment,
    options: LocalOptions = {},
    private readonly logger?: AdapterLogger,
  ) {
    this.ownsWorkDir = options.workDir === undefined;
    this.workDir = options.workDir ?? mkdtempSync(join(tmpdir(), 'ewms-local-pilots-'));
    mkdirSync(this.workDir, { recursive: true });
    this.command = options.pilotCommand ?? [process.execPath, ...PILOT_NODE_FLAGS, DEFAULT_PILOT_CLI];
    if (this.command.length === 0) throw new PilotBackendError('the local pilot command is empty', 'give local.pilotCommand as [executable, ...args]');
    this.killGraceMs = options.killGraceMs ?? pilotShutdownMs(pilotEnv.env.EWMS_PILOT_TASK_KILL_GRACE);
  }

  /** Pilots not yet exited and not being stopped. */
  get running(): number {
    return this.pilots.filter((p) => !p.exit && !p.stopping).length;
  }

  async status(): Promise<ClusterStatus> {
    const byState: Record<string, number> = {};
    const byPilotStatus: Record<string, number> = {};
    for (const p of this.pilots) {
      const state = !p.exit ? (p.stopping ? 'stopping' : 'running') : p.stopping ? 'removed' : p.exit.code === 0 ? 'completed' : 'failed';
      byState[state] = (byState[state] ?? 0) + 1;
      if (p.exit) {
        const summary = p.exit.code !== null ? `exit ${p.exit.code}` : `signal ${p.exit.signal}`;
        byPilotStatus[summary] = (byPilotStatus[summary] ?? 0) + 1;
      }
    }
    return { backend: this.backend, id: this.id, total: this.pilots.length, byState, byPilotStatus };
  }

  async scale(count: number): Promise<void> {
    if (!Number.isInteger(count) || count < 0) throw new PilotBackendError(`cannot scale to ${count} pilots`, 'give a whole number >= 0');
    const live = this.pilots.filter((p) => !p.exit && !p.stopping);
    for (let i = live.length; i < count; i++) this.startOne();
    // Stop the newest first: the oldest have warmed up (init done, images prepared).
    const surplus = live.slice(count).reverse();
    await Promise.all(surplus.map((p) => this.stopOne(p)));
  }

  /** Stop every pilot; after a finished run (`reason: 'finished'`) the temporary work dir made here goes too. */
  async remove(options: RemoveOptions = {}): Promise<void> {
    await Promise.all(this.pilots.filter((p) => !p.exit).map((p) => this.stopOne(p)));
    // Kept after a failure: the pilots' logs say why. A caller's own work dir is always kept.
    if (this.ownsWorkDir && options.reason === 'finished') rmSync(this.workDir, { recursive: true, force: true });
  }

  /** Resolves when every pilot started so far has exited (by itself or stopped). */
  async exited(): Promise<void> {
    await Promise.all(this.pilots.map((p) => p.exited));
  }

  /** Exit codes of the pilots that ended (null: ended by a signal), in start order. */
  exitCodes(): Array<number | null> {
    return this.pilots.filter((p) => p.exit).map((p) => p.exit!.code);
  }

  private startOne(): void {
    const index = this.pilots.length;
    const dir = join(this.workDir, `pilot-${index}`);
    mkdirSync(dir, { recursive: true });
    const env: Record<string, string> = {};
    for (const key of BASE_ENV_KEYS) {
      const value = process.env[key];
      if (value !== undefined) env[key] = value;
    }
    Object.assign(env, this.pilotEnv.env);
    // Inherited by the pilot's tasks (pilots pass on all but their own EWMS_PILOT_* variables): how the
    // processes it leaves are found, whatever session they are in.
    env[LOCAL_PILOT_MARKER] = this.marker(index);
    const out = openSync(join(dir, 'pilot.out'), 'a');
    const err = openSync(join(dir, 'pilot.err'), 'a');
    const [file, ...args] = this.command as [string, ...string[]];
    let child: ChildProcess;
    try {
      // Its own process group, so a final SIGKILL takes the pilot's tasks with it.
      child = spawn(file, args, { cwd: dir, env, stdio: ['ignore', out, err], detached: true });
    } finally {
      closeSync(out);
      closeSync(err);
    }
    const pilot: LocalPilot = { index, child, dir, stopping: false, exit: undefined, exited: Promise.resolve() };
    pilot.exited = new Promise<void>((resolve) => {
      child.once('error', (e) => {
        this.logger?.error({ pilot: index, err: e.message, command: file }, 'local pilot failed to start');
        pilot.exit ??= { code: 127, signal: null };
        resolve();
      });
      child.once('exit', (code, signal) => {
        pilot.exit = { code, signal };
        this.logger?.info({ pilot: index, code, signal }, 'local pilot exited');
        resolve();
      });
    });
    this.pilots.push(pilot);
    this.logger?.info({ pilot: index, pid: child.pid, dir }, 'local pilot started');
  }

  private async stopOne(pilot: LocalPilot): Promise<void> {
    if (pilot.exit) return;
    pilot.stopping = true;
    signal(pilot.child.pid, 'SIGTERM');
    const timer = setTimeout(() => {
      if (pilot.child.pid !== undefined) signal(-pilot.child.pid, 'SIGKILL');
    }, this.killGraceMs);
    await pilot.exited;
    clearTimeout(timer);
    // Anything the pilot left running in its group goes too, and then anything of it anywhere else.
    if (pilot.child.pid !== undefined) {
      signal(-pilot.child.pid, 'SIGKILL');
      await this.killLeftovers(pilot.child.pid, this.marker(pilot.index));
    }
  }

  private marker(index: number): string {
    return `${this.id}/${index}`;
  }

  /** SIGKILL whatever is left of a pilot that has exited, until nothing is (or give up after a while, saying so). */
  private async killLeftovers(sessionId: number, marker: string): Promise<void> {
    const deadline = Date.now() + LEFTOVER_WAIT_MS;
    for (;;) {
      const left = pilotProcesses(sessionId, marker);
      if (left.length === 0) return;
      if (Date.now() > deadline) {
        this.logger?.warn({ pids: left }, 'processes of a stopped local pilot would not die');
        return;
      }
      for (const pid of left) signal(pid, 'SIGKILL');
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
}

/** How long a killed process may take to disappear (a process in uninterruptible I/O takes a moment). */
const LEFTOVER_WAIT_MS = 10_000;

/**
 * How long a pilot may take to stop after SIGTERM: its tasks' grace to finish, then the grace between their
 * TERM and KILL (`EWMS_PILOT_TASK_KILL_GRACE` each, default 10 s), plus 5 s to release events and close.
 */
export function pilotShutdownMs(killGraceSeconds: string | undefined): number {
  const grace = killGraceSeconds === undefined ? 10 : Number(killGraceSeconds);
  return (Number.isFinite(grace) && grace >= 0 ? 2 * grace : 20) * 1000 + 5_000;
}

function signal(pid: number | undefined, sig: NodeJS.Signals): void {
  if (pid === undefined) return;
  try {
    process.kill(pid, sig);
  } catch {
    // already gone
  }
}
