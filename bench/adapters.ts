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
import { type BenchRow, rate } from './report.js';

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

async function rabbit(n: number): Promise<BenchRow[]> {
  const rawQ = `bench-raw-${randomUUID()}`;
  const ourQ = `bench-our-${randomUUID()}`;
  const conn = await amqplib.connect(AMQP_URL);
  const ch = await conn.createConfirmChannel();
  await ch.assertQueue(rawQ, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
  let started = performance.now();
  for (let i = 0; i < n; i += 1000) {
    for (let j = i; j < Math.min(n, i + 1000); j++) ch.publish('', rawQ, Buffer.from(BODY), { persistent: true });
    await ch.waitForConfirms();
  }
  const rawPub = rate(n, started);
  const cch = await conn.createChannel();
  await cch.prefetch(100);
  started = performance.now();
  await new Promise<void>((resolve) => {
    let got = 0;
    void cch.consume(rawQ, (m) => {
      if (!m) return;
      cch.ack(m);
      if (++got === n) resolve();
    });
  });
  const rawCon = rate(n, started);
  await ch.deleteQueue(rawQ);
  await conn.close();

  const broker = await connect({ address: AMQP_URL });
  await broker.declareQueue({ name: ourQ });
  const ourPub = await ourPublish(broker, ourQ, n, 1000);
  const ourCon = await ourConsume(broker, ourQ, n);
  await broker.deleteQueue(ourQ);
  await broker.close();
  return [
    { name: 'rabbitmq publish+confirm', baseline: rawPub, ours: ourPub, unit: 'msg/s' },
    { name: 'rabbitmq consume+ack (prefetch 100)', baseline: rawCon, ours: ourCon, unit: 'msg/s' },
  ];
}

async function nats(n: number): Promise<BenchRow[]> {
  const rawStream = `bench-raw-${randomUUID()}`;
  const ourQ = `bench-our-${randomUUID()}`;
  const nc = await natsConnect({ servers: NATS_URL });
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add({ name: rawStream, subjects: [`${rawStream}.s`] });
  await jsm.consumers.add(rawStream, { durable_name: 'psub', ack_policy: AckPolicy.Explicit });
  const js = jetstream(nc);
  let started = performance.now();
  const inflight: Promise<unknown>[] = [];
  for (let i = 0; i < n; i++) {
    inflight.push(js.publish(`${rawStream}.s`, BODY));
    if (inflight.length >= 1000) await Promise.all(inflight.splice(0));
  }
  await Promise.all(inflight);
  const rawPub = rate(n, started);
  const consumer = await js.consumers.get(rawStream, 'psub');
  started = performance.now();
  const messages = await consumer.consume({ max_messages: 100 });
  let got = 0;
  for await (const m of messages) {
    m.ack();
    if (++got === n) break;
  }
  const rawCon = rate(n, started);
  await messages.close();
  await jsm.streams.delete(rawStream);
  await nc.close();

  const broker = await connect({ address: NATS_URL });
  await broker.declareQueue({ name: ourQ });
  const ourPub = await ourPublish(broker, ourQ, n, 1000);
  const ourCon = await ourConsume(broker, ourQ, n);
  await broker.deleteQueue(ourQ);
  await broker.close();
  return [
    { name: 'nats publish+ack', baseline: rawPub, ours: ourPub, unit: 'msg/s' },
    { name: 'nats consume+ack (prefetch 100)', baseline: rawCon, ours: ourCon, unit: 'msg/s' },
  ];
}

/** Run both brokers' adapter benchmarks with `n` messages each. */
export async function benchAdapters(n = 20_000): Promise<BenchRow[]> {
  return [...(await rabbit(n)), ...(await nats(n))];
}
