/**
 * Conformance, attempts: `deliveryCount` is the attempt number whatever the broker counts. A release
 * (shutdown, eviction) uses none up, however often it happens; a nack uses one and carries its failure
 * to the next attempt; the dead letter names the last real failure. The same on every broker.
 */
import { expect, test } from 'vitest';
import { HEADERS, type DeadLetterReason } from '../../mq-adapters/types.js';
import { Resources, dec, enc, eventually } from './harness.js';
import { forEachTarget } from './targets.js';

/** Long enough that nothing returns by lapsing within a test (NATS AckWait; others ignore it). */
const LEASE_MS = 30_000;

const EXIT_3: DeadLetterReason = { reason: 'task exited with code 3', details: { 'error-type': 'TaskExitError', 'stderr-tail': 'ValueError: bad pixel' } };
const EXIT_9: DeadLetterReason = { reason: 'task was killed by signal SIGKILL', details: { 'error-type': 'TaskSignalError' } };

forEachTarget('attempts', (target) => {
  const res = new Resources({ address: target.url });

  test('released 6 times on a limit of 2 (an event evicted again and again): still attempt 1, never dead-lettered, headers as published', async () => {
    const broker = await res.connect();
    const q = await res.queue(broker, { maxDeliveries: 2 });
    await broker.publish(q, { body: enc('good event'), eventId: 'evicted', headers: { origin: 'test' } });
    const rx = await res.consume(broker, q, { prefetch: 1, maxDeliveries: 2, leaseMs: LEASE_MS });
    for (let i = 0; i < 6; i++) {
      const d = await rx.next();
      expect(d.eventId).toBe('evicted');
      expect(d.deliveryCount).toBe(1);
      expect(d.lastFailure).toBeUndefined();
      // Our bookkeeping never shows as an application header.
      expect(d.headers).toEqual({ origin: 'test' });
      await d.release();
    }
    const last = await rx.next();
    expect(dec(last.body)).toBe('good event');
    expect(last.deliveryCount).toBe(1);
    await last.ack();
    expect(await rx.poll(500)).toBeUndefined();
    expect(await broker.depth(`${q}.dlq`)).toBe(0);
    await eventually('main queue depth', () => broker.depth(q), (n) => n === 0);
  });

  test('nack(failure) uses one attempt and carries the failure; a release in between keeps both; the dead letter names the last failure', async () => {
    const broker = await res.connect();
    const q = await res.queue(broker, { maxDeliveries: 3 });
    await broker.publish(q, { body: enc('flaky'), eventId: 'flaky-1' });
    const rx = await res.consume(broker, q, { prefetch: 1, maxDeliveries: 3, leaseMs: LEASE_MS });

    const first = await rx.next();
    expect(first.deliveryCount).toBe(1);
    await first.nack(EXIT_3);

    const second = await rx.next();
    expect(second.deliveryCount).toBe(2);
    expect(second.lastFailure).toEqual(EXIT_3);
    expect(second.headers).toEqual({});
    // Evicted during its second attempt: the next one is the second attempt again, same history.
    await second.release();

    const secondAgain = await rx.next();
    expect(secondAgain.deliveryCount).toBe(2);
    expect(secondAgain.lastFailure).toEqual(EXIT_3);
    await secondAgain.nack(EXIT_9);

    const third = await rx.next();
    expect(third.deliveryCount).toBe(3);
    expect(third.lastFailure).toEqual(EXIT_9);
    // A caller that gives no reason on the last attempt: the dead letter still says what failed last.
    await third.nack();
    expect(await rx.poll(500)).toBeUndefined();

    const dlq = await res.consume(broker, `${q}.dlq`, { prefetch: 1 });
    const dead = await dlq.next();
    expect(dead.eventId).toBe('flaky-1');
    expect(dead.headers).toEqual({
      [HEADERS.deadLetterReason]: EXIT_9.reason,
      [HEADERS.deadLetterSource]: q,
      [HEADERS.deadLetterDeliveries]: '3',
      'x-ewms-dlq-error-type': 'TaskSignalError',
    });
    await dead.ack();
  });

  test('close() with messages buffered releases them without using an attempt', async () => {
    const broker = await res.connect();
    const q = await res.queue(broker, { maxDeliveries: 1 });
    for (const id of ['b1', 'b2', 'b3']) await broker.publish(q, { body: enc(id), eventId: id });
    for (let round = 0; round < 3; round++) {
      const rx = await res.consume(broker, q, { prefetch: 10, maxDeliveries: 1, leaseMs: LEASE_MS });
      await rx.take(1).then(async ([d]) => d!.release());
      await rx.subscription.close();
    }
    const rx = await res.consume(broker, q, { prefetch: 10, maxDeliveries: 1, leaseMs: LEASE_MS });
    const got = await rx.take(3);
    expect(got.map((d) => [d.eventId, d.deliveryCount]).sort()).toEqual([
      ['b1', 1],
      ['b2', 1],
      ['b3', 1],
    ]);
    for (const d of got) await d.ack();
    expect(await broker.depth(`${q}.dlq`)).toBe(0);
  });
});
