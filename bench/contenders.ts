/**
 * The baselines the pilot is measured against, each run as a fresh process of its own (`node
 * dist/bench/contenders.js <name> <n> <concurrency>`), so none pays for the benchmark runner's memory in its
 * spawns. Each does the pilot's task, `cp <infile> <outfile>`, per event, and prints `{"rate": events/s}`:
 *
 * - `raw`: `child_process.spawn('cp', …)` with no broker at all — the ceiling for one process per event;
 * - `bullmq`: a BullMQ worker on the Redis at 127.0.0.1:6379 (EWMS_BENCH_REDIS_URL) at the same concurrency,
 *   writing the infile, spawning `cp`, reading the outfile and returning it as the job's result (stored in
 *   Redis: BullMQ's "publish"); timed from the worker's start to the last job completed.
 */
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Spawn `cp from to` and resolve when it exits. */
function cp(from: string, to: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('cp', [from, to], { stdio: 'ignore' });
    child.once('error', reject);
    child.once('exit', () => resolve());
  });
}

async function raw(n: number, concurrency: number, dir: string): Promise<number> {
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async (_, slot) => {
      const infile = join(dir, `in-${slot}`);
      writeFileSync(infile, 'event');
      while (next < n) {
        next += 1;
        await cp(infile, join(dir, `out-${slot}`));
      }
    }),
  );
  return n / ((performance.now() - started) / 1000);
}

async function bullmq(n: number, concurrency: number, dir: string): Promise<number> {
  const { Queue, Worker } = await import('bullmq');
  const { Redis } = await import('ioredis');
  // BullMQ 6 in an ES module wants a client made by the caller; the worker makes its own copies of it.
  const connection = new Redis(process.env.EWMS_BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379', { maxRetriesPerRequest: null });
  const name = `bench-${randomUUID().slice(0, 8)}`;
  const queue = new Queue(name, { connection });
  try {
    for (let i = 0; i < n; i += 1000) {
      await queue.addBulk(Array.from({ length: Math.min(1000, n - i) }, () => ({ name: 'event', data: 'event' })));
    }
    let done = 0;
    let slot = 0;
    const started = performance.now();
    await new Promise<void>((resolve, reject) => {
      const worker = new Worker(
        name,
        async (job) => {
          const own = (slot = (slot + 1) % (concurrency * 2));
          const infile = join(dir, `in-${own}`);
          const outfile = join(dir, `out-${own}`);
          await writeFile(infile, String(job.data));
          await cp(infile, outfile);
          return readFile(outfile, 'utf8');
        },
        { connection, concurrency },
      );
      worker.on('completed', () => {
        if (++done === n) void worker.close().then(resolve, reject);
      });
      worker.on('failed', (_job, err) => reject(err));
    });
    return n / ((performance.now() - started) / 1000);
  } finally {
    await queue.obliterate({ force: true }).catch(() => undefined);
    await queue.close();
    connection.disconnect();
  }
}

const CONTENDERS: Record<string, (n: number, concurrency: number, dir: string) => Promise<number>> = { raw, bullmq };

if (import.meta.url === `file://${process.argv[1]}`) {
  const [name = '', n = '2000', concurrency = '1'] = process.argv.slice(2);
  const run = CONTENDERS[name];
  if (!run) throw new Error(`unknown contender ${name}: one of ${Object.keys(CONTENDERS).join(', ')}`);
  const dir = mkdtempSync(join(tmpdir(), `ewms-bench-${name}-`));
  try {
    console.log(JSON.stringify({ rate: await run(Number(n), Number(concurrency), dir) }));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  process.exit(0);
}
