/**
 * Pulsar queue depth and topic deletion through the admin REST API, against a stand-in that answers as
 * the broker's `admin/v2/PersistentTopics` resource does (pulsar-admin-standin.ts) over the in-memory
 * Pulsar fake: the backlog of the shared subscription counts waiting, prefetched and unacked messages;
 * refusals name the permission; a 307 is followed to the broker that serves the topic; the token is sent
 * as a bearer token and never appears in an error. No Pulsar broker runs here.
 */
import { afterEach, describe, expect, test } from 'vitest';
import { QueueNotFoundError, resolveAddress } from '../../mq-adapters/index.js';
import { PulsarAdmin, PulsarAdminError, adminBaseUrl, topicPath } from '../../mq-adapters/pulsar/admin.js';
import { SUBSCRIPTION_NAME, connectPulsarWith } from '../../mq-adapters/pulsar/index.js';
import type { Broker, ConnectOptions } from '../../mq-adapters/types.js';
import { startPulsarAdmin, type PulsarAdminStandIn } from './pulsar-admin-standin.js';
import { FakePulsar } from './pulsar-fake.js';

const ADMIN_TOKEN = 'tok-admin-5ecret';
const enc = (s: string): Uint8Array => new TextEncoder().encode(s);

const open: Array<{ close(): Promise<unknown> }> = [];
afterEach(async () => {
  while (open.length > 0) await open.pop()!.close();
});

async function setup(options: Partial<ConnectOptions> = {}): Promise<{ fake: FakePulsar; admin: PulsarAdminStandIn; broker: Broker }> {
  const fake = new FakePulsar();
  const admin = await startPulsarAdmin(fake, { admin: ADMIN_TOKEN, user: 'tok-user' });
  open.push(admin);
  const full: ConnectOptions = { address: 'pulsar://pulsar.example:6650', authToken: ADMIN_TOKEN, managementUrl: admin.url, ...options };
  const broker = await connectPulsarWith(async () => fake.module(), resolveAddress(full), full);
  open.push(broker);
  return { fake, admin, broker };
}

describe('where the admin API is', () => {
  test('the broker host on the web service port, over the broker connection\'s transport, unless given', () => {
    expect(adminBaseUrl(resolveAddress({ address: 'pulsar://pulsar.example:6650' }), undefined)).toBe('http://pulsar.example:8080');
    expect(adminBaseUrl(resolveAddress({ address: 'pulsar+ssl://pulsar.example:6651' }), undefined)).toBe('https://pulsar.example:8443');
    expect(adminBaseUrl(resolveAddress({ address: 'pulsar://pulsar.example:6650' }), 'https://admin.example/')).toBe('https://admin.example');
  });

  test('short topic names are in public/default, as the client resolves them', () => {
    expect(topicPath('ewms-wf-in')).toEqual({ tenant: 'public', namespace: 'default', topic: 'ewms-wf-in' });
    expect(topicPath('persistent://icecube/ewms/q1')).toEqual({ tenant: 'icecube', namespace: 'ewms', topic: 'q1' });
    expect(() => topicPath('non-persistent://a/b/c')).toThrow(PulsarAdminError);
  });
});

describe('depth: the shared subscription\'s backlog', () => {
  test('counts what the subscription has not acknowledged: waiting, prefetched and delivered-unacked', async () => {
    const { admin, broker } = await setup();
    await broker.declareQueue({ name: 'q' });
    for (let i = 0; i < 5; i++) await broker.publish('q', { body: enc(`e${i}`) });
    expect(await broker.depth('q')).toBe(5);

    const sub = await broker.consume('q', { prefetch: 2 });
    const it = sub[Symbol.asyncIterator]();
    const first = (await it.next()).value!;
    expect(await broker.depth('q')).toBe(5); // one delivered, not acked: still owed
    await first.ack();
    expect(await broker.depth('q')).toBe(4);
    await sub.close();

    const stats = admin.requests.find((r) => r.path === '/admin/v2/persistent/public/default/q/stats');
    expect(stats?.query).toEqual({ getPreciseBacklog: 'true', subscriptionBacklogSize: 'false' });
    expect(stats?.authorization).toBe(`Bearer ${ADMIN_TOKEN}`);
  });

  test('a topic without our subscription owes nothing; a topic that does not exist is QueueNotFoundError', async () => {
    const { fake, broker } = await setup();
    fake.topic('bare');
    expect(await broker.depth('bare')).toBe(0);
    await expect(broker.depth('missing')).rejects.toBeInstanceOf(QueueNotFoundError);
  });

  test('a 307 is followed to the broker that serves the topic, with the token', async () => {
    const { fake, admin, broker } = await setup();
    const other = await startPulsarAdmin(fake, { admin: ADMIN_TOKEN });
    open.push(other);
    await broker.declareQueue({ name: 'moved' });
    await broker.publish('moved', { body: enc('x') });
    admin.redirectNext(other.url);
    expect(await broker.depth('moved')).toBe(1);
    expect(other.requests.at(-1)?.authorization).toBe(`Bearer ${ADMIN_TOKEN}`);
  });

  test('a token without admin rights: an error that names the permission and never the token', async () => {
    const { broker } = await setup({ authToken: 'tok-user' });
    const err = await broker.depth('q').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PulsarAdminError);
    expect((err as PulsarAdminError).status).toBe(403);
    expect((err as PulsarAdminError).message).toMatch(/refused reading the backlog of q \(403: Don't have admin permission\)/);
    expect((err as PulsarAdminError).hint).toMatch(/admin rights on the topic's tenant\/namespace \(public\/default\)/);
    expect(String(err)).not.toContain('tok-user');
  });

  test('an unreachable admin API says where it looked and how to point elsewhere, without the token', async () => {
    const { broker } = await setup({ managementUrl: 'http://127.0.0.1:9' });
    const err = await broker.depth('q').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PulsarAdminError);
    expect((err as Error).message).toMatch(/cannot reach the Pulsar admin API at http:\/\/127\.0\.0\.1:9/);
    expect((err as PulsarAdminError).hint).toMatch(/managementUrl/);
    expect(String(err)).not.toContain(ADMIN_TOKEN);
  });
});

describe('deleteQueue', () => {
  test('deletes the topic and its dead-letter topic, consumers attached or not; a missing one is fine', async () => {
    const { fake, admin, broker } = await setup();
    await broker.declareQueue({ name: 'gone' });
    await broker.publish('gone', { body: enc('x') });
    const sub = await broker.consume('gone', { prefetch: 1 });
    await broker.deleteQueue('gone');
    expect(fake.topics.has('gone')).toBe(false);
    expect(fake.topics.has('gone.dlq')).toBe(false);
    expect(admin.requests.filter((r) => r.method === 'DELETE').map((r) => [r.path, r.query.force])).toEqual([
      ['/admin/v2/persistent/public/default/gone', 'true'],
      ['/admin/v2/persistent/public/default/gone.dlq', 'true'],
    ]);
    await sub.close();
    await broker.deleteQueue('never-there', { deadLetterQueue: false });
  });

  test('the admin client alone: subscription backlogs of any name, and the same refusals', async () => {
    const fake = new FakePulsar();
    const server = await startPulsarAdmin(fake, { admin: ADMIN_TOKEN });
    open.push(server);
    fake.publish('t', Buffer.from('a'), {}, SUBSCRIPTION_NAME);
    fake.publish('t', Buffer.from('b'), {});
    const admin = new PulsarAdmin(server.url, ADMIN_TOKEN);
    expect(await admin.backlog('t', SUBSCRIPTION_NAME)).toBe(2);
    expect(await admin.backlog('t', 'someone-else')).toBe(0);
    await expect(new PulsarAdmin(server.url, undefined).backlog('t', SUBSCRIPTION_NAME)).rejects.toMatchObject({ status: 401 });
  });
});
