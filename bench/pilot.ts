/**
 * The pilot at the spawn limit: N events through a whole pilot (consume, infile, task process, outfile,
 * confirmed publish, ack) with the task `cp {{INFILE}} {{OUTFILE}}`, measured in the same run, in alternation,
 * against what does the same with less:
 *
 * - raw `child_process.spawn('cp', …)` with no broker, in a fresh process (the ceiling: one process per event);
 * - on RabbitMQ, a minimal synchronous Python loop with pika (`python-loop.ts`), one per concurrent task;
 * - on RabbitMQ, a BullMQ worker on Redis at the same concurrency (`contenders.ts`).
 *
 * RabbitMQ queues are quorum queues (the adapter's). The pilot's time runs from start (connect and declare
 * included) to the last event settled: the idle wait that ends it is not counted. `npm run bench -- pilot`;
 * `EWMS_BENCH_PILOT_N` (default 2,000) and `EWMS_BENCH_TRIALS` size it.
 */
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { encodeEnvelope } from '../common/wire.js';
import { connect } from '../mq-adapters/index.js';
import type { Broker } from '../mq-adapters/types.js';
import { runConfiguredPilot } from '../pilot/assemble.js';
import { loadConfig } from '../pilot/config.js';
import { pikaPython, pythonLoop } from './python-loop.js';
import { type BenchRow, median } from './report.js';
import { publishMany } from './rss.js';

const CONTENDERS = fileURLToPath(new URL('./contenders.js', import.meta.url));

export const BROKERS = {
  rabbitmq: process.env.EWMS_TEST_RABBITMQ_URL ?? 'amqp://guest:guest@127.0.0.1:5672',
  nats: process.env.EWMS_TEST_NATS_URL ?? 'nats://127.0.0.1:4222',
} as const;
/** Idle seconds that end the pilot once the queue is drained; subtracted from its time. */
const IDLE_SECONDS = 0.3;

/** Run a baseline of `contenders.ts` in a fresh process; its events per second. */
export function contender(name: 'raw' | 'bullmq', n: number, concurrency: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CONTENDERS, name, String(n), String(concurrency)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.once('exit', (code) => {
      try {
        if (code !== 0) throw new Error(`exit ${code}`);
        resolve((JSON.parse(out) as { rate: number }).rate);
      } catch (err) {
        reject(new Error(`the ${name} baseline failed: ${(err as Error).message}`));
      }
    });
  });
}

/** N events through a pilot running `cp {{INFILE}} {{OUTFILE}}` (with `extraEnv` added to its configuration); returns events per second. */
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
      EWMS_PILOT_TASK_ARGS: 'cp {{INFILE}} {{OUTFILE}}',
      EWMS_PILOT_QUEUE_INCOMING: incoming,
      EWMS_PILOT_QUEUE_OUTGOING: outgoing,
      EWMS_PILOT_QUEUE_INCOMING_BROKER_ADDRESS: url,
      EWMS_PILOT_MAX_CONCURRENT_TASKS: String(concurrency),
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
    if (outcome.stats.succeeded !== n || outcome.stats.withoutOutput > 0) throw new Error(`pilot bench: ${outcome.stats.succeeded} of ${n} events succeeded (${outcome.summary})`);
    return n / (elapsedMs / 1000);
  } finally {
    await broker.deleteQueue(incoming).catch(() => undefined);
    await broker.deleteQueue(outgoing).catch(() => undefined);
    rmSync(dataParent, { recursive: true, force: true });
  }
}

/** Fill a fresh queue pair with `n` events for the Python loop; returns their names. */
async function loopQueues(broker: Broker, n: number): Promise<{ incoming: string; outgoing: string }> {
  const incoming = `bench-loop-in-${randomUUID().slice(0, 8)}`;
  const outgoing = `bench-loop-out-${randomUUID().slice(0, 8)}`;
  await broker.declareQueue({ name: incoming });
  await broker.declareQueue({ name: outgoing });
  await publishMany(broker, incoming, n);
  return { incoming, outgoing };
}

/** Pilot rate against raw spawn per broker and concurrency, and against the Python loop and BullMQ on RabbitMQ. */
export async function benchPilot(n: number, trials: number): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  const python = pikaPython();
  if (!python) console.error('no python3 with pika: the minimal-loop baseline is skipped');
  for (const [name, url] of Object.entries(BROKERS)) {
    const broker = await connect({ address: url });
    try {
      for (const concurrency of [1, 2]) {
        const runs: Record<'raw' | 'pilot' | 'loop' | 'bullmq', number[]> = { raw: [], pilot: [], loop: [], bullmq: [] };
        for (let t = 0; t < trials; t++) {
          runs.raw.push(await contender('raw', n, concurrency));
          runs.pilot.push(await throughPilot(broker, url, n, concurrency));
          if (name !== 'rabbitmq') continue;
          if (python) {
            const queues = await loopQueues(broker, n);
            try {
              runs.loop.push((await pythonLoop(python, url, queues.incoming, queues.outgoing, concurrency)).rate);
            } finally {
              await broker.deleteQueue(queues.incoming).catch(() => undefined);
              await broker.deleteQueue(queues.outgoing).catch(() => undefined);
            }
          }
          runs.bullmq.push(await contender('bullmq', n, concurrency));
        }
        const pilot = median(runs.pilot);
        const queueKind = name === 'rabbitmq' ? 'rabbitmq quorum' : name;
        rows.push({ name: `pilot on ${queueKind}, cp, c=${concurrency} vs raw spawn`, baseline: median(runs.raw), ours: pilot, unit: '/s' });
        if (runs.loop.length) rows.push({ name: `pilot on ${queueKind}, cp, c=${concurrency} vs minimal pika loop x${concurrency}`, baseline: median(runs.loop), ours: pilot, unit: '/s' });
        if (runs.bullmq.length) rows.push({ name: `pilot on ${queueKind}, cp, c=${concurrency} vs BullMQ worker (Redis)`, baseline: median(runs.bullmq), ours: pilot, unit: '/s' });
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
