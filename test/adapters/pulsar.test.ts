/**
 * Pulsar, as far as it can be tested without a Pulsar broker (none can run here, and `pulsar-client`
 * cannot install here: its native library download is refused):
 * - a missing or broken `pulsar-client` gives an AdapterUnavailableError that says so and how to fix it;
 * - RabbitMQ and NATS never load the Pulsar adapter nor `pulsar-client` (checked with a module hook in a
 *   child process that runs the built package against the real brokers);
 * - the adapter's own logic (subscription layout, event ids, prefetch, nack/dead-letter, close) against an
 *   in-memory fake of the client API (pulsar-fake.ts).
 * What remains unverified is the real client and broker: see the README.
 */
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, describe, expect, test } from 'vitest';
import { AdapterUnavailableError, connect, resolveAddress } from '../../mq-adapters/index.js';
import { SUBSCRIPTION_NAME, connectPulsarWith, loadPulsarClient } from '../../mq-adapters/pulsar/index.js';
import { HEADERS, type Broker, type ConnectOptions, type Delivery } from '../../mq-adapters/types.js';
import { sharedTargets } from '../helpers/brokers.js';
import { FakePulsar } from './pulsar-fake.js';

const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
const dec = (b: Uint8Array): string => new TextDecoder().decode(b);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Is `pulsar-client` importable on this machine? (It is not on the project's machines.) */
const pulsarInstalled = await import('pulsar-client' as string).then(
  () => true,
  () => false,
);

describe('pulsar-client missing or broken', () => {
  test.skipIf(pulsarInstalled)('connect() to pulsar:// → AdapterUnavailableError: not installed, and how to install it', async () => {
    const err = await connect({ address: 'pulsar://127.0.0.1:6650', authToken: 'tok-secret-123' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AdapterUnavailableError);
    const e = err as AdapterUnavailableError;
    expect(e.message).toContain("the Pulsar adapter needs the optional package 'pulsar-client', which is not installed");
    expect(e.hint).toContain("npm install pulsar-client");
    expect(e.hint).toContain('RabbitMQ (amqp://) and NATS (nats://) need nothing extra');
    expect(String(e)).not.toContain('tok-secret-123');
  });

  test('installed but its native library does not load → says that, with the loader error', async () => {
    const nativeFailure = Object.assign(new Error('libpulsar.so.3: cannot open shared object file: No such file or directory'), { code: 'ERR_DLOPEN_FAILED' });
    const err = await loadPulsarClient(async () => Promise.reject(nativeFailure)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AdapterUnavailableError);
    expect((err as Error).message).toContain("the optional package 'pulsar-client' is installed but could not be loaded");
    expect((err as Error).message).toContain('libpulsar.so.3: cannot open shared object file');
    expect((err as AdapterUnavailableError).hint).toContain('npm install pulsar-client');
  });

  test('a module that is not the Pulsar client (no Client export) is refused', async () => {
    const err = await loadPulsarClient(async () => ({ default: {} })).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AdapterUnavailableError);
    expect((err as Error).message).toMatch(/does not look like the Pulsar Node client/);
  });

  test('both module shapes load: CommonJS default export and named exports', async () => {
    const fake = new FakePulsar().module();
    expect(await loadPulsarClient(async () => ({ default: fake }))).toBe(fake);
    expect((await loadPulsarClient(async () => fake)).Client).toBe(fake.Client);
  });
});

describe('RabbitMQ and NATS never load the Pulsar adapter or pulsar-client', () => {
  const root = fileURLToPath(new URL('../../', import.meta.url));
  const dir = mkdtempSync(join(tmpdir(), 'ewms-pulsar-load-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  /** Run the built package in a child with a resolve hook that logs every Pulsar-related module it loads. */
  async function loadedModules(alsoPulsar: boolean): Promise<{ loaded: string[]; stdout: string }> {
    const log = join(dir, `loads-${randomUUID()}.log`);
    writeFileSync(log, '');
    const hooks = join(dir, 'hooks.mjs');
    writeFileSync(
      hooks,
      [
        "import { appendFileSync } from 'node:fs';",
        'export async function resolve(specifier, context, next) {',
        `  if (specifier === 'pulsar-client') appendFileSync(${JSON.stringify(log)}, 'pulsar-client\\n');`,
        '  const result = await next(specifier, context);',
        `  if (result.url.includes('/mq-adapters/pulsar/')) appendFileSync(${JSON.stringify(log)}, result.url + '\\n');`,
        '  return result;',
        '}',
      ].join('\n'),
    );
    const targets = sharedTargets().filter((t) => t.available && t.type !== 'pulsar') as Array<{ url: string }>;
    const script = `
      import { register } from 'node:module';
      register(${JSON.stringify(pathToFileURL(hooks).href)});
      const { connect } = await import(${JSON.stringify(pathToFileURL(join(root, 'dist/mq-adapters/index.js')).href)});
      for (const address of ${JSON.stringify(targets.map((t) => t.url))}) {
        const broker = await connect({ address });
        const q = 'pulsar-load-check-' + Math.random().toString(36).slice(2);
        await broker.declareQueue({ name: q });
        await broker.publish(q, { body: new Uint8Array([1]) });
        const sub = await broker.consume(q, { prefetch: 1 });
        const { value } = await sub[Symbol.asyncIterator]().next();
        await value.ack();
        await sub.close();
        await broker.deleteQueue(q);
        await broker.close();
        console.log('used ' + broker.type);
      }
      if (${alsoPulsar}) {
        const err = await connect({ address: 'pulsar://127.0.0.1:6650' }).catch((e) => e);
        console.log('pulsar: ' + (err && err.name));
      }
    `;
    const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script], { cwd: root, timeout: 30_000 });
    return { loaded: readFileSync(log, 'utf8').split('\n').filter(Boolean), stdout };
  }

  test('connect, declare, publish, consume and ack on both: no Pulsar module is resolved', async () => {
    const { loaded, stdout } = await loadedModules(false);
    expect(stdout).toContain('used rabbitmq');
    expect(stdout).toContain('used nats');
    expect(loaded).toEqual([]);
  });

  test('control: the same hook does see the Pulsar adapter and pulsar-client once pulsar:// is used', async () => {
    const { loaded, stdout } = await loadedModules(true);
    expect(loaded.some((url) => url.endsWith('/mq-adapters/pulsar/index.js'))).toBe(true);
    expect(loaded).toContain('pulsar-client');
    if (!pulsarInstalled) expect(stdout).toContain('pulsar: AdapterUnavailableError');
  });
});

describe('the Pulsar adapter against an in-memory fake of pulsar-client', () => {
  const brokers: Broker[] = [];
  afterAll(async () => {
    for (const b of brokers) await b.close().catch(() => undefined);
  });

  async function open(options: Partial<ConnectOptions> = {}): Promise<{ fake: FakePulsar; broker: Broker }> {
    const fake = new FakePulsar();
    const full: ConnectOptions = { address: 'pulsar://pulsar.example:6650', ...options };
    const broker = await connectPulsarWith(async () => fake.module(), resolveAddress(full), full);
    brokers.push(broker);
    return { fake, broker };
  }

  /** The next delivery, or undefined when none comes within `ms`. */
  async function nextWithin(it: AsyncIterator<Delivery>, pending: { p?: Promise<IteratorResult<Delivery>> }, ms: number): Promise<Delivery | undefined> {
    pending.p ??= it.next();
    const r = await Promise.race([pending.p, sleep(ms).then(() => 'timeout' as const)]);
    if (r === 'timeout') return undefined;
    pending.p = undefined;
    return r.done ? undefined : r.value;
  }

  test('the client gets the service URL without credentials, and the token through AuthenticationToken', async () => {
    const { fake } = await open({ address: 'pulsar+ssl://user:url-pw@pulsar.example', authToken: 'jwt-token' });
    expect(fake.clients[0]!.config.serviceUrl).toBe('pulsar+ssl://pulsar.example:6651');
    expect(fake.tokens).toEqual(['jwt-token']);
    const noToken = await open({ address: 'pulsar://pulsar.example' });
    expect(noToken.fake.tokens).toEqual([]);
    expect(noToken.fake.clients[0]!.config.authentication).toBeUndefined();
  });

  test('declareQueue creates the Python MQClient\'s shared subscription on the queue and its DLQ, so nothing published before a consumer is lost', async () => {
    const { fake, broker } = await open();
    await broker.declareQueue({ name: 'jobs' });
    expect(SUBSCRIPTION_NAME).toBe('i3-pulsar-sub');
    expect([...fake.topic('jobs').subscriptions.keys()]).toEqual(['i3-pulsar-sub']);
    expect([...fake.topic('jobs.dlq').subscriptions.keys()]).toEqual(['i3-pulsar-sub']);
    expect(fake.consumers.every((c) => c.closed && c.config.subscriptionType === 'Shared' && c.config.subscriptionInitialPosition === 'Earliest')).toBe(true);

    await broker.publish('jobs', { body: enc('early'), eventId: 'e1' });
    expect(fake.topic('jobs').lostForNoSubscription).toBe(0);
    const sub = await broker.consume('jobs', { prefetch: 1 });
    const d = (await sub[Symbol.asyncIterator]().next()).value as Delivery;
    expect(d.eventId).toBe('e1');
    await d.ack();
    await sub.close();
  });

  test('round trip: body, headers and event id (a message property, not a header); deliveryCount 1', async () => {
    const { fake, broker } = await open();
    await broker.declareQueue({ name: 'rt' });
    const id = await broker.publish('rt', { body: enc('hello'), headers: { 'x-app': 'v', traceparent: 't' }, eventId: 'ev-1' });
    expect(id).toBe('ev-1');
    expect(fake.producers[0]!.topic).toBe('rt');
    const sub = await broker.consume('rt', { prefetch: 1 });
    const d = (await sub[Symbol.asyncIterator]().next()).value as Delivery;
    expect(dec(d.body)).toBe('hello');
    expect(d.headers).toEqual({ 'x-app': 'v', traceparent: 't' });
    expect(d.eventId).toBe('ev-1');
    expect(d.deliveryCount).toBe(1);
    await d.ack();
    expect(fake.subscription('rt', SUBSCRIPTION_NAME).acked.map((s) => s.properties[HEADERS.eventId])).toEqual(['ev-1']);
    await sub.close();
  });

  test('a message without our event id (e.g. from the Python MQClient) gets sha256 of its body', async () => {
    const { fake, broker } = await open();
    await broker.declareQueue({ name: 'py' });
    fake.publish('py', Buffer.from('from python'), {});
    const sub = await broker.consume('py', { prefetch: 1 });
    const d = (await sub[Symbol.asyncIterator]().next()).value as Delivery;
    expect(d.eventId).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(d.headers).toEqual({});
    await d.ack();
    await sub.close();
  });

  test('prefetch bounds what is in hand: the consumer asks for one message per free slot', async () => {
    const { fake, broker } = await open();
    await broker.declareQueue({ name: 'pf' });
    for (let i = 0; i < 5; i++) await broker.publish('pf', { body: enc(`m${i}`), eventId: `m${i}` });
    const sub = await broker.consume('pf', { prefetch: 2 });
    const consumer = fake.consumers.at(-1)!;
    expect(consumer.config.receiverQueueSize).toBe(2);
    const it = sub[Symbol.asyncIterator]();
    const pending: { p?: Promise<IteratorResult<Delivery>> } = {};
    const a = await nextWithin(it, pending, 1_000);
    const b = await nextWithin(it, pending, 1_000);
    expect([a?.eventId, b?.eventId]).toEqual(['m0', 'm1']);
    expect(await nextWithin(it, pending, 200)).toBeUndefined();
    expect(consumer.unacked.size).toBe(2);
    await a!.ack();
    const c = await nextWithin(it, pending, 1_000);
    expect(c?.eventId).toBe('m2');
    expect(consumer.unacked.size).toBe(2);
    await b!.ack();
    await c!.ack();
    await sub.close();
  });

  test('nack redelivers with deliveryCount + 1; a nack on the last allowed delivery dead-letters with the reason', async () => {
    const { fake, broker } = await open();
    await broker.declareQueue({ name: 'nk', maxDeliveries: 2 });
    await broker.publish('nk', { body: enc('poison'), eventId: 'p1', headers: { origin: 'test' } });
    const sub = await broker.consume('nk', { prefetch: 1, maxDeliveries: 2 });
    const it = sub[Symbol.asyncIterator]();
    const first = (await it.next()).value as Delivery;
    expect(first.deliveryCount).toBe(1);
    await first.nack();
    const second = (await it.next()).value as Delivery;
    expect(second.eventId).toBe('p1');
    expect(second.deliveryCount).toBe(2);
    await second.nack();
    await sleep(20);
    const dlq = fake.subscription('nk.dlq', SUBSCRIPTION_NAME).backlog;
    expect(dlq).toHaveLength(1);
    expect(dlq[0]!.properties).toMatchObject({
      origin: 'test',
      [HEADERS.eventId]: 'p1',
      [HEADERS.deadLetterReason]: 'delivery limit reached: nacked on attempt 2 of 2',
      [HEADERS.deadLetterSource]: 'nk',
      [HEADERS.deadLetterDeliveries]: '2',
    });
    expect(fake.subscription('nk', SUBSCRIPTION_NAME).backlog).toHaveLength(0);
    await sub.close();
  });

  test('the broker-side dead-letter policy is one above the client-side limit and keeps the DLQ subscribed', async () => {
    const { fake, broker } = await open();
    await broker.declareQueue({ name: 'pol', maxDeliveries: 4 });
    const sub = await broker.consume('pol', { prefetch: 3, maxDeliveries: 4 });
    expect(fake.consumers.at(-1)!.config.deadLetterPolicy).toEqual({ deadLetterTopic: 'pol.dlq', maxRedeliverCount: 5, initialSubscriptionName: SUBSCRIPTION_NAME });
    await sub.close();
  });

  test('a consumer that dies holding its last allowed delivery: the next delivery goes to the DLQ, never to user code', async () => {
    const { fake, broker } = await open();
    await broker.declareQueue({ name: 'die', maxDeliveries: 1 });
    await broker.publish('die', { body: enc('x'), eventId: 'held' });
    // A pilot takes it and dies: its connection closes without an ack.
    const sub1 = await broker.consume('die', { prefetch: 1, maxDeliveries: 1 });
    const d1 = (await sub1[Symbol.asyncIterator]().next()).value as Delivery;
    expect(d1.deliveryCount).toBe(1);
    await fake.consumers.at(-1)!.close(); // the connection dropped under it
    const sub2 = await broker.consume('die', { prefetch: 1, maxDeliveries: 1 });
    const it2 = sub2[Symbol.asyncIterator]();
    const pending: { p?: Promise<IteratorResult<Delivery>> } = {};
    expect(await nextWithin(it2, pending, 300)).toBeUndefined();
    const dead = fake.subscription('die.dlq', SUBSCRIPTION_NAME).backlog;
    expect(dead).toHaveLength(1);
    expect(dead[0]!.properties[HEADERS.deadLetterReason]).toMatch(/^delivery limit exceeded: attempt 2 of 1/);
    await sub2.close();
    await sub1.close();
  });

  test('close(): buffered messages go back, the consumer closes once what was yielded is settled, producers are flushed', async () => {
    const { fake, broker } = await open();
    await broker.declareQueue({ name: 'cl' });
    await broker.publish('cl', { body: enc('a'), eventId: 'a' });
    const sub = await broker.consume('cl', { prefetch: 1 });
    const consumer = fake.consumers.at(-1)!;
    const d = (await sub[Symbol.asyncIterator]().next()).value as Delivery;
    await sub.close();
    expect(consumer.closed).toBe(false); // still needed to ack what is in hand
    await d.ack();
    await sleep(10);
    expect(consumer.closed).toBe(true);
    expect(fake.subscription('cl', SUBSCRIPTION_NAME).acked).toHaveLength(1);
    await broker.close();
    expect(fake.producers.every((p) => p.flushed && p.closed)).toBe(true);
    expect(fake.clients.every((c) => c.closed)).toBe(true);
  });

  test('release() uses no attempt: released 4 times on a limit of 2, still attempt 1; nack(failure) carries the failure', async () => {
    const { fake, broker } = await open();
    await broker.declareQueue({ name: 'ev', maxDeliveries: 2 });
    await broker.publish('ev', { body: enc('evicted'), eventId: 'ev1', headers: { origin: 'test' } });
    const sub = await broker.consume('ev', { prefetch: 1, maxDeliveries: 2 });
    const it = sub[Symbol.asyncIterator]();
    for (let i = 0; i < 4; i++) {
      const d = (await it.next()).value as Delivery;
      expect([d.eventId, d.deliveryCount, d.headers]).toEqual(['ev1', 1, { origin: 'test' }]);
      await d.release();
    }
    const d = (await it.next()).value as Delivery;
    await d.nack({ reason: 'task exited with code 3' });
    const again = (await it.next()).value as Delivery;
    expect(again.deliveryCount).toBe(2);
    expect(again.lastFailure).toEqual({ reason: 'task exited with code 3' });
    await again.nack();
    await sleep(20);
    const dead = fake.subscription('ev.dlq', SUBSCRIPTION_NAME).backlog;
    expect(dead).toHaveLength(1);
    expect(dead[0]!.properties[HEADERS.deadLetterReason]).toBe('task exited with code 3');
    await sub.close();
  });

  test('leaving a for-await loop early gives back what was buffered and stops receiving', async () => {
    const { fake, broker } = await open();
    await broker.declareQueue({ name: 'brk' });
    for (const id of ['b1', 'b2', 'b3', 'b4']) await broker.publish('brk', { body: enc(id), eventId: id });
    const sub = await broker.consume('brk', { prefetch: 3 });
    const consumer = fake.consumers.at(-1)!;
    for await (const d of sub) {
      await sleep(20); // the other two reach the buffer
      await d.ack();
      break;
    }
    await sleep(50);
    expect(consumer.closed).toBe(true);
    const calls = consumer.receiveCalls;
    await sleep(100);
    expect(consumer.receiveCalls).toBe(calls);
    const again = await broker.consume('brk', { prefetch: 10 });
    const it = again[Symbol.asyncIterator]();
    const got: Delivery[] = [];
    for (let i = 0; i < 3; i++) got.push((await it.next()).value as Delivery);
    expect(got.map((d) => d.eventId).sort()).toEqual(['b2', 'b3', 'b4']);
    // What sat in the client's receiver queue when the consumer closed comes back with Pulsar's redelivery
    // count raised (b4, and the copies of b2 and b3 if they were dispatched there): one attempt at most.
    expect(Math.max(...got.map((d) => d.deliveryCount))).toBeLessThanOrEqual(2);
    for (const d of got) await d.ack();
    expect(await nextWithin(it, {}, 100)).toBeUndefined();
    await again.close();
  });

  test('several brokers in one address become one multi-host service URL', async () => {
    const { fake } = await open({ address: 'pulsar://p1:6650,p2:6651,p3' });
    expect(fake.clients.at(-1)!.config.serviceUrl).toBe('pulsar://p1:6650,p2:6651,p3:6650');
  });

  test('a failed send rejects the publish (no silent success)', async () => {
    const { fake, broker } = await open();
    await broker.declareQueue({ name: 'fail' });
    fake.failSends = 'Pulsar error: TimeOut';
    await expect(broker.publish('fail', { body: enc('x') })).rejects.toThrow(/TimeOut/);
  });
});
