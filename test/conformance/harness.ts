/**
 * Plumbing for the conformance suite: connections, queues and subscriptions that clean up after each
 * test, and a receiver that waits for deliveries with deadlines without ever dropping one.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, afterEach } from 'vitest';
import { connect } from '../../mq-adapters/index.js';
import type { Broker, ConnectOptions, ConsumeOptions, Delivery, QueueSpec, Subscription } from '../../mq-adapters/types.js';

export const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
export const dec = (b: Uint8Array): string => new TextDecoder().decode(b);
export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A queue name no other test (or run) uses. */
export const uniqueQueue = (prefix = 't'): string => `${prefix}-${randomUUID()}`;

/**
 * Waits on a subscription. Keeps one `next()` outstanding across calls, so a wait that times out does not
 * lose the delivery that arrives a moment later: the next call gets it.
 */
export class Receiver {
  private readonly iterator: AsyncIterator<Delivery>;
  private pending: Promise<IteratorResult<Delivery>> | undefined;

  constructor(readonly subscription: Subscription) {
    this.iterator = subscription[Symbol.asyncIterator]();
  }

  /** The next delivery; fails the test if none arrives within `timeoutMs`. */
  async next(timeoutMs = 10_000): Promise<Delivery> {
    const got = await this.within(timeoutMs);
    if (got === 'timeout') throw new Error(`no delivery within ${timeoutMs} ms`);
    return got;
  }

  /** The next delivery, or undefined if none arrives within `ms` (to assert that nothing comes). */
  async poll(ms: number): Promise<Delivery | undefined> {
    const got = await this.within(ms);
    return got === 'timeout' ? undefined : got;
  }

  /** `n` deliveries, each within `timeoutMs` of the previous one; left unsettled. */
  async take(n: number, timeoutMs = 10_000): Promise<Delivery[]> {
    const out: Delivery[] = [];
    while (out.length < n) out.push(await this.next(timeoutMs));
    return out;
  }

  /** The next delivery however long it takes (race it with your own clock for promptness checks). */
  waitForNext(): Promise<Delivery> {
    return this.within(Number.POSITIVE_INFINITY).then((d) => {
      if (d === 'timeout') throw new Error('unreachable');
      return d;
    });
  }

  private async within(ms: number): Promise<Delivery | 'timeout'> {
    this.pending ??= this.iterator.next();
    const current = this.pending;
    let timer: NodeJS.Timeout | undefined;
    const timeout =
      ms === Number.POSITIVE_INFINITY
        ? new Promise<'timeout'>(() => undefined)
        : new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), ms)));
    try {
      const result = await Promise.race([current, timeout]);
      if (result === 'timeout') return 'timeout';
      this.pending = undefined;
      if (result.done) throw new Error('the subscription ended');
      return result.value;
    } finally {
      clearTimeout(timer);
    }
  }
}

/**
 * Per-suite resources: every connection, queue and subscription made through it is closed or deleted
 * after each test (subscriptions first, then queues with their DLQs, then connections, then any extra
 * clean-up such as private servers), so a failing test leaves nothing behind on the shared brokers.
 */
export class Resources {
  private readonly brokers: Broker[] = [];
  private readonly queues: Array<{ broker: Broker; name: string }> = [];
  private readonly subscriptions: Subscription[] = [];
  private readonly cleanups: Array<() => Promise<void>> = [];

  constructor(private readonly defaults: ConnectOptions) {
    afterEach(() => this.cleanup());
    afterAll(() => this.cleanup());
  }

  /** Connect (to the target's shared broker unless `options.address` says otherwise). */
  async connect(options: Partial<ConnectOptions> = {}): Promise<Broker> {
    const broker = await connect({ ...this.defaults, ...options });
    this.brokers.push(broker);
    return broker;
  }

  /** Declare a fresh queue (and its DLQ) that is deleted after the test. */
  async queue(broker: Broker, spec: Partial<QueueSpec> = {}): Promise<string> {
    const name = spec.name ?? uniqueQueue();
    // Registered before declaring: a declare that half-succeeded is still cleaned up.
    this.queues.push({ broker, name });
    await broker.declareQueue({ ...spec, name });
    return name;
  }

  /** Consume; the subscription is closed after the test. */
  async consume(broker: Broker, queue: string, options: ConsumeOptions): Promise<Receiver> {
    const sub = await broker.consume(queue, options);
    this.subscriptions.push(sub);
    return new Receiver(sub);
  }

  /** Delete this queue (and its DLQ) after the test, though it was not declared through `queue()`. */
  adopt(broker: Broker, name: string): string {
    this.queues.push({ broker, name });
    return name;
  }

  /** Run `fn` after the test, once every subscription, queue and connection is gone (e.g. stop a server). */
  onCleanup(fn: () => Promise<void>): void {
    this.cleanups.push(fn);
  }

  private async cleanup(): Promise<void> {
    const quietly = (p: Promise<unknown>) => p.then(() => undefined, () => undefined);
    for (const sub of this.subscriptions.splice(0)) await quietly(sub.close());
    for (const { broker, name } of this.queues.splice(0)) await quietly(broker.deleteQueue(name));
    for (const broker of this.brokers.splice(0)) await quietly(broker.close());
    for (const fn of this.cleanups.splice(0)) await quietly(fn());
  }
}

/** Wait until `check` holds; fail with `what` and the last value seen after `timeoutMs`. */
export async function eventually<T>(what: string, read: () => Promise<T>, check: (value: T) => boolean, timeoutMs = 5_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: T | undefined;
  for (;;) {
    last = await read();
    if (check(last)) return last;
    if (Date.now() > deadline) throw new Error(`${what}: not reached within ${timeoutMs} ms (last value: ${JSON.stringify(last)})`);
    await sleep(50);
  }
}

/** Bytes covering every value 0–255, so any text/encoding mangling of a body shows. */
export function binaryBody(size: number): Uint8Array {
  const body = new Uint8Array(size);
  for (let i = 0; i < size; i++) body[i] = (i * 151 + (i >> 8)) & 0xff;
  return body;
}

/** Are two byte arrays identical (without printing 5 MB on failure)? */
export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.byteLength === b.byteLength && Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.byteLength), Buffer.from(b.buffer, b.byteOffset, b.byteLength)) === 0;
}
