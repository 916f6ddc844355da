/**
 * The settle logic every adapter shares: settle once, nack on the last allowed delivery becomes a dead
 * letter, dead letters are confirmed before the original is acked, and settling a delivery whose
 * connection died is a logged no-op (the broker redelivers it anyway).
 */
import { createHash } from 'node:crypto';
import { DEFAULTS, HEADERS, type AdapterLogger, type DeadLetterReason, type Delivery, type OutgoingMessage } from '../types.js';

/** What an adapter provides for one received message. */
export interface RawSettle {
  ack(): Promise<void>;
  nack(): Promise<void>;
  extendLease(): Promise<void>;
  /** False once the connection/channel the message came on is gone. */
  isLive(): boolean;
}

export interface DeliveryContext {
  queue: string;
  deadLetterQueue: string;
  maxDeliveries: number;
  /** Publish to the dead-letter queue, confirmed. */
  publish(queue: string, message: OutgoingMessage): Promise<string>;
  logger: AdapterLogger | undefined;
  /** Told when the delivery is settled (frees a prefetch slot). */
  onSettled(): void;
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

export class SharedDelivery implements Delivery {
  private settled = false;

  constructor(
    readonly body: Uint8Array,
    readonly headers: Readonly<Record<string, string>>,
    readonly eventId: string,
    readonly deliveryCount: number,
    private readonly raw: RawSettle,
    private readonly ctx: DeliveryContext,
  ) {}

  async ack(): Promise<void> {
    await this.settle('ack', () => this.raw.ack());
  }

  async nack(): Promise<void> {
    if (this.deliveryCount >= this.ctx.maxDeliveries) {
      await this.deadLetter({
        reason: `delivery limit reached: nacked on delivery ${this.deliveryCount} of ${this.ctx.maxDeliveries}`,
      });
      return;
    }
    await this.settle('nack', () => this.raw.nack());
  }

  async release(): Promise<void> {
    await this.settle('release', () => this.raw.nack());
  }

  async deadLetter(reason: DeadLetterReason): Promise<void> {
    await this.settle('dead-letter', async () => {
      await this.ctx.publish(this.ctx.deadLetterQueue, {
        body: this.body,
        eventId: this.eventId,
        headers: deadLetterHeaders(this.headers, reason, this.ctx.queue, this.deliveryCount),
      });
      await this.raw.ack();
    });
  }

  async extendLease(): Promise<void> {
    if (!this.settled && this.raw.isLive()) await this.raw.extendLease();
  }

  private async settle(how: string, action: () => Promise<void>): Promise<void> {
    if (this.settled) throw new Error(`event ${this.eventId} was already settled; cannot ${how} it again`);
    this.settled = true;
    try {
      if (!this.raw.isLive()) {
        this.ctx.logger?.warn(
          { eventId: this.eventId, how },
          'the connection this event came on is gone; the broker will redeliver it',
        );
        return;
      }
      await action();
    } finally {
      this.ctx.onSettled();
    }
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
    headers[`${HEADERS.deadLetterDetailPrefix}${key}`] = value;
  }
  headers[HEADERS.deadLetterReason] = reason.reason;
  headers[HEADERS.deadLetterSource] = sourceQueue;
  headers[HEADERS.deadLetterDeliveries] = String(deliveries);
  return headers;
}
