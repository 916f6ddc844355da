/**
 * Conformance, basics: what every adapter must do the same way on a healthy broker — round trips,
 * acks, nacks, declares and depth (the contract: mq-adapters/types.ts).
 */
import { expect, test } from 'vitest';
import { HEADERS } from '../../mq-adapters/types.js';
import { Resources, binaryBody, dec, enc, eventually, sameBytes, uniqueQueue } from './harness.js';
import { forEachTarget } from './targets.js';

forEachTarget('basics', (target) => {
  const res = new Resources({ address: target.url });

  test('round trip: body bytes identical, headers equal, event id as published, deliveryCount 1', async () => {
    const broker = await res.connect();
    const q = await res.queue(broker);
    const body = binaryBody(4096);
    const headers = { 'x-app': 'value', 'x-unicode': 'grüße ✓', 'x-number-like': '42', traceparent: '00-abc-def-01' };
    const id = await broker.publish(q, { body, headers, eventId: 'event-round-trip-1' });
    expect(id).toBe('event-round-trip-1');

    const rx = await res.consume(broker, q, { prefetch: 1 });
    const d = await rx.next();
    expect(sameBytes(d.body, body)).toBe(true);
    expect(d.headers).toEqual(headers);
    expect(d.eventId).toBe('event-round-trip-1');
    expect(d.deliveryCount).toBe(1);
    await d.ack();
  });

  test('every delivery taken in is logged at debug level with its event id, also one still in the prefetch buffer', async () => {
    // What a pilot's log must show for a crash to be accounted: which events it held, buffered ones included.
    const lines: Array<{ msg: string | undefined; obj: object }> = [];
    const record = (obj: object, msg?: string) => lines.push({ obj, msg });
    const broker = await res.connect({ logger: { debug: record, info: () => undefined, warn: () => undefined, error: () => undefined } });
    const q = await res.queue(broker);
    for (const id of ['held-1', 'held-2', 'held-3']) await broker.publish(q, { body: enc(id), eventId: id });
    const rx = await res.consume(broker, q, { prefetch: 3 });
    const first = await rx.next();
    expect(first.eventId).toBe('held-1');
    // Not yet taken from the subscription: the other two are in the buffer, and in the log.
    const received = () => lines.filter((l) => l.msg === 'delivery received').map((l) => (l.obj as { eventId?: string }).eventId);
    await eventually('three deliveries logged', async () => received(), (ids) => ids.length === 3);
    expect(received().sort()).toEqual(['held-1', 'held-2', 'held-3']);
    await first.ack();
  });

  test('publish without an event id: a generated id is returned and delivered, not leaked into headers', async () => {
    const broker = await res.connect();
    const q = await res.queue(broker);
    const id = await broker.publish(q, { body: enc('x') });
    expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    const rx = await res.consume(broker, q, { prefetch: 1 });
    const d = await rx.next();
    expect(d.eventId).toBe(id);
    expect(d.headers).toEqual({});
    expect(d.headers[HEADERS.eventId]).toBeUndefined();
    await d.ack();
  });

  test('ack removes: depth back to 0 and a new subscription receives nothing', async () => {
    const broker = await res.connect();
    const q = await res.queue(broker);
    await broker.publish(q, { body: enc('once') });
    const rx = await res.consume(broker, q, { prefetch: 1 });
    const d = await rx.next();
    await d.ack();
    await rx.subscription.close();
    await eventually('depth after ack', () => broker.depth(q), (n) => n === 0);

    // A fresh connection too, so nothing is served from the first one's state.
    const other = await res.connect();
    const again = await res.consume(other, q, { prefetch: 1 });
    const late = await again.poll(1_000);
    expect(late?.eventId).toBeUndefined();
  });

  test('nack redelivers the same event with deliveryCount + 1', async () => {
    const broker = await res.connect();
    const q = await res.queue(broker);
    await broker.publish(q, { body: enc('again'), eventId: 'redo', headers: { 'x-keep': 'me' } });
    const rx = await res.consume(broker, q, { prefetch: 1 });
    const first = await rx.next();
    expect(first.deliveryCount).toBe(1);
    await first.nack();
    const second = await rx.next();
    expect(second.eventId).toBe('redo');
    expect(dec(second.body)).toBe('again');
    expect(second.headers).toEqual({ 'x-keep': 'me' });
    expect(second.deliveryCount).toBe(2);
    await second.nack();
    const third = await rx.next();
    expect(third.deliveryCount).toBe(3);
    await third.ack();
    await eventually('depth after the final ack', () => broker.depth(q), (n) => n === 0);
  });

  test('declareQueue is idempotent and safe when two connections race (5 declares at once)', async () => {
    const a = await res.connect();
    const b = await res.connect();
    const q = await res.queue(a);
    await a.publish(q, { body: enc('survives re-declares'), eventId: 'kept' });
    // Same queue, declared concurrently from two connections, after it already holds a message.
    await Promise.all([a, b, a, b, a].map((x) => x.declareQueue({ name: q, maxDeliveries: 3 })));
    // A brand-new queue raced from the start, too.
    const fresh = res.adopt(a, uniqueQueue());
    await Promise.all([b, a, b, a, b].map((x) => x.declareQueue({ name: fresh, maxDeliveries: 3 })));
    expect(await b.depth(q)).toBe(1);
    expect(await a.depth(fresh)).toBe(0);
    const rx = await res.consume(b, q, { prefetch: 1 });
    const d = await rx.next();
    expect(d.eventId).toBe('kept');
    await d.ack();
    await b.publish(fresh, { body: enc('fresh works') });
    expect(await eventually('depth of the raced queue', () => a.depth(fresh), (n) => n === 1)).toBe(1);
  });

  test('depth() reflects published-but-unconsumed messages', async () => {
    const broker = await res.connect();
    const q = await res.queue(broker);
    expect(await broker.depth(q)).toBe(0);
    await Promise.all(Array.from({ length: 7 }, (_, i) => broker.publish(q, { body: enc(`d${i}`) })));
    // Confirmed publishes are stored: depth must say so without waiting.
    expect(await broker.depth(q)).toBe(7);

    const rx = await res.consume(broker, q, { prefetch: 2 });
    const [x, y] = await rx.take(2);
    await x!.ack();
    await y!.ack();
    await rx.subscription.close();
    await eventually('depth after consuming 2 of 7', () => broker.depth(q), (n) => n === 5);
  });
});
