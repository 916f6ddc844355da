/**
 * What a pilot's heartbeat says beyond its counters, observed from outside the event loop: the tasks running
 * now (with their start times), task-run durations, the latest failure, and dead letters by reason.
 *
 * It sees the loop only through the two ports the loop already has — the event processor and the
 * subscription — by wrapping them, so the lifecycle code stays as it is and a pilot without a monitoring
 * queue does not wrap anything. Per event it costs a map insert and delete and one histogram update.
 */
import { redact } from '../common/redact.js';
import { clip, DurationHistogram, HEARTBEAT_LIMITS, OTHER_REASON, type DeadLetterGroup, type DurationCounts, type InFlightEvent } from '../common/heartbeat.js';
import type { DeadLetterReason, Delivery, Subscription } from '../mq-adapters/types.js';
import type { EventProcessor, TaskOutcome, TaskSlots } from './event-loop.js';

/** Observes task runs and dead letters for the heartbeat. */
export class TaskProbe {
  private readonly running = new Map<object, InFlightEvent>();
  private readonly histogram = new DurationHistogram();
  private readonly groups = new Map<string, DeadLetterGroup>();
  private latestError: { message: string; at: number } | undefined;

  /** @param secrets values to redact from anything that leaves the pilot (broker tokens, task env). */
  constructor(private readonly secrets: readonly string[] = []) {}

  /** The processor, timed: in-flight while `process` runs; its duration and failures recorded after. */
  wrapProcessor(processor: EventProcessor): EventProcessor {
    return {
      slotAware: processor.slotAware,
      process: async (delivery: Delivery, signal: AbortSignal, slots?: TaskSlots): Promise<TaskOutcome> => {
        const token = {};
        this.running.set(token, { eventId: clip(delivery.eventId, HEARTBEAT_LIMITS.idChars), attempt: delivery.deliveryCount, startedAt: Date.now() });
        try {
          const outcome = await processor.process(delivery, signal, slots);
          if (outcome.durationMs !== undefined && outcome.kind !== 'aborted') this.histogram.observe(outcome.durationMs / 1000);
          if (outcome.kind === 'failure') this.noteError(outcome.reason.reason);
          return outcome;
        } finally {
          this.running.delete(token);
        }
      },
    };
  }

  /** The subscription, with each delivery's dead-lettering counted by reason once the broker confirmed it. */
  wrapSubscription(subscription: Subscription): Subscription {
    const probe = this;
    return {
      close: () => subscription.close(),
      async *[Symbol.asyncIterator]() {
        for await (const delivery of subscription) yield new ObservedDelivery(delivery, (reason) => probe.noteDeadLetter(reason));
      },
    };
  }

  /** Record a failure that is not a task's (a broker error). */
  noteError(message: string): void {
    this.latestError = { message: clip(redact(message, this.secrets), HEARTBEAT_LIMITS.errorChars), at: Date.now() };
  }

  /** Tasks running now, oldest first (at most `HEARTBEAT_LIMITS.inFlightListed`), and how many there are. */
  inFlight(): { count: number; events: InFlightEvent[] } {
    const events = [...this.running.values()].sort((a, b) => a.startedAt - b.startedAt).slice(0, HEARTBEAT_LIMITS.inFlightListed);
    return { count: this.running.size, events };
  }

  durations(): DurationCounts {
    return this.histogram.counts();
  }

  deadLetters(): DeadLetterGroup[] {
    return [...this.groups.values()].map((g) => ({ ...g }));
  }

  get lastError(): { message: string; at: number } | undefined {
    return this.latestError;
  }

  private noteDeadLetter(reason: DeadLetterReason): void {
    const text = clip(redact(reason.reason, this.secrets), HEARTBEAT_LIMITS.reasonChars);
    const key = this.groups.has(text) || this.groups.size < HEARTBEAT_LIMITS.deadLetterReasons ? text : OTHER_REASON;
    const group = this.groups.get(key) ?? { reason: key, count: 0 };
    group.count += 1;
    const errorType = reason.details?.['error-type'];
    if (errorType && key !== OTHER_REASON) group.errorType = clip(errorType, HEARTBEAT_LIMITS.idChars);
    const tail = reason.details?.['stderr-tail'];
    // Dead-letter headers carry line breaks as a visible `\n`: give the page real lines back.
    if (tail) group.sampleStderrTail = clip(redact(tail.replace(/\\n/g, '\n'), this.secrets).slice(-HEARTBEAT_LIMITS.stderrTailChars), HEARTBEAT_LIMITS.stderrTailChars);
    this.groups.set(key, group);
  }
}

/** A delivery that reports its dead-lettering; everything else passes straight through. */
class ObservedDelivery implements Delivery {
  constructor(
    private readonly inner: Delivery,
    private readonly onDeadLettered: (reason: DeadLetterReason) => void,
  ) {}

  get body(): Uint8Array {
    return this.inner.body;
  }
  get headers(): Readonly<Record<string, string>> {
    return this.inner.headers;
  }
  get eventId(): string {
    return this.inner.eventId;
  }
  get deliveryCount(): number {
    return this.inner.deliveryCount;
  }
  ack(): Promise<void> {
    return this.inner.ack();
  }
  nack(): Promise<void> {
    return this.inner.nack();
  }
  release(): Promise<void> {
    return this.inner.release();
  }
  async deadLetter(reason: DeadLetterReason): Promise<void> {
    await this.inner.deadLetter(reason);
    this.onDeadLettered(reason);
  }
  extendLease(): Promise<void> {
    return this.inner.extendLease();
  }
}
