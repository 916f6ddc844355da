/**
 * Adapter overhead: publish-with-confirm and consume-with-ack rates through our `Broker` API, each next to
 * the raw client doing the same work in the same run (amqplib on a quorum queue; nats.js JetStream). The
 * ratio is what matters: the raw rate is the ceiling this machine and broker allow right now.
 */
import { randomUUID } from 'node:crypto';
import amqplib from 'amqplib';
import { connect as natsConnect } from '@nats-io/transport-node';
import { AckPolicy, jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect } from '../mq-adapters/index.js';
import type { Broker } from '../mq-adapters/types.js';
import { type BenchRow, alternate, rate } from './report.js';

const AMQP_URL = process.env.EWMS_TEST_RABBITMQ_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
const NATS_URL = process.env.EWMS_TEST_NATS_URL ?? 'nats://127.0.0.1:4222';
const BODY = new Uint8Array(100).fill(120);

async function ourPublish(broker: Broker, queue: string, n: number, window: number): Promise<number> {
  const started = performance.now();
  const pending = new Set<Promise<string>>();
  for (let i = 0; i < n; i++) {
    const p = broker.publish(queue, { body: BODY });
    pending.add(p);
    void p.finally(() => pending.delete(p));
    if (pending.size >= window) await Promise.race(pending);
  }
  await Promise.all(pending);
  return rate(n, started);
}

async function ourConsume(broker: Broker, queue: string, n: number): Promise<number> {
  const started = performance.now();
  const sub = await broker.consume(queue, { prefetch: 100 });
  let got = 0;
  for await (const d of sub) {
    void d.ack();
    if (++got === n) break;
  }
  await sub.close();
  return rate(n, started);
}

/** Raw amqplib on a quorum queue: publish in batches of 1,000 with confirms, then consume with prefetch 100. */
async function rawRabbit(n: number): Promise<number[]> {
  const q = `bench-raw-${randomUUID()}`;
  const conn = await amqplib.connect(AMQP_URL);
  try {
    const ch = await conn.createConfirmChannel();
    await ch.assertQueue(q, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
    let started = performance.now();
    for (let i = 0; i < n; i += 1000) {
      for (let j = i; j < Math.min(n, i + 1000); j++) ch.publish('', q, Buffer.from(BODY), { persistent: true });
      await ch.waitForConfirms();
    }
    const publish = rate(n, started);
    const cch = await conn.createChannel();
    await cch.prefetch(100);
    started = performance.now();
    await new Promise<void>((resolve) => {
      let got = 0;
      void cch.consume(q, (m) => {
        if (!m) return;
        cch.ack(m);
        if (++got === n) resolve();
      });
    });
    const consume = rate(n, started);
    await ch.deleteQueue(q);
    return [publish, consume];
  } finally {
    await conn.close();
  }
}

/** Raw nats.js JetStream: 1,000 publishes in flight, then a pull consumer with 100 outstanding. */
async function rawNats(n: number): Promise<number[]> {
  const stream = `bench-raw-${randomUUID()}`;
  const nc = await natsConnect({ servers: NATS_URL });
  try {
    const jsm = await jetstreamManager(nc);
    await jsm.streams.add({ name: stream, subjects: [`${stream}.s`] });
    await jsm.consumers.add(stream, { durable_name: 'psub', ack_policy: AckPolicy.Explicit });
    const js = jetstream(nc);
    let started = performance.now();
    const inflight = new Set<Promise<unknown>>();
    for (let i = 0; i < n; i++) {
      const p = js.publish(`${stream}.s`, BODY);
      inflight.add(p);
      void p.finally(() => inflight.delete(p));
      if (inflight.size >= 1000) await Promise.race(inflight);
    }
    await Promise.all(inflight);
    const publish = rate(n, started);
    const consumer = await js.consumers.get(stream, 'psub');
    started = performance.now();
    const messages = await consumer.consume({ max_messages: 100 });
    let got = 0;
    for await (const m of messages) {
      m.ack();
      if (++got === n) break;
    }
    const consume = rate(n, started);
    await messages.close();
    await jsm.streams.delete(stream);
    return [publish, consume];
  } finally {
    await nc.close();
  }
}

/** The same work through our `Broker` API. */
async function ours(address: string, n: number): Promise<number[]> {
  const q = `bench-our-${randomUUID()}`;
  const broker = await connect({ address });
  try {
    await broker.declareQueue({ name: q });
    const publish = await ourPublish(broker, q, n, 1000);
    const consume = await ourConsume(broker, q, n);
    await broker.deleteQueue(q);
    return [publish, consume];
  } finally {
    await broker.close();
  }
}

/**
 * Run both brokers' adapter benchmarks: `n` messages per trial, `trials` alternating trials of the raw
 * client and of ours, medians reported.
 */
export async function benchAdapters(n = 20_000, trials = 3): Promise<BenchRow[]> {
  const r = await alternate(trials, () => rawRabbit(n), () => ours(AMQP_URL, n));
  const s = await alternate(trials, () => rawNats(n), () => ours(NATS_URL, n));
  return [
    { name: 'rabbitmq publish+confirm (1,000 in flight)', baseline: r.baseline[0]!, ours: r.ours[0]!, unit: 'msg/s' },
    { name: 'rabbitmq consume+ack (prefetch 100)', baseline: r.baseline[1]!, ours: r.ours[1]!, unit: 'msg/s' },
    { name: 'nats publish+ack (1,000 in flight)', baseline: s.baseline[0]!, ours: s.ours[0]!, unit: 'msg/s' },
    { name: 'nats consume+ack (prefetch 100)', baseline: s.baseline[1]!, ours: s.ours[1]!, unit: 'msg/s' },
  ];
}
