/**
 * How the pilot starts task processes. Two implementations share this contract: a small long-lived helper
 * process that starts tasks with `posix_spawn` (`helper.ts`), and Node's own `child_process.spawn` in the
 * pilot (`inline.ts`), the fallback when the helper cannot run.
 */

/** One process to start: no shell, the env given and nothing else, stdin from /dev/null. */
export interface SpawnRequest {
  /** Executable; looked up on the request env's PATH (`/usr/bin:/bin` when it has none) unless it holds a `/`. */
  file: string;
  args: readonly string[];
  /** The complete environment of the process. */
  env: Readonly<Record<string, string>>;
  cwd: string;
  /** Created or truncated; the process's stdout and stderr. */
  stdoutPath: string;
  stderrPath: string;
}

/** How a started process ended. */
export interface SpawnExit {
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  /** Set when the end could not be observed (the helper itself died): the process group was killed. */
  lost?: string;
}

/** A started process: the leader of a new process group whose id is its pid. */
export interface SpawnedProcess {
  pid: number;
  exit: Promise<SpawnExit>;
}

/** Starts task processes, each as the leader of its own process group. */
export interface Spawner {
  /** `helper` (posix_spawn in a small process) or `inline` (fork of the pilot). */
  readonly kind: 'helper' | 'inline';
  /** Start a process. Rejects with a `SpawnFailure` when it cannot start (missing program, bad cwd, …). */
  spawn(request: SpawnRequest): Promise<SpawnedProcess>;
  /**
   * Stop using the spawner. The helper stops what still runs (TERM, then KILL after its grace) and exits;
   * this resolves once it has.
   */
  close(): Promise<void>;
}

/** A process could not be started; the message reads like Node's (`spawn <file> ENOENT`). */
export class SpawnFailure extends Error {
  override readonly name = 'SpawnFailure';
}

/** Signal a whole process group; a group that is already gone is fine. */
export function signalGroup(pgid: number, signal: NodeJS.Signals): void {
  // After every task the group is killed in case it left something, and mostly it is empty (ESRCH): the
  // error's stack trace would cost more than the kill itself.
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  try {
    process.kill(-pgid, signal);
  } catch {
    // ESRCH: nothing left in the group.
  } finally {
    Error.stackTraceLimit = limit;
  }
}
