/**
 * A bounded queue (the monitoring queue) on the real brokers: publishing past the bound never blocks nor
 * fails, the oldest messages make room, and nothing is dead-lettered.
 */
import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { connect } from '../../mq-adapters/index.js';
import type { Broker } from '../../mq-adapters/types.js';
import { sharedTargets } from '../helpers/brokers.js';

const targets = sharedTargets().filter((t) => t.available && t.type !== 'pulsar') as Array<{ type: 'rabbitmq' | 'nats'; url: string }>;

describe.each(targets)('bounded queue on $type', ({ url }) => {
  let broker: Broker | undefined;
  let queue = '';
  afterEach(async () => {
    await broker?.deleteQueue(queue, { deadLetterQueue: false }).catch(() => undefined);
    await broker?.close();
  });

  it('keeps the newest maxMessages and drops the oldest', async () => {
    broker = await connect({ address: url });
    queue = `test-bounded-${randomUUID().slice(0, 8)}`;
    await broker.declareQueue({ name: queue, deadLetter: false, bound: { maxMessages: 5, maxAgeSeconds: 600 } });
    for (let i = 0; i < 12; i++) await broker.publish(queue, { body: Buffer.from(String(i)), eventId: `m${i}` });
    expect(await broker.depth(queue)).toBe(5);
    const sub = await broker.consume(queue, { prefetch: 10, deadLetter: false });
    const seen: string[] = [];
    for await (const d of sub) {
      seen.push(Buffer.from(d.body).toString());
      await d.ack();
      if (seen.length === 5) break;
    }
    await sub.close();
    expect(seen).toEqual(['7', '8', '9', '10', '11']);
    // Declaring again (a second pilot) is fine.
    await broker.declareQueue({ name: queue, deadLetter: false, bound: { maxMessages: 5, maxAgeSeconds: 600 } });
  });
});
