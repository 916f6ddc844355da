/**
 * The demo's broker choice: the order of preference with fake probes, the message when nothing is there,
 * and the real throwaway nats-server (started, answering, stopped, its directory gone).
 */
import { existsSync, mkdtempSync, rmSync, writeFileSync, chmodSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import {
  LOCAL_NATS_URL,
  LOCAL_RABBITMQ_URL,
  NoBrokerError,
  chooseBroker,
  findExecutable,
  isReachable,
  startThrowawayNats,
  type BrokerProbes,
  type ThrowawayNats,
} from '../../examples/skyscan/broker.js';

/** Probes describing a machine: which URLs answer, whether nats-server is installed; records starts. */
function machine(reachable: string[], natsServer: string | undefined) {
  const started: string[] = [];
  const stopped: string[] = [];
  const probes: BrokerProbes = {
    isReachable: async (url) => reachable.includes(url),
    findExecutable: (name) => (name === 'nats-server' ? natsServer : undefined),
    startNats: async (executable): Promise<ThrowawayNats> => {
      started.push(executable);
      return { url: 'nats://127.0.0.1:40001', dir: '/nowhere', pid: 1, stop: async () => void stopped.push(executable) };
    },
  };
  return { probes, started, stopped };
}

describe('chooseBroker', () => {
  test('--broker wins over EWMS_BROKER_URL, which wins over anything running locally', async () => {
    const m = machine([LOCAL_RABBITMQ_URL, LOCAL_NATS_URL], '/usr/sbin/nats-server');
    const env = { EWMS_BROKER_URL: 'amqp://alice:s3cret-pw@mq.example.org:5672' };
    const flag = await chooseBroker({ url: 'nats://nats.example.org:4222', env, probes: m.probes });
    expect(flag).toMatchObject({ url: 'nats://nats.example.org:4222', source: 'option' });
    const fromEnv = await chooseBroker({ env, probes: m.probes });
    expect(fromEnv).toMatchObject({ url: env.EWMS_BROKER_URL, source: 'env' });
    // The description is printed: the password must not be in it.
    expect(fromEnv.description).not.toContain('s3cret-pw');
    expect(fromEnv.description).toContain('mq.example.org');
    expect(m.started).toEqual([]);
  });

  test('without a URL: local RabbitMQ, then local NATS, then a throwaway nats-server', async () => {
    const both = machine([LOCAL_RABBITMQ_URL, LOCAL_NATS_URL], '/usr/sbin/nats-server');
    expect((await chooseBroker({ env: {}, probes: both.probes })).source).toBe('local-rabbitmq');

    const natsOnly = machine([LOCAL_NATS_URL], '/usr/sbin/nats-server');
    expect(await chooseBroker({ env: {}, probes: natsOnly.probes })).toMatchObject({ source: 'local-nats', url: LOCAL_NATS_URL });

    const bare = machine([], '/opt/bin/nats-server');
    const chosen = await chooseBroker({ env: { EWMS_BROKER_URL: '  ' }, probes: bare.probes });
    expect(chosen).toMatchObject({ source: 'throwaway-nats', url: 'nats://127.0.0.1:40001' });
    expect(bare.started).toEqual(['/opt/bin/nats-server']);
    await chosen.stop();
    expect(bare.stopped).toEqual(['/opt/bin/nats-server']);
  });

  test('nothing at all: one error that says what to install and what to set', async () => {
    const nothing = machine([], undefined);
    const err = await chooseBroker({ env: {}, probes: nothing.probes }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NoBrokerError);
    const text = String(err);
    expect(text).toContain('apt-get install -y nats-server');
    expect(text).toContain('EWMS_BROKER_URL=');
    expect(text).not.toContain('guest:guest');
  });
});

describe('probes on this machine', () => {
  test('findExecutable walks PATH and needs the execute bit', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ewms-path-'));
    try {
      mkdirSync(join(dir, 'a'));
      mkdirSync(join(dir, 'b'));
      writeFileSync(join(dir, 'a', 'tool'), '#!/bin/sh\n'); // not executable
      writeFileSync(join(dir, 'b', 'tool'), '#!/bin/sh\n');
      chmodSync(join(dir, 'b', 'tool'), 0o755);
      expect(findExecutable('tool', `${join(dir, 'a')}:${join(dir, 'b')}`)).toBe(join(dir, 'b', 'tool'));
      expect(findExecutable('tool', join(dir, 'a'))).toBeUndefined();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('isReachable: the shared RabbitMQ answers, a closed port and a wrong password do not', async () => {
    expect(await isReachable(LOCAL_RABBITMQ_URL)).toBe(true);
    expect(await isReachable('amqp://guest:guest@127.0.0.1:1')).toBe(false);
    expect(await isReachable('amqp://guest:not-the-password@127.0.0.1:5672')).toBe(false);
  });

  test.skipIf(!findExecutable('nats-server'))('a throwaway nats-server starts on a free port, answers, and leaves nothing behind', async () => {
    const server = await startThrowawayNats(findExecutable('nats-server') as string);
    try {
      expect(server.url).toMatch(/^nats:\/\/127\.0\.0\.1:\d+$/);
      expect(server.url).not.toBe(LOCAL_NATS_URL);
      expect(existsSync(server.dir)).toBe(true);
      expect(await isReachable(server.url)).toBe(true);
    } finally {
      await server.stop();
    }
    expect(existsSync(server.dir)).toBe(false);
    expect(await isReachable(server.url)).toBe(false);
    // Stopping twice is harmless.
    await server.stop();
  });
});
