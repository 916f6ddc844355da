/**
 * The settle logic every adapter shares: settle once; attempts counted by us, not by the broker; a nack
 * on the last allowed attempt becomes a dead letter; dead letters and returned copies are confirmed before
 * the original is acked; settling a delivery whose connection died is a logged no-op (the broker redelivers
 * it anyway).
 *
 * Why copies: RabbitMQ quorum queues, JetStream and Pulsar all count every return of a message as a
 * delivery, and none lets a consumer return one without counting it (RabbitMQ 3.10 has no `modify`). An
 * eviction (the pilot was told to stop) must not use up an attempt, and a retried event must carry the
 * reason it failed, so on a queue that dead-letters a return is: publish a copy (same body, same event id)
 * with the attempt count and the last failure in headers, wait for the broker's confirm, then ack the
 * original. The broker's own counter then counts only what we cannot see: consumers that died holding it.
 */
import { createHash } from 'node:crypto';
import { describeError } from '../../common/redact.js';
import { DEFAULTS, HEADERS, type AdapterLogger, type DeadLetterReason, type Delivery, type OutgoingMessage } from '../types.js';

/** What an adapter provides for one received message. */
export interface RawSettle {
  ack(): Promise<void>;
  /**
   * Ack and wait until the broker has taken the ack, where the broker can say so (NATS `ackAck`); a plain
   * ack elsewhere. Used after a copy or a dead letter was published, so the original is gone before the
   * settle resolves. Resolves false when the broker did not confirm (the original may come back: its copy
   * carries the same event id).
   */
  ackConfirmed?(): Promise<boolean>;
  /** Return it to the broker as it is (every broker here counts that as a delivery). */
  requeue(): Promise<void>;
  extendLease(): Promise<void>;
  /** False once the connection/channel the message came on is gone. */
  isLive(): boolean;
  /**
   * For a connection that reconnects under a live delivery (NATS): true when it is up now; else a promise
   * of true once it is up again, or false when it is not up within `withinMs`.
   */
  reachable?(withinMs: number): true | Promise<boolean>;
}

/** What every delivery of one subscription shares. */
export interface DeliveryContext {
  queue: string;
  deadLetterQueue: string;
  /** Attempts before dead-lettering; infinite for a queue that never dead-letters. */
  maxDeliveries: number;
  /** Publish to a queue, confirmed. */
  publish(queue: string, message: OutgoingMessage): Promise<string>;
  logger: AdapterLogger | undefined;
}

/**
 * How long a give-back waits for a lost connection to come back. Not the whole reconnect window: a pilot
 * stopping while its broker is down must exit in time, and the broker redelivers the event by itself.
 */
const GIVE_BACK_WAIT_MS = 5_000;

/** Told once per delivery, when it is settled (frees a prefetch slot). */
export type OnSettled = () => void;

/**
 * Orders gives back around a closing subscription (see `Intake`): one that starts while the source is
 * being stopped waits for `wait()`; one that starts before is `track`ed, and the close waits for it.
 */
export interface ReturnGate {
  /** Pending while the source is being stopped; undefined otherwise. */
  wait(): Promise<void> | undefined;
  track(giveBack: Promise<void>): void;
}

/** A message as an adapter received it, before it becomes a `Delivery`. */
export interface ReceivedMessage {
  body: Uint8Array;
  /** Application headers, broker bookkeeping removed; ours (`x-ewms-attempts`, …) still in. */
  headers: Record<string, string>;
  eventId: string;
  /** How often the broker has handed out this copy, this time included (1 on its first delivery). */
  brokerDeliveries: number;
  raw: RawSettle;
}

/**
 * The delivery limit a consumer enforces: none for a queue that never dead-letters (`deadLetter: false`,
 * e.g. results, which readers give back each time a collection ends), else `maxDeliveries` (default 3).
 */
export function deliveryLimit(options: { deadLetter?: boolean; maxDeliveries?: number }): number {
  return options.deadLetter === false ? Number.POSITIVE_INFINITY : (options.maxDeliveries ?? DEFAULTS.maxDeliveries);
}

/** A stable id for a message published without one: the hash of its body. */
export function contentEventId(body: Uint8Array): string {
  return `sha256:${createHash('sha256').update(body).digest('hex')}`;
}

/** The attempt bookkeeping a message carries, and its application headers without it. */
export interface AttemptRecord {
  /** Attempts used up before this copy was published (0 for a message as its publisher sent it). */
  attemptsBefore: number;
  lastFailure: DeadLetterReason | undefined;
  headers: Record<string, string>;
}

/** Split our attempt bookkeeping off a message's headers (a message the Python MQClient sent has none). */
export function readAttempts(headers: Readonly<Record<string, string>>): AttemptRecord {
  const app: Record<string, string> = {};
  let attemptsBefore = 0;
  let reason: string | undefined;
  const details: Record<string, string> = {};
  for (const [key, value] of Object.entries(headers)) {
    if (key === HEADERS.attempts) {
      const n = Number(value);
      attemptsBefore = Number.isInteger(n) && n > 0 ? n : 0;
    } else if (key === HEADERS.lastFailure) {
      reason = value;
    } else if (key.startsWith(HEADERS.lastFailureDetailPrefix)) {
      details[key.slice(HEADERS.lastFailureDetailPrefix.length)] = value;
    } else {
      app[key] = value;
    }
  }
  const lastFailure = reason === undefined ? undefined : Object.keys(details).length > 0 ? { reason, details } : { reason };
  return { attemptsBefore, lastFailure, headers: app };
}

/**
 * The reason of a dead letter moved for exceeding the delivery limit: the last real failure when the event
 * carried one, with `limit` (why it was moved now) as its `delivery-limit` detail; else `otherwise`.
 */
export function overLimitReason(lastFailure: DeadLetterReason | undefined, limit: string, otherwise: string): DeadLetterReason {
  return lastFailure ? { reason: lastFailure.reason, details: { ...lastFailure.details, 'delivery-limit': limit } } : { reason: otherwise };
}

/** The bookkeeping headers for a copy that has used up `attempts` attempts. */
export function attemptHeaders(attempts: number, lastFailure: DeadLetterReason | undefined): Record<string, string> {
  const headers: Record<string, string> = { [HEADERS.attempts]: String(attempts) };
  if (lastFailure) {
    headers[HEADERS.lastFailure] = headerValue(lastFailure.reason);
    for (const [key, value] of Object.entries(lastFailure.details ?? {})) {
      headers[`${HEADERS.lastFailureDetailPrefix}${key}`] = headerValue(value);
    }
  }
  return headers;
}

export class SharedDelivery implements Delivery {
  readonly body: Uint8Array;
  readonly headers: Readonly<Record<string, string>>;
  readonly eventId: string;
  readonly deliveryCount: number;
  readonly lastFailure: DeadLetterReason | undefined;
  private readonly raw: RawSettle;
  private settled = false;

  constructor(
    message: ReceivedMessage,
    private readonly ctx: DeliveryContext,
    private readonly onSettled: OnSettled,
    private readonly returnGate: ReturnGate,
  ) {
    const record = readAttempts(message.headers);
    this.body = message.body;
    this.headers = record.headers;
    this.eventId = message.eventId;
    this.deliveryCount = record.attemptsBefore + Math.max(1, message.brokerDeliveries);
    this.lastFailure = record.lastFailure;
    this.raw = message.raw;
  }

  /** Can it still be settled (its connection or channel is up)? */
  get isLive(): boolean {
    return this.raw.isLive();
  }

  /** Beyond the delivery limit: a consumer died holding its last allowed attempt. */
  get overLimit(): boolean {
    return this.deliveryCount > this.ctx.maxDeliveries;
  }

  async ack(): Promise<void> {
    await this.settle('ack', () => this.raw.ack());
  }

  async nack(failure?: DeadLetterReason): Promise<void> {
    const last = failure ?? this.lastFailure;
    if (this.deliveryCount >= this.ctx.maxDeliveries) {
      await this.deadLetter(last ?? { reason: `delivery limit reached: nacked on attempt ${this.deliveryCount} of ${this.ctx.maxDeliveries}` });
      return;
    }
    await this.settle('nack', () => this.giveBack(this.deliveryCount, last));
  }

  async release(): Promise<void> {
    await this.settle('release', () => this.giveBack(this.deliveryCount - 1, this.lastFailure));
  }

  async deadLetter(reason: DeadLetterReason): Promise<void> {
    await this.settle('dead-letter', async () => {
      await this.ctx.publish(this.ctx.deadLetterQueue, {
        body: this.body,
        eventId: this.eventId,
        headers: deadLetterHeaders(this.headers, reason, this.ctx.queue, this.deliveryCount),
      });
      await this.ackOriginal('dead-letter');
    });
  }

  /**
   * Dead-letter a delivery beyond the limit (its last allowed attempt's consumer died) without running it:
   * the reason is the last real failure when one was carried, and `x-ewms-dlq-delivery-limit` says why it
   * was moved now.
   */
  async deadLetterOverLimit(): Promise<void> {
    const limit = `exceeded: attempt ${this.deliveryCount} of ${this.ctx.maxDeliveries} (a consumer died or lost its connection while holding it)`;
    await this.deadLetter(overLimitReason(this.lastFailure, limit, `delivery limit ${limit}`));
  }

  async extendLease(): Promise<void> {
    if (!this.settled && this.raw.isLive()) await this.raw.extendLease();
  }

  /**
   * Settle without telling the broker: it has taken the message back already (its channel died). Frees the
   * prefetch slot.
   */
  forget(): void {
    if (this.settled) return;
    this.settled = true;
    this.onSettled();
  }

  /**
   * Give the message back having used up `attempts` attempts (see the file comment). Until its return is on
   * its way it runs without an await when nothing stands in its way, so a close that starts at the same
   * moment already sees it tracked.
   */
  private giveBack(attempts: number, lastFailure: DeadLetterReason | undefined): Promise<void> {
    const gate = this.returnGate.wait();
    if (gate) return gate.then(() => this.giveBackNow(attempts, lastFailure));
    const giving = this.giveBackNow(attempts, lastFailure);
    this.returnGate.track(giving);
    return giving;
  }

  private async giveBackNow(attempts: number, lastFailure: DeadLetterReason | undefined): Promise<void> {
    if (!this.raw.isLive()) return this.gone('give back');
    const reachable = this.raw.reachable?.(GIVE_BACK_WAIT_MS) ?? true;
    if (reachable !== true && !(await reachable)) {
      this.ctx.logger?.warn(
        { eventId: this.eventId, queue: this.ctx.queue },
        'the broker is unreachable: the event is not given back now; the broker redelivers it when its lease runs out',
      );
      return;
    }
    if (!Number.isFinite(this.ctx.maxDeliveries)) {
      // Nothing counts attempts on a queue that never dead-letters: the broker's own return is enough.
      await this.raw.requeue();
      return;
    }
    try {
      await this.ctx.publish(this.ctx.queue, {
        body: this.body,
        eventId: this.eventId,
        headers: { ...this.headers, ...attemptHeaders(attempts, lastFailure) },
      });
    } catch (err) {
      // E.g. the copy's headers pushed it over the broker's size limit. A plain return loses nothing;
      // it only costs an attempt.
      this.ctx.logger?.warn(
        { eventId: this.eventId, queue: this.ctx.queue, err: describeError(err) },
        'could not give the event back as a copy; returning it to the broker as it is (this uses up an attempt)',
      );
      if (this.raw.isLive()) await this.raw.requeue();
      return;
    }
    await this.ackOriginal('give back');
  }

  /** Remove the original once its copy or dead letter is stored; confirmed where the broker can. */
  private async ackOriginal(how: string): Promise<void> {
    if (!this.raw.ackConfirmed) return this.raw.ack();
    if (!(await this.raw.ackConfirmed())) {
      this.ctx.logger?.warn(
        { eventId: this.eventId, queue: this.ctx.queue, how },
        'the broker did not confirm the ack of the original; it may be delivered again (same event id)',
      );
    }
  }

  private async settle(how: string, action: () => Promise<void>): Promise<void> {
    if (this.settled) throw new Error(`event ${this.eventId} was already settled; cannot ${how} it again`);
    this.settled = true;
    try {
      if (!this.raw.isLive()) return this.gone(how);
      await action();
    } finally {
      this.onSettled();
    }
  }

  private gone(how: string): void {
    this.ctx.logger?.warn({ eventId: this.eventId, how }, 'the connection this event came on is gone; the broker will redeliver it');
  }
}

/** The original headers plus the dead-letter reason headers. */
export function deadLetterHeaders(
  original: Readonly<Record<string, string>>,
  reason: DeadLetterReason,
  sourceQueue: string,
  deliveries: number,
): Record<string, string> {
  const headers: Record<string, string> = { ...original };
  for (const [key, value] of Object.entries(reason.details ?? {})) {
    headers[`${HEADERS.deadLetterDetailPrefix}${key}`] = headerValue(value);
  }
  headers[HEADERS.deadLetterReason] = headerValue(reason.reason);
  headers[HEADERS.deadLetterSource] = sourceQueue;
  headers[HEADERS.deadLetterDeliveries] = String(deliveries);
  return headers;
}

/**
 * A header value every broker carries: NATS headers cannot hold line breaks (they become a visible `\n`),
 * and other control characters are dropped.
 */
function headerValue(text: string): string {
  return text
    .replace(/\r?\n/g, '\\n')
    // eslint-disable-next-line no-control-regex
    .replace(/[\u0000-\u0008\u000b-\u001f\u007f]/g, '');
}
