import { expect, test } from 'vitest';
import { HEADERS } from '../../mq-adapters/types.js';
import { dec, enc, eventually, forEachBroker, take } from './harness.js';

forEachBroker('delivery limit and dead letters', (ctx) => {
  test('after maxDeliveries nacks the event is in the DLQ with its reason; nothing is dropped', async () => {
    const broker = await ctx.broker();
    const q = await ctx.queue(broker, 3);
    await broker.publish(q, { body: enc('poison'), eventId: 'poison-1', headers: { origin: 'test' } });
    await broker.publish(q, { body: enc('fine'), eventId: 'fine-1' });
    const sub = await broker.consume(q, { prefetch: 1, maxDeliveries: 3 });
    const seen: number[] = [];
    let fineAcked = false;
    while (seen.length < 3 || !fineAcked) {
      const [d] = await take(sub, 1);
      if (!d) break;
      if (d.eventId === 'fine-1') {
        await d.ack();
        fineAcked = true;
      } else {
        seen.push(d.deliveryCount);
        await d.nack();
      }
    }
    await sub.close();
    expect(seen).toEqual([1, 2, 3]);
    expect(fineAcked).toBe(true);
    await eventually(async () => (await broker.depth(`${q}.dlq`)) === 1);
    expect(await broker.depth(q)).toBe(0);

    const dlq = await broker.consume(`${q}.dlq`, { prefetch: 1 });
    const [dead] = await take(dlq, 1);
    expect(dead!.eventId).toBe('poison-1');
    expect(dec(dead!.body)).toBe('poison');
    expect(dead!.headers.origin).toBe('test');
    expect(dead!.headers[HEADERS.deadLetterReason]).toMatch(/delivery limit reached/);
    expect(dead!.headers[HEADERS.deadLetterSource]).toBe(q);
    expect(dead!.headers[HEADERS.deadLetterDeliveries]).toBe('3');
    await dead!.ack();
    await dlq.close();
  });

  test('deadLetter(reason) moves the event at once, with the details as headers', async () => {
    const broker = await ctx.broker();
    const q = await ctx.queue(broker);
    await broker.publish(q, { body: enc('bad input'), eventId: 'bad-1' });
    const sub = await broker.consume(q, { prefetch: 1 });
    const [d] = await take(sub, 1);
    await d!.deadLetter({ reason: 'task exited with code 3', details: { host: 'node7', 'stderr-tail': 'Traceback…' } });
    await sub.close();
    const dlq = await broker.consume(`${q}.dlq`, { prefetch: 1 });
    const [dead] = await take(dlq, 1);
    expect(dead!.eventId).toBe('bad-1');
    expect(dead!.headers[HEADERS.deadLetterReason]).toBe('task exited with code 3');
    expect(dead!.headers['x-ewms-dlq-host']).toBe('node7');
    expect(dead!.headers['x-ewms-dlq-stderr-tail']).toBe('Traceback…');
    await dead!.ack();
    await dlq.close();
    expect(await broker.depth(q)).toBe(0);
  });

  test('release() returns the event without dead-lettering it, even on its last allowed delivery', async () => {
    const broker = await ctx.broker();
    const q = await ctx.queue(broker, 1);
    await broker.publish(q, { body: enc('keep'), eventId: 'keep-1' });
    const sub = await broker.consume(q, { prefetch: 1, maxDeliveries: 1 });
    const [d] = await take(sub, 1);
    // As a pilot does at shutdown: stop intake first, then give back what is held.
    await sub.close();
    await d!.release();
    await eventually(async () => (await broker.depth(q)) === 1);
    expect(await broker.depth(`${q}.dlq`)).toBe(0);
  });

  test('settling twice is refused', async () => {
    const broker = await ctx.broker();
    const q = await ctx.queue(broker);
    await broker.publish(q, { body: enc('x') });
    const sub = await broker.consume(q, { prefetch: 1 });
    const [d] = await take(sub, 1);
    await d!.ack();
    await expect(d!.nack()).rejects.toThrow(/already settled/);
    await sub.close();
  });
});
