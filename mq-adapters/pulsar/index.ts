/**
 * Apache Pulsar through `pulsar-client`, imported only when a `pulsar://` broker is used.
 *
 * UNVERIFIED against a real Pulsar broker: none can run on this project's machines, and `pulsar-client`
 * cannot install there (its native library download is refused). The adapter logic is tested against an
 * in-memory fake of the client's API (test/adapters/pulsar.test.ts); the README says so too.
 *
 * Layout as the Python MQClient's: topic `<name>`, one shared subscription per queue.
 */
import { randomUUID } from 'node:crypto';
import { describeError } from '../../common/redact.js';
import type { ResolvedAddress } from '../address.js';
import { AdapterUnavailableError, BrokerUnreachableError, PulsarUnsupportedError } from './errors.js';
import { AsyncQueue } from '../shared/async-queue.js';
import { SharedDelivery, contentEventId, type DeliveryContext } from '../shared/delivery.js';
import { Semaphore } from '../shared/semaphore.js';
import { DEFAULTS, HEADERS, defaultDeadLetterQueue, type Broker, type ConnectOptions, type ConsumeOptions, type Delivery, type OutgoingMessage, type QueueSpec, type Subscription } from '../types.js';
import type { PulsarClient, PulsarConsumer, PulsarModule, PulsarProducer } from './client-types.js';

/** The subscription name every pilot of a queue shares. */
export const SUBSCRIPTION_NAME = 'ewms-pilot';

/** Load `pulsar-client`, or say exactly why it is not there. */
export async function loadPulsarClient(): Promise<PulsarModule> {
  try {
    const mod = (await import(/* optional dependency */ 'pulsar-client' as string)) as { default?: PulsarModule } & PulsarModule;
    return mod.default ?? mod;
  } catch (err) {
    throw new AdapterUnavailableError(
      `the Pulsar adapter needs the optional package 'pulsar-client', which is not installed or cannot load its native library (${describeError(err)})`,
      "run 'npm install pulsar-client' on a machine where its install script can fetch libpulsar (or with the Pulsar C++ client installed system-wide); RabbitMQ and NATS need nothing extra",
    );
  }
}

export async function connectPulsar(address: ResolvedAddress, options: ConnectOptions): Promise<Broker> {
  return connectPulsarWith(loadPulsarClient, address, options);
}

/** As `connectPulsar`, with the module loader injected (tests pass a fake of the client API). */
export async function connectPulsarWith(
  load: () => Promise<PulsarModule>,
  address: ResolvedAddress,
  options: ConnectOptions,
): Promise<Broker> {
  const pulsar = await load();
  const token = options.authToken ?? address.password;
  const timeoutMs = options.connectTimeoutMs ?? DEFAULTS.connectTimeoutMs;
  let client: PulsarClient;
  try {
    client = new pulsar.Client({
      serviceUrl: `${address.scheme}://${address.host}:${address.port}`,
      ...(token ? { authentication: new pulsar.AuthenticationToken({ token }) } : {}),
      operationTimeoutSeconds: Math.ceil(timeoutMs / 1000),
      connectionTimeoutMs: timeoutMs,
    });
  } catch (err) {
    throw new BrokerUnreachableError('pulsar', address.display, describeError(err, [token]));
  }
  return new PulsarBroker(client, address, options);
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
    address: ResolvedAddress,
    private readonly options: ConnectOptions,
  ) {
    this.displayAddress = address.display;
    this.slots = new Semaphore(options.maxInFlightPublishes ?? DEFAULTS.maxInFlightPublishes);
  }

  /** Pulsar creates topics on first use; remembering the spec is all a declaration needs to do. */
  async declareQueue(spec: QueueSpec): Promise<void> {
    this.limits.set(spec.name, spec);
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
    const maxDeliveries = options.maxDeliveries ?? spec?.maxDeliveries ?? DEFAULTS.maxDeliveries;
    const deadLetterQueue = options.deadLetterQueue ?? spec?.deadLetterQueue ?? defaultDeadLetterQueue(queue);
    const consumer = await this.client.subscribe({
      topic: queue,
      subscription: SUBSCRIPTION_NAME,
      subscriptionType: 'Shared',
      receiverQueueSize: options.prefetch,
      // No per-message lease extension exists in Pulsar: the ack timeout stays off, and a message returns
      // when its consumer disconnects (or is nacked).
      nAckRedeliverTimeoutMs: 1_000,
      // Broker-side backstop one above the client-side limit, as on the other brokers.
      deadLetterPolicy: { deadLetterTopic: deadLetterQueue, maxRedeliverCount: maxDeliveries + 1 },
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

  async depth(_queue: string): Promise<number> {
    throw new PulsarUnsupportedError(
      'queue depth is not available on Pulsar through the binary protocol',
      'read the backlog from the Pulsar admin REST API (/admin/v2/persistent/<tenant>/<ns>/<topic>/stats)',
    );
  }

  async deleteQueue(_queue: string): Promise<void> {
    throw new PulsarUnsupportedError('deleting topics needs the Pulsar admin API', 'use pulsar-admin topics delete');
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

/** Receives one message per free slot, so unacked messages in hand never exceed `prefetch`. */
class PulsarSubscription implements Subscription {
  private readonly buffer = new AsyncQueue<SharedDelivery>();
  private held = 0;
  private closed = false;
  private slotFreed: (() => void) | undefined;

  constructor(
    private readonly consumer: PulsarConsumer,
    private readonly prefetch: number,
    private readonly ctx: Omit<DeliveryContext, 'onSettled'>,
  ) {}

  start(): void {
    void this.loop();
  }

  [Symbol.asyncIterator](): AsyncIterator<Delivery> {
    return this.buffer[Symbol.asyncIterator]();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.slotFreed?.();
    for (const d of this.buffer.end()) await d.release().catch(() => undefined);
  }

  private async loop(): Promise<void> {
    while (!this.closed) {
      if (this.held >= this.prefetch) {
        await new Promise<void>((resolve) => (this.slotFreed = resolve));
        this.slotFreed = undefined;
        continue;
      }
      let msg;
      try {
        msg = await this.consumer.receive(1_000);
      } catch {
        continue; // receive timed out: nothing there yet
      }
      const properties = msg.getProperties();
      const { [HEADERS.eventId]: idProp, ...headers } = properties;
      const body = new Uint8Array(msg.getData());
      const deliveryCount = msg.getRedeliveryCount() + 1;
      this.held += 1;
      const m = msg;
      const delivery = new SharedDelivery(
        body,
        headers,
        idProp ?? contentEventId(body),
        deliveryCount,
        {
          ack: async () => {
            await this.consumer.acknowledge(m);
          },
          nack: async () => this.consumer.negativeAcknowledge(m),
          extendLease: async () => undefined,
          isLive: () => true,
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
          .deadLetter({ reason: `delivery limit exceeded: delivery ${deliveryCount} of ${this.ctx.maxDeliveries}` })
          .catch(() => undefined);
        continue;
      }
      if (this.closed) {
        void delivery.release().catch(() => undefined);
        continue;
      }
      this.buffer.push(delivery);
    }
  }
}
