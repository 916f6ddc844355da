/**
 * Conformance, closing a subscription (by close(), or by leaving a for-await loop early): what was
 * received but not yet yielded goes back to the queue at once (not when a lease runs out), exactly once,
 * nothing more is pulled, and what was already yielded stays settle-able.
 * The lease is 30 s, so a message that only comes back when its lease lapses misses every deadline here.
 */
import { expect, test } from 'vitest';
import type { Broker, Delivery } from '../../mq-adapters/types.js';
import { Resources, dec, enc, eventually, type Receiver } from './harness.js';
import { forEachTarget } from './targets.js';

/** Long enough that nothing returns by lapsing within a test; NATS AckWait (others ignore it). */
const LEASE_MS = 30_000;
/** Far below the lease: a message returned by close() is back well within this. */
const BACK_WITHIN_MS = 8_000;
/** How long a duplicate is given to show up after every expected message arrived. */
const DUPLICATE_WATCH_MS = 1_500;

forEachTarget('close', (target) => {
  const res = new Resources({ address: target.url });

  async function publishAll(broker: Broker, q: string, bodies: string[]): Promise<void> {
    for (const body of bodies) await broker.publish(q, { body: enc(body), eventId: `close-${body}` });
  }

  /** Receive exactly `expected` (by body) from a fresh consumer, in time, then make sure nothing else comes. */
  async function receiveExactlyOnce(rx: Receiver, expected: string[], since: number): Promise<Delivery[]> {
    const got: Delivery[] = [];
    while (got.length < expected.length) {
      const left = since + BACK_WITHIN_MS - Date.now();
      const d = await rx.poll(Math.max(left, 0));
      if (!d) {
        throw new Error(`only ${got.map((g) => dec(g.body)).join(',') || 'nothing'} of ${expected.join(',')} came back within ${BACK_WITHIN_MS} ms of close()`);
      }
      got.push(d);
    }
    expect(got.map((d) => dec(d.body)).sort()).toEqual([...expected].sort());
    const extra = await rx.poll(DUPLICATE_WATCH_MS);
    expect(extra ? `duplicate delivery of ${dec(extra.body)} (count ${extra.deliveryCount})` : 'none').toBe('none');
    return got;
  }

  test('close() with messages buffered gives them back at once: a new consumer gets each exactly once, depth is right', async () => {
    const broker = await res.connect();
    const q = await res.queue(broker);
    const bodies = ['m1', 'm2', 'm3', 'm4', 'm5'];
    await publishAll(broker, q, bodies);

    const rx = await res.consume(broker, q, { prefetch: 500, leaseMs: LEASE_MS });
    const first = await rx.next();
    await first.ack();
    // Let the rest reach the consumer's buffer before closing.
    await new Promise((r) => setTimeout(r, 300));
    await rx.subscription.close();
    const closedAt = Date.now();
    await eventually('depth after close', () => broker.depth(q), (n) => n === bodies.length - 1);

    const other = await res.connect();
    const again = await res.consume(other, q, { prefetch: 500, leaseMs: LEASE_MS });
    const rest = bodies.filter((b) => b !== dec(first.body));
    const got = await receiveExactlyOnce(again, rest, closedAt);
    for (const d of got) await d.ack();
    await eventually('depth after acking the rest', () => broker.depth(q), (n) => n === 0);
  });

  test('a delivery released just before close() comes back once, with the buffered ones', async () => {
    const broker = await res.connect();
    const q = await res.queue(broker);
    const bodies = ['a', 'b', 'c'];
    await publishAll(broker, q, bodies);

    const rx = await res.consume(broker, q, { prefetch: 500, leaseMs: LEASE_MS });
    const first = await rx.next();
    // Not awaited: close() starts while the release is still on its way to the broker.
    const released = first.release();
    await rx.subscription.close();
    await released;
    const closedAt = Date.now();
    await eventually('depth after close', () => broker.depth(q), (n) => n === bodies.length);

    const other = await res.connect();
    const again = await res.consume(other, q, { prefetch: 500, leaseMs: LEASE_MS });
    const got = await receiveExactlyOnce(again, bodies, closedAt);
    for (const d of got) await d.ack();
    await eventually('depth after acking all', () => broker.depth(q), (n) => n === 0);
  });

  test('deliveries yielded before close() stay settle-able: the acked one is gone, the released one returns at once', async () => {
    const broker = await res.connect();
    const q = await res.queue(broker);
    const bodies = ['x1', 'x2', 'x3', 'x4'];
    await publishAll(broker, q, bodies);

    const rx = await res.consume(broker, q, { prefetch: 500, leaseMs: LEASE_MS });
    const [keep, giveBack] = await rx.take(2);
    const closing = rx.subscription.close();
    // Settled while close() is still under way, as a pilot shutting down does.
    await Promise.all([keep!.ack(), giveBack!.release(), closing]);
    const closedAt = Date.now();

    const other = await res.connect();
    const again = await res.consume(other, q, { prefetch: 500, leaseMs: LEASE_MS });
    const expected = bodies.filter((b) => b !== dec(keep!.body));
    const got = await receiveExactlyOnce(again, expected, closedAt);
    for (const d of got) await d.ack();
    await eventually('depth after acking the rest', () => broker.depth(q), (n) => n === 0);
  });
  test('leaving a for-await loop early (break) gives back what was buffered at once and stops pulling', async () => {
    const broker = await res.connect();
    const q = await res.queue(broker);
    const bodies = ['e1', 'e2', 'e3', 'e4', 'e5', 'e6'];
    await publishAll(broker, q, bodies);

    const sub = await broker.consume(q, { prefetch: 5, leaseMs: LEASE_MS });
    let taken: Delivery | undefined;
    for await (const d of sub) {
      taken = d;
      // Let the broker fill the buffer before leaving.
      await new Promise((r) => setTimeout(r, 300));
      break;
    }
    await taken!.ack();
    const leftAt = Date.now();
    // Published after the loop was left: an intake still pulling would take (and strand) some of these.
    const later = ['l1', 'l2', 'l3'];
    await publishAll(broker, q, later);

    const other = await res.connect();
    const again = await res.consume(other, q, { prefetch: 500, leaseMs: LEASE_MS });
    const expected = [...bodies.filter((b) => b !== dec(taken!.body)), ...later];
    const got = await receiveExactlyOnce(again, expected, leftAt);
    // Given back, not failed: every one is still on its first attempt.
    expect(got.map((d) => d.deliveryCount)).toEqual(expected.map(() => 1));
    for (const d of got) await d.ack();
    await eventually('depth after acking the rest', () => broker.depth(q), (n) => n === 0);
  });

  test('an exception out of a for-await loop gives back what was buffered too', async () => {
    const broker = await res.connect();
    const q = await res.queue(broker);
    const bodies = ['t1', 't2', 't3', 't4'];
    await publishAll(broker, q, bodies);

    const sub = await broker.consume(q, { prefetch: 4, leaseMs: LEASE_MS });
    let taken: Delivery | undefined;
    await expect(
      (async () => {
        for await (const d of sub) {
          taken = d;
          await new Promise((r) => setTimeout(r, 300));
          throw new Error('the consumer gave up');
        }
      })(),
    ).rejects.toThrow('the consumer gave up');
    await taken!.release();
    const leftAt = Date.now();

    const other = await res.connect();
    const again = await res.consume(other, q, { prefetch: 500, leaseMs: LEASE_MS });
    const got = await receiveExactlyOnce(again, bodies, leftAt);
    for (const d of got) await d.ack();
  });
});
