/**
 * An in-memory stand-in for the part of `pulsar-client` the adapter uses, with the semantics the adapter
 * relies on: topics keep messages only for subscriptions that exist; a Shared subscription hands each
 * message to one consumer; a consumer's receiver queue holds at most `receiverQueueSize` messages taken
 * off the subscription; a negative ack or a closed consumer returns messages with their redelivery count
 * + 1; acks remove them. It is no Pulsar broker: it lets the adapter's own logic be tested here.
 */
import type { PulsarClient, PulsarConsumer, PulsarMessage, PulsarModule, PulsarProducer } from '../../mq-adapters/pulsar/client-types.js';

interface Stored {
  id: number;
  data: Buffer;
  properties: Record<string, string>;
  redeliveries: number;
}

type SubscribeConfig = Parameters<PulsarClient['subscribe']>[0];

class FakeMessage implements PulsarMessage {
  constructor(
    readonly stored: Stored,
    readonly subscription: FakeSubscription,
  ) {}
  getData(): Buffer {
    return this.stored.data;
  }
  getProperties(): Record<string, string> {
    return { ...this.stored.properties };
  }
  getRedeliveryCount(): number {
    return this.stored.redeliveries;
  }
  getMessageId(): { toString(): string } {
    return { toString: () => `${this.stored.id}` };
  }
}

/** One named subscription on one topic: the backlog and who holds what. */
class FakeSubscription {
  readonly backlog: Stored[] = [];
  readonly consumers = new Set<FakeConsumer>();
  readonly acked: Stored[] = [];
  constructor(readonly name: string) {}

  /** Fill every consumer's receiver queue from the backlog. */
  dispatch(): void {
    for (const consumer of this.consumers) consumer.fill();
  }

  giveBack(stored: Stored): void {
    stored.redeliveries += 1;
    this.backlog.push(stored);
    this.backlog.sort((a, b) => a.id - b.id);
  }
}

class FakeTopic {
  readonly subscriptions = new Map<string, FakeSubscription>();
  /** Messages published while no subscription existed: Pulsar keeps them for nobody. */
  lostForNoSubscription = 0;
  constructor(readonly name: string) {}
}

export class FakeConsumer implements PulsarConsumer {
  /** Taken off the subscription, waiting for receive() (the client's receiver queue). */
  readonly receiverQueue: Stored[] = [];
  /** Received by the application, not yet acked. */
  readonly unacked = new Map<number, Stored>();
  closed = false;
  private waiter: ((stored: Stored | undefined) => void) | undefined;
  receiveCalls = 0;

  constructor(
    readonly fake: FakePulsar,
    readonly subscription: FakeSubscription,
    readonly config: SubscribeConfig,
  ) {}

  fill(): void {
    const room = Math.max(1, this.config.receiverQueueSize ?? 1000);
    while (!this.closed && this.receiverQueue.length < room && this.subscription.backlog.length > 0) {
      const next = this.subscription.backlog.shift()!;
      // The client's dead-letter policy: past maxRedeliverCount a message goes to the DLQ topic instead.
      const policy = this.config.deadLetterPolicy;
      if (policy && next.redeliveries >= policy.maxRedeliverCount) {
        this.fake.publish(policy.deadLetterTopic, next.data, next.properties, policy.initialSubscriptionName);
        this.subscription.acked.push(next);
        continue;
      }
      this.receiverQueue.push(next);
    }
    if (this.waiter && this.receiverQueue.length > 0) {
      const w = this.waiter;
      this.waiter = undefined;
      w(this.receiverQueue.shift());
    }
  }

  async receive(timeoutMs?: number): Promise<PulsarMessage> {
    this.receiveCalls += 1;
    if (this.closed) throw new Error('Pulsar error: AlreadyClosed');
    if (this.waiter) throw new Error('fake: one receive at a time');
    let stored = this.receiverQueue.shift();
    if (!stored) {
      stored = await new Promise<Stored | undefined>((resolve) => {
        const timer = timeoutMs ? setTimeout(() => {
          this.waiter = undefined;
          resolve(undefined);
        }, timeoutMs) : undefined;
        this.waiter = (s) => {
          clearTimeout(timer);
          resolve(s);
        };
      });
    }
    if (!stored) throw new Error('Pulsar error: TimeOut');
    this.fill();
    this.unacked.set(stored.id, stored);
    return new FakeMessage(stored, this.subscription);
  }

  async acknowledge(message: PulsarMessage): Promise<null> {
    const stored = (message as FakeMessage).stored;
    if (this.closed) throw new Error('Pulsar error: AlreadyClosed');
    if (this.unacked.delete(stored.id)) this.subscription.acked.push(stored);
    this.fill();
    return null;
  }

  negativeAcknowledge(message: PulsarMessage): void {
    const stored = (message as FakeMessage).stored;
    if (!this.unacked.delete(stored.id)) return;
    this.subscription.giveBack(stored);
    this.subscription.dispatch();
  }

  async close(): Promise<null> {
    if (this.closed) return null;
    this.closed = true;
    this.subscription.consumers.delete(this);
    // Everything this consumer held, received or not, goes back to the subscription.
    for (const stored of [...this.receiverQueue.splice(0), ...this.unacked.values()]) this.subscription.giveBack(stored);
    this.unacked.clear();
    this.waiter?.(undefined);
    this.waiter = undefined;
    this.subscription.dispatch();
    return null;
  }
}

class FakeProducer implements PulsarProducer {
  closed = false;
  flushed = false;
  constructor(
    readonly fake: FakePulsar,
    readonly topic: string,
  ) {}
  async send(message: { data: Buffer; properties?: Record<string, string> }): Promise<{ toString(): string }> {
    if (this.closed) throw new Error('Pulsar error: AlreadyClosed');
    if (this.fake.failSends) throw new Error(this.fake.failSends);
    const id = this.fake.publish(this.topic, message.data, message.properties ?? {});
    return { toString: () => `${id}` };
  }
  async flush(): Promise<null> {
    this.flushed = true;
    return null;
  }
  async close(): Promise<null> {
    this.closed = true;
    return null;
  }
}

/** The fake broker plus the module object the adapter loads. */
export class FakePulsar {
  readonly topics = new Map<string, FakeTopic>();
  readonly clients: Array<{ config: Record<string, unknown>; closed: boolean }> = [];
  readonly producers: FakeProducer[] = [];
  readonly consumers: FakeConsumer[] = [];
  readonly tokens: string[] = [];
  /** When set, every send fails with this message (a broker refusing, a timeout). */
  failSends: string | undefined;
  private nextId = 1;

  topic(name: string): FakeTopic {
    let t = this.topics.get(name);
    if (!t) {
      t = new FakeTopic(name);
      this.topics.set(name, t);
    }
    return t;
  }

  subscription(topic: string, name: string): FakeSubscription {
    const t = this.topic(topic);
    let sub = t.subscriptions.get(name);
    if (!sub) {
      sub = new FakeSubscription(name);
      t.subscriptions.set(name, sub);
    }
    return sub;
  }

  publish(topic: string, data: Buffer, properties: Record<string, string>, createSubscription?: string): number {
    const t = this.topic(topic);
    if (createSubscription) this.subscription(topic, createSubscription);
    const id = this.nextId++;
    if (t.subscriptions.size === 0) t.lostForNoSubscription += 1;
    for (const sub of t.subscriptions.values()) {
      sub.backlog.push({ id, data: Buffer.from(data), properties: { ...properties }, redeliveries: 0 });
      sub.dispatch();
    }
    return id;
  }

  /** The module as `import('pulsar-client')` would give it. */
  module(): PulsarModule {
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const fake = this;
    class AuthenticationToken {
      constructor(readonly params: { token: string }) {
        fake.tokens.push(params.token);
      }
    }
    class Client implements PulsarClient {
      private readonly record: { config: Record<string, unknown>; closed: boolean };
      constructor(config: Record<string, unknown>) {
        this.record = { config, closed: false };
        fake.clients.push(this.record);
      }
      async createProducer(config: { topic: string }): Promise<PulsarProducer> {
        const producer = new FakeProducer(fake, config.topic);
        fake.producers.push(producer);
        return producer;
      }
      async subscribe(config: SubscribeConfig): Promise<PulsarConsumer> {
        const sub = fake.subscription(config.topic, config.subscription);
        const consumer = new FakeConsumer(fake, sub, config);
        sub.consumers.add(consumer);
        fake.consumers.push(consumer);
        consumer.fill();
        return consumer;
      }
      async close(): Promise<null> {
        this.record.closed = true;
        return null;
      }
    }
    return { Client, AuthenticationToken } as unknown as PulsarModule;
  }
}
