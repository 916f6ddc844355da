/**
 * Publishing with broker confirms on one confirm channel, re-created after a reconnect. A publish resolves
 * only on the broker's ack; one caught by a lost channel is sent again on the next channel (the event id
 * lets consumers drop the duplicate), so a confirm is never reported that the broker did not give.
 */
import type { ConfirmChannel, Message } from 'amqplib';
import { describeError } from '../../common/redact.js';
import { BrokerConnectionLostError, MessageTooLargeError, QueueNotFoundError } from '../errors.js';
import { Semaphore } from '../shared/semaphore.js';
import { DEFAULTS, HEADERS, type ConnectOptions, type OutgoingMessage } from '../types.js';
import type { RabbitConnection } from './connection.js';

/** RabbitMQ 3.10's default `max_message_size`. */
export const RABBITMQ_MAX_MESSAGE_BYTES = 128 * 1024 * 1024;

export class RabbitPublisher {
  private channel: Promise<ConfirmChannel> | undefined;
  private readonly slots: Semaphore;
  /** Event ids the broker returned as unroutable (no such queue), to fail their confirm. */
  private readonly returned = new Set<string>();
  private drained: Promise<void> | undefined;

  constructor(
    private readonly conn: RabbitConnection,
    private readonly options: ConnectOptions,
  ) {
    this.slots = new Semaphore(options.maxInFlightPublishes ?? DEFAULTS.maxInFlightPublishes);
  }

  async publish(queue: string, eventId: string, message: OutgoingMessage): Promise<void> {
    if (message.body.byteLength > RABBITMQ_MAX_MESSAGE_BYTES) {
      throw new MessageTooLargeError('rabbitmq', message.body.byteLength, RABBITMQ_MAX_MESSAGE_BYTES);
    }
    await this.slots.with(async () => {
      for (;;) {
        const channel = await this.getChannel();
        try {
          await this.sendOnce(channel, queue, eventId, message);
          return;
        } catch (err) {
          if (err instanceof QueueNotFoundError) throw err;
          if (!isChannelGone(err)) throw err;
          // The channel died under this publish: unconfirmed, so send it again once reconnected.
          this.options.logger?.warn({ eventId }, 'publish interrupted by a lost channel; sending again');
          await new Promise((r) => setTimeout(r, 100));
          await this.conn.current();
        }
      }
    });
  }

  async close(): Promise<void> {
    const channel = this.channel;
    this.channel = undefined;
    if (!channel) return;
    const ch = await channel.catch(() => undefined);
    if (!ch) return;
    await ch.waitForConfirms().catch(() => undefined);
    await ch.close().catch(() => undefined);
  }

  private sendOnce(channel: ConfirmChannel, queue: string, eventId: string, message: OutgoingMessage): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const headers = { ...message.headers, [HEADERS.eventId]: eventId };
      const send = () =>
        channel.publish(
          '',
          queue,
          Buffer.from(message.body.buffer, message.body.byteOffset, message.body.byteLength),
          { persistent: true, messageId: eventId, headers, mandatory: true },
          (err: unknown) => {
            if (err) {
              reject(isChannelGone(err) ? err : new Error(describeError(err)));
            } else if (this.returned.delete(eventId)) {
              reject(new QueueNotFoundError('rabbitmq', queue));
            } else {
              resolve();
            }
          },
        );
      const proceed = () => {
        try {
          if (!send()) this.waitForDrain(channel);
        } catch (err) {
          reject(err);
        }
      };
      // Respect the socket's backpressure: wait while the channel's buffer is full.
      if (this.drained) void this.drained.then(proceed);
      else proceed();
    });
  }

  private waitForDrain(channel: ConfirmChannel): void {
    if (this.drained) return;
    this.drained = new Promise<void>((resolve) => {
      const done = () => {
        channel.off('drain', done);
        channel.off('close', done);
        this.drained = undefined;
        resolve();
      };
      channel.on('drain', done);
      channel.on('close', done);
    });
  }

  private getChannel(): Promise<ConfirmChannel> {
    if (!this.channel) {
      this.channel = (async () => {
        const model = await this.conn.current();
        const ch = await model.createConfirmChannel();
        ch.on('error', () => undefined);
        ch.on('return', (msg: Message) => {
          const id = msg.properties.messageId as string | undefined;
          if (id) this.returned.add(id);
        });
        ch.on('close', () => {
          if (this.channel === current) this.channel = undefined;
        });
        return ch;
      })();
      const current = this.channel;
      current.catch(() => {
        if (this.channel === current) this.channel = undefined;
      });
    }
    return this.channel;
  }
}

/** Did this error come from a channel or connection that closed (as opposed to a refusal)? */
export function isChannelGone(err: unknown): boolean {
  if (err instanceof BrokerConnectionLostError) return false;
  const text = err instanceof Error ? err.message : String(err);
  return /channel (is )?closed|connection (is )?closed|Channel ended|Connection closed|IllegalOperationError|socket|ECONNRESET|EPIPE/i.test(text);
}
