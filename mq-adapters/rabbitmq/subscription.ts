/**
 * A consumer on its own channel with a per-consumer prefetch, so RabbitMQ itself never lets more than
 * `prefetch` unacked messages reach us. After a reconnect it consumes again on a new channel; deliveries
 * from the old channel can no longer be settled (the broker has already requeued them).
 */
import type { Channel, ConsumeMessage } from 'amqplib';
import { describeError } from '../../common/redact.js';
import { AsyncQueue } from '../shared/async-queue.js';
import { SharedDelivery, contentEventId, type DeliveryContext } from '../shared/delivery.js';
import { HEADERS, type Delivery, type Subscription } from '../types.js';
import type { RabbitConnection } from './connection.js';

/** Headers RabbitMQ adds or we carry ourselves: not part of the application's headers. */
const INTERNAL_HEADERS = new Set(['x-delivery-count', 'x-death', 'x-first-death-exchange', 'x-first-death-queue',
  'x-first-death-reason', 'x-last-death-exchange', 'x-last-death-queue', 'x-last-death-reason', HEADERS.eventId]);

export class RabbitSubscription implements Subscription {
  private readonly buffer = new AsyncQueue<Delivery>();
  private channel: Channel | undefined;
  private consumerTag: string | undefined;
  private closed = false;
  private outstanding = 0;
  private readonly onReconnect = () => {
    if (!this.closed) this.start().catch((err: unknown) => this.buffer.fail(err));
  };
  private readonly onLost = (err: Error) => this.buffer.fail(err);

  constructor(
    private readonly conn: RabbitConnection,
    private readonly queue: string,
    private readonly prefetch: number,
    private readonly ctx: Omit<DeliveryContext, 'onSettled'>,
  ) {}

  async start(): Promise<void> {
    const model = await this.conn.current();
    const channel = await model.createChannel();
    channel.on('error', (err: Error) => this.ctx.logger?.warn({ err: describeError(err) }, 'rabbitmq consumer channel error'));
    await channel.prefetch(this.prefetch, false);
    this.channel = channel;
    const state = { open: true };
    channel.on('close', () => (state.open = false));
    const ok = await channel.consume(this.queue, (msg) => this.receive(channel, state, msg), { noAck: false });
    this.consumerTag = ok.consumerTag;
    if (!this.listening) {
      this.listening = true;
      this.conn.on('reconnected', this.onReconnect);
      this.conn.on('lost', this.onLost);
    }
  }
  private listening = false;

  [Symbol.asyncIterator](): AsyncIterator<Delivery> {
    return this.buffer[Symbol.asyncIterator]();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.conn.off('reconnected', this.onReconnect);
    this.conn.off('lost', this.onLost);
    const channel = this.channel;
    if (channel && this.consumerTag) await channel.cancel(this.consumerTag).catch(() => undefined);
    // Received but never handed out: give them back now.
    for (const delivery of this.buffer.end()) await delivery.release().catch(() => undefined);
    this.closeChannelIfIdle();
  }

  private receive(channel: Channel, state: { open: boolean }, msg: ConsumeMessage | null): void {
    if (!msg) {
      // The broker cancelled us (queue deleted): end the iteration.
      if (!this.closed) this.buffer.end();
      return;
    }
    const raw = msg.properties.headers ?? {};
    const headers: Record<string, string> = {};
    for (const [key, value] of Object.entries(raw)) {
      if (!INTERNAL_HEADERS.has(key) && value !== undefined && value !== null) {
        headers[key] = Buffer.isBuffer(value) ? value.toString('utf8') : typeof value === 'object' ? JSON.stringify(value) : String(value);
      }
    }
    const body = new Uint8Array(msg.content.buffer, msg.content.byteOffset, msg.content.byteLength);
    const idHeader = raw[HEADERS.eventId] as unknown;
    const eventId =
      (msg.properties.messageId as string | undefined) ??
      (typeof idHeader === 'string' ? idHeader : Buffer.isBuffer(idHeader) ? idHeader.toString('utf8') : undefined) ??
      contentEventId(body);
    const priorReturns = Number(raw['x-delivery-count'] ?? 0);
    const deliveryCount = (Number.isFinite(priorReturns) ? priorReturns : 0) + 1;
    const generation = this.conn.generation;

    this.outstanding += 1;
    const delivery = new SharedDelivery(
      body,
      headers,
      eventId,
      deliveryCount,
      {
        ack: async () => channel.ack(msg),
        nack: async () => channel.nack(msg, false, true),
        // RabbitMQ has no per-message lease: the broker's consumer_timeout (30 min by default; raise it in
        // rabbitmq.conf for longer tasks) is the only clock, and only an ack resets it.
        extendLease: async () => undefined,
        isLive: () => state.open && generation === this.conn.generation,
      },
      {
        ...this.ctx,
        onSettled: () => {
          this.outstanding -= 1;
          this.closeChannelIfIdle();
        },
      },
    );
    if (deliveryCount > this.ctx.maxDeliveries) {
      // A consumer died holding its last allowed delivery: dead-letter without running it again.
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

  private closeChannelIfIdle(): void {
    if (this.closed && this.outstanding === 0 && this.channel) {
      const channel = this.channel;
      this.channel = undefined;
      void channel.close().catch(() => undefined);
    }
  }
}
