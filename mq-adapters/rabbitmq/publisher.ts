/**
 * Publishing with publisher confirms on one confirm channel per connection, re-created after a reconnect.
 *
 * A publish resolves only on the broker's ack. One caught by a lost connection is sent again once the
 * connection is back (the broker may have stored the first copy before the ack was lost: consumers drop the
 * duplicate by its event id), and rejected with `BrokerConnectionLostError` if the connection does not come
 * back within the reconnect window. A nack (a quorum queue electing a leader) is sent again with backoff
 * within the same window; a channel error (404, message too large) is never retried.
 */
import type { ConfirmChannel, Message } from 'amqplib';
import { BrokerConnectionLostError, MessageTooLargeError, QueueNotFoundError } from '../errors.js';
import { Semaphore } from '../shared/semaphore.js';
import { DEFAULTS, type ConnectOptions, type OutgoingMessage } from '../types.js';
import type { RabbitConnection } from './connection.js';

/**
 * RabbitMQ 3.10's default `max_message_size` (128 MiB). A body above it is refused before sending; a broker
 * configured lower refuses it itself (the channel error is reported, not retried).
 */
export const RABBITMQ_MAX_MESSAGE_BYTES = 128 * 1024 * 1024;

/**
 * amqplib encodes a message's properties (headers included) into one 64 KiB buffer and throws a
 * `RangeError` beyond it; they must fit into one frame anyway.
 */
export const AMQP_MAX_HEADER_BYTES = 64 * 1024;

/** The publish was caught by a closing channel or connection: unconfirmed, so safe to send again. */
class ChannelLostError extends Error {}

/**
 * The broker answered the publish with a nack: the queue could not take it now. A quorum queue does that
 * while it has no leader (the node leading it died and the others are electing one, measured on a 3-node
 * cluster), so it is sent again — with backoff, until the reconnect window has passed.
 */
class PublishNackedError extends Error {}

/** Backoff between sends of a nacked publish: doubles from the first value up to the cap. */
const NACK_RETRY_FIRST_MS = 100;
const NACK_RETRY_MAX_MS = 2_000;

/** A confirm channel together with what we learned about it. */
interface PublishChannel {
  readonly channel: ConfirmChannel;
  /** Set when the broker closed the channel with an error (e.g. 406 message too large). */
  serverError: (Error & { code?: unknown }) | undefined;
  /** Pending while the socket's write buffer is full (`publish` returned false). */
  drained: Promise<void> | undefined;
  /** Event ids the broker returned as unroutable (mandatory flag: the queue does not exist). */
  readonly returned: Set<string>;
  /** Given up after a nack: publishes go to a fresh channel. */
  retired: boolean;
}

export class RabbitPublisher {
  private current: Promise<PublishChannel> | undefined;
  private readonly slots: Semaphore;
  private readonly inFlight = new Set<Promise<void>>();
  private closing = false;

  constructor(
    private readonly conn: RabbitConnection,
    private readonly options: ConnectOptions,
  ) {
    this.slots = new Semaphore(options.maxInFlightPublishes ?? DEFAULTS.maxInFlightPublishes);
  }

  /** Publish persistently to `queue` through the default exchange; resolves on the broker's confirm. */
  async publish(queue: string, eventId: string, message: OutgoingMessage): Promise<void> {
    if (message.body.byteLength > RABBITMQ_MAX_MESSAGE_BYTES) {
      throw new MessageTooLargeError('rabbitmq', message.body.byteLength, RABBITMQ_MAX_MESSAGE_BYTES);
    }
    if (this.closing) throw new BrokerConnectionLostError('rabbitmq', this.conn.address.display, 'the broker connection is closing');
    const done = this.slots.with(() => this.publishUntilConfirmed(queue, eventId, message));
    this.inFlight.add(done);
    try {
      await done;
    } finally {
      this.inFlight.delete(done);
    }
  }

  /** Wait for every publish in flight (confirmed, refused or given up), then close the channel. */
  async close(): Promise<void> {
    this.closing = true;
    await Promise.allSettled([...this.inFlight]);
    const current = this.current;
    this.current = undefined;
    const pc = await current?.catch(() => undefined);
    if (pc) await pc.channel.close().catch(() => undefined);
  }

  private async publishUntilConfirmed(queue: string, eventId: string, message: OutgoingMessage): Promise<void> {
    const giveUpAt = Date.now() + (this.options.reconnectWindowMs ?? DEFAULTS.reconnectWindowMs);
    let nackDelay = NACK_RETRY_FIRST_MS;
    for (;;) {
      try {
        const pc = await this.channel();
        await this.sendOnce(pc, queue, eventId, message);
        return;
      } catch (err) {
        if (err instanceof PublishNackedError) {
          if (Date.now() + nackDelay > giveUpAt) {
            throw new Error(
              `the rabbitmq broker at ${this.conn.address.display} refused event ${eventId} on queue '${queue}' ` +
                `(nack: the queue may be full or unavailable) for ${this.options.reconnectWindowMs ?? DEFAULTS.reconnectWindowMs} ms`,
            );
          }
          this.options.logger?.warn({ eventId, queue }, 'publish nacked by the broker (a quorum queue without a leader, or full); sending it again');
          await new Promise((resolve) => setTimeout(resolve, nackDelay));
          nackDelay = Math.min(nackDelay * 2, NACK_RETRY_MAX_MS);
          continue;
        }
        if (!(err instanceof ChannelLostError)) throw err;
        if (Date.now() > giveUpAt) {
          throw new BrokerConnectionLostError('rabbitmq', this.conn.address.display, `event ${eventId} could not be published: ${this.conn.redact(err.message)}`);
        }
        this.options.logger?.warn({ eventId, queue }, 'publish interrupted by a lost connection; sending it again once reconnected');
        // Waits for the reconnect; throws BrokerConnectionLostError once the reconnect window has passed.
        await this.conn.current();
        // The channel can die with the connection still up for a moment; do not spin on it.
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }
  }

  private async sendOnce(pc: PublishChannel, queue: string, eventId: string, message: OutgoingMessage): Promise<void> {
    // Respect the socket's backpressure: wait while the channel's write buffer is full.
    while (pc.drained) await pc.drained;
    const body = Buffer.from(message.body.buffer, message.body.byteOffset, message.body.byteLength);
    return new Promise<void>((resolve, reject) => {
      const confirmed = (err: unknown) => {
        if (err === null || err === undefined) {
          if (pc.returned.delete(eventId)) reject(new QueueNotFoundError('rabbitmq', queue));
          else resolve();
        } else if (pc.serverError) {
          reject(this.refusal(queue, eventId, message.body.byteLength, pc.serverError));
        } else if (err instanceof Error && err.message === 'message nacked') {
          this.retire(pc);
          reject(new PublishNackedError(err.message));
        } else {
          reject(new ChannelLostError(String(err)));
        }
      };
      let accepted: boolean;
      try {
        accepted = pc.channel.publish(
          '',
          queue,
          body,
          {
            persistent: true,
            messageId: eventId,
            headers: message.headers ?? {},
            // Unroutable (no such queue) comes back as a return before the ack, instead of vanishing.
            mandatory: true,
          },
          confirmed,
        );
      } catch (err) {
        if (err instanceof RangeError) {
          reject(new MessageTooLargeError('rabbitmq', headerBytes(message.headers), AMQP_MAX_HEADER_BYTES));
        } else if (pc.serverError) {
          reject(this.refusal(queue, eventId, message.body.byteLength, pc.serverError));
        } else {
          // amqplib throws synchronously on a channel already closed: the connection went away.
          reject(new ChannelLostError(String(err)));
        }
        return;
      }
      if (!accepted && !pc.drained) {
        pc.drained = new Promise<void>((done) => {
          const finish = () => {
            pc.channel.off('drain', finish);
            pc.channel.off('close', finish);
            pc.drained = undefined;
            done();
          };
          pc.channel.on('drain', finish);
          pc.channel.on('close', finish);
        });
      }
    });
  }

  /**
   * Why the broker's channel error failed this publish. The error closes the channel for every publish on it,
   * but only one message was too large: the others were caught by the close, and are sent again.
   */
  private refusal(queue: string, eventId: string, bodyBytes: number, serverError: Error & { code?: unknown }): Error {
    const detail = this.conn.redact(serverError.message);
    if (serverError.code === 404) return new QueueNotFoundError('rabbitmq', queue);
    // A broker configured below the default says so: "message size 5242880 is larger than configured max size 1048576".
    const sizes = /message size (\d+) is larger than configured max size (\d+)/i.exec(detail);
    if (sizes && Number(sizes[1]) !== bodyBytes && bodyBytes <= Number(sizes[2])) return new ChannelLostError(`channel closed by another publish: ${detail}`);
    if (sizes) return new MessageTooLargeError('rabbitmq', Number(sizes[1]), Number(sizes[2]));
    if (/max.*size|larger than/i.test(detail)) {
      return new Error(`the rabbitmq broker at ${this.conn.address.display} refused event ${eventId} as too large: ${detail}`);
    }
    return new Error(`the rabbitmq broker at ${this.conn.address.display} refused event ${eventId} on queue '${queue}': ${detail}`);
  }

  /** The live confirm channel, opened on first use and after the previous one closed. */
  private async channel(): Promise<PublishChannel> {
    for (;;) {
      if (!this.current) {
        const opening = this.open();
        this.current = opening;
        opening.catch(() => {
          if (this.current === opening) this.current = undefined;
        });
      }
      const current = this.current;
      const pc = await current;
      if (!pc.retired) return pc;
      if (this.current === current) this.current = undefined;
    }
  }

  /**
   * Stop using a channel the broker nacked a publish on. Measured on a 3-node RabbitMQ 3.10 cluster: a
   * confirm channel whose first publish to a quorum queue came while the queue's leader was being replaced
   * had every later publish to that queue nacked too (for over a minute), while a fresh channel's were
   * confirmed at once. Its other unconfirmed publishes fail with the channel and are sent again.
   */
  private retire(pc: PublishChannel): void {
    if (pc.retired) return;
    pc.retired = true;
    void pc.channel.close().catch(() => undefined);
  }

  private async open(): Promise<PublishChannel> {
    const model = await this.conn.current();
    let channel: ConfirmChannel;
    try {
      channel = await model.createConfirmChannel();
    } catch (err) {
      // The connection died between current() and here.
      throw new ChannelLostError(String(err));
    }
    const pc: PublishChannel = { channel, serverError: undefined, drained: undefined, returned: new Set(), retired: false };
    const opening = this.current;
    channel.on('error', (err: Error) => {
      pc.serverError = err;
      this.options.logger?.warn({ err: this.conn.redact(err.message) }, 'rabbitmq publish channel closed by the broker');
    });
    channel.on('return', (msg: Message) => {
      const id: unknown = msg.properties.messageId;
      if (typeof id === 'string') pc.returned.add(id);
    });
    channel.on('close', () => {
      if (this.current === opening) this.current = undefined;
    });
    return pc;
  }
}

/** Roughly how many bytes the headers take on the wire (for the error message). */
function headerBytes(headers: Record<string, string> | undefined): number {
  let bytes = 0;
  for (const [key, value] of Object.entries(headers ?? {})) bytes += Buffer.byteLength(key) + Buffer.byteLength(value) + 6;
  return bytes;
}
