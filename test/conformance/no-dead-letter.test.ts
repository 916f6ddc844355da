/**
 * Conformance, queues that never dead-letter (`QueueSpec.deadLetter: false`, the outgoing queue): a
 * message nacked, released, or given back by a closing subscription any number of times stays in its queue,
 * and no dead-letter queue is made for it.
 */
import { expect, test } from 'vitest';
import { DEFAULTS, defaultDeadLetterQueue, type Broker } from '../../mq-adapters/types.js';
import { Resources, dec, enc } from './harness.js';
import { forEachTarget } from './targets.js';

/** More returns than the default delivery limit allows, and than its broker-side backstop (limit + 1). */
const RETURNS = DEFAULTS.maxDeliveries + 3;

/** True when the queue does not exist. */
async function missing(broker: Broker, queue: string): Promise<boolean> {
  return broker.depth(queue).then(
    () => false,
    () => true,
  );
}

forEachTarget('queues that never dead-letter', (target) => {
  const res = new Resources({ address: target.url });

  test(`nacked and released ${RETURNS} times, the message is still delivered; no dead-letter queue exists`, async () => {
    const broker = await res.connect();
    const q = await res.queue(broker, { deadLetter: false });
    await broker.publish(q, { body: enc('result'), eventId: 'kept' });
    const rx = await res.consume(broker, q, { prefetch: 1, deadLetter: false });
    for (let i = 1; i <= RETURNS; i++) {
      const d = await rx.next();
      expect(d.eventId).toBe('kept');
      expect(d.deliveryCount).toBe(i);
      await (i % 2 === 0 ? d.release() : d.nack());
    }
    const last = await rx.next();
    expect(dec(last.body)).toBe('result');
    expect(last.deliveryCount).toBe(RETURNS + 1);
    await last.ack();
    expect(await missing(broker, defaultDeadLetterQueue(q))).toBe(true);
  });

  test(`given back by ${RETURNS} subscriptions closing with it unread, the message is still delivered`, async () => {
    const broker = await res.connect();
    const q = await res.queue(broker, { deadLetter: false });
    await broker.publish(q, { body: enc('first'), eventId: 'taken' });
    await broker.publish(q, { body: enc('second'), eventId: 'kept' });
    // A closing subscription returns what it received and did not hand out, as a collection that ends does.
    for (let i = 0; i < RETURNS; i++) {
      const rx = await res.consume(broker, q, { prefetch: 2, deadLetter: false });
      const d = await rx.next();
      await new Promise((resolve) => setTimeout(resolve, 100));
      await rx.subscription.close();
      await d.release();
    }
    const rx = await res.consume(broker, q, { prefetch: 2, deadLetter: false });
    const got = await rx.take(2);
    expect(got.map((d) => d.eventId).sort()).toEqual(['kept', 'taken']);
    for (const d of got) await d.ack();
  });

  test('declared first with the defaults (as earlier clients did), then with deadLetter: false, it no longer dead-letters', async () => {
    const broker = await res.connect();
    const q = await res.queue(broker);
    await broker.declareQueue({ name: q, deadLetter: false });
    await broker.publish(q, { body: enc('result'), eventId: 'kept' });
    const rx = await res.consume(broker, q, { prefetch: 1, deadLetter: false });
    for (let i = 1; i <= RETURNS; i++) await (await rx.next()).nack();
    const last = await rx.next();
    expect(last.deliveryCount).toBe(RETURNS + 1);
    await last.ack();
    expect(await broker.depth(defaultDeadLetterQueue(q))).toBe(0);
  });
  test('released a moment before close() (as a collection that ends does), the message is back at once', async () => {
    const broker = await res.connect();
    const q = await res.queue(broker, { deadLetter: false });
    await broker.publish(q, { body: enc('result'), eventId: 'held' });
    for (let round = 0; round < 3; round++) {
      // NATS AckWait far beyond the wait below: a return that missed would only come back after it.
      const rx = await res.consume(broker, q, { prefetch: 10, deadLetter: false, leaseMs: 30_000 });
      const d = await rx.next();
      // Not awaited: the close starts while the release is on its way.
      const released = d.release();
      await rx.subscription.close();
      await released;
    }
    const rx = await res.consume(broker, q, { prefetch: 10, deadLetter: false, leaseMs: 30_000 });
    const back = await rx.next(8_000);
    expect(back.eventId).toBe('held');
    await back.ack();
  });
});
