/**
 * Shared plumbing of the adapter conformance suite: the same cases run against every real broker.
 */
import { randomUUID } from 'node:crypto';
import { afterEach, describe } from 'vitest';
import { connect } from '../../mq-adapters/index.js';
import type { Broker, Delivery, Subscription } from '../../mq-adapters/types.js';
import { sharedTargets, type Target } from '../helpers/brokers.js';

export const enc = (s: string) => new TextEncoder().encode(s);
export const dec = (b: Uint8Array) => new TextDecoder().decode(b);
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Run `body` once per broker; a broker that is not available here shows up as skipped, with the reason. */
export function forEachBroker(title: string, body: (ctx: BrokerContext) => void): void {
  for (const target of sharedTargets()) {
    if (target.skipReason || !target.url) {
      describe.skip(`${target.name}: ${title} — skipped: ${target.skipReason}`, () => undefined);
      continue;
    }
    describe(`${target.name}: ${title}`, () => body(new BrokerContext(target)));
  }
}

/** Per-broker helpers that clean up after each test. */
export class BrokerContext {
  private readonly brokers: Broker[] = [];
  private readonly queues: Array<{ broker: Broker; name: string }> = [];

  constructor(readonly target: Target) {
    afterEach(async () => {
      for (const { broker, name } of this.queues.splice(0)) await broker.deleteQueue(name).catch(() => undefined);
      for (const b of this.brokers.splice(0)) await b.close().catch(() => undefined);
    });
  }

  get url(): string {
    return this.target.url!;
  }

  async broker(url = this.url): Promise<Broker> {
    const b = await connect({ address: url });
    this.brokers.push(b);
    return b;
  }

  /** A fresh, declared queue (with its DLQ) that is deleted after the test. */
  async queue(broker: Broker, maxDeliveries = 3): Promise<string> {
    const name = `conf-${randomUUID().slice(0, 8)}`;
    await broker.declareQueue({ name, maxDeliveries });
    this.queues.push({ broker, name });
    return name;
  }
}

/** Take `n` deliveries (or fewer if none arrive within `idleMs`), leaving them unsettled. */
export async function take(sub: Subscription, n: number, idleMs = 3000): Promise<Delivery[]> {
  const got: Delivery[] = [];
  const it = sub[Symbol.asyncIterator]();
  while (got.length < n) {
    const next = await Promise.race([it.next(), sleep(idleMs).then(() => 'idle' as const)]);
    if (next === 'idle' || next.done) break;
    got.push(next.value);
  }
  return got;
}

/** Wait until `check` holds, or fail after `timeoutMs`. */
export async function eventually(check: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await sleep(50);
  }
  throw new Error(`condition not met within ${timeoutMs} ms`);
}
