/**
 * The pilot's memory: one real pilot process (`dist/pilot/cli.js`, as HTCondor starts it) through N events
 * (task `true`, RabbitMQ quorum queue), started with the pilot's Node flags as the local backend starts it, its resident set size read from /proc at start (once it logged
 * "pilot started") and as the events go through, with how many had been settled at each reading. What the
 * project promises: at most 80 MB at start, and flat (within noise) from 1,000 events to the end.
 */
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PILOT_NODE_FLAGS } from '../common/pilot-node-flags.js';
import { encodeEnvelope } from '../common/wire.js';
import { connect } from '../mq-adapters/index.js';
import type { Broker } from '../mq-adapters/types.js';
import { BROKERS } from './pilot.js';
import type { BenchRow } from './report.js';

const PILOT_CLI = fileURLToPath(new URL('../pilot/cli.js', import.meta.url));

/** One reading: events settled so far (by the incoming queue's depth), and the pilot's RSS in MB. */
export interface RssSample {
  settled: number;
  rssMb: number;
}

/** Publish `n` events, at most `window` unconfirmed at once. */
export async function publishMany(broker: Broker, queue: string, n: number, window = 1000): Promise<void> {
  const body = encodeEnvelope('event');
  const pending = new Set<Promise<string>>();
  for (let i = 0; i < n; i++) {
    const p = broker.publish(queue, { body });
    pending.add(p);
    void p.finally(() => pending.delete(p));
    if (pending.size >= window) await Promise.race(pending);
  }
  await Promise.all(pending);
}

function rssMb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024;
}

/** Run one pilot process through `n` events and read its RSS along the way. */
export async function pilotRss(n: number, concurrency = 1): Promise<{ start: number; samples: RssSample[] }> {
  const broker = await connect({ address: BROKERS.rabbitmq });
  const incoming = `bench-rss-in-${randomUUID().slice(0, 8)}`;
  const outgoing = `bench-rss-out-${randomUUID().slice(0, 8)}`;
  const dataParent = mkdtempSync(join(tmpdir(), 'ewms-bench-rss-'));
  try {
    await broker.declareQueue({ name: incoming });
    await broker.declareQueue({ name: outgoing });
    await publishMany(broker, incoming, n);
    const child = spawn(process.execPath, [...PILOT_NODE_FLAGS, PILOT_CLI], {
      env: {
        PATH: process.env.PATH ?? '/usr/bin:/bin',
        EWMS_PILOT_TASK_ARGS: 'true',
        EWMS_PILOT_QUEUE_INCOMING: incoming,
        EWMS_PILOT_QUEUE_OUTGOING: outgoing,
        EWMS_PILOT_QUEUE_INCOMING_BROKER_ADDRESS: BROKERS.rabbitmq,
        EWMS_PILOT_MAX_CONCURRENT_TASKS: String(concurrency),
        EWMS_PILOT_TIMEOUT_QUEUE_INCOMING: '2',
        EWMS_PILOT_TIMEOUT_QUEUE_WAIT_FOR_FIRST_MESSAGE: '30',
        EWMS_PILOT_DATA_DIR_PARENT_PATH_ON_HOST: dataParent,
        EWMS_PILOT_LOG_LEVEL: 'info',
      },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    let log = '';
    const started = new Promise<void>((resolve) => {
      child.stderr.on('data', (chunk: Buffer) => {
        log = (log + chunk.toString()).slice(-20_000);
        if (log.includes('"pilot started"')) resolve();
      });
    });
    await Promise.race([started, exited]);
    const start = rssMb(child.pid!);
    const samples: RssSample[] = [];
    let done = false;
    void exited.then(() => (done = true));
    while (!done) {
      await new Promise((r) => setTimeout(r, 1000));
      if (done) break;
      const rss = rssMb(child.pid!);
      const depth = await broker.depth(incoming);
      samples.push({ settled: n - depth, rssMb: rss });
    }
    const code = await exited;
    if (code !== 0) throw new Error(`the pilot exited with ${code}: ${log.slice(-2000)}`);
    return { start, samples };
  } finally {
    await broker.deleteQueue(incoming).catch(() => undefined);
    await broker.deleteQueue(outgoing).catch(() => undefined);
    await broker.close();
    rmSync(dataParent, { recursive: true, force: true });
  }
}

/**
 * RSS rows: at start, after ~1,000 events, the highest reading, and at the end. Each row compares against
 * the start (the "ratio" is growth); the promise is at most 80 MB at start and flat from 1,000 events on.
 */
export async function benchRss(n: number): Promise<BenchRow[]> {
  const { start, samples } = await pilotRss(n);
  const early = samples.find((s) => s.settled >= 1000) ?? samples[0];
  const last = samples.at(-1);
  if (!early || !last) return [{ name: `pilot RSS at start (${n} events went too fast to sample)`, baseline: start, ours: start, unit: 'MB' }];
  const peak = Math.max(...samples.map((s) => s.rssMb));
  return [
    { name: 'pilot RSS at start vs 80 MB', baseline: 80, ours: start, unit: 'MB' },
    { name: `pilot RSS after ${early.settled.toLocaleString('en-US')} events vs at start`, baseline: start, ours: early.rssMb, unit: 'MB' },
    { name: `pilot RSS, highest reading over ${n.toLocaleString('en-US')} events vs after ~1,000`, baseline: early.rssMb, ours: peak, unit: 'MB' },
    { name: `pilot RSS after ${last.settled.toLocaleString('en-US')} events vs after ~1,000`, baseline: early.rssMb, ours: last.rssMb, unit: 'MB' },
  ];
}

// Run alone: `node dist/bench/rss.js [N]`.
if (import.meta.url === `file://${process.argv[1]}`) {
  const { start, samples } = await pilotRss(Number(process.argv[2] ?? 20_000));
  console.log(`start ${start.toFixed(1)} MB`);
  for (const s of samples) console.log(`${s.settled}\t${s.rssMb.toFixed(1)} MB`);
}
