/**
 * Interop with the Python EWMS both ways: a peer that lays the broker out as the Python MQClient does
 * produces events into a queue it declared itself, our pilot (the real command line) processes them,
 * and the peer reads our outputs back.
 *
 * - RabbitMQ: the peer is Python, on Debian's python3-pika and python3-zstd (MQClient's own libraries).
 * - NATS: Debian has no python3-nats, so the peer is a separate Node process (nats_mqclient_peer.mjs)
 *   that creates streams, subjects and the `psub` consumer exactly as MQClient's NATS client does.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, test } from 'vitest';
import type { Broker } from '../../mq-adapters/types.js';
import { brokerUrl, newQueues, openBroker, pilotEnv, startPilot, type BrokerName } from '../pilot-integration/run-pilot.js';

const PYTHON = '/usr/bin/python3';
const PY_PEER = fileURLToPath(new URL('./python_mqclient_rabbitmq.py', import.meta.url));
const NATS_PEER = fileURLToPath(new URL('./nats_mqclient_peer.mjs', import.meta.url));

interface Peer {
  produce(queue: string, values: unknown[]): Promise<void>;
  consume(queue: string, n: number, timeoutS: number): Promise<Array<{ headers: unknown; data: unknown }>>;
}

function run(file: string, args: string[], stdin = ''): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    child.on('error', reject);
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(stdin);
  });
}

function peerFor(name: BrokerName): Peer {
  const [file, script] = name === 'rabbitmq' ? [PYTHON, PY_PEER] : [process.execPath, NATS_PEER];
  return {
    async produce(queue, values) {
      const r = await run(file, [script, 'produce', brokerUrl(name), queue], values.map((v) => JSON.stringify(v)).join('\n') + '\n');
      expect(r.code, r.stderr).toBe(0);
    },
    async consume(queue, n, timeoutS) {
      const r = await run(file, [script, 'consume', brokerUrl(name), queue, String(n), String(timeoutS)]);
      expect(r.code, r.stderr).toBe(0);
      return r.stdout.trim().split('\n').filter(Boolean).map((line) => JSON.parse(line) as { headers: unknown; data: unknown });
    },
  };
}

const cleanup: Array<{ broker: Broker; queues: string[] }> = [];
afterAll(async () => {
  for (const { broker, queues } of cleanup) {
    for (const q of queues) await broker.deleteQueue(q).catch(() => undefined);
    await broker.close().catch(() => undefined);
  }
});

const havePython = existsSync(PYTHON);

describe.each(['rabbitmq', 'nats'] as const)('interop with the Python MQClient layout on %s', (name) => {
  const skip = name === 'rabbitmq' && !havePython;

  test.skipIf(skip)('text events in, text outputs back', async () => {
    const peer = peerFor(name);
    const queues = newQueues();
    cleanup.push({ broker: await openBroker(name), queues: [queues.incoming, queues.outgoing] });
    const words = Array.from({ length: 20 }, (_, i) => `word ${i} é`);
    await peer.produce(queues.incoming, words);
    const pilot = startPilot(pilotEnv(name, queues, { EWMS_PILOT_TASK_ARGS: "sh -c 'tr a-z A-Z < {{INFILE}} > {{OUTFILE}}'" }));
    expect((await pilot.exited).code, pilot.stderr().slice(-2000)).toBe(0);
    const outputs = await peer.consume(queues.outgoing, words.length, 20);
    expect(outputs.map((o) => o.data).sort()).toEqual(words.map((w) => w.replace(/[a-z]/g, (c) => c.toUpperCase())).sort());
  }, 60_000);

  test.skipIf(skip)('JSON events in (.json infile), JSON outputs back (.json outfile)', async () => {
    const peer = peerFor(name);
    const queues = newQueues();
    cleanup.push({ broker: await openBroker(name), queues: [queues.incoming, queues.outgoing] });
    const events = Array.from({ length: 10 }, (_, i) => ({ n: i, tags: ['a', 'b'], nested: { ok: true, x: null } }));
    await peer.produce(queues.incoming, events);
    const pilot = startPilot(
      pilotEnv(name, queues, { EWMS_PILOT_TASK_ARGS: 'cp {{INFILE}} {{OUTFILE}}', EWMS_PILOT_INFILE_EXT: '.json', EWMS_PILOT_OUTFILE_EXT: 'json' }),
    );
    expect((await pilot.exited).code, pilot.stderr().slice(-2000)).toBe(0);
    const outputs = await peer.consume(queues.outgoing, events.length, 20);
    expect(outputs.map((o) => o.data).sort((a, b) => (a as { n: number }).n - (b as { n: number }).n)).toEqual(events);
  }, 60_000);
});
