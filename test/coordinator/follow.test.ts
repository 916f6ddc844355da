/**
 * Streaming collection: `ewms collect --follow` writes outcomes as they arrive with no end; killed with
 * SIGKILL in the middle of the stream and restarted with `--append`, it loses nothing and repeats nothing.
 * And `runWorkflow({ follow })` with pilots autoscaled from zero: they start when events arrive and scale
 * back to zero when the feed is idle. Real brokers.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, test } from 'vitest';
import { runWorkflow, Workflow, type WorkflowOutcome } from '../../coordinator/index.js';
import { brokerOptions, cliEnv, freshId, startEchoPilot, type BrokerName } from './helpers.js';

const CLI = fileURLToPath(new URL('../../dist/coordinator/cli.js', import.meta.url));
const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const lines = (path: string): Array<{ eventId: string; outcomeId: string; data: string }> =>
  existsSync(path) ? readFileSync(path, 'utf8').split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l) as { eventId: string; outcomeId: string; data: string }) : [];

/** Processes running with their working directory under `dir` (the local backend's pilots). */
function processesIn(dir: string): number {
  let n = 0;
  for (const pid of readdirSync('/proc').filter((e) => /^\d+$/.test(e))) {
    try {
      if (readlinkSync(`/proc/${pid}/cwd`).startsWith(dir)) n += 1;
    } catch {
      // gone, or not ours to read
    }
  }
  return n;
}

async function until(predicate: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function collector(name: BrokerName, id: string, dir: string): { child: ChildProcess; exited: Promise<number | null>; stderr: () => string } {
  const child = spawn(process.execPath, [CLI, 'collect', '--workflow', id, '--follow', '--output', 'out.jsonl', '--append'], { cwd: dir, env: cliEnv(name), stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
  return { child, exited: new Promise((resolve) => child.once('exit', (code) => resolve(code))), stderr: () => stderr };
}

describe.each(['rabbitmq', 'nats'] as const)('a following collector on %s', (name) => {
  test('killed (SIGKILL) mid-stream and restarted: every outcome written once, none lost, none repeated', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ewms-follow-'));
    dirs.push(dir);
    const id = freshId('flw');
    const wf = await Workflow.create({ broker: brokerOptions(name), id });
    const pilot = await startEchoPilot(name, wf.queues, () => 'echo', 20);
    try {
      const out = join(dir, 'out.jsonl');
      let first = collector(name, id, dir);
      const ids: string[] = [];
      // The feed: events keep coming while the collector is killed and restarted.
      const feed = (async () => {
        for (let batch = 0; batch < 10; batch++) {
          ids.push(...(await wf.publish(Array.from({ length: 40 }, (_, i) => `event ${batch}-${i}`))));
          await new Promise((r) => setTimeout(r, 150));
        }
      })();
      await until(() => lines(out).length >= 60, 60_000, 'the first outcomes');
      first.child.kill('SIGKILL');
      await first.exited;
      const written = lines(out).length;
      first = collector(name, id, dir);
      await feed;
      await until(() => lines(out).length >= 400, 60_000, `all 400 outcomes (have ${lines(out).length}; ${first.stderr()})`);
      // Nothing more comes: give duplicates a moment to show up, then stop it the normal way.
      await new Promise((r) => setTimeout(r, 1_000));
      first.child.kill('SIGTERM');
      expect(await first.exited, first.stderr()).toBe(0);
      const got = lines(out);
      expect(written).toBeLessThan(400);
      expect(got).toHaveLength(400);
      expect(new Set(got.map((l) => l.eventId))).toEqual(new Set(ids));
      expect(new Set(got.map((l) => l.outcomeId)).size).toBe(400);
    } finally {
      await pilot.stop();
      await wf.close({ deleteQueues: true });
    }
  }, 180_000);
});

test('runWorkflow({ follow }) with pilots autoscaled from zero: they come when events do and go when the feed is idle', async () => {
  const workDir = mkdtempSync(join(tmpdir(), 'ewms-follow-pilots-'));
  dirs.push(workDir);
  const stop = new AbortController();
  const outcomes: WorkflowOutcome[] = [];
  let workflow: Workflow | undefined;
  const run = runWorkflow({
    broker: brokerOptions('rabbitmq'),
    id: freshId('flwr'),
    follow: true,
    deleteQueues: true,
    progress: false,
    signal: stop.signal,
    pilots: {
      backend: 'local',
      count: 0,
      task: { args: 'cp {{INFILE}} {{OUTFILE}}' },
      pilotEnv: { EWMS_PILOT_TIMEOUT_QUEUE_WAIT_FOR_FIRST_MESSAGE: '5', EWMS_PILOT_TIMEOUT_QUEUE_INCOMING: '2' },
      autoscale: { min: 0, max: 2, eventsPerPilot: 10, periodSeconds: 1 },
      local: { workDir },
    },
    onWorkflow: (wf) => {
      workflow = wf;
    },
    onOutcome: (o) => {
      outcomes.push(o);
    },
  });
  // How many pilots run, sampled: they must be seen running in each burst and gone in between.
  const samples: Array<{ burst: number; pilots: number }> = [];
  let burst = 1;
  const sampler = setInterval(() => samples.push({ burst, pilots: processesIn(workDir) }), 100);
  await until(() => workflow !== undefined, 30_000, 'the workflow');
  await workflow!.publish(Array.from({ length: 30 }, (_, i) => `burst 1 event ${i}`));
  await until(() => outcomes.length === 30, 60_000, 'the first burst');
  // The feed is idle: the pilots go, down to none.
  await until(() => processesIn(workDir) === 0, 30_000, 'the pilots to scale to zero');
  burst = 2;
  await workflow!.publish(Array.from({ length: 30 }, (_, i) => `burst 2 event ${i}`));
  // Events again: pilots come back.
  await until(() => processesIn(workDir) > 0 || outcomes.length === 60, 30_000, 'pilots for the second burst');
  await until(() => outcomes.length === 60, 60_000, 'the second burst');
  stop.abort();
  const report = await run;
  clearInterval(sampler);
  expect(Math.max(...samples.filter((x) => x.burst === 1).map((x) => x.pilots))).toBeGreaterThan(0);
  expect(Math.max(...samples.filter((x) => x.burst === 2).map((x) => x.pilots))).toBeGreaterThan(0);
  expect(report).toMatchObject({ results: 60, deadLetters: 0, published: 60 });
  expect(new Set(outcomes.map((o) => o.inputEventId)).size).toBe(60);
}, 180_000);

test('ewms run --follow: publishes, starts the pilots, writes outcomes as they come until Ctrl-C (exit 0), pilots stopped, queues kept', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ewms-run-follow-'));
  dirs.push(dir);
  writeFileSync(join(dir, 'events.jsonl'), `${Array.from({ length: 25 }, (_, i) => JSON.stringify(`event ${i}`)).join('\n')}\n`);
  const id = freshId('rflw');
  const child = spawn(
    process.execPath,
    [CLI, 'run', '--workflow', id, '--follow', '--events', 'events.jsonl', '--output', 'out.jsonl', '--append', '--no-progress', '--pilots', '1', '--task-args', 'cp {{INFILE}} {{OUTFILE}}', '--local-work-dir', join(dir, 'pilots'),
      '--pilot-env', 'EWMS_PILOT_TIMEOUT_QUEUE_WAIT_FOR_FIRST_MESSAGE=30', '--pilot-env', 'EWMS_PILOT_TIMEOUT_QUEUE_INCOMING=30'],
    { cwd: dir, env: cliEnv('rabbitmq'), stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const out = join(dir, 'out.jsonl');
  try {
    await until(() => lines(out).length >= 25, 60_000, `25 outcomes (${stderr})`);
    expect(processesIn(join(dir, 'pilots'))).toBeGreaterThan(0);
    child.kill('SIGINT');
    expect(await exited, stderr).toBe(0);
    const got = lines(out);
    expect(got).toHaveLength(25);
    expect(new Set(got.map((l) => l.outcomeId)).size).toBe(25);
    expect(processesIn(join(dir, 'pilots'))).toBe(0);
    expect(stderr).toMatch(/queues kept/);
  } finally {
    child.kill('SIGKILL');
    const wf = await Workflow.create({ broker: brokerOptions('rabbitmq'), id });
    await wf.close({ deleteQueues: true });
  }
}, 120_000);
