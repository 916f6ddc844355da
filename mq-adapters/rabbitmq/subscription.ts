/**
 * A consumer on a channel of its own with a per-consumer prefetch (`basic.qos` with global=false), so the
 * broker itself never lets more than `prefetch` unacked messages reach it, and an ack lets the next one in
 * at once (push, no polling).
 *
 * Everything between the channel and the consumer's loop (buffer, prefetch count, over-the-limit dead
 * letters, release on close) is the shared `Intake`. When the channel dies (lost connection, or the broker
 * closed it: e.g. `consumer_timeout`), the broker has already put its unacked messages back in the queue.
 * Deliveries from it that were buffered but not yet yielded are dropped (running them would be wasted
 * work); those already yielded can no longer be settled (`SharedDelivery` turns that into a logged no-op). Consumption resumes on a new channel: at once when the
 * connection is still up, after the reconnect when it is not.
 *
 * Leases: RabbitMQ has no per-message lease to extend, so `extendLease()` does nothing. The only clock is
 * the broker's `consumer_timeout` (30 min by default on 3.10): a delivery unacked for longer makes the
 * broker close the channel, and the message goes back to the queue. For longer tasks raise it on the broker
 * (`consumer_timeout = 86400000` in rabbitmq.conf, in ms) or, from 3.12 on, per queue with the
 * `consumer-timeout` policy key / `x-consumer-timeout` argument.
 */
import type { Channel, ConsumeMessage } from 'amqplib';
import { describeError } from '../../common/redact.js';
import { QueueNotFoundError } from '../errors.js';
import { contentEventId, overLimitReason, readAttempts, type DeliveryContext } from '../shared/delivery.js';
import { Intake } from '../shared/intake.js';
import { HEADERS, type Delivery, type Subscription } from '../types.js';
import type { RabbitConnection } from './connection.js';

/** Headers RabbitMQ adds, or that carry what we expose elsewhere: not part of the application's headers. */
const INTERNAL_HEADERS = new Set([
  'x-delivery-count',
  'x-death',
  'x-first-death-exchange',
  'x-first-death-queue',
  'x-first-death-reason',
  'x-last-death-exchange',
  'x-last-death-queue',
  'x-last-death-reason',
  HEADERS.eventId,
]);

/** Wait before re-opening a channel the broker closed, doubling per failed attempt up to the cap. */
const RESUME_FIRST_MS = 250;
const RESUME_MAX_MS = 5_000;

/** One consumer channel and the deliveries it still owes a settle. */
interface ConsumerChannel {
  readonly channel: Channel;
  open: boolean;
  /** We closed it (rather than the broker or the network). */
  closing: boolean;
  consumerTag: string | undefined;
  /** Delivered on this channel and not yet settled. */
  outstanding: number;
}

export class RabbitSubscription implements Subscription {
  private readonly intake: Intake;
  /** The channel consuming now; undefined between a loss and the resume. */
  private active: ConsumerChannel | undefined;
  private resuming = false;
  private resumeTimer: NodeJS.Timeout | undefined;
  private resumeFailures = 0;
  private readonly onReconnected = () => void this.resume();
  private readonly onLost = (err: Error) => this.intake.fail(err);

  constructor(
    private readonly conn: RabbitConnection,
    private readonly queue: string,
    private readonly prefetch: number,
    private readonly ctx: DeliveryContext,
  ) {
    // The broker holds us to the prefetch (basic.qos); the intake's count only mirrors it.
    this.intake = new Intake(ctx, prefetch, { stop: () => this.stopConsuming() });
  }

  /** Start consuming; fails if the queue does not exist. */
  async start(): Promise<void> {
    await this.openChannel();
    this.conn.on('reconnected', this.onReconnected);
    this.conn.on('lost', this.onLost);
  }

  [Symbol.asyncIterator](): AsyncIterator<Delivery> {
    return this.intake[Symbol.asyncIterator]();
  }

  close(): Promise<void> {
    return this.intake.close();
  }

  /** The intake is closing: cancel the consumer, so nothing arrives behind what it releases. */
  private async stopConsuming(): Promise<void> {
    clearTimeout(this.resumeTimer);
    this.conn.off('reconnected', this.onReconnected);
    this.conn.off('lost', this.onLost);
    const active = this.active;
    if (active?.open && active.consumerTag) await active.channel.cancel(active.consumerTag).catch(() => undefined);
    if (active) this.closeIfIdle(active);
  }

  private async openChannel(): Promise<void> {
    const model = await this.conn.current();
    const channel = await model.createChannel();
    const cc: ConsumerChannel = { channel, open: true, closing: false, consumerTag: undefined, outstanding: 0 };
    channel.on('error', (err: Error) => {
      this.ctx.logger?.warn({ queue: this.queue, err: this.conn.redact(err.message) }, 'rabbitmq consumer channel closed by the broker');
    });
    channel.on('close', () => this.channelClosed(cc));
    // Active before the first delivery can arrive, so settling it never retires the channel.
    this.active = cc;
    try {
      // global=false: the limit applies to this consumer alone (RabbitMQ's reading of basic.qos).
      await channel.prefetch(this.prefetch, false);
      const ok = await channel.consume(this.queue, (msg) => this.receive(cc, msg), { noAck: false });
      cc.consumerTag = ok.consumerTag;
    } catch (err) {
      cc.closing = true;
      if (this.active === cc) this.active = undefined;
      await channel.close().catch(() => undefined);
      if ((err as { code?: unknown }).code === 404) throw new QueueNotFoundError('rabbitmq', this.queue);
      throw new Error(`cannot consume from '${this.queue}': ${this.conn.redact(describeError(err))}`, { cause: err });
    }
    if (this.intake.stopped && cc.consumerTag) {
      // close() ran while we were opening: undo.
      await channel.cancel(cc.consumerTag).catch(() => undefined);
      this.closeIfIdle(cc);
    }
  }

  private channelClosed(cc: ConsumerChannel): void {
    cc.open = false;
    if (this.active !== cc) return;
    this.active = undefined;
    // Closed by us, or while still opening (whoever opens it handles that failure).
    if (this.intake.stopped || cc.closing || cc.consumerTag === undefined) return;
    // One line per lost channel: the deliveries it held go back to the broker, which counts each as an attempt.
    this.ctx.logger?.info({ queue: this.queue, held: cc.outstanding }, 'rabbitmq consumer channel lost; its deliveries go back to the broker');
    // If the connection went down with it, the reconnect resumes us; if it is up, resume here.
    this.scheduleResume(RESUME_FIRST_MS);
  }

  private scheduleResume(delayMs: number): void {
    if (this.intake.stopped || this.resumeTimer) return;
    this.resumeTimer = setTimeout(() => {
      this.resumeTimer = undefined;
      void this.resume();
    }, delayMs);
  }

  /** Consume again on a new channel, unless already consuming or the connection is down. */
  private async resume(): Promise<void> {
    if (this.intake.stopped || this.resuming || this.active?.open || !this.conn.isUp) return;
    this.resuming = true;
    try {
      await this.openChannel();
      this.resumeFailures = 0;
      this.ctx.logger?.info({ queue: this.queue }, 'rabbitmq consumer resumed');
    } catch (err) {
      if (err instanceof QueueNotFoundError) {
        // Deleted under us (the broker cancelled the consumer): nothing more will come.
        this.ctx.logger?.info({ queue: this.queue }, 'the queue was deleted; ending the subscription');
        void this.intake.close();
      } else if (!this.conn.isFinished) {
        this.resumeFailures += 1;
        this.ctx.logger?.warn({ queue: this.queue, err: describeError(err, this.conn.secrets) }, 'rabbitmq consumer could not resume; retrying');
        this.scheduleResume(Math.min(RESUME_FIRST_MS * 2 ** this.resumeFailures, RESUME_MAX_MS));
      }
    } finally {
      this.resuming = false;
    }
  }

  private receive(cc: ConsumerChannel, msg: ConsumeMessage | null): void {
    if (!msg) {
      // The broker cancelled the consumer (queue deleted): keep the channel for settling what was yielded,
      // and find out whether the queue still exists.
      if (this.active === cc) this.active = undefined;
      cc.consumerTag = undefined;
      this.closeIfIdle(cc);
      if (!this.intake.stopped) this.scheduleResume(0);
      return;
    }
    const raw = msg.properties.headers ?? {};
    const body = new Uint8Array(msg.content.buffer, msg.content.byteOffset, msg.content.byteLength);
    const eventId = eventIdOf(msg.properties.messageId, raw[HEADERS.eventId], body);
    // Quorum queues count earlier deliveries of this copy that were returned (or whose consumer died).
    const returned = Number(raw['x-delivery-count'] ?? 0);
    cc.outstanding += 1;
    this.intake.accept(
      {
        body,
        headers: applicationHeaders(raw),
        eventId,
        brokerDeliveries: (Number.isFinite(returned) && returned > 0 ? returned : 0) + 1,
        raw: {
          ack: async () => this.settleRaw(cc, eventId, () => cc.channel.ack(msg)),
          requeue: async () => this.settleRaw(cc, eventId, () => cc.channel.nack(msg, false, true)),
          extendLease: async () => undefined,
          isLive: () => cc.open,
        },
      },
      () => {
        cc.outstanding -= 1;
        this.closeIfIdle(cc);
      },
    );
  }

  /** Ack/nack on the channel; a channel that closed since the isLive check means the broker requeued it. */
  private async settleRaw(cc: ConsumerChannel, eventId: string, settle: () => void): Promise<void> {
    try {
      settle();
    } catch (err) {
      if (cc.open) throw err;
      this.ctx.logger?.warn({ eventId }, 'the channel this event came on is gone; the broker will redeliver it');
    }
  }

  /** Close a channel that no longer consumes once its last delivery is settled. */
  private closeIfIdle(cc: ConsumerChannel): void {
    const retired = this.intake.stopped || this.active !== cc;
    if (retired && cc.open && !cc.closing && cc.outstanding === 0) {
      cc.closing = true;
      void cc.channel.close().catch(() => undefined);
    }
  }
}

/** The application's headers as strings, without RabbitMQ's bookkeeping. */
export function applicationHeaders(raw: Record<string, unknown>): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const [key, value] of Object.entries(raw)) {
    if (INTERNAL_HEADERS.has(key) || value === undefined || value === null) continue;
    headers[key] = typeof value === 'string' ? value : Buffer.isBuffer(value) ? value.toString('utf8') : typeof value === 'object' ? JSON.stringify(value) : String(value);
  }
  // Dead-lettered by the broker's backstop rather than by us: say so in our own terms, with the last real
  // failure the event carried as the reason when it had one.
  const brokerReason = raw['x-first-death-reason'];
  if (headers[HEADERS.deadLetterReason] === undefined && brokerReason !== undefined) {
    const { lastFailure, headers: app } = readAttempts(headers);
    const byBroker = `dead-lettered by the broker: ${headerText(brokerReason)}`;
    const { reason, details } = overLimitReason(lastFailure, byBroker, byBroker);
    const dead: Record<string, string> = { ...app };
    for (const [key, value] of Object.entries(details ?? {})) dead[`${HEADERS.deadLetterDetailPrefix}${key}`] = value;
    dead[HEADERS.deadLetterReason] = reason;
    const source = raw['x-first-death-queue'];
    if (source !== undefined) dead[HEADERS.deadLetterSource] = headerText(source);
    return dead;
  }
  return headers;
}

/** The publisher's event id (the `messageId` property, or our header), else a hash of the body. */
export function eventIdOf(messageId: unknown, header: unknown, body: Uint8Array): string {
  if (typeof messageId === 'string' && messageId) return messageId;
  if (typeof header === 'string' && header) return header;
  if (Buffer.isBuffer(header) && header.length > 0) return header.toString('utf8');
  return contentEventId(body);
}

function headerText(value: unknown): string {
  return typeof value === 'string' ? value : Buffer.isBuffer(value) ? value.toString('utf8') : String(value);
}
