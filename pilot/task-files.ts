/**
 * The pilot's files on disk, laid out as the Python ewms-pilot lays them out:
 *
 * ```
 * <data dir parent>/ewms-pilot-data/
 *   data-hub/                      shared by init and every task
 *   <event id, made path-safe>/
 *     task-io/infile<ext>, outfile<ext>
 *     outputs/stdoutfile, stderrfile
 * ```
 *
 * Event ids come from the broker, i.e. from whoever published: they are never trusted as paths.
 *
 * Unless every task's files are kept (`EWMS_PILOT_KEEP_ALL_TASK_FILES`), events do not get a directory of
 * their own: each running slot reuses `slot-<n>/` (same inside), which saves the directory calls per event.
 */
import { createHash } from 'node:crypto';
import { createReadStream, readdirSync, unlinkSync } from 'node:fs';
import { mkdir, open, rm, rmdir, unlink } from 'node:fs/promises';
import { join } from 'node:path';

/** Name of the directory shared by init and all tasks. */
export const DATA_HUB_DIR_NAME = 'data-hub';

/** One run's directory and the files in it (all absolute host paths). */
export interface RunDir {
  /** The run's own directory; removed as a whole. */
  root: string;
  taskIo: string;
  infile: string;
  outfile: string;
  stdout: string;
  stderr: string;
}

const SAFE_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$/;
/** Names the pilot itself uses beside event directories (init, the runtimes' image cache): never an event's. */
const RESERVED = new Set([DATA_HUB_DIR_NAME, 'init', 'images']);

/**
 * A directory name for an event id: the id itself when it is plainly safe (letters, digits, `_ . -`, not
 * starting with a dot, at most 100 characters), otherwise its safe characters plus a hash of the whole
 * id, so `../x`, `a/b`, NUL bytes or 10 kB ids can neither escape the data directory nor collide.
 */
export function safeDirName(eventId: string): string {
  if (SAFE_NAME.test(eventId) && !RESERVED.has(eventId)) return eventId;
  const readable = eventId.replace(/[^A-Za-z0-9_-]+/g, '_').replace(/^_+/, '').slice(0, 60);
  const hash = createHash('sha256').update(eventId).digest('hex').slice(0, 16);
  return readable ? `${readable}-${hash}` : `id-${hash}`;
}

/** Makes, reuses and removes run directories under one data directory. */
export class TaskFiles {
  /** The shared data hub (host path). */
  readonly dataHub: string;
  /** Slot directories free for the next event. */
  private readonly idle: RunDir[] = [];
  private slots = 0;

  constructor(
    /** `<parent>/ewms-pilot-data`. */
    readonly dataDir: string,
    private readonly infileExt: string,
    private readonly outfileExt: string,
  ) {
    this.dataHub = join(dataDir, DATA_HUB_DIR_NAME);
  }

  /** Create the data directory and the data hub (once per pilot). */
  async prepare(): Promise<void> {
    await mkdir(this.dataHub, { recursive: true });
  }

  /**
   * Make a fresh directory for one run. When the name is taken (a kept earlier attempt, or the same
   * event delivered twice at once) a numbered sibling is used: two runs never share files.
   */
  async create(name: string): Promise<RunDir> {
    for (let n = 1; ; n += 1) {
      const root = join(this.dataDir, n === 1 ? name : `${name}.${n}`);
      try {
        await mkdir(root);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'EEXIST') continue;
        throw err;
      }
      const taskIo = join(root, 'task-io');
      const outputs = join(root, 'outputs');
      await Promise.all([mkdir(taskIo), mkdir(outputs)]);
      return {
        root,
        taskIo,
        infile: join(taskIo, `infile${this.infileExt}`),
        outfile: join(taskIo, `outfile${this.outfileExt}`),
        stdout: join(outputs, 'stdoutfile'),
        stderr: join(outputs, 'stderrfile'),
      };
    }
  }

  /**
   * A run directory for one event, reused from event to event: `slot-<n>/` with the same inside as an
   * event's own. Five directory calls fewer per event than a fresh directory made and removed (see
   * README, "Task files"); `recycle` makes it ready for the next event.
   */
  async reusable(): Promise<RunDir> {
    const dir = this.idle.pop();
    if (dir) return dir;
    this.slots += 1;
    return this.create(`slot-${this.slots}`);
  }

  /**
   * Make a reusable directory ready for the next event: everything in task-io goes, and stdout/stderr too.
   * Files are unlinked rather than left to be truncated by the next event: on ext4 rewriting a truncated file
   * makes its close wait for the data to reach the disk (`auto_da_alloc`), 1.5 ms per event measured here.
   * A directory that cannot be cleaned is removed instead of reused.
   */
  async recycle(dir: RunDir): Promise<void> {
    const own = new Set([dir.infile, dir.outfile].map((path) => path.slice(dir.taskIo.length + 1)));
    try {
      // Synchronous, as the infile and outfile are (see task-io.ts): a readdir and four unlinks per event.
      for (const name of readdirSync(dir.taskIo)) {
        // The pilot's own files are plain files; anything else the task left may be a tree.
        if (own.has(name)) unlinkSync(join(dir.taskIo, name));
        else await rm(join(dir.taskIo, name), { recursive: true, force: true });
      }
      for (const path of [dir.stdout, dir.stderr]) unlinkQuietly(path);
      this.idle.push(dir);
    } catch {
      await this.remove(dir);
    }
  }

  /**
   * Remove a run's directory. The files the pilot made are unlinked by name and the directories removed
   * empty — a quarter fewer system calls than a recursive removal, which walks and stats everything — and
   * only a task that left files of its own costs the recursive walk.
   */
  async remove(dir: RunDir): Promise<void> {
    try {
      await Promise.all([dir.infile, dir.outfile, dir.stdout, dir.stderr].map(unlinkIfPresent));
      await Promise.all([rmdir(dir.taskIo), rmdir(join(dir.root, 'outputs'))]);
      await rmdir(dir.root);
    } catch {
      await rm(dir.root, { recursive: true, force: true, maxRetries: 2 });
    }
  }
}

/** The last `maxBytes` of a file as text ('' when it is missing). */
export async function tailOf(path: string, maxBytes: number): Promise<string> {
  let handle;
  try {
    handle = await open(path, 'r');
  } catch {
    return '';
  }
  try {
    const { size } = await handle.stat();
    const length = Math.min(size, maxBytes);
    const buffer = Buffer.alloc(length);
    await handle.read(buffer, 0, length, size - length);
    return buffer.toString('utf8');
  } finally {
    await handle.close();
  }
}

/** Copy a file to a stream (the pilot's stdout) without loading it whole; a missing file copies nothing. */
export function copyFileTo(path: string, destination: NodeJS.WritableStream): Promise<void> {
  return new Promise((resolve) => {
    const stream = createReadStream(path);
    stream.on('error', () => resolve());
    stream.on('end', () => resolve());
    stream.pipe(destination, { end: false });
  });
}

async function unlinkIfPresent(path: string): Promise<void> {
  try {
    await unlink(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

/** Unlink a file that may be missing (a task that never started), without the cost of an error's stack. */
function unlinkQuietly(path: string): void {
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  try {
    unlinkSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  } finally {
    Error.stackTraceLimit = limit;
  }
}
