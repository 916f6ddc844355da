/**
 * One event's task, start to end: its directory, the infile, the command (through the container
 * runtime), the process, the outfile and the output event. Failures are returned as outcomes, never
 * thrown, so the event loop alone decides what becomes of the event.
 */
import { EwmsError } from '../common/errors.js';
import type { WireFormat } from '../common/wire.js';
import { describeError } from '../common/redact.js';
import type { Delivery } from '../mq-adapters/types.js';
import type { CommandSpec } from './config.js';
import type { EventProcessor, TaskOutcome, TaskSlots } from './event-loop.js';
import { deadLetterReason, isOkayError, processFailure, STDERR_TAIL_BYTES, type Failure } from './failure.js';
import type { Logger } from './logger.js';
import { removeLaunchFiles, writeLaunchFiles } from './runtime/launch-files.js';
import type { ContainerRuntime, LaunchCommand, PreparedImage } from './runtime/types.js';
import { copyFileTo, safeDirName, tailOf, type RunDir, type TaskFiles } from './task-files.js';
import { decodePayload, InvalidDataForInfileException, InvalidDataFromOutfileException, readOutfile, writeInfile, type OutfileEvents, type Payload } from './task-io.js';
import type { Spawner } from './spawn/index.js';
import { runProcess, type ProcessResult } from './task-process.js';

/** Everything a task processor needs, prepared once per pilot. */
export interface TaskProcessorOptions {
  task: CommandSpec;
  runtime: ContainerRuntime;
  image: PreparedImage;
  files: TaskFiles;
  wireFormat: WireFormat;
  infileExt: string;
  outfileExt: string;
  /** One output event per outfile (default), or one per line. */
  outfileEvents?: OutfileEvents;
  killGraceSeconds: number;
  okayErrors: readonly string[];
  keepAllTaskFiles: boolean;
  dumpTaskOutput: boolean;
  version: string;
  logger: Logger;
  /** Where task output dumps go (the pilot's stdout). */
  dumpTo?: NodeJS.WritableStream;
  /** What starts task processes (default: `child_process.spawn` in the pilot). */
  spawner?: Spawner;
}

/** Runs each event's task in its own directory. */
export class TaskProcessor implements EventProcessor {
  private runCounter = 0;

  constructor(private readonly opts: TaskProcessorOptions) {}

  /** The task slot is held only while the task process runs (see `EventProcessor.slotAware`). */
  readonly slotAware = true;

  async process(delivery: Delivery, signal: AbortSignal, slots?: TaskSlots): Promise<TaskOutcome> {
    const { opts } = this;
    let payload: Payload;
    try {
      payload = decodePayload(delivery, opts.wireFormat);
    } catch (err) {
      // Nothing any pilot can do with it: dead-letter at once. Not the node's fault, so no fail-fast.
      const failure: Failure = { kind: 'MalformedEventError', message: `malformed event: ${describeError(err)}` };
      return this.failed(failure, delivery, '', undefined, { permanent: true, okay: true });
    }

    let dir: RunDir;
    try {
      // Kept files need a directory per event (named after it, as the Python pilot's); else one is reused.
      dir = opts.keepAllTaskFiles ? await opts.files.create(safeDirName(delivery.eventId)) : await opts.files.reusable();
    } catch (err) {
      return this.failed({ kind: 'TaskStartError', message: `cannot create the task's directory: ${describeError(err)}` }, delivery, '', undefined);
    }
    try {
      try {
        await writeInfile(dir.infile, opts.infileExt, payload);
      } catch (err) {
        if (err instanceof InvalidDataForInfileException) {
          return this.failed({ kind: 'InvalidDataForInfileException', message: err.message }, delivery, '', undefined, { permanent: true, okay: true });
        }
        throw err;
      }

      const command = opts.runtime.command(
        { args: opts.task.args, env: opts.task.env, paths: { taskIoDir: dir.taskIo, infile: dir.infile, outfile: dir.outfile, dataHub: opts.files.dataHub }, runId: this.runId(dir) },
        opts.image,
      );
      await writeLaunchFiles(command);
      let result: ProcessResult;
      try {
        // Everything before is preparation and everything after is reporting: only the process holds a slot.
        if (slots && !(await slots.acquire(signal))) return { kind: 'aborted', durationMs: undefined };
        try {
          result = await this.run(command, dir, signal);
        } finally {
          slots?.release();
        }
      } finally {
        await removeLaunchFiles(command);
      }
      if (result.aborted) return { kind: 'aborted', durationMs: result.durationMs };

      const failure = processFailure(result, opts.task.timeoutSeconds);
      // A process that never started wrote nothing (what a reused directory holds is an earlier event's).
      const ran = result.spawnError === undefined;
      if (ran && (failure || opts.dumpTaskOutput)) await dumpRunOutput(dir, `task (event ${JSON.stringify(delivery.eventId)})`, opts.dumpTo);
      if (failure) {
        return this.failed(failure, delivery, ran ? await tailOf(dir.stderr, STDERR_TAIL_BYTES) : '', result.durationMs);
      }

      try {
        const outputs = await readOutfile(dir.outfile, opts.outfileExt, opts.wireFormat, delivery.eventId, opts.outfileEvents);
        return { kind: 'success', outputs, durationMs: result.durationMs };
      } catch (err) {
        const failure: Failure =
          err instanceof InvalidDataFromOutfileException
            ? { kind: 'InvalidDataFromOutfileException', message: err.message }
            : { kind: 'InvalidDataFromOutfileException', message: `cannot read the outfile: ${describeError(err)}` };
        return this.failed(failure, delivery, '', result.durationMs);
      }
    } catch (err) {
      return this.failed({ kind: 'TaskStartError', message: `cannot run the task: ${describeError(err)}` }, delivery, '', undefined);
    } finally {
      // Failed or not, the stdout/stderr went to the log when it mattered; files stay only when asked.
      if (!opts.keepAllTaskFiles) {
        await opts.files.recycle(dir).catch((err: unknown) => opts.logger.warn({ err: describeError(err), dir: dir.root }, 'cannot remove a task directory'));
      }
    }
  }

  private run(command: LaunchCommand, dir: RunDir, signal: AbortSignal): Promise<ProcessResult> {
    const { runtime, task, killGraceSeconds } = this.opts;
    return runProcess(command, {
      cwd: command.cwd ?? dir.taskIo,
      stdoutPath: dir.stdout,
      stderrPath: dir.stderr,
      timeoutMs: task.timeoutSeconds === undefined ? undefined : task.timeoutSeconds * 1000,
      killGraceMs: killGraceSeconds * 1000,
      signal,
      onStop: () => runtime.stop(command),
      spawner: this.opts.spawner,
    });
  }

  private failed(
    failure: Failure,
    delivery: Delivery,
    stderrTail: string,
    durationMs: number | undefined,
    flags: { permanent?: boolean; okay?: boolean } = {},
  ): TaskOutcome {
    return {
      kind: 'failure',
      reason: deadLetterReason(failure, { attempt: delivery.deliveryCount, version: this.opts.version, stderrTail }),
      durationMs,
      permanent: flags.permanent ?? false,
      okay: flags.okay ?? isOkayError(failure, this.opts.okayErrors),
    };
  }

  /** Container names must be unique per pilot and start with a letter or digit. */
  private runId(dir: RunDir): string {
    this.runCounter += 1;
    const base = dir.root.slice(dir.root.lastIndexOf('/') + 1).replace(/[^A-Za-z0-9_.-]/g, '_').slice(0, 80);
    return `ewms-${process.pid}-${this.runCounter}-${base}`;
  }
}

/** The init command failed or was stopped; the pilot exits before taking work. */
export class InitCommandError extends EwmsError {}

/**
 * Run the init command once, in its own directory beside the data hub. Throws an error saying how it
 * failed (with its stderr tail), which stops the pilot before it takes work.
 */
export async function runInit(opts: {
  init: CommandSpec;
  runtime: ContainerRuntime;
  image: PreparedImage;
  files: TaskFiles;
  killGraceSeconds: number;
  keepFiles: boolean;
  logger: Logger;
  dumpTo?: NodeJS.WritableStream;
  /** Stops the init command (TERM, then KILL after the grace). */
  signal?: AbortSignal;
  spawner?: Spawner;
}): Promise<void> {
  const dir = await opts.files.create('init');
  const command = opts.runtime.command(
    { args: opts.init.args, env: opts.init.env, paths: { taskIoDir: dir.taskIo, dataHub: opts.files.dataHub }, runId: `ewms-${process.pid}-init` },
    opts.image,
  );
  opts.logger.info({ file: command.file }, 'running the init command');
  await writeLaunchFiles(command);
  const result = await runProcess(command, {
    cwd: command.cwd ?? dir.taskIo,
    stdoutPath: dir.stdout,
    stderrPath: dir.stderr,
    timeoutMs: opts.init.timeoutSeconds === undefined ? undefined : opts.init.timeoutSeconds * 1000,
    killGraceMs: opts.killGraceSeconds * 1000,
    signal: opts.signal,
    onStop: () => opts.runtime.stop(command),
    spawner: opts.spawner,
  }).finally(() => removeLaunchFiles(command));
  if (result.aborted) throw new InitCommandError('init command stopped by the pilot', 'nothing to fix: the pilot was told to stop (SIGTERM/SIGINT) while init ran');
  const failure = processFailure(result, opts.init.timeoutSeconds, 'init command');
  if (failure) {
    await dumpRunOutput(dir, 'init command', opts.dumpTo);
    const tail = (await tailOf(dir.stderr, STDERR_TAIL_BYTES)).trim();
    throw new InitCommandError(
      `${failure.message}${tail ? `; stderr ends with: ${tail.slice(-300)}` : ''}`,
      'fix EWMS_PILOT_INIT_ARGS / EWMS_PILOT_INIT_IMAGE (its output is dumped above), or raise EWMS_PILOT_INIT_TIMEOUT',
    );
  }
  opts.logger.info({ seconds: (result.durationMs / 1000).toFixed(2) }, 'init command finished');
  if (!opts.keepFiles) await opts.files.remove(dir);
}

/** Copy a run's stdout and stderr to the pilot's stdout, framed so they can be told apart in a job log. */
async function dumpRunOutput(dir: RunDir, label: string, out: NodeJS.WritableStream = process.stdout): Promise<void> {
  out.write(`----- stdout of ${label} -----\n`);
  await copyFileTo(dir.stdout, out);
  out.write(`----- stderr of ${label} -----\n`);
  await copyFileTo(dir.stderr, out);
  out.write(`----- end of ${label} output -----\n`);
}
