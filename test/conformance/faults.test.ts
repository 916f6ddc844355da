/**
 * Conformance, faults: a consumer process that dies without acking, wrong credentials, an unreachable
 * broker. (Broker restarts are in restart.test.ts: they need private brokers and take longer.)
 */
import { spawn } from 'node:child_process';
import { createServer, type Server, type Socket } from 'node:net';
import { inspect } from 'node:util';
import { fileURLToPath } from 'node:url';
import { expect, test } from 'vitest';
import { connect, resolveAddress } from '../../mq-adapters/index.js';
import { BrokerAuthError, BrokerUnreachableError } from '../../mq-adapters/errors.js';
import { HEADERS, type ConnectOptions, type ConsumeOptions, type Delivery } from '../../mq-adapters/types.js';
import { freePort } from '../helpers/brokers.js';
import { Resources, enc, eventually } from './harness.js';
import { forEachTarget, testWith } from './targets.js';

const HOLDER = fileURLToPath(new URL('../helpers/consume-and-hold.mjs', import.meta.url));
/** NATS gives a dead consumer's messages to others only when their lease (AckWait) runs out: keep it short. */
const LEASE_MS = 2_000;

interface Held {
  eventId: string;
  deliveryCount: number;
}

/**
 * Run a consumer in a child process (the built adapter, as a pilot runs it), let it take `take`
 * deliveries without settling them, then SIGKILL it: the broker sees the connection drop, not a close.
 */
async function consumeInChildAndDie(connectOptions: ConnectOptions, queue: string, take: number, consume: ConsumeOptions): Promise<Held[]> {
  const child = spawn(process.execPath, [HOLDER, JSON.stringify({ connect: connectOptions, queue, take, consume })], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr.on('data', (b: Buffer) => (err += b.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  try {
    await eventually(
      'the child consumer to hold its messages',
      async () => out,
      (text) => text.includes('holding\n') || text.includes('error ') || child.exitCode !== null,
      20_000,
    );
    if (!out.includes('holding\n')) throw new Error(`child consumer failed: ${out}${err}`);
  } finally {
    child.kill('SIGKILL');
    await exited;
  }
  return out
    .split('\n')
    .filter((line) => line.startsWith('held '))
    .map((line) => JSON.parse(line.slice('held '.length)) as Held);
}

/** A TCP listener that accepts connections and never says a word (a hung broker, a black-holing proxy). */
async function silentListener(): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => undefined);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** The target's URL pointing at another port on 127.0.0.1. */
function urlWithPort(url: string, port: number): string {
  const u = new URL(url);
  u.hostname = '127.0.0.1';
  u.port = String(port);
  return u.toString();
}

forEachTarget('faults', (target) => {
  const res = new Resources({ address: target.url });

  test('a consumer killed (SIGKILL) without acking: its messages go to another consumer with deliveryCount 2', async () => {
    const broker = await res.connect();
    const q = await res.queue(broker);
    const ids = ['job0', 'job1', 'job2', 'job3'];
    for (const id of ids) await broker.publish(q, { body: enc(id), eventId: id });

    const held = await consumeInChildAndDie({ address: target.url }, q, 2, { prefetch: 2, leaseMs: LEASE_MS });
    expect(held).toHaveLength(2);
    expect(held.map((h) => h.deliveryCount)).toEqual([1, 1]);

    const rx = await res.consume(broker, q, { prefetch: 10, leaseMs: LEASE_MS });
    const got = await rx.take(4, LEASE_MS + 10_000);
    const count = Object.fromEntries(got.map((d) => [d.eventId, d.deliveryCount]));
    const heldIds = new Set(held.map((h) => h.eventId));
    expect(count).toEqual(Object.fromEntries(ids.map((id) => [id, heldIds.has(id) ? 2 : 1])));
    for (const d of got) await d.ack();
    expect(await rx.poll(500)).toBeUndefined();
    await eventually('depth after acking all', () => broker.depth(q), (n) => n === 0);
  }, 60_000);

  test('a real failure, then consumers SIGKILLed holding the event until the limit: the dead letter names that failure', async () => {
    const broker = await res.connect();
    const q = await res.queue(broker, { maxDeliveries: 2 });
    await broker.publish(q, { body: enc('fails, then kills its pilots'), eventId: 'mixed' });
    const rx = await res.consume(broker, q, { prefetch: 1, maxDeliveries: 2, leaseMs: LEASE_MS });
    const first = await rx.next();
    expect(first.deliveryCount).toBe(1);
    await first.nack({ reason: 'task exited with code 3', details: { 'stderr-tail': 'ValueError: bad pixel' } });
    // The retry must go to the pilot that is about to die, not back to this one.
    await rx.subscription.close();

    const held = await consumeInChildAndDie({ address: target.url }, q, 1, { prefetch: 1, maxDeliveries: 2, leaseMs: LEASE_MS });
    expect(held).toEqual([{ eventId: 'mixed', deliveryCount: 2 }]);

    await res.consume(broker, q, { prefetch: 1, maxDeliveries: 2, leaseMs: LEASE_MS });
    await eventually('DLQ depth', () => broker.depth(`${q}.dlq`), (n) => n === 1, LEASE_MS + 10_000);
    const dlq = await res.consume(broker, `${q}.dlq`, { prefetch: 1 });
    const dead = await dlq.next();
    expect(dead.eventId).toBe('mixed');
    expect(dead.headers[HEADERS.deadLetterReason]).toBe('task exited with code 3');
    expect(dead.headers['x-ewms-dlq-stderr-tail']).toBe('ValueError: bad pixel');
    expect(dead.headers['x-ewms-dlq-delivery-limit']).toMatch(/^exceeded: attempt 3 of 2 \(a consumer died/);
    expect(dead.headers[HEADERS.deadLetterDeliveries]).toBe('3');
  }, 60_000);

  test('a consumer that died holding the last allowed delivery: the next delivery goes to the DLQ, not to user code', async () => {
    const broker = await res.connect();
    const q = await res.queue(broker, { maxDeliveries: 1 });
    await broker.publish(q, { body: enc('crashes every pilot'), eventId: 'crasher', headers: { origin: 'test' } });

    const held = await consumeInChildAndDie({ address: target.url }, q, 1, { prefetch: 1, maxDeliveries: 1, leaseMs: LEASE_MS });
    expect(held).toEqual([{ eventId: 'crasher', deliveryCount: 1 }]);

    const rx = await res.consume(broker, q, { prefetch: 1, maxDeliveries: 1, leaseMs: LEASE_MS });
    await eventually('DLQ depth', () => broker.depth(`${q}.dlq`), (n) => n === 1, LEASE_MS + 10_000);
    await eventually('main queue depth', () => broker.depth(q), (n) => n === 0);
    // The receiver kept asking all along: anything yielded meanwhile shows up here at once.
    const yielded: Delivery | undefined = await rx.poll(300);
    expect(yielded?.eventId).toBeUndefined();

    const dlq = await res.consume(broker, `${q}.dlq`, { prefetch: 1 });
    const dead = await dlq.next();
    expect(dead.eventId).toBe('crasher');
    expect(dead.headers.origin).toBe('test');
    expect(dead.headers[HEADERS.deadLetterReason]).toMatch(/^delivery limit exceeded/);
    expect(dead.headers[HEADERS.deadLetterSource]).toBe(q);
    expect(dead.headers[HEADERS.deadLetterDeliveries]).toBe('2');
    await dead.ack();
  }, 60_000);

  for (const form of target.credentialForms) {
    testWith(`wrong credentials (${form}) → BrokerAuthError naming the broker, never the secret`, target.wrongCredentials, async (setUp) => {
      const secret = `s3cret-${Math.random().toString(36).slice(2)}`;
      const check = await setUp(form, secret);
      res.onCleanup(() => check.dispose());
      const started = performance.now();
      const err = await connect({ ...check.options, connectTimeoutMs: 5_000 }).catch((e: unknown) => e);
      const elapsed = performance.now() - started;

      expect(err).toBeInstanceOf(BrokerAuthError);
      const authError = err as BrokerAuthError;
      expect(authError.message).toContain(target.type);
      expect(authError.message).toContain(resolveAddress(check.options).display.replace(/^\w+:\/\//, ''));
      if (check.user !== undefined) expect(authError.message).toContain(check.user);
      // Not in the message, the hint, the printed form, nor anywhere in the cause chain a logger would print.
      for (const text of [authError.message, authError.hint, String(authError), authError.stack ?? '', inspect(authError, { depth: 10 }), JSON.stringify(authError)]) {
        expect(text).not.toContain(secret);
      }
      // Refused at once, not after retrying until the connect timeout.
      expect(elapsed).toBeLessThan(5_000);

      // The broker refuses the secret, not everyone.
      const ok = await connect(check.rightOptions);
      await ok.close();
    });
  }

  test('unreachable broker (closed port) → BrokerUnreachableError within the connect timeout', async () => {
    const port = await freePort();
    const started = performance.now();
    const err = await connect({ address: urlWithPort(target.url, port), connectTimeoutMs: 2_000 }).catch((e: unknown) => e);
    const elapsed = performance.now() - started;
    expect(err).toBeInstanceOf(BrokerUnreachableError);
    expect((err as Error).message).toContain(target.type);
    expect((err as Error).message).toContain(`127.0.0.1:${port}`);
    expect(elapsed).toBeLessThan(5_000);
  });

  test('a broker that accepts TCP but never answers → BrokerUnreachableError within the connect timeout', async () => {
    const silent = await silentListener();
    res.onCleanup(() => silent.close());
    const started = performance.now();
    const err = await connect({ address: urlWithPort(target.url, silent.port), connectTimeoutMs: 2_000 }).catch((e: unknown) => e);
    const elapsed = performance.now() - started;
    expect(err).toBeInstanceOf(BrokerUnreachableError);
    expect((err as Error).message).toContain(target.type);
    expect(elapsed).toBeLessThan(5_000);
  });
});
