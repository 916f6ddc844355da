/**
 * Conformance, limits: the prefetch bound, the delivery limit and dead letters, settle rules, and large
 * messages — the same on every broker.
 */
import { expect, test } from 'vitest';
import { MessageTooLargeError } from '../../mq-adapters/errors.js';
import { HEADERS, type Delivery } from '../../mq-adapters/types.js';
import { Resources, binaryBody, dec, enc, eventually, sameBytes } from './harness.js';
import { forEachTarget, testWith } from './targets.js';

/** How soon after a settle the next message must arrive (no polling tick). */
const PROMPT_MS = 250;
const FIVE_MB = 5 * 1024 * 1024;

forEachTarget('limits', (target) => {
  const res = new Resources({ address: target.url });

  test(`prefetch 3: exactly 3 in hand while more wait; an ack lets the 4th in within ${PROMPT_MS} ms`, async () => {
    const broker = await res.connect();
    const q = await res.queue(broker);
    await Promise.all(Array.from({ length: 10 }, (_, i) => broker.publish(q, { body: enc(`m${i}`), eventId: `m${i}` })));

    const a = await res.consume(broker, q, { prefetch: 3 });
    const heldByA = await a.take(3);
    // A second consumer proves the other 7 were not hoarded by the first: it gets 5 of them right away.
    const other = await res.connect();
    const b = await res.consume(other, q, { prefetch: 5 });
    const heldByB = await b.take(5);
    // Two messages now wait in the queue, and A has 3 unacked: A must get nothing more.
    expect(await a.poll(700)).toBeUndefined();
    expect(await b.poll(100)).toBeUndefined();

    const started = performance.now();
    await heldByA[0]!.ack();
    const fourth = await a.next(2_000);
    const waited = performance.now() - started;
    expect(waited).toBeLessThan(PROMPT_MS);
    // Full again: the last waiting message stays in the queue.
    expect(await a.poll(300)).toBeUndefined();

    await heldByA[1]!.ack();
    const fifth = await a.next(2_000);
    const all: Delivery[] = [...heldByA, ...heldByB, fourth, fifth];
    expect(new Set(all.map((d) => d.eventId)).size).toBe(10);
    for (const d of [heldByA[2]!, ...heldByB, fourth, fifth]) await d.ack();
    expect(await a.poll(300)).toBeUndefined();
  });

  test('delivery limit 3: nacked 3 times → in <q>.dlq with the reason and event id, main queue empty, seen exactly 3 times', async () => {
    const broker = await res.connect();
    const q = await res.queue(broker, { maxDeliveries: 3 });
    await broker.publish(q, { body: enc('poison'), eventId: 'poison-1', headers: { origin: 'test' } });
    await broker.publish(q, { body: enc('fine'), eventId: 'fine-1' });
    const rx = await res.consume(broker, q, { prefetch: 1, maxDeliveries: 3 });
    const poisonCounts: number[] = [];
    let fine = 0;
    // Keep consuming well past the third nack: a 4th sighting of the poison event would be a failure.
    for (let d = await rx.poll(5_000); d; d = await rx.poll(poisonCounts.length >= 3 && fine ? 1_500 : 5_000)) {
      if (d.eventId === 'fine-1') {
        fine += 1;
        await d.ack();
      } else {
        poisonCounts.push(d.deliveryCount);
        await d.nack();
      }
    }
    expect(poisonCounts).toEqual([1, 2, 3]);
    expect(fine).toBe(1);
    await eventually('DLQ depth', () => broker.depth(`${q}.dlq`), (n) => n === 1);
    await eventually('main queue depth', () => broker.depth(q), (n) => n === 0);

    const dlq = await res.consume(broker, `${q}.dlq`, { prefetch: 1 });
    const dead = await dlq.next();
    expect(dead.eventId).toBe('poison-1');
    expect(dec(dead.body)).toBe('poison');
    expect(dead.headers).toEqual({
      origin: 'test',
      [HEADERS.deadLetterReason]: 'delivery limit reached: nacked on attempt 3 of 3',
      [HEADERS.deadLetterSource]: q,
      [HEADERS.deadLetterDeliveries]: '3',
    });
    await dead.ack();
    expect(await dlq.poll(500)).toBeUndefined();
  });

  test('deadLetter(reason) moves the event at once, details as x-ewms-dlq-<key> headers', async () => {
    const broker = await res.connect();
    const q = await res.queue(broker);
    const body = binaryBody(300);
    await broker.publish(q, { body, eventId: 'bad-1', headers: { 'x-app': 'kept' } });
    const rx = await res.consume(broker, q, { prefetch: 1 });
    const d = await rx.next();
    await d.deadLetter({ reason: 'task exited with code 3', details: { host: 'node7', 'stderr-tail': 'Traceback… ValueError' } });
    expect(await rx.poll(500)).toBeUndefined();
    await eventually('main queue depth', () => broker.depth(q), (n) => n === 0);

    const dlq = await res.consume(broker, `${q}.dlq`, { prefetch: 1 });
    const dead = await dlq.next();
    expect(dead.eventId).toBe('bad-1');
    expect(sameBytes(dead.body, body)).toBe(true);
    expect(dead.headers).toEqual({
      'x-app': 'kept',
      [HEADERS.deadLetterReason]: 'task exited with code 3',
      [HEADERS.deadLetterSource]: q,
      [HEADERS.deadLetterDeliveries]: '1',
      'x-ewms-dlq-host': 'node7',
      'x-ewms-dlq-stderr-tail': 'Traceback… ValueError',
    });
    await dead.ack();
  });

  test('release() returns the event without dead-lettering it, even on its last allowed delivery', async () => {
    const broker = await res.connect();
    const q = await res.queue(broker, { maxDeliveries: 1 });
    await broker.publish(q, { body: enc('keep'), eventId: 'keep-1' });
    const rx = await res.consume(broker, q, { prefetch: 1, maxDeliveries: 1 });
    const d = await rx.next();
    // As a pilot does at shutdown: stop intake first, then give back what it holds.
    await rx.subscription.close();
    await d.release();
    await eventually('main queue depth after release', () => broker.depth(q), (n) => n === 1);
    expect(await broker.depth(`${q}.dlq`)).toBe(0);
  });

  test('settling a delivery twice is refused', async () => {
    const broker = await res.connect();
    const q = await res.queue(broker);
    await broker.publish(q, { body: enc('x') });
    const rx = await res.consume(broker, q, { prefetch: 1 });
    const d = await rx.next();
    await d.ack();
    await expect(d.nack()).rejects.toThrow(/already settled/);
    await expect(d.ack()).rejects.toThrow(/already settled/);
  });

  testWith(
    'a 5 MB message round trip on a broker configured to accept it (NATS: a private server with max_payload raised)',
    target.brokerAccepting,
    async (accepting) => {
      const server = await accepting(FIVE_MB);
      res.onCleanup(() => server.dispose());
      const broker = await res.connect({ address: server.url });
      const q = await res.queue(broker);
      const body = binaryBody(FIVE_MB);
      await broker.publish(q, { body, eventId: 'big-1', headers: { 'x-size': String(FIVE_MB) } });
      const rx = await res.consume(broker, q, { prefetch: 1 });
      const d = await rx.next(20_000);
      expect(d.eventId).toBe('big-1');
      expect(d.body.byteLength).toBe(FIVE_MB);
      expect(sameBytes(d.body, body)).toBe(true);
      expect(d.headers).toEqual({ 'x-size': String(FIVE_MB) });
      await d.ack();
    },
    60_000,
  );

  testWith(
    'a 5 MB message on a broker whose limit is lower (the NATS default, 1 MiB) → MessageTooLargeError naming the limit; nothing stored',
    target.brokerRefusing,
    async (refusing) => {
      const server = await refusing(FIVE_MB);
      res.onCleanup(() => server.dispose());
      const broker = await res.connect({ address: server.url });
      const q = await res.queue(broker);
      const err = await broker.publish(q, { body: binaryBody(FIVE_MB), eventId: 'big-refused' }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(MessageTooLargeError);
      expect((err as MessageTooLargeError).bytes).toBeGreaterThanOrEqual(FIVE_MB);
      expect((err as MessageTooLargeError).message).toMatch(new RegExp(`message of \\d+ bytes exceeds the ${target.type} limit of ${server.limit} bytes`));
      expect((err as MessageTooLargeError).hint).toMatch(/shared storage|raise the broker limit/);
      expect(await broker.depth(q)).toBe(0);
    },
    60_000,
  );

  testWith('a message over the broker limit → MessageTooLargeError; nothing stored; the connection still works', target.maxMessageBytes, async (limitOf) => {
    const limit = await limitOf();
    const broker = await res.connect();
    const q = await res.queue(broker);
    const err = await broker.publish(q, { body: new Uint8Array(limit + 1), eventId: 'too-big' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MessageTooLargeError);
    expect((err as MessageTooLargeError).broker).toBe(target.type);
    expect((err as MessageTooLargeError).limit).toBe(limit);
    expect(await broker.depth(q)).toBe(0);
    await broker.publish(q, { body: enc('small'), eventId: 'small' });
    expect(await broker.depth(q)).toBe(1);
  }, 60_000);
});
