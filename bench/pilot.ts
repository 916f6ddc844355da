/**
 * The pilot's own cost per event: N events through a whole pilot (broker consume, per-event directory,
 * infile, task process, ack) with the task `true`, next to raw `spawn('/bin/true')` at the same
 * concurrency measured in the same run — the ceiling this machine allows for one process per event.
 *
 * The pilot's time runs from start (connect and declare included) to the last event settled: the idle
 * wait that ends it is not counted. `npm run bench -- pilot`; `EWMS_BENCH_PILOT_N` (default 2,000) and
 * `EWMS_BENCH_TRIALS` size it.
 */
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { encodeEnvelope } from '../common/wire.js';
import { connect } from '../mq-adapters/index.js';
import type { Broker } from '../mq-adapters/types.js';
import { runConfiguredPilot } from '../pilot/assemble.js';
import { loadConfig } from '../pilot/config.js';
import { type BenchRow, alternate, rate } from './report.js';

export const BROKERS = {
  rabbitmq: process.env.EWMS_TEST_RABBITMQ_URL ?? 'amqp://guest:guest@127.0.0.1:5672',
  nats: process.env.EWMS_TEST_NATS_URL ?? 'nats://127.0.0.1:4222',
} as const;
/** Idle seconds that end the pilot once the queue is drained; subtracted from its time. */
const IDLE_SECONDS = 0.3;

/** Raw spawn of /bin/true, `concurrency` at a time. */
async function rawSpawn(n: number, concurrency: number): Promise<number> {
  const started = performance.now();
  let next = 0;
  const worker = async () => {
    while (next < n) {
      next += 1;
      await new Promise<void>((resolve, reject) => {
        const child = spawn('/bin/true', [], { stdio: 'ignore' });
        child.once('error', reject);
        child.once('exit', () => resolve());
      });
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return rate(n, started);
}

/** N events through a pilot running `true` (with `extraEnv` added to its configuration); returns events per second. */
export async function throughPilot(broker: Broker, url: string, n: number, concurrency: number, extraEnv: Record<string, string> = {}, idleSeconds = IDLE_SECONDS): Promise<number> {
  const incoming = `bench-pilot-in-${randomUUID().slice(0, 8)}`;
  const outgoing = `bench-pilot-out-${randomUUID().slice(0, 8)}`;
  const dataParent = mkdtempSync(join(tmpdir(), 'ewms-bench-pilot-'));
  await broker.declareQueue({ name: incoming });
  await broker.declareQueue({ name: outgoing });
  try {
    const body = encodeEnvelope('event');
    const pending: Array<Promise<string>> = [];
    for (let i = 0; i < n; i++) pending.push(broker.publish(incoming, { body }));
    await Promise.all(pending);
    const config = loadConfig({
      EWMS_PILOT_TASK_ARGS: 'true',
      EWMS_PILOT_QUEUE_INCOMING: incoming,
      EWMS_PILOT_QUEUE_OUTGOING: outgoing,
      EWMS_PILOT_QUEUE_INCOMING_BROKER_ADDRESS: url,
      EWMS_PILOT_MAX_CONCURRENT_TASKS: String(concurrency),
      EWMS_PILOT_PREFETCH: String(concurrency),
      EWMS_PILOT_TIMEOUT_QUEUE_INCOMING: String(idleSeconds),
      EWMS_PILOT_TIMEOUT_QUEUE_WAIT_FOR_FIRST_MESSAGE: '10',
      EWMS_PILOT_DATA_DIR_PARENT_PATH_ON_HOST: dataParent,
      ...extraEnv,
    });
    const started = performance.now();
    const outcome = await runConfiguredPilot(config, {
      logger: pino({ level: 'silent' }),
      version: 'bench',
      baseEnv: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
    });
    const elapsedMs = performance.now() - started - idleSeconds * 1000;
    if (outcome.stats.succeeded !== n) throw new Error(`pilot bench: ${outcome.stats.succeeded} of ${n} events succeeded (${outcome.summary})`);
    return n / (elapsedMs / 1000);
  } finally {
    await broker.deleteQueue(incoming).catch(() => undefined);
    await broker.deleteQueue(outgoing).catch(() => undefined);
    rmSync(dataParent, { recursive: true, force: true });
  }
}

/** Pilot rate against raw spawn, per broker and concurrency. */
export async function benchPilot(n: number, trials: number): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  for (const [name, url] of Object.entries(BROKERS)) {
    const broker = await connect({ address: url });
    try {
      for (const concurrency of [1, 2]) {
        const { baseline, ours } = await alternate(
          trials,
          async () => [await rawSpawn(n, concurrency)],
          async () => [await throughPilot(broker, url, n, concurrency)],
        );
        rows.push({ name: `pilot on ${name}, task \`true\`, concurrency ${concurrency} (vs raw spawn)`, baseline: baseline[0]!, ours: ours[0]!, unit: '/s' });
      }
    } finally {
      await broker.close();
    }
  }
  return rows;
}

// Run alone: `node dist/bench/pilot.js`.
if (import.meta.url === `file://${process.argv[1]}`) {
  const { printRows } = await import('./report.js');
  printRows(await benchPilot(Number(process.env.EWMS_BENCH_PILOT_N ?? 2_000), Number(process.env.EWMS_BENCH_TRIALS ?? 3)));
}
