/**
 * Shared pieces of the runtime tests: options with a recording logger, and PATH with the stand-ins first.
 */
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { removeLaunchFiles, writeLaunchFiles } from '../../pilot/runtime/launch-files.js';
import type { LaunchCommand, LaunchRequest, RuntimeOptions } from '../../pilot/runtime/types.js';

/** Directory of the `apptainer`, `docker` and `podman` stand-ins. */
export const STAND_INS = fileURLToPath(new URL('./stand-ins', import.meta.url));

/** PATH with the stand-ins first. */
export function pathWithStandIns(): string {
  return `${STAND_INS}:${process.env.PATH ?? '/usr/bin:/bin'}`;
}

export interface LogRecord {
  level: 'debug' | 'info' | 'warn';
  obj: object;
  msg: string | undefined;
}

/** Runtime options for tests; `logs` collects what the runtime logged. */
export function testOptions(overrides: Partial<RuntimeOptions> = {}): RuntimeOptions & { logs: LogRecord[] } {
  const logs: LogRecord[] = [];
  const record = (level: LogRecord['level']) => (obj: object, msg?: string) => void logs.push({ level, obj, msg });
  return {
    externalDirectories: [],
    debug: false,
    gpus: false,
    workDir: '/tmp/ewms-test-workdir',
    baseEnv: { PATH: '/usr/bin:/bin', HOME: '/home/pilot' },
    logger: { debug: record('debug'), info: record('info'), warn: record('warn') },
    ...overrides,
    logs,
  };
}

/** The variables `taskRequest()` gives the task in every container runtime (sorted; `EWMS_TASK_*` at container paths). */
export const GOLDEN_TASK_ENV: ReadonlyArray<readonly [string, string]> = [
  ['ALPHA', 'one'],
  ['EWMS_TASK_DATA_HUB_DIR', '/ewms-pilot-data/data-hub'],
  ['EWMS_TASK_INFILE', '/ewms-pilot-data/task-io/in-ev1.in'],
  ['EWMS_TASK_OUTFILE', '/ewms-pilot-data/task-io/out-ev1.out'],
  ['ZULU', 'last'],
];

/** `taskRequest()`'s args with the placeholders rewritten to container paths. */
export const GOLDEN_TASK_ARGS = [
  'python', '/app/run.py', '--in', '/ewms-pilot-data/task-io/in-ev1.in', '--out=/ewms-pilot-data/task-io/out-ev1.out',
  '--hub', '/ewms-pilot-data/data-hub',
];

/** A task run in `/scratch/ewms-pilot-data/<event>/task-io` with the data hub next to it. */
export function taskRequest(overrides: Partial<LaunchRequest> = {}): LaunchRequest {
  const taskIoDir = '/scratch/ewms-pilot-data/ev1/task-io';
  return {
    args: ['python', '/app/run.py', '--in', '{{INFILE}}', '--out={{OUTFILE}}', '--hub', '{{DATA_HUB}}'],
    env: { ALPHA: 'one', ZULU: 'last' },
    paths: {
      taskIoDir,
      infile: `${taskIoDir}/in-ev1.in`,
      outfile: `${taskIoDir}/out-ev1.out`,
      dataHub: '/scratch/ewms-pilot-data/data-hub',
    },
    runId: 'ewms-ev1-a1',
    ...overrides,
  };
}

/** How a launched command ended. */
export interface LaunchOutcome {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/**
 * Spawn a `LaunchCommand` the way the task processor does: its private files written first (and removed
 * after), no shell, its own process group; with
 * `killGroupAfterMs`, SIGTERM the whole group then (after `graceMs`) SIGKILL it.
 */
export async function launch(command: LaunchCommand, opts: { killGroupAfterMs?: number; graceMs?: number; cwd?: string } = {}): Promise<LaunchOutcome> {
  await writeLaunchFiles(command);
  return spawnAndWait(command, opts).finally(() => removeLaunchFiles(command));
}

function spawnAndWait(command: LaunchCommand, opts: { killGroupAfterMs?: number; graceMs?: number; cwd?: string }): Promise<LaunchOutcome> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(command.file, command.args, { env: command.env, detached: true, stdio: ['ignore', 'pipe', 'pipe'], cwd: opts.cwd });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    const timers: NodeJS.Timeout[] = [];
    const killGroup = (signal: NodeJS.Signals) => {
      try {
        process.kill(-child.pid!, signal);
      } catch {
        // already gone
      }
    };
    if (opts.killGroupAfterMs !== undefined) {
      timers.push(setTimeout(() => killGroup('SIGTERM'), opts.killGroupAfterMs));
      timers.push(setTimeout(() => killGroup('SIGKILL'), opts.killGroupAfterMs + (opts.graceMs ?? 2000)));
    }
    child.once('error', reject);
    child.once('close', (code, signal) => {
      timers.forEach(clearTimeout);
      resolvePromise({ code, signal, stdout, stderr });
    });
  });
}

/** Processes whose command line contains `marker` (read from /proc; finds stragglers of a test). */
export function processesWith(marker: string): number[] {
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      if (readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes(marker)) found.push(Number(entry));
    } catch {
      // exited meanwhile
    }
  }
  return found;
}
