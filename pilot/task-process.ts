/**
 * Runs one command as its own process group, without a shell, with stdout and stderr going to files.
 * A timeout or an abort stops the whole group — the task and everything it started — with SIGTERM, then
 * SIGKILL after the grace.
 *
 * Processes are started by a `Spawner` (the pilot's posix_spawn helper, or `child_process.spawn` in
 * process); this module owns what happens after the start, whichever started it. Neither is execa: on this
 * project's 2-core machines execa starts `/bin/true` about half as fast, and the hot path is one per event.
 */
import type { LaunchCommand } from './runtime/types.js';
import { inlineSpawner, SpawnFailure, signalGroup, type SpawnedProcess, type Spawner } from './spawn/index.js';

/** How one process ended. */
export interface ProcessResult {
  /** Exit code when it exited by itself, else null. */
  exitCode: number | null;
  /** The signal that ended it, else null. */
  signal: NodeJS.Signals | null;
  /** Ended because it ran past its timeout. */
  timedOut: boolean;
  /** Ended because the caller aborted it (shutdown). */
  aborted: boolean;
  /** Could not be started at all (e.g. the executable does not exist). */
  spawnError: string | undefined;
  durationMs: number;
}

/** Where a process runs, where its output goes, and when it is stopped. */
export interface RunProcessOptions {
  cwd: string;
  stdoutPath: string;
  stderrPath: string;
  /** Stop the process after this long (undefined: never). */
  timeoutMs: number | undefined;
  /** Between SIGTERM and SIGKILL. */
  killGraceMs: number;
  /** Aborting stops the process the same way a timeout does. */
  signal?: AbortSignal;
  /**
   * Called once the process group has been told to stop, e.g. to stop its container too: a container can
   * outlive its client process, so the run is reported finished only after this has settled.
   */
  onStop?: () => Promise<void> | void;
  /** What starts the process (default: `child_process.spawn` in this process). */
  spawner?: Spawner;
}

/** How often to look whether a stopped group is gone, during the grace only. */
const GROUP_EXIT_POLL_MS = 25;

/** Run `command` to its end (or its stop) and say how it ended. Never throws. */
export async function runProcess(command: LaunchCommand, options: RunProcessOptions): Promise<ProcessResult> {
  const started = performance.now();
  const result = (partial: Partial<ProcessResult>): ProcessResult => ({
    exitCode: null,
    signal: null,
    timedOut: false,
    aborted: false,
    spawnError: undefined,
    durationMs: performance.now() - started,
    ...partial,
  });
  if (options.signal?.aborted) return result({ aborted: true });

  const spawner = options.spawner ?? inlineSpawner;
  let spawned: SpawnedProcess;
  try {
    spawned = await spawner.spawn({ file: command.file, args: command.args, env: command.env, cwd: options.cwd, stdoutPath: options.stdoutPath, stderrPath: options.stderrPath });
  } catch (err) {
    return result({ spawnError: err instanceof SpawnFailure ? err.message : String(err) });
  }
  const { pid } = spawned;

  return new Promise<ProcessResult>((resolve) => {
    let stopping: 'timeout' | 'abort' | undefined;
    let killDeadline = Infinity;
    let killTimer: NodeJS.Timeout | undefined;
    let timeoutTimer: NodeJS.Timeout | undefined;
    let stopped: Promise<void> = Promise.resolve();

    const stop = (why: 'timeout' | 'abort') => {
      if (stopping) return;
      stopping = why;
      killDeadline = performance.now() + options.killGraceMs;
      signalGroup(pid, 'SIGTERM');
      stopped = Promise.resolve()
        .then(() => options.onStop?.())
        .catch(() => undefined);
      killTimer = setTimeout(() => signalGroup(pid, 'SIGKILL'), options.killGraceMs);
    };
    const onAbort = () => stop('abort');
    if (options.timeoutMs !== undefined) timeoutTimer = setTimeout(() => stop('timeout'), options.timeoutMs);
    options.signal?.addEventListener('abort', onAbort, { once: true });
    // Aborted while the process was being started: the listener above came too late to hear it.
    if (options.signal?.aborted) onAbort();

    const finish = (partial: Partial<ProcessResult>) => {
      if (timeoutTimer) clearTimeout(timeoutTimer);
      if (killTimer) clearTimeout(killTimer);
      options.signal?.removeEventListener('abort', onAbort);
      const outcome = result({ timedOut: stopping === 'timeout', aborted: stopping === 'abort', ...partial });
      void stopped.then(() => resolve(outcome));
    };

    void spawned.exit.then(({ exitCode, signal, lost }) => {
      const ended = lost === undefined ? { exitCode, signal } : { spawnError: lost };
      if (!stopping) {
        // Leftovers the task started and left running belong to no one: end them with the task.
        signalGroup(pid, 'SIGKILL');
        finish(ended);
        return;
      }
      // Stopping: the leader is gone, but its children may still be within their grace.
      void waitForGroupExit(pid, killDeadline).then(() => {
        signalGroup(pid, 'SIGKILL');
        finish(ended);
      });
    });
  });
}

/** Resolve once no process of the group is left (checked by signal 0) or `deadline` has passed. */
function waitForGroupExit(pgid: number, deadline: number): Promise<void> {
  return new Promise((resolve) => {
    const check = () => {
      if (!groupAlive(pgid) || performance.now() >= deadline) resolve();
      else setTimeout(check, GROUP_EXIT_POLL_MS);
    };
    check();
  });
}

function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
}
