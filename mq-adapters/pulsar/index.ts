/**
 * Apache Pulsar through `pulsar-client`, imported only when a `pulsar://` broker is used.
 *
 * UNVERIFIED against a real Pulsar broker: none can run on this project's machines, and `pulsar-client`
 * cannot install there (its native library download is refused). The adapter logic is tested against an
 * in-memory fake of the client's API (test/adapters/pulsar.test.ts, test/adapters/pulsar-fake.ts); the README
 * says so too.
 *
 * Layout as the Python MQClient's: topic `<name>`, one shared subscription per queue.
 */
import { randomUUID } from 'node:crypto';
import { describeError } from '../../common/redact.js';
import type { BrokerAddress } from '../address.js';
import { AdapterUnavailableError, BrokerUnreachableError, QueueNotFoundError } from './errors.js';
import { PulsarAdmin, PulsarAdminError, adminBaseUrl } from './admin.js';
import { contentEventId, deliveryLimit, type DeliveryContext } from '../shared/delivery.js';
import { Intake } from '../shared/intake.js';
import { Semaphore } from '../shared/semaphore.js';
import { DEFAULTS, HEADERS, defaultDeadLetterQueue, type Broker, type ConnectOptions, type ConsumeOptions, type Delivery, type OutgoingMessage, type QueueSpec, type Subscription } from '../types.js';
import type { PulsarClient, PulsarConsumer, PulsarModule, PulsarProducer } from './client-types.js';

/**
 * The one shared subscription every consumer of a queue uses: the Python MQClient's name, so its producers
 * feed our pilots and ours feed its consumers. (Pulsar keeps a message only for subscriptions that exist
 * when it is published: a second name would be an independent copy of the stream, not a shared queue.)
 */
export const SUBSCRIPTION_NAME = 'i3-pulsar-sub';

/** One receive call waits this long for a message before it is renewed. */
const RECEIVE_WAIT_MS = 1_000;
/** Pause after a receive that failed at once. */
const RECEIVE_ERROR_PAUSE_MS = 500;

/** The package name, kept out of the import expression so the compiler does not demand its types. */
const PULSAR_PACKAGE = 'pulsar-client';

/**
 * Load `pulsar-client`, or say exactly why it is not there: not installed (it is an optional dependency
 * whose install fails where libpulsar cannot be downloaded), or installed without a loadable native library.
 */
export async function loadPulsarClient(importer: (name: string) => Promise<unknown> = (name) => import(name)): Promise<PulsarModule> {
  let mod: { default?: PulsarModule } & Partial<PulsarModule>;
  try {
    mod = (await importer(PULSAR_PACKAGE)) as typeof mod;
  } catch (err) {
    throw pulsarUnavailable(err);
  }
  const api = mod.default ?? mod;
  if (typeof api.Client !== 'function' || typeof api.AuthenticationToken !== 'function') {
    throw new AdapterUnavailableError(
      `the installed '${PULSAR_PACKAGE}' package does not look like the Pulsar Node client (no Client / AuthenticationToken export)`,
      `reinstall it: npm install ${PULSAR_PACKAGE}`,
    );
  }
  return api as PulsarModule;
}

/** The error for a `pulsar-client` that could not be imported. */
export function pulsarUnavailable(err: unknown): AdapterUnavailableError {
  const code = (err as { code?: unknown } | undefined)?.code;
  const detail = describeError(err);
  const missing = (code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') && detail.includes(PULSAR_PACKAGE);
  const hint =
    `install it where its install script can fetch the native libpulsar: 'npm install ${PULSAR_PACKAGE}' ` +
    '(or install the Pulsar C++ client system-wide first; see https://pulsar.apache.org/docs/client-libraries-node/). ' +
    'RabbitMQ (amqp://) and NATS (nats://) need nothing extra';
  return new AdapterUnavailableError(
    missing
      ? `the Pulsar adapter needs the optional package '${PULSAR_PACKAGE}', which is not installed (npm skips it where its native library cannot be installed)`
      : `the optional package '${PULSAR_PACKAGE}' is installed but could not be loaded (its native library libpulsar is missing or broken): ${detail}`,
    hint,
    { cause: err },
  );
}

export async function connectPulsar(address: BrokerAddress, options: ConnectOptions): Promise<Broker> {
  return connectPulsarWith(loadPulsarClient, address, options);
}

/** As `connectPulsar`, with the module loader injected (tests pass a fake of the client API). */
export async function connectPulsarWith(
  load: () => Promise<PulsarModule>,
  address: BrokerAddress,
  options: ConnectOptions,
): Promise<Broker> {
  const pulsar = await load();
  const token = options.authToken ?? address.password;
  const timeoutMs = options.connectTimeoutMs ?? DEFAULTS.connectTimeoutMs;
  let client: PulsarClient;
  try {
    client = new pulsar.Client({
      // The Pulsar client takes several brokers in one service URL: pulsar://h1:6650,h2:6650.
      serviceUrl: address.display,
      ...(token ? { authentication: new pulsar.AuthenticationToken({ token }) } : {}),
      operationTimeoutSeconds: Math.ceil(timeoutMs / 1000),
      connectionTimeoutMs: timeoutMs,
    });
  } catch (err) {
    throw new BrokerUnreachableError('pulsar', address.display, describeError(err, [token]));
  }
  const admin = new PulsarAdmin(adminBaseUrl(address, options.managementUrl), token);
  return new PulsarBroker(client, address, options, admin);
}

class PulsarBroker implements Broker {
  readonly type = 'pulsar' as const;
  readonly displayAddress: string;
  private readonly producers = new Map<string, Promise<PulsarProducer>>();
  private readonly slots: Semaphore;
  private readonly subscriptions = new Set<PulsarSubscription>();
  private readonly limits = new Map<string, QueueSpec>();

  constructor(
    private readonly client: PulsarClient,
    address: BrokerAddress,
    private readonly options: ConnectOptions,
    /** Depth and deletion, which the binary protocol cannot do. */
    private readonly admin: PulsarAdmin,
  ) {
    this.displayAddress = address.display;
    this.slots = new Semaphore(options.maxInFlightPublishes ?? DEFAULTS.maxInFlightPublishes);
  }

  /**
   * Pulsar creates topics on first use, but keeps messages only for subscriptions that exist: create the
   * shared subscription on the queue and on its dead-letter topic (as the Python MQClient's publisher does),
   * so nothing published before the first pilot subscribes is lost.
   */
  async declareQueue(spec: QueueSpec): Promise<void> {
    this.limits.set(spec.name, spec);
    const topics = spec.deadLetter === false ? [spec.name] : [spec.name, spec.deadLetterQueue ?? defaultDeadLetterQueue(spec.name)];
    for (const topic of topics) {
      const consumer = await this.client.subscribe({
        topic,
        subscription: SUBSCRIPTION_NAME,
        subscriptionType: 'Shared',
        subscriptionInitialPosition: 'Earliest',
        receiverQueueSize: 1,
      });
      await consumer.close();
    }
  }

  async publish(queue: string, message: OutgoingMessage): Promise<string> {
    const eventId = message.eventId ?? randomUUID();
    const producer = await this.producer(queue);
    await this.slots.with(async () => {
      await producer.send({
        data: Buffer.from(message.body.buffer, message.body.byteOffset, message.body.byteLength),
        properties: { ...message.headers, [HEADERS.eventId]: eventId },
      });
    });
    return eventId;
  }

  async consume(queue: string, options: ConsumeOptions): Promise<Subscription> {
    if (!Number.isInteger(options.prefetch) || options.prefetch < 1) {
      throw new RangeError(`prefetch must be a whole number >= 1 (got ${options.prefetch})`);
    }
    const spec = this.limits.get(queue);
    const deadLetter = options.deadLetter ?? spec?.deadLetter ?? true;
    const maxDeliveries = deliveryLimit({ deadLetter, maxDeliveries: options.maxDeliveries ?? spec?.maxDeliveries });
    const deadLetterQueue = options.deadLetterQueue ?? spec?.deadLetterQueue ?? defaultDeadLetterQueue(queue);
    const consumer = await this.client.subscribe({
      topic: queue,
      subscription: SUBSCRIPTION_NAME,
      subscriptionType: 'Shared',
      subscriptionInitialPosition: 'Earliest',
      receiverQueueSize: options.prefetch,
      // No per-message lease extension exists in Pulsar: the ack timeout stays off, and a message returns
      // when its consumer disconnects (or is nacked).
      nAckRedeliverTimeoutMs: 1_000,
      // Broker-side backstop one above the client-side limit, as on the other brokers.
      // (None for a queue that never dead-letters.)
      ...(deadLetter ? { deadLetterPolicy: { deadLetterTopic: deadLetterQueue, maxRedeliverCount: maxDeliveries + 1, initialSubscriptionName: SUBSCRIPTION_NAME } } : {}),
    });
    const sub = new PulsarSubscription(consumer, options.prefetch, {
      queue,
      deadLetterQueue,
      maxDeliveries,
      publish: (q, m) => this.publish(q, m),
      logger: this.options.logger,
    });
    sub.start();
    this.subscriptions.add(sub);
    return sub;
  }

  /** The shared subscription's backlog, from the admin API: what the subscription has not acknowledged. */
  async depth(queue: string): Promise<number> {
    try {
      return await this.admin.backlog(queue, SUBSCRIPTION_NAME);
    } catch (err) {
      if (err instanceof PulsarAdminError && err.status === 404) throw new QueueNotFoundError('pulsar', queue);
      throw err;
    }
  }

  async deleteQueue(queue: string, options: { deadLetterQueue?: string | false } = {}): Promise<void> {
    const dlq = options.deadLetterQueue === undefined ? defaultDeadLetterQueue(queue) : options.deadLetterQueue;
    for (const topic of dlq === false ? [queue] : [queue, dlq]) await this.admin.deleteTopic(topic);
    this.limits.delete(queue);
  }

  async close(): Promise<void> {
    for (const sub of this.subscriptions) await sub.close();
    for (const producer of this.producers.values()) {
      const p = await producer.catch(() => undefined);
      await p?.flush().catch(() => undefined);
      await p?.close().catch(() => undefined);
    }
    await this.client.close();
  }

  private producer(queue: string): Promise<PulsarProducer> {
    let producer = this.producers.get(queue);
    if (!producer) {
      // No batching: send() must resolve per message on the broker's ack.
      producer = this.client.createProducer({ topic: queue, sendTimeoutMs: 30_000, batchingEnabled: false });
      this.producers.set(queue, producer);
      producer.catch(() => this.producers.delete(queue));
    }
    return producer;
  }
}

/**
 * Receives one message per free slot, so unacked messages in hand never exceed `prefetch`; the buffer,
 * count, over-the-limit dead letters and release on close are the shared `Intake`.
 */
class PulsarSubscription implements Subscription {
  private readonly intake: Intake;
  private consumerClosed = false;

  constructor(
    private readonly consumer: PulsarConsumer,
    prefetch: number,
    private readonly ctx: DeliveryContext,
  ) {
    // Nothing to cancel: the receive loop ends at its next turn, and a message its last receive still
    // returns reaches the intake after the close, which gives it straight back.
    this.intake = new Intake(ctx, prefetch, { stop: async () => undefined });
  }

  start(): void {
    void this.loop();
  }

  [Symbol.asyncIterator](): AsyncIterator<Delivery> {
    return this.intake[Symbol.asyncIterator]();
  }

  async close(): Promise<void> {
    await this.intake.close();
    await this.closeIfIdle();
  }

  /**
   * After close(), the consumer goes once every yielded delivery is settled: acks travel on it, and closing
   * it earlier would hand those events to another pilot while this one still works on them.
   */
  private async closeIfIdle(): Promise<void> {
    if (!this.intake.stopped || this.intake.held > 0 || this.consumerClosed) return;
    this.consumerClosed = true;
    await this.consumer.close().catch((err: unknown) =>
      this.ctx.logger?.warn({ queue: this.ctx.queue, err: describeError(err) }, 'closing the pulsar consumer failed'),
    );
  }

  private async loop(): Promise<void> {
    while (!this.intake.stopped) {
      if (this.intake.room === 0) {
        await this.intake.waitForRoom();
        continue;
      }
      let msg;
      const asked = Date.now();
      try {
        msg = await this.consumer.receive(RECEIVE_WAIT_MS);
      } catch (err) {
        // A timeout means nothing is there yet. An error that comes back at once (the consumer or the
        // connection is broken) must not become a hot loop.
        if (Date.now() - asked < RECEIVE_WAIT_MS / 2) {
          this.ctx.logger?.warn({ queue: this.ctx.queue, err: describeError(err) }, 'pulsar receive failed; retrying');
          await new Promise((resolve) => setTimeout(resolve, RECEIVE_ERROR_PAUSE_MS));
        }
        continue;
      }
      const m = msg;
      const { [HEADERS.eventId]: idProp, ...headers } = m.getProperties();
      const body = new Uint8Array(m.getData());
      // Taken off the receiver queue after close() began: the intake gives it straight back.
      this.intake.accept(
        {
          body,
          headers,
          eventId: idProp ?? contentEventId(body),
          brokerDeliveries: m.getRedeliveryCount() + 1,
          raw: {
            ack: async () => {
              await this.consumer.acknowledge(m);
            },
            requeue: async () => this.consumer.negativeAcknowledge(m),
            extendLease: async () => undefined,
            isLive: () => !this.consumerClosed,
          },
        },
        () => void this.closeIfIdle(),
      );
    }
  }
}
