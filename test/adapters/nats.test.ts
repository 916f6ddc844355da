/**
 * NATS-specific behaviour of the adapter against the shared nats-server (streams of our own, deleted after
 * each test): the Python MQClient's stream/consumer layout, name escaping, leases renewed with
 * `working()`, and the broker-side dead-letter mover. Cross-broker semantics are the conformance suite's.
 */
import { randomUUID } from 'node:crypto';
import { AckPolicy, jetstream, jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { connect as natsConnect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import { BrokerConnectionLostError, MessageTooLargeError, connect } from '../../mq-adapters/index.js';
import { escapeQueueName, streamName, subjectName, unescapeQueueName } from '../../mq-adapters/nats/index.js';
import { HEADERS, type Broker, type Delivery } from '../../mq-adapters/types.js';
import { startPrivateNats, type PrivateBroker } from '../helpers/brokers.js';

const NATS_URL = process.env.EWMS_TEST_NATS_URL || 'nats://127.0.0.1:4222';
const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
const dec = (b: Uint8Array): string => new TextDecoder().decode(b);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

let nc: NatsConnection;
let jsm: JetStreamManager;
const brokers: Broker[] = [];
const streams = new Set<string>();

beforeAll(async () => {
  nc = await natsConnect({ servers: NATS_URL });
  jsm = await jetstreamManager(nc);
});
afterEach(async () => {
  for (const b of brokers.splice(0)) await b.close().catch(() => undefined);
  for (const s of streams) await jsm.streams.delete(s).catch(() => undefined);
  streams.clear();
});
afterAll(async () => nc.close());

async function open(): Promise<Broker> {
  const b = await connect({ address: NATS_URL });
  brokers.push(b);
  return b;
}

/** A fresh queue name whose streams (and DLQ's) are deleted after the test. */
function queueName(prefix = 't-nats'): string {
  const q = `${prefix}-${randomUUID()}`;
  streams.add(streamName(q)).add(streamName(`${q}.dlq`));
  return q;
}

async function first(sub: AsyncIterable<Delivery>): Promise<Delivery> {
  const r = await sub[Symbol.asyncIterator]().next();
  if (r.done) throw new Error('the subscription ended');
  return r.value;
}

describe('names', () => {
  test('plain names map exactly as the Python MQClient does', () => {
    expect(streamName('abc-123_X')).toBe('abc-123_X-stream');
    expect(subjectName('abc-123_X')).toBe('abc-123_X-subject');
  });

  test('characters NATS forbids become ~XX, reversibly, and the DLQ of q is q.dlq on NATS too', () => {
    for (const name of ['a.b', 'x*y>z', 'with space\tand\ttab', 'sl/ash\\back', 'tilde~7E', 'q.dlq']) {
      const escaped = escapeQueueName(name);
      expect(escaped).not.toMatch(/[.*>/\\\s]/);
      expect(unescapeQueueName(escaped)).toBe(name);
    }
    expect(streamName('q.dlq')).toBe('q~2Edlq-stream');
  });

  test('a queue name with dots works end to end', async () => {
    const broker = await open();
    const q = queueName('t.nats.dotted');
    await broker.declareQueue({ name: q });
    await broker.publish(q, { body: enc('dot'), eventId: 'd1' });
    const sub = await broker.consume(q, { prefetch: 1 });
    const d = await first(sub);
    expect(d.eventId).toBe('d1');
    await d.ack();
    await sub.close();
  });
});

describe('a lost connection', () => {
  /** Run `body` against a private nats-server (so it can be stopped) with a broker connected to it. */
  async function onPrivateServer(reconnectWindowMs: number, body: (server: PrivateBroker, broker: Broker) => Promise<void>): Promise<void> {
    const server = await startPrivateNats();
    try {
      const broker = await connect({ address: server.url, reconnectWindowMs });
      brokers.push(broker);
      await body(server, broker);
    } finally {
      for (const b of brokers.splice(0)) await b.close().catch(() => undefined);
      await server.dispose();
    }
  }

  test('declare, depth and delete made while the server is away wait for it and then succeed', async () => {
    await onPrivateServer(30_000, async (server, broker) => {
      const q = `t-nats-away-${randomUUID()}`;
      await broker.declareQueue({ name: q });
      await broker.publish(q, { body: enc('kept'), eventId: 'k' });
      await server.stop();
      const other = `t-nats-away-${randomUUID()}`;
      const during = Promise.all([broker.depth(q), broker.declareQueue({ name: other })]);
      await sleep(300);
      await server.start();
      const [depth] = await during;
      expect(depth).toBe(1);
      expect(await broker.depth(other)).toBe(0);
      await broker.deleteQueue(other);
      await expect(broker.depth(other)).rejects.toThrow(/does not exist/);
    });
  }, 30_000);

  test('a server that stays away beyond reconnectWindowMs: pending publish and the iteration fail with BrokerConnectionLostError', async () => {
    await onPrivateServer(2_000, async (server, broker) => {
      const q = `t-nats-gone-${randomUUID()}`;
      await broker.declareQueue({ name: q });
      await broker.publish(q, { body: enc('stored'), eventId: 's' });
      const iterator = (await broker.consume(q, { prefetch: 1 }))[Symbol.asyncIterator]();
      const received = await iterator.next();
      if (received.done) throw new Error('the subscription ended');
      await received.value.ack();
      // The iteration now waits for a next message, as a draining consumer does.
      const pending = iterator.next().then(
        () => 'a delivery or the end',
        (err: unknown) => err,
      );

      await server.stop();
      const started = performance.now();
      const publish = broker.publish(q, { body: enc('never stored') }).then(
        () => 'confirmed',
        (err: unknown) => err,
      );
      const failure = await Promise.race([pending, sleep(15_000).then(() => 'still waiting after 15 s')]);
      expect(failure).toBeInstanceOf(BrokerConnectionLostError);
      expect((failure as Error).message).toContain(`127.0.0.1:${server.port}`);
      expect(await publish).toBeInstanceOf(BrokerConnectionLostError);
      expect(performance.now() - started).toBeLessThan(10_000);
    });
  }, 30_000);
});

describe('message size', () => {
  test('the server counts headers against max_payload: a body that fits only without them is refused before sending', async () => {
    const broker = await open();
    const q = queueName();
    await broker.declareQueue({ name: q });
    const limit = nc.info?.max_payload ?? 1024 * 1024;
    const err = await broker.publish(q, { body: new Uint8Array(limit - 16), headers: { 'x-app': 'v' } }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MessageTooLargeError);
    expect((err as MessageTooLargeError).bytes).toBeGreaterThan(limit);
    // With room for its headers it goes through, so the estimate is not needlessly strict.
    await broker.publish(q, { body: new Uint8Array(limit - 1024), headers: { 'x-app': 'v' } });
    expect(await broker.depth(q)).toBe(1);
  });
});

describe('the Python MQClient layout', () => {
  test('a stream and a psub consumer the Python client made first (server defaults) are used as they are', async () => {
    const q = queueName();
    // What nats.py does: js.add_stream(name, subjects) then js.pull_subscribe(subject, "psub").
    await jsm.streams.add({ name: `${q}-stream`, subjects: [`${q}-subject`] });
    await jsm.consumers.add(`${q}-stream`, { durable_name: 'psub', ack_policy: AckPolicy.Explicit, filter_subject: `${q}-subject` });
    // And publishes a body without headers.
    await jetstream(nc).publish(`${q}-subject`, enc('from python'));

    const broker = await open();
    await broker.declareQueue({ name: q });
    const sub = await broker.consume(q, { prefetch: 1 });
    const d = await first(sub);
    expect(dec(d.body)).toBe('from python');
    expect(d.eventId).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(d.headers).toEqual({});
    await d.ack();
    await sub.close();
  });

  test('after our declare, the Python client\'s add_stream with its settings still succeeds', async () => {
    const broker = await open();
    const q = queueName();
    await broker.declareQueue({ name: q });
    const info = await jsm.streams.add({ name: `${q}-stream`, subjects: [`${q}-subject`] });
    expect(info.config.name).toBe(`${q}-stream`);
    // Our messages carry only what a Python consumer can ignore: the body is the event.
    await broker.publish(q, { body: enc('for python'), eventId: 'e' });
    const consumer = await jsm.consumers.add(`${q}-stream`, { durable_name: 'py-check', ack_policy: AckPolicy.Explicit });
    const msgs = await (await jetstream(nc).consumers.get(`${q}-stream`, consumer.name)).fetch({ max_messages: 1, expires: 2_000 });
    for await (const m of msgs) {
      expect(m.string()).toBe('for python');
      expect(m.headers?.get(HEADERS.eventId)).toBe('e');
      m.ack();
    }
  });
});

describe('leases and the broker-side backstop', () => {
  test('extendLease (working()) keeps a delivery from going to another consumer past AckWait', async () => {
    const broker = await open();
    const q = queueName();
    await broker.declareQueue({ name: q });
    await broker.publish(q, { body: enc('long task'), eventId: 'long' });
    const holder = await broker.consume(q, { prefetch: 1, leaseMs: 1_000 });
    const d = await first(holder);
    const other = await (await open()).consume(q, { prefetch: 1, leaseMs: 1_000 });
    const stolen = other[Symbol.asyncIterator]().next();
    let seenByOther = false;
    void stolen.then(() => (seenByOther = true));
    // 3 lease periods, renewed every 400 ms.
    for (let i = 0; i < 8; i++) {
      await sleep(400);
      await d.extendLease();
    }
    expect(seenByOther).toBe(false);
    await d.ack();
    await sleep(1_500);
    expect(seenByOther).toBe(false);
    await holder.close();
    await other.close();
  });

  test('a message every holder let lapse (max_deliver reached) is moved to the DLQ with a reason by the mover', async () => {
    const broker = await open();
    const q = queueName();
    await broker.declareQueue({ name: q, maxDeliveries: 1 });
    await broker.publish(q, { body: enc('crashes everything'), eventId: 'crasher', headers: { origin: 'test' } });
    // Creates the shared consumer (max_deliver 2, AckWait 1 s) and, in this process, the mover.
    const sub = await broker.consume(q, { prefetch: 1, maxDeliveries: 1, leaseMs: 1_000 });
    await sub.close();
    // Consumers that take it and never settle it, as crashing pilots would (raw, so no client-side limit).
    const consumer = await jetstream(nc).consumers.get(streamName(q), 'psub');
    for (let attempt = 1; attempt <= 2; attempt++) {
      const batch = await consumer.fetch({ max_messages: 1, expires: 5_000 });
      for await (const m of batch) expect(m.info.deliveryCount).toBe(attempt);
    }
    // The server gives up (and sends the advisory) when it would deliver again: keep a pull waiting, as
    // the remaining pilots do.
    const waiting = await consumer.fetch({ max_messages: 1, expires: 5_000 });
    const seenAfterLimit: number[] = [];
    const draining = (async () => {
      for await (const m of waiting) seenAfterLimit.push(m.info.deliveryCount);
    })();
    const deadline = Date.now() + 10_000;
    while ((await broker.depth(`${q}.dlq`)) === 0 && Date.now() < deadline) await sleep(100);
    waiting.stop();
    await draining;
    expect(seenAfterLimit).toEqual([]);
    expect(await broker.depth(`${q}.dlq`)).toBe(1);
    expect((await jsm.streams.info(streamName(q))).state.messages).toBe(0);

    const dlq = await broker.consume(`${q}.dlq`, { prefetch: 1 });
    const dead = await first(dlq);
    expect(dead.eventId).toBe('crasher');
    expect(dead.headers.origin).toBe('test');
    expect(dead.headers[HEADERS.deadLetterReason]).toMatch(/the broker gave up after 2 deliveries/);
    expect(dead.headers[HEADERS.deadLetterSource]).toBe(q);
    await dead.ack();
    await dlq.close();
  }, 30_000);
});

describe('closing a subscription', () => {
  // JetStream cannot cancel a pull request; one left behind makes nats-server 2.9 step its cursor back on
  // the next redelivery (one event delivered twice, another held until AckWait). See subscription.ts.
  test('close() leaves no pull request on the server, and the consumer state counts each message once', async () => {
    const broker = await open();
    const q = queueName();
    await broker.declareQueue({ name: q });
    for (const body of ['a', 'b', 'c']) await broker.publish(q, { body: enc(body), eventId: body });
    const sub = await broker.consume(q, { prefetch: 500, leaseMs: 30_000 });
    const d = await first(sub);
    const released = d.release();
    await sub.close();
    await released;

    const info = await jsm.consumers.info(streamName(q), 'psub');
    expect(info.num_waiting).toBe(0);
    // Given back as copies (a copy that reached us before the pull request was abandoned is given back
    // again): whatever the stream holds, the consumer owes each event exactly once.
    expect(info.num_pending + info.num_ack_pending).toBe(3);
    expect(await broker.depth(q)).toBe(3);

    const again = await broker.consume(q, { prefetch: 500, leaseMs: 30_000 });
    const seen: string[] = [];
    const it = again[Symbol.asyncIterator]();
    for (let i = 0; i < 3; i++) {
      const next = await it.next();
      if (next.done) throw new Error('the subscription ended');
      seen.push(dec(next.value.body));
      await next.value.ack();
    }
    expect(seen.sort()).toEqual(['a', 'b', 'c']);
    await again.close();
    expect(await broker.depth(q)).toBe(0);
  });
});
