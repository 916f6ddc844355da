/**
 * RabbitMQ through amqplib: durable quorum queues on the default exchange (declared exactly as the Python
 * MQClient declares them), publisher confirms, per-consumer prefetch, a dead-letter/delivery-limit policy
 * as the broker-side backstop, and reconnection after a lost connection.
 */
import { randomUUID } from 'node:crypto';
import type { Channel } from 'amqplib';
import { describeError } from '../../common/redact.js';
import type { ResolvedAddress } from '../address.js';
import { QueueNotFoundError } from '../errors.js';
import { DEFAULTS, defaultDeadLetterQueue, type Broker, type ConnectOptions, type ConsumeOptions, type OutgoingMessage, type QueueSpec, type Subscription } from '../types.js';
import { RabbitConnection } from './connection.js';
import { PolicyClient } from './policy.js';
import { RabbitPublisher } from './publisher.js';
import { RabbitSubscription } from './subscription.js';

/** The only declare argument: the Python MQClient's, so both sides can declare in any order. */
const QUEUE_ARGUMENTS = { 'x-queue-type': 'quorum' } as const;

export async function connectRabbitMQ(address: ResolvedAddress, options: ConnectOptions): Promise<Broker> {
  const conn = await RabbitConnection.open(address, options);
  return new RabbitBroker(conn, options);
}

class RabbitBroker implements Broker {
  readonly type = 'rabbitmq' as const;
  readonly displayAddress: string;
  private readonly publisher: RabbitPublisher;
  private readonly policies: PolicyClient;
  private readonly subscriptions = new Set<RabbitSubscription>();

  constructor(
    private readonly conn: RabbitConnection,
    private readonly options: ConnectOptions,
  ) {
    this.displayAddress = conn.address.display;
    this.publisher = new RabbitPublisher(conn, options);
    this.policies = new PolicyClient(conn.address, options.authToken, options.managementUrl, options.logger);
  }

  async declareQueue(spec: QueueSpec): Promise<void> {
    const deadLetterQueue = spec.deadLetterQueue ?? defaultDeadLetterQueue(spec.name);
    await this.declareOne(spec.name);
    await this.declareOne(deadLetterQueue);
    await this.policies.install({
      queue: spec.name,
      deadLetterQueue,
      maxDeliveries: spec.maxDeliveries ?? DEFAULTS.maxDeliveries,
    });
  }

  async publish(queue: string, message: OutgoingMessage): Promise<string> {
    const eventId = message.eventId ?? randomUUID();
    await this.publisher.publish(queue, eventId, message);
    return eventId;
  }

  async consume(queue: string, options: ConsumeOptions): Promise<Subscription> {
    if (!Number.isInteger(options.prefetch) || options.prefetch < 1) {
      throw new RangeError(`prefetch must be a whole number >= 1 (got ${options.prefetch})`);
    }
    await this.withChannel((ch) => ch.checkQueue(queue), queue);
    const subscription = new RabbitSubscription(this.conn, queue, options.prefetch, {
      queue,
      deadLetterQueue: options.deadLetterQueue ?? defaultDeadLetterQueue(queue),
      maxDeliveries: options.maxDeliveries ?? DEFAULTS.maxDeliveries,
      publish: (q, m) => this.publish(q, m),
      logger: this.options.logger,
    });
    await subscription.start();
    this.subscriptions.add(subscription);
    return subscription;
  }

  async depth(queue: string): Promise<number> {
    const info = await this.withChannel((ch) => ch.checkQueue(queue), queue);
    return info.messageCount;
  }

  async deleteQueue(queue: string, options: { deadLetterQueue?: string | false } = {}): Promise<void> {
    const dlq = options.deadLetterQueue === undefined ? defaultDeadLetterQueue(queue) : options.deadLetterQueue;
    for (const name of dlq === false ? [queue] : [queue, dlq]) {
      await this.withChannel((ch) => ch.deleteQueue(name), name);
    }
    await this.policies.remove(queue);
  }

  async close(): Promise<void> {
    for (const sub of this.subscriptions) await sub.close();
    await this.publisher.close();
    await this.conn.close();
  }

  /**
   * Declare like the Python MQClient. Should the queue exist with other arguments (declared by a tool we
   * do not know), bind to it as it is rather than fail.
   */
  private async declareOne(name: string): Promise<void> {
    try {
      await this.withChannel((ch) => ch.assertQueue(name, { durable: true, arguments: QUEUE_ARGUMENTS }), name);
    } catch (err) {
      if (!/PRECONDITION_FAILED|inequivalent/i.test(String(err))) throw err;
      this.options.logger?.warn({ queue: name, detail: describeError(err) }, 'queue exists with other arguments; using it as it is');
      await this.withChannel((ch) => ch.checkQueue(name), name);
    }
  }

  /**
   * Run one operation on a throwaway channel: a failed queue operation closes its channel in AMQP, and it
   * must not take the publisher's or a consumer's channel with it.
   */
  private async withChannel<T>(fn: (ch: Channel) => Promise<T>, queue: string): Promise<T> {
    const model = await this.conn.current();
    const ch = await model.createChannel();
    ch.on('error', () => undefined);
    try {
      return await fn(ch);
    } catch (err) {
      if (/NOT_FOUND|404/.test(String(err))) throw new QueueNotFoundError('rabbitmq', queue);
      throw new Error(describeError(err, [this.conn.address.password, this.options.authToken]));
    } finally {
      await ch.close().catch(() => undefined);
    }
  }
}
