/**
 * The spawn helper: one small process per pilot that starts its task processes with `posix_spawn`, so
 * starting a task never forks the pilot (a fork copies the pilot's page tables and blocks its only thread
 * for milliseconds; see README, "Task processes"). It also ties the tasks' lives to the pilot's: when the
 * pilot dies, even by SIGKILL, the helper sees its stdin close and stops every task group within the grace.
 *
 * The pilot still signals task groups itself (timeouts, aborts, leftovers): the helper only starts and reaps.
 */
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import { constants } from 'node:os';
import { createInterface, type Interface } from 'node:readline';
import type { Readable, Writable } from 'node:stream';
import { PYTHON_HELPER_SOURCE } from './helper-source.js';
import { SpawnFailure, signalGroup, type SpawnExit, type SpawnRequest, type SpawnedProcess, type Spawner } from './types.js';

/** How the helper is started. */
export interface HelperOptions {
  /** Between TERM and KILL when the helper stops tasks because the pilot is gone. */
  killGraceMs: number;
  /** The Python interpreter (default `python3`, on the pilot's PATH). */
  python?: string;
  /** Give up on a helper that has not said it is ready after this long (default 10 s). */
  readyTimeoutMs?: number;
}

/** The helper could not be started (no usable Python); the pilot falls back to the inline spawner. */
export class HelperUnavailableError extends Error {
  override readonly name = 'HelperUnavailableError';
}

interface Pending {
  file: string;
  started?: (spawned: SpawnedProcess) => void;
  failed?: (err: SpawnFailure) => void;
  pid?: number;
  ended?: (exit: SpawnExit) => void;
}

type HelperMessage = { ready: number } | { id: number; pid: number } | { id: number; error: string; message: string } | { id: number; code: number } | { id: number; signal: number };

/** Environments the helper keeps at most: past that it starts over (ids are then reused, redefined first). */
const MAX_KNOWN_ENVS = 64;

/** Carries the helper's program into it (removed from its environment as it starts). */
const SOURCE_VARIABLE = 'EWMS_SPAWN_HELPER_PROGRAM';

const SIGNAL_NAMES = new Map<number, NodeJS.Signals>(Object.entries(constants.signals).map(([name, n]) => [n, name as NodeJS.Signals]));

/** Starts task processes through a Python helper process (see `helper-source.ts`). */
export class HelperSpawner implements Spawner {
  readonly kind = 'helper';
  private readonly pending = new Map<number, Pending>();
  private nextId = 0;
  private readonly envIds = new Map<string, number>();
  private readonly gone: Promise<void>;
  private dead: string | undefined;

  private constructor(
    private readonly child: ChildProcessByStdio<Writable, Readable, null>,
    lines: Interface,
  ) {
    this.gone = new Promise<void>((resolve) => child.once('close', () => resolve()));
    child.once('exit', (code, signal) => this.lose(`the task spawner process ended (${signal ?? `exit ${code}`})`));
    child.stdin.on('error', () => undefined); // EPIPE once it is gone: 'exit' says what happened.
    lines.on('line', (line) => this.receive(JSON.parse(line) as HelperMessage));
    this.idle();
  }

  /** Start the helper and wait until it is ready. Throws `HelperUnavailableError` when it cannot run. */
  static async start(options: HelperOptions): Promise<HelperSpawner> {
    const python = options.python ?? 'python3';
    // -I: no PYTHON* variables nor user site; -S: no site import (faster start); utf8 whatever the locale.
    // The program travels in the helper's environment, which keeps its command line short in `ps`.
    const child = spawn(python, ['-I', '-S', '-X', 'utf8', '-c', `import os; exec(os.environ.pop('${SOURCE_VARIABLE}'))`, String(options.killGraceMs / 1000)], {
      stdio: ['pipe', 'pipe', 'inherit'],
      env: { ...process.env, [SOURCE_VARIABLE]: PYTHON_HELPER_SOURCE },
    });
    const lines = createInterface({ input: child.stdout });
    await new Promise<void>((resolve, reject) => {
      const settle = () => {
        clearTimeout(timer);
        child.removeAllListeners('exit');
        child.removeAllListeners('error');
      };
      const fail = (why: string) => {
        settle();
        child.kill('SIGKILL');
        reject(new HelperUnavailableError(`the spawn helper (${python}) cannot run: ${why}`));
      };
      const timer = setTimeout(() => fail('not ready in time'), options.readyTimeoutMs ?? 10_000);
      child.once('error', (err) => fail(err.message));
      child.once('exit', (code, signal) => fail(`it ended at start (${signal ?? `exit ${code}`})`));
      lines.once('line', (line) => {
        if (!line.startsWith('{"ready":')) return fail('it did not say it was ready');
        settle();
        resolve();
      });
    });
    return new HelperSpawner(child, lines);
  }

  spawn(request: SpawnRequest): Promise<SpawnedProcess> {
    if (this.dead) return Promise.reject(new SpawnFailure(this.dead));
    const id = (this.nextId += 1);
    const line = JSON.stringify({ id, file: request.file, args: request.args, env: this.envId(request.env), cwd: request.cwd, stdout: request.stdoutPath, stderr: request.stderrPath });
    return new Promise<SpawnedProcess>((resolve, reject) => {
      this.pending.set(id, { file: request.file, started: resolve, failed: reject });
      if (this.pending.size === 1) this.busy();
      this.child.stdin.write(`${line}\n`);
    });
  }

  /**
   * The helper's number for an environment, sent to it the first time: a task's environment is a few kB, the
   * same for every event of a slot, and parsing it per task is most of what the helper would do.
   */
  private envId(env: Readonly<Record<string, string>>): number {
    const text = JSON.stringify(env);
    let id = this.envIds.get(text);
    if (id === undefined) {
      // A runtime whose env differs per event must not make the helper hold them all.
      if (this.envIds.size >= MAX_KNOWN_ENVS) this.envIds.clear();
      id = this.envIds.size;
      this.envIds.set(text, id);
      this.child.stdin.write(`{"env":${id},"vars":${text}}\n`);
    }
    return id;
  }

  async close(): Promise<void> {
    // Held until it has gone: the caller (the pilot's exit path) may have nothing else keeping it alive.
    this.busy();
    this.child.stdin.end();
    await this.gone;
  }

  /** The helper's pid (for tests and the log). */
  get pid(): number | undefined {
    return this.child.pid;
  }

  private receive(message: HelperMessage): void {
    if ('ready' in message) return;
    const item = this.pending.get(message.id);
    if (!item) return;
    if ('pid' in message) {
      item.pid = message.pid;
      const exit = new Promise<SpawnExit>((resolve) => (item.ended = resolve));
      item.started?.({ pid: message.pid, exit });
      item.started = item.failed = undefined;
      return;
    }
    this.pending.delete(message.id);
    if (this.pending.size === 0) this.idle();
    if ('error' in message) item.failed?.(new SpawnFailure(`spawn ${item.file} ${message.error} (${message.message})`));
    else if ('code' in message) item.ended?.({ exitCode: message.code, signal: null });
    else item.ended?.({ exitCode: null, signal: SIGNAL_NAMES.get(message.signal) ?? null });
  }

  /** The helper died under running tasks: nobody can reap or report them any more, so they are ended. */
  private lose(why: string): void {
    this.dead ??= why;
    for (const item of this.pending.values()) {
      if (item.pid !== undefined) signalGroup(item.pid, 'SIGKILL');
      item.failed?.(new SpawnFailure(why));
      item.ended?.({ exitCode: null, signal: null, lost: why });
    }
    this.pending.clear();
    this.idle();
  }

  /** While tasks run, the helper's pipe keeps the pilot's event loop alive; idle, it must not. */
  private busy(): void {
    this.child.ref();
    (this.child.stdout as Readable & { ref?: () => void }).ref?.();
  }

  private idle(): void {
    this.child.unref();
    (this.child.stdout as Readable & { unref?: () => void }).unref?.();
    (this.child.stdin as Writable & { unref?: () => void }).unref?.();
  }
}
