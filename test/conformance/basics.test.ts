import { expect, test } from 'vitest';
import { HEADERS } from '../../mq-adapters/types.js';
import { dec, enc, eventually, forEachBroker, sleep, take } from './harness.js';

forEachBroker('basics', (ctx) => {
  test('round trip keeps body bytes, headers and event id; first delivery counts 1', async () => {
    const broker = await ctx.broker();
    const q = await ctx.queue(broker);
    const body = new Uint8Array([0, 1, 2, 255, 254, 10, 13]);
    const id = await broker.publish(q, { body, headers: { 'x-test': 'yes', traceparent: 'abc' }, eventId: 'ev-1' });
    expect(id).toBe('ev-1');
    const sub = await broker.consume(q, { prefetch: 1 });
    const [d] = await take(sub, 1);
    expect(d).toBeDefined();
    expect([...d!.body]).toEqual([...body]);
    expect(d!.headers).toEqual({ 'x-test': 'yes', traceparent: 'abc' });
    expect(d!.eventId).toBe('ev-1');
    expect(d!.deliveryCount).toBe(1);
    await d!.ack();
    await sub.close();
  });

  test('publish without an event id gets a generated one, returned and delivered', async () => {
    const broker = await ctx.broker();
    const q = await ctx.queue(broker);
    const id = await broker.publish(q, { body: enc('x') });
    expect(id).toMatch(/[0-9a-f-]{36}/);
    const sub = await broker.consume(q, { prefetch: 1 });
    const [d] = await take(sub, 1);
    expect(d!.eventId).toBe(id);
    expect(d!.headers[HEADERS.eventId]).toBeUndefined();
    await d!.ack();
    await sub.close();
  });

  test('ack removes the message', async () => {
    const broker = await ctx.broker();
    const q = await ctx.queue(broker);
    await broker.publish(q, { body: enc('once') });
    const sub = await broker.consume(q, { prefetch: 1 });
    const [d] = await take(sub, 1);
    await d!.ack();
    await sub.close();
    await eventually(async () => (await broker.depth(q)) === 0);
    const again = await broker.consume(q, { prefetch: 1 });
    expect(await take(again, 1, 1000)).toHaveLength(0);
    await again.close();
  });

  test('nack redelivers with the delivery count + 1', async () => {
    const broker = await ctx.broker();
    const q = await ctx.queue(broker);
    await broker.publish(q, { body: enc('again'), eventId: 'redo' });
    const sub = await broker.consume(q, { prefetch: 1 });
    const [first] = await take(sub, 1);
    expect(first!.deliveryCount).toBe(1);
    await first!.nack();
    const [second] = await take(sub, 1);
    expect(second!.eventId).toBe('redo');
    expect(dec(second!.body)).toBe('again');
    expect(second!.deliveryCount).toBe(2);
    await second!.ack();
    await sub.close();
  });

  test('never more unacked in hand than the prefetch; an ack lets the next one in promptly', async () => {
    const broker = await ctx.broker();
    const q = await ctx.queue(broker);
    for (let i = 0; i < 10; i++) await broker.publish(q, { body: enc(`m${i}`) });
    const sub = await broker.consume(q, { prefetch: 3 });
    const held = await take(sub, 10, 1500);
    expect(held).toHaveLength(3);
    const it = sub[Symbol.asyncIterator]();
    const started = Date.now();
    const nextP = it.next();
    await held[0]!.ack();
    const next = await nextP;
    expect(next.done).toBe(false);
    expect(Date.now() - started).toBeLessThan(500);
    for (const d of [...held.slice(1), next.value]) await d.ack();
    await sub.close();
  });

  test('declareQueue is idempotent and safe when connections race', async () => {
    const a = await ctx.broker();
    const b = await ctx.broker();
    const q = await ctx.queue(a);
    await Promise.all([a, b, a, b, a].map((x) => x.declareQueue({ name: q, maxDeliveries: 3 })));
    await a.publish(q, { body: enc('ok') });
    expect(await b.depth(q)).toBe(1);
  });

  test('depth counts published messages not yet consumed', async () => {
    const broker = await ctx.broker();
    const q = await ctx.queue(broker);
    expect(await broker.depth(q)).toBe(0);
    await Promise.all(Array.from({ length: 7 }, (_, i) => broker.publish(q, { body: enc(`d${i}`) })));
    await eventually(async () => (await broker.depth(q)) === 7);
    await sleep(0);
  });
});
