/**
 * The consuming half every adapter shares, between the broker's client (which pushes received messages in
 * with `accept`) and the consumer's `for await` loop:
 *
 * - the prefetch gate: `held` counts deliveries received and not yet settled; pull-based adapters ask the
 *   broker for more only while `waitForRoom()` says there is room (RabbitMQ's broker enforces its own);
 * - over-the-limit dead-lettering: a delivery beyond the limit (its last allowed attempt's consumer died)
 *   goes to the dead-letter queue without reaching the consumer;
 * - deliveries whose channel died before they were yielded are dropped (the broker has them back already);
 * - closing — `close()`, or leaving the `for await` early by break/return/throw — stops the source first
 *   (the adapter's `stop`: cancel the consumer, abandon the pull request), then releases everything received
 *   and not yet yielded, including what arrives while the source stops. Gives back already under way are
 *   let through first, and those made while the source stops wait until it has (`ReturnGate`), so none can
 *   meet a pull request nobody listens to any more (see nats/subscription.ts).
 */
import { describeError } from '../../common/redact.js';
import type { Delivery, Subscription } from '../types.js';
import { AsyncQueue } from './async-queue.js';
import { SharedDelivery, type DeliveryContext, type OnSettled, type ReceivedMessage, type ReturnGate } from './delivery.js';

/** Pause before returning a message we failed to dead-letter, so a broken DLQ does not become a hot loop. */
const DEAD_LETTER_RETRY_MS = 1_000;

/** What the adapter does when the intake closes. */
export interface IntakeSource {
  /**
   * Stop receiving: cancel the consumer, abandon the pull request. Resolve once nothing more can arrive;
   * what arrives before that still goes through `accept` and is released.
   */
  stop(): Promise<void>;
}

export class Intake implements Subscription {
  private readonly buffer = new AsyncQueue<SharedDelivery>();
  private heldCount = 0;
  private closing: Promise<void> | undefined;
  /** Received while closing (before the source stopped), or left in the buffer by a failure. */
  private readonly toRelease: SharedDelivery[] = [];
  /** Set while the source is being stopped: gives back wait for it. */
  private sourceStopping: Promise<void> | undefined;
  /** Gives back that started before the close: the source is stopped only once they are through. */
  private readonly returnsInFlight = new Set<Promise<void>>();
  private readonly returnGate: ReturnGate = {
    wait: () => this.sourceStopping,
    track: (giveBack) => {
      const settled = giveBack.then(
        () => undefined,
        () => undefined,
      );
      this.returnsInFlight.add(settled);
      void settled.then(() => this.returnsInFlight.delete(settled));
    },
  };
  private roomWaiters: Array<() => void> = [];

  constructor(
    private readonly ctx: DeliveryContext,
    private readonly prefetch: number,
    private readonly source: IntakeSource,
  ) {}

  /** Deliveries received and not yet settled. */
  get held(): number {
    return this.heldCount;
  }

  /** Closed, closing or failed: the source should stop asking for messages. */
  get stopped(): boolean {
    return this.closing !== undefined || this.buffer.isEnded;
  }

  /** Resolves once fewer than `prefetch` deliveries are held, or the intake has stopped. */
  waitForRoom(): Promise<void> {
    if (this.heldCount < this.prefetch || this.stopped) return Promise.resolve();
    return new Promise((resolve) => this.roomWaiters.push(resolve));
  }

  /** Room for this many more messages right now. */
  get room(): number {
    return Math.max(0, this.prefetch - this.heldCount);
  }

  /**
   * Take one received message. `onSettled`, when given, is told after the intake's own bookkeeping (e.g. a
   * RabbitMQ channel that closes once its last delivery is settled).
   */
  accept(message: ReceivedMessage, onSettled?: OnSettled): void {
    this.heldCount += 1;
    // Every delivery in hand, also one still buffered: a consumer that dies holding it uses up an attempt.
    this.ctx.logger?.debug({ eventId: message.eventId, queue: this.ctx.queue, brokerDeliveries: message.brokerDeliveries }, 'delivery received');
    const delivery = new SharedDelivery(
      message,
      this.ctx,
      () => {
        this.heldCount -= 1;
        this.wakeRoomWaiters();
        onSettled?.();
      },
      this.returnGate,
    );
    if (delivery.overLimit) {
      void this.deadLetterOverLimit(delivery, message);
    } else if (this.closing !== undefined || this.buffer.isEnded) {
      // Arrived while closing: the source is still being stopped, or has stopped (released at once).
      if (this.sourceStopping) this.toRelease.push(delivery);
      else void delivery.release().catch(() => undefined);
    } else {
      this.buffer.push(delivery);
    }
  }

  /** End the iteration with `error` (the connection is gone for good); buffered deliveries are released on close. */
  fail(error: unknown): void {
    if (this.stopped) return;
    this.toRelease.push(...this.buffer.fail(error));
    this.wakeRoomWaiters();
  }

  [Symbol.asyncIterator](): AsyncIterator<Delivery> {
    const inner = this.buffer[Symbol.asyncIterator]();
    return {
      next: async (): Promise<IteratorResult<Delivery>> => {
        for (;;) {
          const next = await inner.next();
          if (next.done) return { value: undefined, done: true };
          if (next.value.isLive) return { value: next.value, done: false };
          // Its channel died while it waited here: the broker has given it to someone else already.
          this.ctx.logger?.debug({ eventId: next.value.eventId, queue: this.ctx.queue }, 'delivery dropped: its channel died');
          next.value.forget();
        }
      },
      // Leaving a for-await loop early (break, return, throw) stops intake and returns what is buffered.
      return: async (): Promise<IteratorResult<Delivery>> => {
        await this.close();
        return { value: undefined, done: true };
      },
    };
  }

  close(): Promise<void> {
    this.closing ??= this.shutDown();
    return this.closing;
  }

  private async shutDown(): Promise<void> {
    let stopped!: () => void;
    this.sourceStopping = new Promise<void>((resolve) => (stopped = resolve));
    this.toRelease.push(...this.buffer.end());
    this.wakeRoomWaiters();
    try {
      // A give-back already under way may be answered by the source still listening: let it through first.
      await Promise.all(this.returnsInFlight);
      await this.source.stop();
    } catch (err) {
      this.ctx.logger?.warn({ queue: this.ctx.queue, err: describeError(err) }, 'stopping the consumer failed; releasing what it received');
    } finally {
      this.sourceStopping = undefined;
      stopped();
    }
    await Promise.all(this.toRelease.splice(0).map((d) => d.release().catch(() => undefined)));
  }

  private async deadLetterOverLimit(delivery: SharedDelivery, message: ReceivedMessage): Promise<void> {
    try {
      await delivery.deadLetterOverLimit();
      this.ctx.logger?.debug({ eventId: delivery.eventId, queue: this.ctx.queue }, 'delivery over the limit dead-lettered');
    } catch (err) {
      this.ctx.logger?.error(
        { eventId: delivery.eventId, queue: this.ctx.queue, err: describeError(err) },
        'dead-lettering failed; returning the event to the queue',
      );
      // Settled in the delivery's eyes, still unacked on the broker: give it back after a pause (the broker's
      // own delivery limit takes it on a later return).
      setTimeout(() => {
        if (message.raw.isLive()) message.raw.requeue().catch(() => undefined);
      }, DEAD_LETTER_RETRY_MS).unref();
    }
  }

  private wakeRoomWaiters(): void {
    if (this.heldCount >= this.prefetch && !this.stopped) return;
    for (const wake of this.roomWaiters.splice(0)) wake();
  }
}
