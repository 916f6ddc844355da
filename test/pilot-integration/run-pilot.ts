/**
 * Runs the real pilot command line (`node dist/pilot/cli.js`), configured only through the environment as
 * an HTCondor job is, and collects its outputs from the real broker.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { decodeEnvelope, encodeEnvelope, type JsonValue } from '../../common/wire.js';
import { connect } from '../../mq-adapters/index.js';
import { HEADERS, type Broker, type Delivery } from '../../mq-adapters/types.js';

export const PILOT_CLI = fileURLToPath(new URL('../../dist/pilot/cli.js', import.meta.url));

export const BROKERS = {
  rabbitmq: { type: 'rabbitmq', address: '127.0.0.1:5672', user: 'guest', token: 'guest' },
  nats: { type: 'nats', address: '127.0.0.1:4222', user: undefined, token: undefined },
} as const;
export type BrokerName = keyof typeof BROKERS;

export interface PilotRun {
  child: ChildProcess;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stdout(): string;
  stderr(): string;
}

/** Environment for a pilot on `broker` between two queues, plus overrides. */
export function pilotEnv(broker: BrokerName, queues: { incoming: string; outgoing: string }, extra: Record<string, string> = {}): Record<string, string> {
  const b = BROKERS[broker];
  const address = b.user ? `${b.user}@${b.address}` : b.address;
  const base: Record<string, string> = {
    EWMS_PILOT_QUEUE_INCOMING: queues.incoming,
    EWMS_PILOT_QUEUE_OUTGOING: queues.outgoing,
    EWMS_PILOT_QUEUE_INCOMING_BROKER_TYPE: b.type,
    EWMS_PILOT_QUEUE_OUTGOING_BROKER_TYPE: b.type,
    EWMS_PILOT_QUEUE_INCOMING_BROKER_ADDRESS: address,
    EWMS_PILOT_QUEUE_OUTGOING_BROKER_ADDRESS: address,
    EWMS_PILOT_CONTAINER_RUNTIME: 'none',
    EWMS_PILOT_DATA_DIR_PARENT_PATH_ON_HOST: mkdtempSync(join(tmpdir(), 'ewms-pilot-test-')),
    EWMS_PILOT_TIMEOUT_QUEUE_WAIT_FOR_FIRST_MESSAGE: '20',
    EWMS_PILOT_TIMEOUT_QUEUE_INCOMING: '2',
    EWMS_PILOT_QUARANTINE_TIME: '0',
    EWMS_PILOT_LOG_LEVEL: 'info',
  };
  if (b.token) {
    base.EWMS_PILOT_QUEUE_INCOMING_AUTH_TOKEN = b.token;
    base.EWMS_PILOT_QUEUE_OUTGOING_AUTH_TOKEN = b.token;
  }
  return { ...base, ...extra };
}

export function startPilot(env: Record<string, string>, args: string[] = []): PilotRun {
  const child = spawn(process.execPath, [PILOT_CLI, ...args], {
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/root', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout!.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr!.on('data', (b: Buffer) => (err += b.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  return { child, exited, stdout: () => out, stderr: () => err };
}

export function brokerUrl(broker: BrokerName): string {
  return broker === 'rabbitmq' ? 'amqp://guest:guest@127.0.0.1:5672' : 'nats://127.0.0.1:4222';
}

export function newQueues(): { incoming: string; outgoing: string } {
  const id = randomUUID().slice(0, 8);
  return { incoming: `pit-in-${id}`, outgoing: `pit-out-${id}` };
}

/** Publish events in the MQClient format; returns their ids in order. */
export async function publishEvents(broker: Broker, queue: string, data: JsonValue[]): Promise<string[]> {
  return Promise.all(data.map((d) => broker.publish(queue, { body: encodeEnvelope(d) })));
}

export interface Output {
  inputEventId: string;
  data: JsonValue;
  delivery: Delivery;
}

/** Drain a queue until `expected` outputs arrived or nothing came for `idleMs`; acks everything. */
export async function drainOutputs(broker: Broker, queue: string, expected: number, idleMs = 5000): Promise<Output[]> {
  const deliveries = await drainDeliveries(broker, queue, expected, idleMs);
  return deliveries.map((d) => ({ inputEventId: d.headers[HEADERS.inputEventId] ?? '', data: decodeEnvelope(d.body).data, delivery: d }));
}

/** Drain a queue's deliveries as they are (bodies not decoded); acks everything. */
export async function drainDeliveries(broker: Broker, queue: string, expected: number, idleMs = 5000): Promise<Delivery[]> {
  const sub = await broker.consume(queue, { prefetch: 200 });
  const it = sub[Symbol.asyncIterator]();
  const got: Delivery[] = [];
  while (got.length < expected) {
    const next = await Promise.race([it.next(), new Promise<'idle'>((r) => setTimeout(() => r('idle'), idleMs))]);
    if (next === 'idle' || next.done) break;
    got.push(next.value);
    await next.value.ack();
  }
  await sub.close();
  return got;
}

export async function openBroker(name: BrokerName): Promise<Broker> {
  return connect({ address: brokerUrl(name) });
}

/** Fresh queues per test on a real broker, deleted (with their dead-letter queues) by `cleanup()`. */
export class TestQueues {
  private readonly opened: Array<{ broker: Broker; queues: string[] }> = [];

  /** Declare a fresh incoming/outgoing pair on `name`. */
  async create(name: BrokerName): Promise<{ broker: Broker; queues: { incoming: string; outgoing: string } }> {
    const broker = await openBroker(name);
    const queues = newQueues();
    await broker.declareQueue({ name: queues.incoming });
    await broker.declareQueue({ name: queues.outgoing });
    this.opened.push({ broker, queues: [queues.incoming, queues.outgoing, `${queues.incoming}.dlq`] });
    return { broker, queues };
  }

  async cleanup(): Promise<void> {
    for (const { broker, queues } of this.opened.splice(0)) {
      for (const q of queues) await broker.deleteQueue(q).catch(() => undefined);
      await broker.close().catch(() => undefined);
    }
  }
}

export { alive } from '../helpers/processes.js';

/** Resolve when `predicate` holds, checking every 50 ms; reject after `timeoutMs`. */
export async function waitFor(predicate: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
