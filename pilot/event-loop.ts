/**
 * One pilot's consume → run → publish → ack loop: the event lifecycle of DESIGN.md, top to bottom.
 *
 * Invariants this file keeps:
 * - ack-last: an input is acked only after its output (if any) is confirmed by the broker;
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
import { deadLetterReason } from './failure.js';
import type { Logger } from './logger.js';
import type { PilotStats } from './stats.js';

/** What running one event's task produced. */
export type TaskOutcome =
  | { kind: 'success'; output: OutgoingMessage | undefined; durationMs: number }
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

/** Runs one event's task: files, process, output. Never throws; failures are outcomes. */
export interface EventProcessor {
  process(delivery: Delivery, signal: AbortSignal): Promise<TaskOutcome>;
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
  private freeSlot: (() => void) | undefined;

  constructor(private readonly opts: EventLoopOptions) {}

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
        await this.waitForSlot();
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
      this.freeSlot?.();
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
    const item: InFlight = { delivery, abort, done: Promise.resolve() };
    item.done = this.handle(delivery, abort.signal).finally(() => {
      this.inFlight.delete(item);
      this.freeSlot?.();
      if (this.inFlight.size === 0) this.armIdleTimer();
    });
    this.inFlight.add(item);
  }

  private waitForSlot(): Promise<void> {
    if (this.inFlight.size < this.opts.maxConcurrentTasks || this.stopReason) return Promise.resolve();
    return new Promise((resolve) => {
      this.freeSlot = () => {
        if (this.inFlight.size < this.opts.maxConcurrentTasks || this.stopReason) {
          this.freeSlot = undefined;
          resolve();
        }
      };
    });
  }

  private async drain(): Promise<void> {
    while (this.inFlight.size > 0) {
      await Promise.allSettled([...this.inFlight].map((item) => item.done));
    }
  }

  /** One event, start to settle. */
  private async handle(delivery: Delivery, signal: AbortSignal): Promise<void> {
    const { logger, stats } = this.opts;
    const log = logger.child({ eventId: delivery.eventId, attempt: delivery.deliveryCount });
    log.debug('event received');
    const lease = setInterval(() => {
      delivery.extendLease().catch((err: unknown) => log.warn({ err: String(err) }, 'lease renewal failed'));
    }, this.opts.leaseRenewMs);
    lease.unref();

    let outcome: TaskOutcome;
    try {
      outcome = await this.opts.processor.process(delivery, signal);
    } finally {
      clearInterval(lease);
    }

    switch (outcome.kind) {
      case 'success': {
        if (outcome.output) {
          try {
            await this.opts.publishOutput(outcome.output);
            log.debug('output published');
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
        stats.recordSuccess(outcome.durationMs, outcome.output !== undefined);
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
    if (last) {
      await this.settle(delivery, 'dead-letter', outcome.reason.reason, log, outcome.reason);
      stats.recordDeadLetter();
    } else {
      await this.settle(delivery, 'nack', 'task failed', log, outcome.reason);
    }
    if (this.opts.stopOnTaskError && !outcome.okay) {
      this.fatalTaskError ??= outcome.reason.reason;
      this.stop('task-error');
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
