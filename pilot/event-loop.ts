/**
 * One pilot's consume → run → publish → ack loop: the event lifecycle of DESIGN.md, top to bottom.
 *
 * Invariants this file keeps:
 * - ack-last: an input is acked only after its outputs (none, one or several) are confirmed by the broker;
 * - at most `maxConcurrentTasks` tasks run at once, and the subscription's prefetch bounds what is held;
 * - a failed attempt is nacked (redelivered, to any pilot) until the last allowed one, which is
 *   dead-lettered with its reason; nothing is ever dropped;
 * - fail-fast: a task failure outside OKAY_ERRORS stops intake; in-flight work still finishes;
 * - stopping (idle, signal, wall time) releases what was not finished for redelivery.
 *
 * The broker, the task processor and the clock are ports, so this logic is tested without either.
 */
import { MessageTooLargeError } from '../mq-adapters/errors.js';
import type { DeadLetterReason, Delivery, OutgoingMessage, Subscription } from '../mq-adapters/types.js';
import { describeError } from '../common/redact.js';
import { deadLetterReason } from './failure.js';
import type { Logger } from './logger.js';
import type { PilotStats } from './stats.js';

/** What running one event's task produced. */
export type TaskOutcome =
  /** `outputs`: what to publish for the event, in order (none: the task had nothing to say). */
  | { kind: 'success'; outputs: readonly OutgoingMessage[]; durationMs: number }
  | {
      kind: 'failure';
      reason: DeadLetterReason;
      durationMs: number | undefined;
      /** Retrying cannot help (malformed event): dead-letter at once. */
      permanent: boolean;
      /** The failure matched OKAY_ERRORS: it does not trigger fail-fast. */
      okay: boolean;
    }
  /** The task was stopped by the pilot (shutdown); the event goes back untouched by blame. */
  | { kind: 'aborted'; durationMs: number | undefined };

/**
 * The task slots: at most `maxConcurrentTasks` task processes at once. A slot-aware processor holds one
 * only while its process runs, so preparing the next event and publishing/acking the last overlap tasks.
 */
export interface TaskSlots {
  /** Wait for a free slot; false when intake stopped (or `signal` aborted) meanwhile: release the event. */
  acquire(signal: AbortSignal): Promise<boolean>;
  /** Give back a slot acquired with `acquire`. */
  release(): void;
}

/** Runs one event's task: files, process, output. Never throws; failures are outcomes. */
export interface EventProcessor {
  /**
   * True when `process` takes a slot from `slots` itself, around the task process only. Otherwise the loop
   * holds a slot for the whole call.
   */
  readonly slotAware?: boolean;
  process(delivery: Delivery, signal: AbortSignal, slots?: TaskSlots): Promise<TaskOutcome>;
}

/** Why intake stopped. */
export type StopReason =
  | 'first-message-timeout'
  | 'idle-timeout'
  | 'task-error'
  | 'signal'
  | 'max-runtime'
  | 'broker-error';

export interface EventLoopOptions {
  subscription: Subscription;
  /** Publish an output and resolve once the broker confirmed it. */
  publishOutput(message: OutgoingMessage): Promise<void>;
  processor: EventProcessor;
  maxConcurrentTasks: number;
  /**
   * Events taken beyond the running tasks, to be prepared and wait for a slot (default 0). Only with a
   * slot-aware processor; an event whose task has ended (being published and acked) no longer counts, so the
   * subscription's prefetch should leave room for those too (see `pilot.ts`).
   */
  lookahead?: number;
  maxDeliveries: number;
  stopOnTaskError: boolean;
  /** End if no event arrives this long after start (undefined: wait forever). */
  firstMessageTimeoutMs: number | undefined;
  /** End after this long with nothing to do once events have flowed (undefined: wait forever). */
  idleTimeoutMs: number | undefined;
  /** Renew each in-flight delivery's lease this often. */
  leaseRenewMs: number;
  logger: Logger;
  stats: PilotStats;
  /** Told after every settled event (for HTChirp / progress). */
  onProgress?: () => void;
  /** The pilot's version, for the reason of a failure found here (an output the broker refuses). */
  version?: string;
}

export interface EventLoopResult {
  stopReason: StopReason | 'subscription-ended';
  /** The first failure that triggered fail-fast, for the exit summary. */
  fatalTaskError: string | undefined;
  /** An error from the broker that ended the loop. */
  brokerError: unknown;
}

interface InFlight {
  delivery: Delivery;
  /** Its task process has ended (slot-aware processors): it no longer counts against the window. */
  taskEnded: boolean;
  abort: AbortController;
  done: Promise<void>;
}

export class EventLoop {
  private readonly inFlight = new Set<InFlight>();
  private stopReason: StopReason | undefined;
  private fatalTaskError: string | undefined;
  private brokerError: unknown;
  private receivedAny = false;
  private idleTimer: NodeJS.Timeout | undefined;
  private freeRoom: (() => void) | undefined;
  private readonly slots: Semaphore;
  /** Most events in hand at once whose task has not ended. */
  private readonly window: number;
  /** In-flight events whose task has not ended. */
  private beforeTaskEnd = 0;

  constructor(private readonly opts: EventLoopOptions) {
    this.slots = new Semaphore(opts.maxConcurrentTasks, () => this.stopReason !== undefined);
    this.window = opts.maxConcurrentTasks + (opts.processor.slotAware ? (opts.lookahead ?? 0) : 0);
  }

  /** Consume until intake stops, then wait for in-flight events to settle. */
  async run(): Promise<EventLoopResult> {
    this.armIdleTimer();
    try {
      for await (const delivery of this.opts.subscription) {
        this.receivedAny = true;
        this.disarmIdleTimer();
        if (this.stopReason) {
          // Intake stopped between the broker's push and this line: give it straight back.
          await this.settle(delivery, 'release', 'released at stop');
          continue;
        }
        this.start(delivery);
        await this.waitForRoom();
        if (this.stopReason) break;
      }
    } catch (err) {
      this.brokerError = err;
      this.stop('broker-error');
    } finally {
      this.disarmIdleTimer();
    }
    await this.drain();
    return {
      stopReason: this.stopReason ?? 'subscription-ended',
      fatalTaskError: this.fatalTaskError,
      brokerError: this.brokerError,
    };
  }

  /**
   * Stop taking events. In-flight tasks keep running unless `abortAfterMs` is given, in which case they
   * are stopped after that grace and their events released for redelivery.
   */
  stop(reason: StopReason, abortAfterMs?: number): void {
    if (!this.stopReason) {
      this.stopReason = reason;
      this.opts.logger.info({ reason, inFlight: this.inFlight.size }, 'stopping intake');
      this.disarmIdleTimer();
      // Closing the subscription returns buffered messages and ends the for-await above.
      this.opts.subscription.close().catch((err: unknown) => {
        this.opts.logger.warn({ err: String(err) }, 'closing the subscription failed');
      });
      this.freeRoom?.();
      // Events waiting for a slot are not started: they go back to the queue.
      this.slots.wakeAll();
    }
    if (abortAfterMs !== undefined) {
      const timer = setTimeout(() => this.abortAll(), abortAfterMs);
      timer.unref();
    }
  }

  /** Stop every in-flight task now; their events are released for redelivery. */
  abortAll(): void {
    for (const item of this.inFlight) item.abort.abort();
  }

  get inFlightCount(): number {
    return this.inFlight.size;
  }

  private start(delivery: Delivery): void {
    const abort = new AbortController();
    const item: InFlight = { delivery, abort, taskEnded: false, done: Promise.resolve() };
    this.beforeTaskEnd += 1;
    item.done = this.handle(item).finally(() => {
      this.taskEnded(item);
      this.inFlight.delete(item);
      this.freeRoom?.();
      if (this.inFlight.size === 0) this.armIdleTimer();
    });
    this.inFlight.add(item);
  }

  /** The event's task is over (its slot given back): reporting it does not hold up taking the next. */
  private taskEnded(item: InFlight): void {
    if (item.taskEnded) return;
    item.taskEnded = true;
    this.beforeTaskEnd -= 1;
    this.freeRoom?.();
  }

  private waitForRoom(): Promise<void> {
    if (this.beforeTaskEnd < this.window || this.stopReason) return Promise.resolve();
    return new Promise((resolve) => {
      this.freeRoom = () => {
        if (this.beforeTaskEnd < this.window || this.stopReason) {
          this.freeRoom = undefined;
          resolve();
        }
      };
    });
  }

  /** The processor's outcome; a processor that throws (its contract says it never does) releases the event. */
  private async runProcessor(item: InFlight, log: Logger): Promise<TaskOutcome> {
    const { processor } = this.opts;
    const { delivery } = item;
    const signal = item.abort.signal;
    try {
      if (processor.slotAware) {
        return await processor.process(delivery, signal, {
          acquire: (s) => this.slots.acquire(s),
          release: () => {
            this.slots.release();
            this.taskEnded(item);
          },
        });
      }
      if (!(await this.slots.acquire(signal))) return { kind: 'aborted', durationMs: undefined };
      // The whole call holds the slot and the event its place in the window, reporting included.
      try {
        return await processor.process(delivery, signal);
      } finally {
        this.slots.release();
      }
    } catch (err) {
      log.error({ err: describeError(err) }, 'the task processor failed unexpectedly; releasing the event');
      return { kind: 'aborted', durationMs: undefined };
    }
  }

  private async drain(): Promise<void> {
    while (this.inFlight.size > 0) {
      await Promise.allSettled([...this.inFlight].map((item) => item.done));
    }
  }

  /** One event, start to settle. */
  private async handle(item: InFlight): Promise<void> {
    const { delivery } = item;
    const { logger, stats } = this.opts;
    const log = logger.child({ eventId: delivery.eventId, attempt: delivery.deliveryCount });
    log.debug('event received');
    const lease = setInterval(() => {
      delivery.extendLease().catch((err: unknown) => log.warn({ err: String(err) }, 'lease renewal failed'));
    }, this.opts.leaseRenewMs);
    lease.unref();

    let outcome: TaskOutcome;
    try {
      outcome = await this.runProcessor(item, log);
    } finally {
      clearInterval(lease);
    }

    switch (outcome.kind) {
      case 'success': {
        if (outcome.outputs.length > 0) {
          try {
            // Every output confirmed before the ack: a redelivered event publishes them all again, under the
            // same ids, so what an interrupted attempt had published is deduplicated downstream.
            await Promise.all(outcome.outputs.map((output) => this.opts.publishOutput(output)));
            log.debug({ outputs: outcome.outputs.length }, 'output published');
          } catch (err) {
            if (err instanceof MessageTooLargeError) {
              // No pilot could publish this output: the event failed, not the broker. Released, it would come
              // back forever and stop every pilot that takes it.
              await this.failed(delivery, this.outputTooLarge(err, delivery, outcome.durationMs), log);
              break;
            }
            // Not confirmed: the input must not be acked. Release it; another attempt will publish again
            // (the output's event id is derived from the input's, so the coordinator deduplicates).
            log.error({ err: String(err) }, 'publishing the output failed; releasing the event');
            await this.settle(delivery, 'release', 'output publish failed', log);
            this.brokerError ??= err;
            this.stop('broker-error');
            return;
          }
        } else {
          // Allowed (a task may have nothing to say), but a collector waiting for one result per event
          // would wait for this one forever: leave a trace that says why.
          log.info('task succeeded without writing an outfile: nothing published for this event');
        }
        await this.settle(delivery, 'ack', 'task succeeded', log);
        stats.recordSuccess(outcome.durationMs, outcome.outputs.length > 0);
        break;
      }
      case 'failure':
        await this.failed(delivery, outcome, log);
        break;
      case 'aborted':
        log.info('task stopped by the pilot; releasing the event');
        await this.settle(delivery, 'release', 'aborted', log);
        break;
    }
    this.opts.onProgress?.();
  }

  /** A failed attempt: another one, or the dead-letter queue after the last (or a permanent failure). */
  private async failed(delivery: Delivery, outcome: TaskOutcome & { kind: 'failure' }, log: Logger): Promise<void> {
    const { stats } = this.opts;
    stats.recordFailure(outcome.durationMs);
    const last = outcome.permanent || delivery.deliveryCount >= this.opts.maxDeliveries;
    log.warn(
      { reason: outcome.reason.reason, final: last, okay: outcome.okay },
      last ? 'task failed; dead-lettering the event' : 'task failed; releasing the event for another attempt',
    );
    // Fail-fast stops intake before the nack: the event's next attempt must not come back to this pilot
    // (with room in its prefetch, the broker would hand it straight back).
    if (this.opts.stopOnTaskError && !outcome.okay) {
      this.fatalTaskError ??= outcome.reason.reason;
      this.stop('task-error');
    }
    if (last) {
      await this.settle(delivery, 'dead-letter', outcome.reason.reason, log, outcome.reason);
      stats.recordDeadLetter();
    } else {
      await this.settle(delivery, 'nack', 'task failed', log, outcome.reason);
    }
  }

  /**
   * The broker refused the task's output as too large. Dead-lettered at once (another attempt writes the same
   * output), and not the node's fault, so no fail-fast — as for a malformed event.
   */
  private outputTooLarge(err: MessageTooLargeError, delivery: Delivery, durationMs: number): TaskOutcome & { kind: 'failure' } {
    const reason = deadLetterReason(
      { kind: 'InvalidDataFromOutfileException', message: `the task's output is too large for the broker: ${err.message}` },
      { attempt: delivery.deliveryCount, version: this.opts.version ?? 'unknown', stderrTail: '' },
    );
    return { kind: 'failure', reason, durationMs, permanent: true, okay: true };
  }

  /** Settle a delivery; a broker error here is logged, never thrown: the broker redelivers unsettled events. */
  private async settle(
    delivery: Delivery,
    how: 'ack' | 'nack' | 'release' | 'dead-letter',
    why: string,
    log: Logger = this.opts.logger,
    reason?: DeadLetterReason,
  ): Promise<void> {
    try {
      if (how === 'ack') await delivery.ack();
      else if (how === 'nack') await delivery.nack(reason);
      else if (how === 'release') await delivery.release();
      else await delivery.deadLetter(reason ?? { reason: why });
      log.debug({ how, why }, 'event settled');
    } catch (err) {
      log.error({ how, why, err: String(err) }, 'could not settle the event; the broker will redeliver it');
    }
  }

  private armIdleTimer(): void {
    this.disarmIdleTimer();
    if (this.stopReason || this.inFlight.size > 0) return;
    const ms = this.receivedAny ? this.opts.idleTimeoutMs : this.opts.firstMessageTimeoutMs;
    if (ms === undefined) return;
    const reason: StopReason = this.receivedAny ? 'idle-timeout' : 'first-message-timeout';
    this.idleTimer = setTimeout(() => this.stop(reason), ms);
  }

  private disarmIdleTimer(): void {
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
  }
}

/** Counting semaphore whose waiters give up once `stopped()` holds (intake ended) or their signal aborts. */
class Semaphore {
  private free: number;
  private readonly waiters = new Set<() => void>();

  constructor(
    size: number,
    private readonly stopped: () => boolean,
  ) {
    this.free = size;
  }

  async acquire(signal: AbortSignal): Promise<boolean> {
    while (this.free === 0) {
      if (this.stopped() || signal.aborted) return false;
      await new Promise<void>((resolve) => {
        const wake = () => {
          this.waiters.delete(wake);
          signal.removeEventListener('abort', wake);
          resolve();
        };
        this.waiters.add(wake);
        signal.addEventListener('abort', wake, { once: true });
      });
    }
    if (this.stopped() || signal.aborted) return false;
    this.free -= 1;
    return true;
  }

  release(): void {
    this.free += 1;
    this.wakeOne();
  }

  /** Let every waiter look again (after a stop: they give up). */
  wakeAll(): void {
    for (const wake of [...this.waiters]) wake();
  }

  private wakeOne(): void {
    const first = this.waiters.values().next();
    if (!first.done) first.value();
  }
}
