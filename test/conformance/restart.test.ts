/**
 * Conformance, broker restarts: on a private broker (the shared ones are never stopped), the adapter
 * reconnects by itself, consumers resume, and no confirmed message is lost — after a clean restart and
 * after a crash (SIGKILL).
 */
import { afterAll, expect } from 'vitest';
import type { Broker } from '../../mq-adapters/types.js';
import type { PrivateBroker } from '../helpers/brokers.js';
import { Resources, dec, enc, eventually, type Receiver } from './harness.js';
import { forEachTarget, privateConnectOptions, testWith } from './targets.js';

/** Consume and ack until every id in `expected` was seen; returns how often each id came (duplicates allowed). */
async function drainUntilSeen(rx: Receiver, expected: Set<string>, timeoutMs: number): Promise<Map<string, number>> {
  const seen = new Map<string, number>();
  const deadline = Date.now() + timeoutMs;
  while ([...expected].some((id) => !seen.has(id)) && Date.now() < deadline) {
    const d = await rx.poll(Math.max(1, Math.min(5_000, deadline - Date.now())));
    if (!d) continue;
    expect(dec(d.body)).toBe(d.eventId);
    seen.set(d.eventId, (seen.get(d.eventId) ?? 0) + 1);
    await d.ack();
  }
  return seen;
}

async function publishAll(broker: Broker, q: string, ids: string[]): Promise<void> {
  await Promise.all(ids.map((id) => broker.publish(q, { body: enc(id), eventId: id })));
}

const range = (prefix: string, n: number) => Array.from({ length: n }, (_, i) => `${prefix}-${i}`);

forEachTarget('broker restart (private broker)', (target) => {
  // One private broker for the file: RabbitMQ takes ~5 s to start.
  let started: Promise<PrivateBroker> | undefined;
  const privateBroker = (start: () => Promise<PrivateBroker>) => (started ??= start());
  afterAll(async () => (await started?.catch(() => undefined))?.dispose());
  const res = new Resources({ address: target.url });

  testWith(
    'after a restart (stop/start, same port) the adapter reconnects and delivers everything: none lost',
    target.startPrivate,
    async (start) => {
      const server = await privateBroker(start);
      const broker = await res.connect(privateConnectOptions(server, { reconnectWindowMs: 60_000 }));
      const q = await res.queue(broker);

      const before = range('before', 10);
      await publishAll(broker, q, before);
      const rx = await res.consume(broker, q, { prefetch: 2, leaseMs: 5_000 });
      const consumedBefore: string[] = [];
      for (let i = 0; i < 4; i++) {
        const d = await rx.next();
        consumedBefore.push(d.eventId);
        await d.ack();
      }

      await server.stop();
      // Publishes while the broker is down: each must either wait for it and then be confirmed, or fail —
      // never report success for a message the broker did not store.
      const during = range('during', 5).map((id) => broker.publish(q, { body: enc(id), eventId: id }).then(() => id, () => undefined));
      await server.start();

      const after = range('after', 10);
      await publishAll(broker, q, after);
      const confirmedDuring = (await Promise.all(during)).filter((id): id is string => id !== undefined);
      console.log(
        `[conformance] ${target.type}: of 5 publishes made during the outage ${confirmedDuring.length} were confirmed, ${5 - confirmedDuring.length} rejected`,
      );

      const remaining = new Set([...before.filter((id) => !consumedBefore.includes(id)), ...confirmedDuring, ...after]);
      const seen = await drainUntilSeen(rx, remaining, 60_000);
      const missing = [...remaining].filter((id) => !seen.has(id));
      expect(missing, `lost after restart (confirmed during the outage: ${confirmedDuring.length}/5)`).toEqual([]);
    },
    120_000,
  );

  testWith(
    'after a crash (SIGKILL) and restart no confirmed message is lost and the same subscription resumes',
    target.startPrivate,
    async (start) => {
      const server = await privateBroker(start);
      const broker = await res.connect(privateConnectOptions(server, { reconnectWindowMs: 60_000 }));
      const q = await res.queue(broker);
      const ids = range('crash', 20);
      await publishAll(broker, q, ids);
      const rx = await res.consume(broker, q, { prefetch: 5, leaseMs: 5_000 });
      // In hand, unacked, when the broker dies.
      const inHand = await rx.take(5);

      await server.kill();
      await server.start();

      // The pilot finishes its tasks and acks: whether the ack still reaches the broker (NATS) or the
      // delivery's connection is gone (RabbitMQ: a logged no-op, redelivered), it must not throw.
      for (const d of inHand) await expect(d.ack()).resolves.toBeUndefined();
      const notInHand = new Set(ids.filter((id) => !inHand.some((d) => d.eventId === id)));
      const seen = await drainUntilSeen(rx, notInHand, 60_000);
      const missing = [...notInHand].filter((id) => !seen.has(id));
      expect(missing, 'lost after the crash').toEqual([]);
      // Whatever of the in-hand five comes back (after its lease) is acked too; nothing may stay stuck.
      const ackWhatComesThenDepth = async () => {
        const d = await rx.poll(200);
        if (d) await d.ack();
        return broker.depth(q);
      };
      await eventually('depth after the crash', ackWhatComesThenDepth, (n) => n === 0, 20_000);
    },
    120_000,
  );
});
