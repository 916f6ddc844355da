/**
 * Feeding a workflow: the coordinator's `Workflow.publish` of N events (each confirmed, JSON envelope, event id
 * header) against raw amqplib publishing the same number of bodies on a quorum queue with confirms, 1,000 in
 * flight, alternated in one run. `npm run bench -- publish`; `EWMS_BENCH_PUBLISH_N` (default 100,000).
 */
import { randomUUID } from 'node:crypto';
import amqplib from 'amqplib';
import { Workflow } from '../coordinator/index.js';
import { encodeEnvelope } from '../common/wire.js';
import { BROKERS } from './pilot.js';
import { type BenchRow, alternate, rate } from './report.js';

/** Raw amqplib: a confirm channel, quorum queue, batches of 1,000 awaited with waitForConfirms. */
async function rawPublish(n: number): Promise<number> {
  const q = `bench-rawpub-${randomUUID().slice(0, 8)}`;
  const conn = await amqplib.connect(BROKERS.rabbitmq);
  try {
    const ch = await conn.createConfirmChannel();
    await ch.assertQueue(q, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
    const body = Buffer.from(encodeEnvelope({ index: 0 }));
    const started = performance.now();
    for (let i = 0; i < n; i += 1000) {
      for (let j = i; j < Math.min(n, i + 1000); j++) ch.publish('', q, body, { persistent: true, messageId: randomUUID() });
      await ch.waitForConfirms();
    }
    const r = rate(n, started);
    await ch.deleteQueue(q);
    return r;
  } finally {
    await conn.close();
  }
}

/** The coordinator: `Workflow.create` then `publish` of N small JSON events, timed from the publish call. */
async function coordinatorPublish(n: number): Promise<number> {
  const url = new URL(BROKERS.rabbitmq);
  const wf = await Workflow.create({ broker: { address: `amqp://${url.username}@${url.host}`, authToken: decodeURIComponent(url.password) } });
  try {
    const started = performance.now();
    const ids = await wf.publish(Array.from({ length: n }, (_, index) => ({ index })));
    if (ids.length !== n) throw new Error(`published ${ids.length} of ${n}`);
    return rate(n, started);
  } finally {
    await wf.close({ deleteQueues: true });
  }
}

export async function benchPublish(n: number, trials: number): Promise<BenchRow[]> {
  const { baseline, ours } = await alternate(
    trials,
    async () => [await rawPublish(n)],
    async () => [await coordinatorPublish(n)],
  );
  return [{ name: `coordinator publish of ${n.toLocaleString('en-US')} (rabbitmq quorum) vs raw confirmed publish`, baseline: baseline[0]!, ours: ours[0]!, unit: '/s' }];
}
