/**
 * RabbitMQ through amqplib: durable quorum queues on the default exchange, declared exactly as the Python
 * MQClient declares them; publisher confirms with backpressure; a channel and a per-consumer prefetch per
 * subscription; a dead-letter/delivery-limit policy as the broker-side backstop; reconnection after a lost
 * connection.
 *
 * Mapping of the contract:
 * - queue `<name>` is the RabbitMQ queue `<name>` (any name RabbitMQ accepts; no escaping needed), its
 *   dead-letter queue `<name>.dlq` a quorum queue declared the same way;
 * - event id = the AMQP `messageId` property (a message without one gets `sha256:<hex of body>`);
 * - `deliveryCount` = the quorum queue's `x-delivery-count` + 1;
 * - `ConsumeOptions.leaseMs` / `Delivery.extendLease` have no RabbitMQ counterpart (see subscription.ts);
 * - `depth()` counts messages ready for delivery, not those delivered and unacked (see below).
 */
import { randomUUID } from 'node:crypto';
import type { Channel } from 'amqplib';
import { describeError } from '../../common/redact.js';
import type { BrokerAddress } from '../address.js';
import { BrokerConnectionLostError, BrokerPermissionError, QueueNotFoundError } from '../errors.js';
import {
  DEFAULTS,
  defaultDeadLetterQueue,
  type Broker,
  type ConnectOptions,
  type ConsumeOptions,
  type OutgoingMessage,
  type QueueBound,
  type QueueSpec,
  type Subscription,
} from '../types.js';
import { deliveryLimit } from '../shared/delivery.js';
import { RabbitConnection } from './connection.js';
import { rabbitCredentials } from './credentials.js';
import { PolicyClient } from './policy.js';
import { RabbitPublisher } from './publisher.js';
import { RabbitSubscription } from './subscription.js';

/**
 * The declare arguments: exactly the Python MQClient's (`durable=True, arguments={"x-queue-type": "quorum"}`),
 * so whichever client declares first, the other's declaration is equivalent and succeeds. Everything else
 * (dead-lettering, delivery limit) comes from the policy.
 */
export const QUEUE_ARGUMENTS: Readonly<Record<string, string>> = { 'x-queue-type': 'quorum' };

/**
 * A bounded queue's declare arguments. Its messages are disposable, so it is a classic queue: no Raft log and
 * no replication to write for each message, which a quorum queue would (both drop-head and TTL work on either
 * type on 3.10, measured).
 */
export function boundArguments(bound: QueueBound): Record<string, string | number> {
  return {
    'x-queue-type': 'classic',
    'x-max-length': bound.maxMessages,
    'x-overflow': 'drop-head',
    ...(bound.maxAgeSeconds !== undefined ? { 'x-message-ttl': Math.round(bound.maxAgeSeconds * 1000) } : {}),
  };
}

/** How often a queue operation is tried when the connection breaks under it. */
const QUEUE_OP_ATTEMPTS = 3;

/**
 * Connect to RabbitMQ. Fails with `BrokerAuthError` (credentials refused), `BrokerConfigError` (vhost refused)
 * or `BrokerUnreachableError` (nothing answered within `connectTimeoutMs`).
 */
export async function connectRabbitMQ(address: BrokerAddress, options: ConnectOptions): Promise<Broker> {
  const conn = await RabbitConnection.open(address, options);
  return new RabbitBroker(conn, options);
}

class RabbitBroker implements Broker {
  readonly type = 'rabbitmq' as const;
  readonly displayAddress: string;
  private readonly publisher: RabbitPublisher;
  private readonly policies: PolicyClient;
  private readonly subscriptions = new Set<RabbitSubscription>();
  private closed = false;

  constructor(
    private readonly conn: RabbitConnection,
    private readonly options: ConnectOptions,
  ) {
    this.displayAddress = conn.address.display;
    this.publisher = new RabbitPublisher(conn, options);
    this.policies = new PolicyClient(
      conn.address,
      rabbitCredentials(conn.address, options.authToken),
      options.authToken,
      options.managementUrl,
      options.logger,
      () => conn.endpoint.host,
    );
  }

  async declareQueue(spec: QueueSpec): Promise<void> {
    if (spec.deadLetter === false) {
      // Quorum queues (3.x) have no delivery limit of their own: without our policy nothing is dead-lettered.
      // One left from an earlier declaration with the default would still dead-letter after 4 returns.
      await this.declareOne(spec.name, spec.bound ? boundArguments(spec.bound) : undefined);
      await this.policies.ensureAbsent(spec.name);
      return;
    }
    const deadLetterQueue = spec.deadLetterQueue ?? defaultDeadLetterQueue(spec.name);
    await this.declareOne(spec.name, spec.bound ? boundArguments(spec.bound) : undefined);
    await this.declareOne(deadLetterQueue);
    await this.policies.install({
      queue: spec.name,
      deadLetterQueue,
      maxDeliveries: spec.maxDeliveries ?? DEFAULTS.maxDeliveries,
    });
  }

  async publish(queue: string, message: OutgoingMessage): Promise<string> {
    this.assertOpen();
    const eventId = message.eventId ?? randomUUID();
    await this.publisher.publish(queue, eventId, message);
    return eventId;
  }

  async consume(queue: string, options: ConsumeOptions): Promise<Subscription> {
    this.assertOpen();
    if (!Number.isInteger(options.prefetch) || options.prefetch < 1) {
      throw new RangeError(`prefetch must be a whole number >= 1 (got ${options.prefetch})`);
    }
    // amqplib does not clamp: a prefetch above 65535 would not fit basic.qos's 16-bit field.
    const prefetch = Math.min(options.prefetch, 65_535);
    const subscription = new RabbitSubscription(this.conn, queue, prefetch, {
      queue,
      deadLetterQueue: options.deadLetterQueue ?? defaultDeadLetterQueue(queue),
      maxDeliveries: deliveryLimit(options),
      publish: (q, m) => this.publish(q, m),
      logger: this.options.logger,
    });
    await subscription.start();
    this.subscriptions.add(subscription);
    return subscription;
  }

  /**
   * Messages ready for delivery (AMQP `queue.declare-ok`'s message count): exact and immediate, but without
   * those delivered and not yet acked. The management API's `messages_unacknowledged` would add them, at the
   * price of an HTTP call and statistics that lag by up to `collect_statistics_interval` (5 s).
   */
  async depth(queue: string): Promise<number> {
    this.assertOpen();
    const info = await this.queueOp(queue, (ch) => ch.checkQueue(queue));
    return info.messageCount;
  }

  async deleteQueue(queue: string, options: { deadLetterQueue?: string | false } = {}): Promise<void> {
    this.assertOpen();
    const dlq = options.deadLetterQueue === undefined ? defaultDeadLetterQueue(queue) : options.deadLetterQueue;
    for (const name of dlq === false ? [queue] : [queue, dlq]) {
      await this.queueOp(name, (ch) => ch.deleteQueue(name));
    }
    await this.policies.remove(queue);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const sub of this.subscriptions) await sub.close();
    this.subscriptions.clear();
    await this.publisher.close();
    await this.conn.close();
  }

  private assertOpen(): void {
    if (this.closed) throw new BrokerConnectionLostError('rabbitmq', this.displayAddress, 'the broker was closed by this client');
  }

  /**
   * Declare like the Python MQClient. Should the queue exist with other arguments (declared by a tool we do
   * not know), use it as it is rather than fail: the 406 closed that channel, so check on a fresh one.
   */
  private async declareOne(name: string, extraArguments?: Record<string, string | number>): Promise<void> {
    this.assertOpen();
    try {
      await this.queueOp(name, (ch) => ch.assertQueue(name, { durable: true, arguments: { ...QUEUE_ARGUMENTS, ...extraArguments } }));
    } catch (err) {
      if ((err as { code?: unknown }).code !== 406) throw err;
      this.options.logger?.warn(
        { queue: name, detail: err instanceof Error ? err.message : String(err) },
        'the queue exists with other settings; using it as it is',
      );
      await this.queueOp(name, (ch) => ch.checkQueue(name));
    }
  }

  /**
   * Run one queue operation on a channel of its own: a failed operation closes its channel (AMQP), and must
   * not take the publisher's or a consumer's with it. Retried when the connection breaks under it.
   */
  private async queueOp<T>(queue: string, op: (ch: Channel) => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      let ch: Channel | undefined;
      try {
        const model = await this.conn.current();
        ch = await model.createChannel();
        // A refused operation also arrives as a channel 'error' event; the rejected promise carries it.
        ch.on('error', () => undefined);
        return await op(ch);
      } catch (err) {
        if (err instanceof BrokerConnectionLostError) throw err;
        const code = (err as { code?: unknown }).code;
        if (code === 404) throw new QueueNotFoundError('rabbitmq', queue);
        const detail = describeError(err, this.conn.secrets);
        if (code === 403) throw new BrokerPermissionError('rabbitmq', this.displayAddress, 'configure', queue, detail, { cause: err });
        // No reply code: the connection broke, not the broker saying no. Try again once it is back.
        if (typeof code !== 'number' && attempt < QUEUE_OP_ATTEMPTS && !this.conn.isFinished) {
          this.options.logger?.warn({ queue, err: detail }, 'rabbitmq queue operation interrupted; retrying');
          await new Promise((resolve) => setTimeout(resolve, 100 * attempt));
          continue;
        }
        throw Object.assign(new Error(`rabbitmq queue operation on '${queue}' at ${this.displayAddress} failed: ${detail}`), { code });
      } finally {
        if (ch) await ch.close().catch(() => undefined);
      }
    }
  }
}
