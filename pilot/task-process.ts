/**
 * Runs one command as its own process group, without a shell, with stdout and stderr going to files.
 * A timeout or an abort stops the whole group — the task and everything it started — with SIGTERM, then
 * SIGKILL after the grace.
 *
 * `node:child_process.spawn` is used directly rather than execa: on this project's 2-core machines it
 * starts `/bin/true` about twice as fast, and the pilot's hot path is one spawn per event.
 */
import { spawn } from 'node:child_process';
import { open } from 'node:fs/promises';
import type { LaunchCommand } from './runtime/types.js';

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

  const opened = await Promise.allSettled([open(options.stdoutPath, 'w'), open(options.stderrPath, 'w')]);
  if (opened[0].status === 'rejected' || opened[1].status === 'rejected') {
    for (const o of opened) if (o.status === 'fulfilled') await o.value.close();
    const reason = opened.find((o): o is PromiseRejectedResult => o.status === 'rejected')?.reason as Error;
    return result({ spawnError: `cannot create the output files: ${reason.message}` });
  }
  const stdout = opened[0].value;
  const stderr = opened[1].value;

  try {
    return await new Promise<ProcessResult>((resolve) => {
      let stopping: 'timeout' | 'abort' | undefined;
      let killDeadline = Infinity;
      let killTimer: NodeJS.Timeout | undefined;
      let timeoutTimer: NodeJS.Timeout | undefined;
      let stopped: Promise<void> = Promise.resolve();
      // detached: the child leads a new process group (setsid), so the whole tree can be signalled at once.
      const child = spawn(command.file, command.args, {
        cwd: options.cwd,
        env: command.env,
        stdio: ['ignore', stdout.fd, stderr.fd],
        detached: true,
      });
      const pid = child.pid;

      const stop = (why: 'timeout' | 'abort') => {
        if (stopping || pid === undefined) return;
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
      // Aborted while the output files were being opened: the listener above came too late to hear it.
      if (options.signal?.aborted) onAbort();

      const finish = (partial: Partial<ProcessResult>) => {
        if (timeoutTimer) clearTimeout(timeoutTimer);
        if (killTimer) clearTimeout(killTimer);
        options.signal?.removeEventListener('abort', onAbort);
        const outcome = result({ timedOut: stopping === 'timeout', aborted: stopping === 'abort', ...partial });
        void stopped.then(() => resolve(outcome));
      };

      child.once('error', (err) => finish({ spawnError: err.message }));
      child.once('exit', (exitCode, signal) => {
        if (pid === undefined) return;
        if (!stopping) {
          // Leftovers the task started and left running belong to no one: end them with the task.
          signalGroup(pid, 'SIGKILL');
          finish({ exitCode, signal });
          return;
        }
        // Stopping: the leader is gone, but its children may still be within their grace.
        void waitForGroupExit(pid, killDeadline).then(() => {
          signalGroup(pid, 'SIGKILL');
          finish({ exitCode, signal });
        });
      });
    });
  } finally {
    await Promise.all([stdout.close(), stderr.close()]);
  }
}

/** Signal a whole process group; a group that is already gone is fine. */
function signalGroup(pgid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pgid, signal);
  } catch {
    // ESRCH: nothing left in the group.
  }
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
