/**
 * A pull subscription that never holds more than `prefetch` unacked messages: it asks the server only for
 * as many messages as there are free slots, and asks again the moment a slot frees (no polling tick: a
 * pull request waits server-side until messages arrive or it expires).
 */
import type { Consumer, ConsumerMessages, JsMsg } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { describeError } from '../../common/redact.js';
import { BrokerConnectionLostError } from '../errors.js';
import { AsyncQueue } from '../shared/async-queue.js';
import { SharedDelivery, contentEventId, type DeliveryContext } from '../shared/delivery.js';
import { HEADERS, type Delivery, type Subscription } from '../types.js';

/** How long one pull request waits server-side for messages before it is renewed. */
const PULL_EXPIRES_MS = 10_000;

export class NatsSubscription implements Subscription {
  private readonly buffer = new AsyncQueue<SharedDelivery>();
  private held = 0;
  private closed = false;
  private slotFreed: (() => void) | undefined;
  private disconnectedSince: number | undefined;
  /** The pull request waiting server-side; stopped on close so it cannot take messages for nobody. */
  private batch: ConsumerMessages | undefined;

  constructor(
    private readonly nc: NatsConnection,
    private readonly consumer: Consumer,
    private readonly prefetch: number,
    private readonly reconnectWindowMs: number,
    private readonly display: string,
    private readonly ctx: Omit<DeliveryContext, 'onSettled'>,
  ) {}

  start(): void {
    void this.pullLoop();
  }

  [Symbol.asyncIterator](): AsyncIterator<Delivery> {
    return this.buffer[Symbol.asyncIterator]();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.slotFreed?.();
    this.batch?.stop();
    for (const delivery of this.buffer.end()) await delivery.release().catch(() => undefined);
  }

  private async pullLoop(): Promise<void> {
    while (!this.closed) {
      if (this.held >= this.prefetch) {
        await new Promise<void>((resolve) => (this.slotFreed = resolve));
        this.slotFreed = undefined;
        continue;
      }
      try {
        const batch = await this.consumer.fetch({ max_messages: this.prefetch - this.held, expires: PULL_EXPIRES_MS });
        this.batch = batch;
        if (this.closed) batch.stop();
        for await (const msg of batch) {
          this.disconnectedSince = undefined;
          this.receive(msg);
        }
        this.disconnectedSince = undefined;
      } catch (err) {
        if (this.closed) return;
        if (this.nc.isClosed()) {
          this.buffer.fail(new BrokerConnectionLostError('nats', this.display, 'the connection is closed'));
          return;
        }
        // The server is away (restart, network): the client reconnects by itself; keep asking until the
        // reconnect window runs out.
        this.disconnectedSince ??= Date.now();
        if (Date.now() - this.disconnectedSince > this.reconnectWindowMs) {
          this.buffer.fail(
            new BrokerConnectionLostError('nats', this.display, `no messages could be pulled for ${this.reconnectWindowMs} ms: ${describeError(err)}`),
          );
          return;
        }
        await new Promise((r) => setTimeout(r, 250));
      }
    }
  }

  private receive(msg: JsMsg): void {
    const headers: Record<string, string> = {};
    let eventId: string | undefined;
    if (msg.headers) {
      for (const [key, values] of msg.headers) {
        if (key === HEADERS.eventId) eventId = values[0];
        else if (values[0] !== undefined && !key.startsWith('Nats-')) headers[key] = values[0];
      }
    }
    const body = msg.data;
    eventId ??= contentEventId(body);
    const deliveryCount = msg.info.deliveryCount;
    this.held += 1;
    const delivery = new SharedDelivery(
      body,
      headers,
      eventId,
      deliveryCount,
      {
        // A plain ack, not ackAck: by the time an input is acked its output is already confirmed, so a
        // lost ack costs only a deduplicated redelivery, while a round trip per ack cost 4x the rate.
        ack: async () => msg.ack(),
        nack: async () => msg.nak(),
        extendLease: async () => msg.working(),
        isLive: () => !this.nc.isClosed(),
      },
      {
        ...this.ctx,
        onSettled: () => {
          this.held -= 1;
          this.slotFreed?.();
        },
      },
    );
    if (deliveryCount > this.ctx.maxDeliveries) {
      void delivery
        .deadLetter({
          reason: `delivery limit exceeded: delivery ${deliveryCount} of ${this.ctx.maxDeliveries} (a consumer died or lost its connection while holding it)`,
        })
        .catch((err: unknown) => this.ctx.logger?.error({ eventId, err: describeError(err) }, 'dead-lettering failed'));
      return;
    }
    if (this.closed) {
      void delivery.release().catch(() => undefined);
      return;
    }
    this.buffer.push(delivery);
  }
}
