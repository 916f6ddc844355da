/**
 * RabbitMQ-specific behaviour of the adapter, against the shared broker (queues of our own, deleted after
 * each test) and, for anything that changes broker state beyond our queues (users, killed connections,
 * restarts), a private RabbitMQ node.
 *
 * The cross-broker semantics (round trips, limits, prefetch, faults) are the conformance suite's; here:
 * interop with how the Python MQClient declares and publishes, the policy backstop, wire properties,
 * credentials, and how the adapter heals.
 */
import { execFileSync, spawn } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer as createHttpServer, request as httpRequest } from 'node:http';
import { connect as tcpConnect, createServer as createTcpServer, type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createServer as createTlsServer } from 'node:tls';
import { inspect } from 'node:util';
import amqplib, { type ChannelModel } from 'amqplib';
import { request } from 'undici';
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import { connect, resolveAddress } from '../../mq-adapters/index.js';
import { BrokerAuthError, BrokerConnectionLostError, BrokerUnreachableError, MessageTooLargeError, QueueNotFoundError } from '../../mq-adapters/errors.js';
import { classifyConnectError } from '../../mq-adapters/rabbitmq/connection.js';
import { rabbitCredentials } from '../../mq-adapters/rabbitmq/credentials.js';
import { exactPattern, policyBody, policyName } from '../../mq-adapters/rabbitmq/policy.js';
import { RABBITMQ_MAX_MESSAGE_BYTES } from '../../mq-adapters/rabbitmq/publisher.js';
import { HEADERS, type AdapterLogger, type Broker, type ConnectOptions, type Delivery, type Subscription } from '../../mq-adapters/types.js';
import { freePort, startPrivateRabbitMQ, type PrivateBroker } from '../helpers/brokers.js';

const AMQP_URL = process.env.EWMS_TEST_RABBITMQ_URL || 'amqp://guest:guest@127.0.0.1:5672';
const MANAGEMENT_URL = process.env.EWMS_TEST_RABBITMQ_MANAGEMENT_URL || 'http://127.0.0.1:15672';
const PYTHON_ARGUMENTS = { 'x-queue-type': 'quorum' };

const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
const dec = (b: Uint8Array): string => new TextDecoder().decode(b);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const uniqueQueue = (): string => `t-rmq-${randomUUID()}`;

// ---------------------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------------------

/** A logger that remembers every line, to assert on warnings and on secrets never being logged. */
class RecordingLogger implements AdapterLogger {
  readonly lines: Array<{ level: string; obj: object; msg: string | undefined }> = [];
  debug(obj: object, msg?: string): void {
    this.lines.push({ level: 'debug', obj, msg });
  }
  info(obj: object, msg?: string): void {
    this.lines.push({ level: 'info', obj, msg });
  }
  warn(obj: object, msg?: string): void {
    this.lines.push({ level: 'warn', obj, msg });
  }
  error(obj: object, msg?: string): void {
    this.lines.push({ level: 'error', obj, msg });
  }
  text(): string {
    return this.lines.map((l) => `${l.level} ${l.msg ?? ''} ${JSON.stringify(l.obj)}`).join('\n');
  }
  warnings(pattern: RegExp): number {
    return this.lines.filter((l) => l.level === 'warn' && pattern.test(l.msg ?? '')).length;
  }
}

/** Takes deliveries with a deadline, keeping one next() outstanding so a late delivery is never lost. */
class Receiver {
  private readonly iterator: AsyncIterator<Delivery>;
  private pending: Promise<IteratorResult<Delivery>> | undefined;
  constructor(subscription: Subscription) {
    this.iterator = subscription[Symbol.asyncIterator]();
  }
  async next(timeoutMs = 10_000): Promise<Delivery> {
    const got = await this.poll(timeoutMs);
    if (!got) throw new Error(`no delivery within ${timeoutMs} ms`);
    return got;
  }
  async poll(ms: number): Promise<Delivery | undefined> {
    this.pending ??= this.iterator.next();
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), ms)));
    try {
      const result = await Promise.race([this.pending, timeout]);
      if (result === 'timeout') return undefined;
      this.pending = undefined;
      if (result.done) throw new Error('the subscription ended');
      return result.value;
    } finally {
      clearTimeout(timer);
    }
  }
  /** The rejection the iteration ends with, if it ends with one within `ms`. */
  async failure(ms: number): Promise<unknown> {
    this.pending ??= this.iterator.next();
    return Promise.race([this.pending.then(() => undefined, (err: unknown) => err), sleep(ms).then(() => undefined)]);
  }
}

async function eventually<T>(what: string, probe: () => Promise<T>, ok: (value: T) => boolean, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: T | undefined;
  let lastError: unknown;
  while (Date.now() < deadline) {
    try {
      last = await probe();
      if (ok(last)) return last;
    } catch (err) {
      lastError = err;
    }
    await sleep(100);
  }
  throw new Error(`${what}: not reached within ${timeoutMs} ms (last: ${inspect(last)}${lastError ? `, error: ${String(lastError)}` : ''})`);
}

/** Call the management API with guest credentials (or the given ones); JSON in, JSON out. */
async function management(
  method: 'GET' | 'PUT' | 'DELETE',
  path: string,
  options: { base?: string; body?: unknown; user?: string; password?: string } = {},
): Promise<{ status: number; body: unknown }> {
  const auth = Buffer.from(`${options.user ?? 'guest'}:${options.password ?? 'guest'}`).toString('base64');
  const res = await request(`${options.base ?? MANAGEMENT_URL}${path}`, {
    method,
    headers: { authorization: `Basic ${auth}`, 'content-type': 'application/json' },
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
  });
  const text = await res.body.text();
  return { status: res.statusCode, body: text ? (JSON.parse(text) as unknown) : undefined };
}

const vhostPath = (vhost = '/') => encodeURIComponent(vhost);

/** Everything made in a test, cleaned up after it even when it fails. */
const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn().catch(() => undefined);
});

async function broker(options: Partial<ConnectOptions> = {}): Promise<Broker> {
  const b = await connect({ address: AMQP_URL, ...options });
  cleanups.push(() => b.close());
  return b;
}

/** A plain amqplib connection, as the Python MQClient (pika) would use the broker. */
async function plainConnection(url = AMQP_URL): Promise<ChannelModel> {
  const c = await amqplib.connect(url);
  c.on('error', () => undefined);
  cleanups.push(() => c.close());
  return c;
}

/** Delete the queue, its DLQ and its policy with a plain connection after the test. */
function cleanUpQueue(name: string, url = AMQP_URL, managementBase = MANAGEMENT_URL): void {
  cleanups.push(async () => {
    const c = await amqplib.connect(url);
    c.on('error', () => undefined);
    const ch = await c.createChannel();
    ch.on('error', () => undefined);
    await ch.deleteQueue(name).catch(() => undefined);
    await ch.deleteQueue(`${name}.dlq`).catch(() => undefined);
    await c.close().catch(() => undefined);
    await management('DELETE', `/api/policies/${vhostPath()}/${encodeURIComponent(policyName(name))}`, { base: managementBase }).catch(() => undefined);
  });
}

/** The queue's declare arguments as the broker stores them. */
async function queueArguments(name: string, base = MANAGEMENT_URL): Promise<Record<string, unknown>> {
  const res = await management('GET', `/api/queues/${vhostPath()}/${encodeURIComponent(name)}`, { base });
  expect(res.status).toBe(200);
  return (res.body as { arguments: Record<string, unknown> }).arguments;
}

// ---------------------------------------------------------------------------------------------------------
// Pure parts
// ---------------------------------------------------------------------------------------------------------

describe('credentials, error classification and policy shape (no broker)', () => {
  const addr = (address: string, authToken?: string) => resolveAddress({ address, authToken });

  test('user from the URL, else "" with a token (the Python MQClient convention), else guest; the token is the password', () => {
    expect(rabbitCredentials(addr('amqp://alice:pw@h'), undefined)).toEqual({ username: 'alice', password: 'pw' });
    expect(rabbitCredentials(addr('amqp://alice:pw@h', 'tok'), 'tok')).toEqual({ username: 'alice', password: 'tok' });
    expect(rabbitCredentials(addr('amqp://h', 'tok'), 'tok')).toEqual({ username: '', password: 'tok' });
    expect(rabbitCredentials(addr('amqp://h'), undefined)).toEqual({ username: 'guest', password: 'guest' });
  });

  test('connect errors are sorted into auth / vhost / handshake-closed / tls / transient', () => {
    expect(classifyConnectError(new Error('Handshake terminated by server: 403 (ACCESS-REFUSED) with message "ACCESS_REFUSED - Login was refused"'))).toBe('auth');
    expect(classifyConnectError(new Error('Expected ConnectionOpenOk; got <ConnectionClose channel:0>'))).toBe('vhost');
    expect(classifyConnectError(new Error('Socket closed abruptly during opening handshake'))).toBe('handshake-closed');
    expect(classifyConnectError(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' }))).toBe('transient');
    expect(classifyConnectError(new Error('connect ETIMEDOUT'))).toBe('transient');
    expect(classifyConnectError(Object.assign(new Error('self-signed certificate'), { code: 'DEPTH_ZERO_SELF_SIGNED_CERT' }))).toBe('tls');
    expect(classifyConnectError(Object.assign(new Error('Hostname/IP does not match'), { code: 'ERR_TLS_CERT_ALTNAME_INVALID' }))).toBe('tls');
  });

  test('the policy pattern matches exactly one queue name, regex characters included', () => {
    const pattern = new RegExp(exactPattern('a.b*c+(d)[e]'));
    expect(pattern.test('a.b*c+(d)[e]')).toBe(true);
    expect(pattern.test('aXb*c+(d)[e]')).toBe(false);
    expect(pattern.test('a.b*c+(d)[e].dlq')).toBe(false);
    expect(policyBody({ queue: 'q', deadLetterQueue: 'q.dlq', maxDeliveries: 3 }).definition).toEqual({
      'dead-letter-exchange': '',
      'dead-letter-routing-key': 'q.dlq',
      'delivery-limit': 3,
      'dead-letter-strategy': 'at-least-once',
      overflow: 'reject-publish',
    });
  });
});

// ---------------------------------------------------------------------------------------------------------
// Interop with the Python MQClient's declarations
// ---------------------------------------------------------------------------------------------------------

describe('queue declarations interoperate with the Python MQClient', () => {
  test('a queue the Python client declared first (durable, only x-queue-type: quorum) is used without error', async () => {
    const q = uniqueQueue();
    cleanUpQueue(q);
    const plain = await (await plainConnection()).createChannel();
    await plain.assertQueue(q, { durable: true, arguments: PYTHON_ARGUMENTS });
    await plain.sendToQueue(q, Buffer.from('from python'));

    const logger = new RecordingLogger();
    const b = await broker({ logger });
    await b.declareQueue({ name: q });
    expect(logger.warnings(/other settings/)).toBe(0); // no 406 fallback was needed
    expect(await queueArguments(q)).toEqual(PYTHON_ARGUMENTS);
    expect(await queueArguments(`${q}.dlq`)).toEqual(PYTHON_ARGUMENTS);
    const rx = new Receiver(await b.consume(q, { prefetch: 1 }));
    const d = await rx.next();
    expect(dec(d.body)).toBe('from python');
    await d.ack();
  });

  test('after our declareQueue, the Python client\'s declaration (only x-queue-type: quorum) succeeds', async () => {
    const q = uniqueQueue();
    cleanUpQueue(q);
    const b = await broker();
    await b.declareQueue({ name: q, maxDeliveries: 5 });
    const conn = await plainConnection();
    for (const name of [q, `${q}.dlq`]) {
      const ch = await conn.createChannel();
      let channelError: Error | undefined;
      ch.on('error', (err: Error) => (channelError = err));
      const ok = await ch.assertQueue(name, { durable: true, arguments: PYTHON_ARGUMENTS });
      expect(ok.queue).toBe(name);
      expect(channelError).toBeUndefined();
      await ch.close();
    }
    // The extras live in the policy, not in the declare arguments.
    expect(await queueArguments(q)).toEqual(PYTHON_ARGUMENTS);
  });

  test('a queue declared with other arguments (406 on our declare) is used as it is, with a warning', async () => {
    const q = uniqueQueue();
    cleanUpQueue(q);
    const plain = await (await plainConnection()).createChannel();
    await plain.assertQueue(q, { durable: true, arguments: { 'x-queue-type': 'classic', 'x-max-length': 1000 } });

    const logger = new RecordingLogger();
    const b = await broker({ logger });
    await b.declareQueue({ name: q });
    expect(logger.warnings(/other settings/)).toBe(1);
    expect(await queueArguments(q)).toEqual({ 'x-queue-type': 'classic', 'x-max-length': 1000 });
    // The connection and its publisher survived the refused declare.
    await b.publish(q, { body: enc('still works'), eventId: 'after-406' });
    const rx = new Receiver(await b.consume(q, { prefetch: 1 }));
    const d = await rx.next();
    expect(d.eventId).toBe('after-406');
    await d.ack();
  });
});

// ---------------------------------------------------------------------------------------------------------
// The policy and the broker-side backstop
// ---------------------------------------------------------------------------------------------------------

describe('dead-letter policy (broker-side backstop)', () => {
  test('declareQueue installs the policy on exactly that queue, and deleteQueue removes it', async () => {
    const q = uniqueQueue();
    cleanUpQueue(q);
    const b = await broker();
    await b.declareQueue({ name: q, maxDeliveries: 4 });

    const policy = await management('GET', `/api/policies/${vhostPath()}/${encodeURIComponent(policyName(q))}`);
    expect(policy.status).toBe(200);
    expect(policy.body).toMatchObject({
      pattern: exactPattern(q),
      'apply-to': 'queues',
      definition: {
        'dead-letter-exchange': '',
        'dead-letter-routing-key': `${q}.dlq`,
        'delivery-limit': 4,
        'dead-letter-strategy': 'at-least-once',
        overflow: 'reject-publish',
      },
    });
    // In effect on the queue, and not on its DLQ.
    const applied = await eventually(
      'the policy applied to the queue',
      async () => (await management('GET', `/api/queues/${vhostPath()}/${encodeURIComponent(q)}`)).body as { policy?: string },
      (info) => info.policy === policyName(q),
    );
    expect(applied.policy).toBe(policyName(q));
    const dlqInfo = (await management('GET', `/api/queues/${vhostPath()}/${encodeURIComponent(`${q}.dlq`)}`)).body as { policy?: string };
    expect(dlqInfo.policy ?? '').toBe('');

    await b.deleteQueue(q);
    expect((await management('GET', `/api/policies/${vhostPath()}/${encodeURIComponent(policyName(q))}`)).status).toBe(404);
  });

  test('an unchanged policy is not rewritten (thousands of pilots declaring the same queue)', async () => {
    // A counting proxy in front of the management API.
    const methods: string[] = [];
    const proxy = createHttpServer((req, res) => {
      methods.push(req.method ?? '');
      const target = new URL(MANAGEMENT_URL);
      const upstream = httpRequest(
        { host: target.hostname, port: target.port, path: req.url, method: req.method, headers: req.headers },
        (up) => {
          res.writeHead(up.statusCode ?? 502, up.headers);
          up.pipe(res);
        },
      );
      req.pipe(upstream);
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => new Promise((resolve) => proxy.close(resolve)));
    const q = uniqueQueue();
    cleanUpQueue(q);
    const managementUrl = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
    await (await broker({ managementUrl })).declareQueue({ name: q });
    expect(methods).toEqual(['GET', 'PUT']);
    methods.length = 0;
    await (await broker({ managementUrl })).declareQueue({ name: q });
    expect(methods).toEqual(['GET']);
    // A changed limit is written.
    methods.length = 0;
    await (await broker({ managementUrl })).declareQueue({ name: q, maxDeliveries: 7 });
    expect(methods).toEqual(['GET', 'PUT']);
    const policy = await management('GET', `/api/policies/${vhostPath()}/${encodeURIComponent(policyName(q))}`);
    expect((policy.body as { definition: Record<string, unknown> }).definition['delivery-limit']).toBe(7);
  });

  test('a consumer that dies holding the message, again and again, ends with the message in the DLQ (broker-side)', async () => {
    const q = uniqueQueue();
    cleanUpQueue(q);
    const maxDeliveries = 2;
    const b = await broker();
    await b.declareQueue({ name: q, maxDeliveries });
    const id = await b.publish(q, { body: enc('kills every consumer'), eventId: 'poison', headers: { origin: 'test' } });

    // Plain consumers that take it and die (connection closed without an ack), as a crashing pilot would;
    // they never run our client-side limit, so only the broker can stop the loop.
    const seenCounts: number[] = [];
    for (let attempt = 0; attempt < 10; attempt++) {
      const c = await amqplib.connect(AMQP_URL);
      c.on('error', () => undefined);
      const ch = await c.createChannel();
      await ch.prefetch(1);
      const got = await new Promise<amqplib.ConsumeMessage | undefined>((resolve) => {
        const timer = setTimeout(() => resolve(undefined), 1_500);
        void ch.consume(q, (m) => {
          if (m) {
            clearTimeout(timer);
            resolve(m);
          }
        });
      });
      await c.close();
      if (!got) break;
      expect(got.properties.messageId).toBe(id);
      seenCounts.push(Number(got.properties.headers?.['x-delivery-count'] ?? 0) + 1);
    }
    // delivery-limit N: delivered N+1 times, dead-lettered on the (N+1)th return.
    expect(seenCounts).toEqual([1, 2, 3]);
    await eventually('the DLQ to hold the message', () => b.depth(`${q}.dlq`), (n) => n === 1);
    expect(await b.depth(q)).toBe(0);

    // Read through the adapter: same event id, first delivery from the DLQ, and a reason in our terms.
    const rx = new Receiver(await b.consume(`${q}.dlq`, { prefetch: 1 }));
    const dead = await rx.next();
    expect(dead.eventId).toBe('poison');
    expect(dec(dead.body)).toBe('kills every consumer');
    expect(dead.deliveryCount).toBe(1);
    expect(dead.headers.origin).toBe('test');
    expect(dead.headers[HEADERS.deadLetterReason]).toBe('dead-lettered by the broker: delivery_limit');
    expect(dead.headers[HEADERS.deadLetterSource]).toBe(q);
    expect(dead.headers['x-death']).toBeUndefined();
    await dead.ack();
  });

  test('client side first: a delivery beyond the limit (its consumer died) goes to the DLQ without being yielded', async () => {
    const q = uniqueQueue();
    cleanUpQueue(q);
    const b = await broker();
    await b.declareQueue({ name: q, maxDeliveries: 1 });
    await b.publish(q, { body: enc('x'), eventId: 'died-once' });
    // Delivery 1 to a consumer that dies.
    const c = await amqplib.connect(AMQP_URL);
    const ch = await c.createChannel();
    await new Promise<void>((resolve) => void ch.consume(q, (m) => m && resolve()));
    await c.close();

    const rx = new Receiver(await b.consume(q, { prefetch: 1, maxDeliveries: 1 }));
    await eventually('the DLQ to hold the message', () => b.depth(`${q}.dlq`), (n) => n === 1);
    expect(await rx.poll(300)).toBeUndefined();
    const dlq = new Receiver(await b.consume(`${q}.dlq`, { prefetch: 1 }));
    const dead = await dlq.next();
    expect(dead.eventId).toBe('died-once');
    expect(dead.headers[HEADERS.deadLetterReason]).toMatch(/^delivery limit exceeded: attempt 2 of 1/);
    expect(dead.headers[HEADERS.deadLetterDeliveries]).toBe('2');
    await dead.ack();
  });
});

// ---------------------------------------------------------------------------------------------------------
// Wire properties and event ids
// ---------------------------------------------------------------------------------------------------------

describe('wire properties and event ids', () => {
  test('the event id travels as the AMQP messageId; messages are persistent; headers as given, nothing added', async () => {
    const q = uniqueQueue();
    cleanUpQueue(q);
    const b = await broker();
    await b.declareQueue({ name: q });
    const id = await b.publish(q, { body: enc('props'), eventId: 'evt-123', headers: { a: '1', 'x-b': 'two' } });
    expect(id).toBe('evt-123');
    const generated = await b.publish(q, { body: enc('no id') });
    expect(generated).toMatch(/^[0-9a-f-]{36}$/);

    const ch = await (await plainConnection()).createChannel();
    const first = await ch.get(q, { noAck: true });
    const second = await ch.get(q, { noAck: true });
    if (!first || !second) throw new Error('messages missing');
    expect(first.properties.messageId).toBe('evt-123');
    expect(first.properties.deliveryMode).toBe(2);
    // Only what we gave (basic.get adds the quorum queue's own x-delivery-count: 0).
    const { 'x-delivery-count': _count, ...published } = first.properties.headers ?? {};
    expect(published).toEqual({ a: '1', 'x-b': 'two' });
    expect(second.properties.messageId).toBe(generated);

    // And back through the adapter.
    await b.publish(q, { body: enc('round trip'), eventId: 'evt-456', headers: { k: 'v' } });
    const rx = new Receiver(await b.consume(q, { prefetch: 1 }));
    const d = await rx.next();
    expect(d.eventId).toBe('evt-456');
    expect(d.headers).toEqual({ k: 'v' });
    await d.ack();
  });

  test('a message from a plain publisher without messageId (the Python MQClient) gets sha256:<body>, stable across redelivery', async () => {
    const q = uniqueQueue();
    cleanUpQueue(q);
    const b = await broker();
    await b.declareQueue({ name: q });
    const body = Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 1, 2, 3, 0xff]); // binary, like a zstd frame
    const ch = await (await plainConnection()).createConfirmChannel();
    ch.sendToQueue(q, body);
    await ch.waitForConfirms();

    const expected = `sha256:${createHash('sha256').update(body).digest('hex')}`;
    const rx = new Receiver(await b.consume(q, { prefetch: 1 }));
    const first = await rx.next();
    expect(first.eventId).toBe(expected);
    expect(first.deliveryCount).toBe(1);
    expect(first.headers).toEqual({});
    expect(Buffer.from(first.body).equals(body)).toBe(true);
    await first.nack();
    const again = await rx.next();
    expect(again.eventId).toBe(expected);
    expect(again.deliveryCount).toBe(2);
    await again.ack();
  });

  test('publishing to a queue that does not exist fails with QueueNotFoundError instead of vanishing', async () => {
    const b = await broker();
    await expect(b.publish(uniqueQueue(), { body: enc('nowhere') })).rejects.toBeInstanceOf(QueueNotFoundError);
    // The publisher is still usable.
    const q = uniqueQueue();
    cleanUpQueue(q);
    await b.declareQueue({ name: q });
    await b.publish(q, { body: enc('somewhere') });
    expect(await b.depth(q)).toBe(1);
  });

  test('consume and depth of a missing queue → QueueNotFoundError', async () => {
    const b = await broker();
    await expect(b.consume(uniqueQueue(), { prefetch: 1 })).rejects.toBeInstanceOf(QueueNotFoundError);
    await expect(b.depth(uniqueQueue())).rejects.toBeInstanceOf(QueueNotFoundError);
  });

  test('too large: a body above max_message_size, or headers above one frame, fail before sending', async () => {
    const q = uniqueQueue();
    cleanUpQueue(q);
    const b = await broker();
    await b.declareQueue({ name: q });
    const huge = new Uint8Array(RABBITMQ_MAX_MESSAGE_BYTES + 1);
    const err = await b.publish(q, { body: huge }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MessageTooLargeError);
    expect((err as MessageTooLargeError).limit).toBe(RABBITMQ_MAX_MESSAGE_BYTES);
    const bigHeaders = await b.publish(q, { body: enc('x'), headers: { big: 'h'.repeat(70_000) } }).catch((e: unknown) => e);
    expect(bigHeaders).toBeInstanceOf(MessageTooLargeError);
    // Nothing was sent, and the connection is fine.
    expect(await b.depth(q)).toBe(0);
    await b.publish(q, { body: enc('small') });
    expect(await b.depth(q)).toBe(1);
  });

  test('many publishes with a small in-flight cap are all confirmed and stored', async () => {
    const q = uniqueQueue();
    cleanUpQueue(q);
    const b = await broker({ maxInFlightPublishes: 4 });
    await b.declareQueue({ name: q });
    const ids = await Promise.all(Array.from({ length: 300 }, (_, i) => b.publish(q, { body: enc(`m${i}`), eventId: `m${i}` })));
    expect(new Set(ids).size).toBe(300);
    expect(await b.depth(q)).toBe(300);
  });
});

// ---------------------------------------------------------------------------------------------------------
// Consumers: per-consumer prefetch, heartbeat
// ---------------------------------------------------------------------------------------------------------

describe('consumers and connection settings', () => {
  test('each subscription has its own per-consumer prefetch; the connection has a 30 s heartbeat', async () => {
    const q = uniqueQueue();
    cleanUpQueue(q);
    const b = await broker();
    await b.declareQueue({ name: q });
    for (let i = 0; i < 10; i++) await b.publish(q, { body: enc(`m${i}`) });
    const a = new Receiver(await b.consume(q, { prefetch: 2 }));
    const c = new Receiver(await b.consume(q, { prefetch: 5 }));

    const consumers = await eventually(
      'both consumers listed',
      async () => (await management('GET', `/api/queues/${vhostPath()}/${encodeURIComponent(q)}`)).body as { consumer_details?: Array<{ prefetch_count: number; channel_details?: { name?: string } }> },
      // Channel details fill in a little after the consumers appear.
      (info) => (info.consumer_details ?? []).length === 2 && (info.consumer_details ?? []).every((d) => typeof d.channel_details?.name === 'string'),
    );
    const details = consumers.consumer_details ?? [];
    expect(details.map((d) => d.prefetch_count).sort((x, y) => x - y)).toEqual([2, 5]);
    // Two channels, one per subscription.
    expect(new Set(details.map((d) => d.channel_details?.name)).size).toBe(2);
    // Neither holds more than its own prefetch.
    const fromA = [await a.next(), await a.next()];
    expect(await a.poll(300)).toBeUndefined();
    const fromC = [await c.next(), await c.next(), await c.next(), await c.next(), await c.next()];
    expect(await c.poll(300)).toBeUndefined();
    for (const d of [...fromA, ...fromC]) await d.ack();

    const connectionName = details[0]?.channel_details?.name?.replace(/ \(\d+\)$/, '');
    const connection = await eventually(
      'the connection listed',
      async () => (await management('GET', `/api/connections/${encodeURIComponent(connectionName ?? '')}`)).body as { timeout?: number; client_properties?: { connection_name?: string } },
      (info) => info.timeout !== undefined,
    );
    expect(connection.timeout).toBe(30);
    expect(connection.client_properties?.connection_name).toMatch(/^ewms-pilot /);
  });

  test('breaking out of a for-await loop stops intake and returns buffered messages', async () => {
    const q = uniqueQueue();
    cleanUpQueue(q);
    const b = await broker();
    await b.declareQueue({ name: q });
    for (let i = 0; i < 3; i++) await b.publish(q, { body: enc(`m${i}`), eventId: `m${i}` });
    const sub = await b.consume(q, { prefetch: 3 });
    let held: Delivery | undefined;
    for await (const d of sub) {
      held = d;
      break;
    }
    expect(held).toBeDefined();
    // The two buffered ones are back in the queue; the yielded one can still be acked.
    await eventually('buffered messages returned', () => b.depth(q), (n) => n === 2);
    await held?.ack();
    const rx = new Receiver(await b.consume(q, { prefetch: 5 }));
    const rest = [await rx.next(), await rx.next()];
    expect(rest.map((d) => d.eventId).sort()).toEqual(['m0', 'm1', 'm2'].filter((id) => id !== held?.eventId));
    for (const d of rest) await d.ack();
  });
});

// ---------------------------------------------------------------------------------------------------------
// Credentials and errors (shared broker: guest only; no users are created on it)
// ---------------------------------------------------------------------------------------------------------

describe('credentials and errors', () => {
  test('the auth token is used as the password', async () => {
    const b = await connect({ address: 'amqp://guest@127.0.0.1:5672', authToken: 'guest' });
    cleanups.push(() => b.close());
    const q = uniqueQueue();
    cleanUpQueue(q);
    await b.declareQueue({ name: q });
    await b.publish(q, { body: enc('token ok') });
    expect(await b.depth(q)).toBe(1);
  });

  test('a wrong token → BrokerAuthError at once, naming broker, address and user, never the token', async () => {
    const token = `tok-${randomUUID()}`;
    const logger = new RecordingLogger();
    const started = performance.now();
    const err = await connect({ address: 'amqp://guest@127.0.0.1:5672', authToken: token, logger, connectTimeoutMs: 8_000 }).catch((e: unknown) => e);
    expect(performance.now() - started).toBeLessThan(3_000);
    expect(err).toBeInstanceOf(BrokerAuthError);
    const e = err as BrokerAuthError;
    expect(e.message).toContain('rabbitmq');
    expect(e.message).toContain('127.0.0.1:5672');
    expect(e.message).toContain("'guest'");
    for (const text of [e.message, e.hint, String(e), e.stack ?? '', inspect(e, { depth: 10 }), logger.text()]) expect(text).not.toContain(token);
  });

  test('a wrong password in the URL → BrokerAuthError without the password', async () => {
    const password = `pw-${randomUUID()}`;
    const err = await connect({ address: `amqp://guest:${password}@127.0.0.1:5672` }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BrokerAuthError);
    expect(inspect(err, { depth: 10 })).not.toContain(password);
  });

  test('a vhost that does not exist is reported as such, not as unreachable', async () => {
    const err = await connect({ address: `amqp://guest:guest@127.0.0.1:5672/no-such-vhost-${randomUUID()}`, connectTimeoutMs: 5_000 }).catch((e: unknown) => e);
    expect((err as Error).name).toBe('BrokerConfigError');
    expect((err as Error).message).toMatch(/vhost 'no-such-vhost-/);
  });

  test('nothing listening → BrokerUnreachableError at once, saying so (no connect timeout spent on a refusal)', async () => {
    const port = await freePort();
    const err = await connect({ address: `amqp://guest:guest@127.0.0.1:${port}`, connectTimeoutMs: 60_000 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BrokerUnreachableError);
    expect((err as Error).message).toContain(`127.0.0.1:${port}`);
    expect((err as Error).message).toMatch(/ECONNREFUSED.*\(nothing listens there\)/);
  });

  test('a listener that never answers → BrokerUnreachableError within connectTimeoutMs', async () => {
    // Accepts the connection and never says a word (a host whose broker hangs).
    const sockets = new Set<Socket>();
    const silent = createTcpServer((socket) => sockets.add(socket));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => {
      for (const socket of sockets) socket.destroy();
      return new Promise<void>((resolve) => silent.close(() => resolve()));
    });
    const { port } = silent.address() as AddressInfo;
    const started = performance.now();
    const err = await connect({ address: `amqp://guest:guest@127.0.0.1:${port}`, connectTimeoutMs: 1_500 }).catch((e: unknown) => e);
    const elapsed = performance.now() - started;
    expect(err).toBeInstanceOf(BrokerUnreachableError);
    expect((err as Error).message).toContain(`127.0.0.1:${port}`);
    expect(elapsed).toBeGreaterThan(1_000); // it kept trying…
    expect(elapsed).toBeLessThan(2_500); // …but not past the timeout
  });

  test('amqps:// through amqplib\'s TLS: certificate and host name verified (TLS proxy in front of the broker)', async () => {
    // A self-signed certificate for "localhost", trusted by the client process through NODE_EXTRA_CA_CERTS.
    const dir = mkdtempSync(join(tmpdir(), 'ewms-tls-'));
    cleanups.push(async () => rmSync(dir, { recursive: true, force: true }));
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=localhost',
      '-addext', 'subjectAltName=DNS:localhost', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')], { stdio: 'ignore' });
    const amqp = new URL(AMQP_URL);
    const proxy = createTlsServer({ key: readFileSync(join(dir, 'key.pem')), cert: readFileSync(join(dir, 'cert.pem')) }, (socket) => {
      const upstream = tcpConnect({ host: amqp.hostname, port: Number(amqp.port || 5672) });
      socket.on('error', () => upstream.destroy());
      upstream.on('error', () => socket.destroy());
      socket.pipe(upstream).pipe(socket);
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => new Promise((resolve) => proxy.close(resolve)));
    const port = (proxy.address() as AddressInfo).port;
    const q = uniqueQueue();
    cleanUpQueue(q);

    const adapter = fileURLToPath(new URL('../../dist/mq-adapters/index.js', import.meta.url));
    const script = `
      import { connect } from ${JSON.stringify(adapter)};
      const [address, queue, managementUrl] = process.argv.slice(1);
      try {
        const b = await connect({ address, managementUrl, connectTimeoutMs: 5000 });
        await b.declareQueue({ name: queue });
        await b.publish(queue, { body: new TextEncoder().encode('over tls'), eventId: 'tls-1' });
        const sub = await b.consume(queue, { prefetch: 1 });
        for await (const d of sub) { await d.ack(); console.log('got ' + d.eventId); break; }
        await b.close();
      } catch (err) { console.log('error ' + err.name + ': ' + err.message); }`;
    const run = (host: string, extraCa: boolean) =>
      new Promise<string>((resolve) => {
        const child = spawn(process.execPath, ['--input-type=module', '-e', script, `amqps://guest:guest@${host}:${port}`, q, MANAGEMENT_URL], {
          env: { ...process.env, NODE_EXTRA_CA_CERTS: extraCa ? join(dir, 'cert.pem') : '' },
          stdio: ['ignore', 'pipe', 'inherit'],
        });
        let out = '';
        child.stdout.on('data', (b: Buffer) => (out += b.toString()));
        child.on('exit', () => resolve(out.trim()));
      });
    expect(await run('localhost', true)).toBe('got tls-1');
    // Not trusted, or not the name on the certificate: refused at once (no retrying), never accepted.
    const started = performance.now();
    expect(await run('localhost', false)).toMatch(/^error BrokerConfigError: the TLS certificate .*self.signed/i);
    expect(await run('127.0.0.1', true)).toMatch(/^error BrokerConfigError: the TLS certificate .*(IP|altnames)/i);
    expect(performance.now() - started).toBeLessThan(5_000);
  });

  test('management API unreachable: one warning, declareQueue still works, nothing secret in the logs', async () => {
    const port = await freePort();
    const logger = new RecordingLogger();
    const b = await broker({ managementUrl: `http://127.0.0.1:${port}`, logger });
    const [q1, q2] = [uniqueQueue(), uniqueQueue()];
    cleanUpQueue(q1);
    cleanUpQueue(q2);
    await b.declareQueue({ name: q1 });
    await b.declareQueue({ name: q2 });
    expect(logger.warnings(/dead-letter policy/)).toBe(1);
    expect((await management('GET', `/api/policies/${vhostPath()}/${encodeURIComponent(policyName(q1))}`)).status).toBe(404);
    await b.publish(q1, { body: enc('fine') });
    expect(await b.depth(q1)).toBe(1);
  });
});

// ---------------------------------------------------------------------------------------------------------
// A private node: users, killed connections, a broker that goes away
// ---------------------------------------------------------------------------------------------------------

describe('private RabbitMQ node', () => {
  let node: PrivateBroker;
  const port = () => node.port;
  const url = (user = 'guest', password = 'guest') => `amqp://${user}:${password}@127.0.0.1:${port()}`;
  const privateBroker = async (options: Partial<ConnectOptions> = {}) => {
    const b = await connect({ address: url(), managementUrl: node.managementUrl, ...options });
    cleanups.push(() => b.close());
    return b;
  };
  const admin = (method: 'GET' | 'PUT' | 'DELETE', path: string, body?: unknown) => management(method, path, { base: node.managementUrl, body });

  /** Below the 128 MiB default, so a broker-side refusal can be tested with a few MB. */
  const NODE_MAX_MESSAGE_BYTES = 4 * 1024 * 1024;

  beforeAll(async () => {
    node = await startPrivateRabbitMQ({ maxMessageBytes: NODE_MAX_MESSAGE_BYTES });
  }, 60_000);
  afterAll(async () => node?.dispose());

  test('a broker configured below the default size limit refuses a 5 MB message → MessageTooLargeError with its limit; nothing stored; publishing goes on', async () => {
    const b = await privateBroker();
    const q = uniqueQueue();
    await b.declareQueue({ name: q });
    cleanups.push(() => b.deleteQueue(q));
    const err = await b.publish(q, { body: new Uint8Array(5 * 1024 * 1024), eventId: 'big' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MessageTooLargeError);
    expect((err as MessageTooLargeError).limit).toBe(NODE_MAX_MESSAGE_BYTES);
    expect((err as MessageTooLargeError).bytes).toBe(5 * 1024 * 1024);
    expect(await b.depth(q)).toBe(0);
    // The refused publish closed its channel; the next one opens another.
    await b.publish(q, { body: enc('small'), eventId: 'small' });
    expect(await b.depth(q)).toBe(1);
  });

  test('a message over the limit among others in flight: only it is refused; the others, caught by the closed channel, are stored', async () => {
    const b = await privateBroker();
    const q = uniqueQueue();
    await b.declareQueue({ name: q });
    cleanups.push(() => b.deleteQueue(q));
    const small = Array.from({ length: 50 }, (_, i) => `s${i}`);
    const sends = [
      ...small.slice(0, 25).map((id) => b.publish(q, { body: enc(id), eventId: id })),
      b.publish(q, { body: new Uint8Array(NODE_MAX_MESSAGE_BYTES + 1), eventId: 'big' }),
      ...small.slice(25).map((id) => b.publish(q, { body: enc(id), eventId: id })),
    ];
    const settled = await Promise.allSettled(sends);
    const refused = settled.flatMap((r, i) => (r.status === 'rejected' ? [{ i, err: r.reason as unknown }] : []));
    expect(refused.map((r) => r.i)).toEqual([25]);
    expect(refused[0]!.err).toBeInstanceOf(MessageTooLargeError);
    // Every small one arrives (one sent again after the close may arrive twice: at-least-once).
    const rx = new Receiver(await b.consume(q, { prefetch: 100 }));
    const seen = new Set<string>();
    while (seen.size < small.length) {
      const d = await rx.next(10_000);
      seen.add(d.eventId);
      await d.ack();
    }
    expect([...seen].sort()).toEqual([...small].sort());
  });

  test('a token-only user ("" + token, as the Python client sends) and a user without policy rights', async () => {
    const token = `tok-${randomUUID()}`;
    // A user without tags may use its vhost but not write policies.
    expect((await admin('PUT', '/api/users/ewms-plain', { password: token, tags: '' })).status).toBeLessThan(300);
    expect((await admin('PUT', '/api/permissions/%2F/ewms-plain', { configure: '.*', write: '.*', read: '.*' })).status).toBeLessThan(300);
    cleanups.push(() => admin('DELETE', '/api/users/ewms-plain'));

    const logger = new RecordingLogger();
    const b = await connect({ address: `amqp://ewms-plain@127.0.0.1:${port()}`, authToken: token, managementUrl: node.managementUrl, logger });
    cleanups.push(() => b.close());
    const q = uniqueQueue();
    await b.declareQueue({ name: q });
    cleanups.push(() => b.deleteQueue(q));
    await b.publish(q, { body: enc('no policy rights') });
    expect(await b.depth(q)).toBe(1);
    // Refused (not administrator/policymaker): one warning, and the token is nowhere in the logs.
    expect(logger.warnings(/dead-letter policy/)).toBe(1);
    expect(logger.text()).not.toContain(token);
    expect((await admin('GET', `/api/policies/%2F/${encodeURIComponent(policyName(q))}`)).status).toBe(404);

    // With the policymaker tag, the same credentials install it.
    expect((await admin('PUT', '/api/users/ewms-plain', { password: token, tags: 'policymaker' })).status).toBeLessThan(300);
    const b2 = await connect({ address: `amqp://ewms-plain@127.0.0.1:${port()}`, authToken: token, managementUrl: node.managementUrl });
    cleanups.push(() => b2.close());
    await b2.declareQueue({ name: q });
    expect((await admin('GET', `/api/policies/%2F/${encodeURIComponent(policyName(q))}`)).status).toBe(200);
  });

  test('a connection the broker closes: the consumer resumes, stale deliveries settle quietly, nothing is lost', async () => {
    const logger = new RecordingLogger();
    const b = await privateBroker({ logger, reconnectWindowMs: 20_000 });
    const q = uniqueQueue();
    await b.declareQueue({ name: q });
    cleanups.push(() => b.deleteQueue(q));
    for (let i = 0; i < 3; i++) await b.publish(q, { body: enc(`m${i}`), eventId: `m${i}` });
    const rx = new Receiver(await b.consume(q, { prefetch: 1 }));
    const stale = await rx.next();
    expect(stale.deliveryCount).toBe(1);
    expect(stale.eventId).toBe('m0');

    // Close every client connection from the broker side (a network cut, an operator, a node failover),
    // with publishes in flight.
    const connections = await eventually(
      'our connection listed',
      async () => (await admin('GET', '/api/connections')).body as Array<{ name: string }>,
      (list) => list.length > 0,
    );
    const inFlight = Array.from({ length: 200 }, (_, i) => b.publish(q, { body: enc(`f${i}`), eventId: `f${i}` }).then(() => true, () => false));
    for (const c of connections) await admin('DELETE', `/api/connections/${encodeURIComponent(c.name)}`);
    const outcomes = await Promise.all(inFlight);

    // Settling a delivery of the dead connection neither throws nor loses it.
    await eventually('the adapter to notice', async () => logger.warnings(/connection lost/), (n) => n > 0);
    await expect(stale.ack()).resolves.toBeUndefined();

    // Retried over the new connection, not reported as confirmed without the broker's word.
    expect(outcomes.every(Boolean)).toBe(true);

    // The consumer resumes on the new connection and gets everything (duplicates of publishes that were
    // stored but whose confirm was lost are allowed), the stale one again with count 2.
    const expected = new Set([...['m0', 'm1', 'm2'], ...outcomes.map((_, i) => `f${i}`)]);
    const got = new Map<string, number>();
    while ([...expected].some((id) => !got.has(id))) {
      const d = await rx.next(15_000);
      if (!got.has(d.eventId)) got.set(d.eventId, d.deliveryCount);
      await d.ack();
    }
    expect(got.get(stale.eventId)).toBe(2);
    // And publishing works on the new connection.
    await b.publish(q, { body: enc('after'), eventId: 'after' });
    for (;;) {
      const d = await rx.next();
      await d.ack();
      if (d.eventId === 'after') break;
      expect(expected.has(d.eventId)).toBe(true); // a duplicate, nothing else
    }
  });

  test('a broker that stays away beyond reconnectWindowMs: pending publish and the iteration fail with BrokerConnectionLostError', async () => {
    const b = await privateBroker({ reconnectWindowMs: 3_000 });
    const q = uniqueQueue();
    await b.declareQueue({ name: q });
    await b.publish(q, { body: enc('stored') });
    const rx = new Receiver(await b.consume(q, { prefetch: 1 }));
    (await rx.next()).ack().catch(() => undefined);

    await node.stop();
    try {
      const started = performance.now();
      const publish = b.publish(q, { body: enc('never stored') }).then(
        () => 'confirmed',
        (e: unknown) => e,
      );
      const failure = await rx.failure(15_000);
      expect(failure).toBeInstanceOf(BrokerConnectionLostError);
      const outcome = await publish;
      expect(outcome).toBeInstanceOf(BrokerConnectionLostError);
      expect(performance.now() - started).toBeLessThan(10_000);
      await expect(b.depth(q)).rejects.toBeInstanceOf(BrokerConnectionLostError);
    } finally {
      await node.start();
    }
  });
});
