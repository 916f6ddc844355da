/**
 * The `ewms` CLI end to end, as a user runs it: `node dist/coordinator/cli.js`, real brokers, the local
 * backend starting real pilots (`dist/pilot/cli.js`) that run a real task per event.
 *
 * 2,000 events, 4 pilots, one poison event: the run ends with 1,999 results and exit code 3; the poison
 * event is in the dead-letter listing with its reason; after `dlq requeue` a second run with a fixed task
 * completes it, and the results file then has exactly one line per input.
 */
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, test } from 'vitest';
import { Workflow } from '../../coordinator/index.js';
import { BROKER_NAMES, brokerOptions, cliEnv, freshId, startEchoPilot, type BrokerName } from './helpers.js';

const CLI = fileURLToPath(new URL('../../dist/coordinator/cli.js', import.meta.url));
const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function ewms(name: BrokerName, args: string[], cwd: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { cwd, env: cliEnv(name), maxBuffer: 64 * 1024 * 1024, timeout: 120_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

const PILOT_ENV = [
  'EWMS_PILOT_INFILE_EXT=.json',
  'EWMS_PILOT_OUTFILE_EXT=.json',
  'EWMS_PILOT_STOP_LISTENING_ON_TASK_ERROR=false',
  'EWMS_PILOT_QUARANTINE_TIME=0',
  'EWMS_PILOT_TIMEOUT_QUEUE_WAIT_FOR_FIRST_MESSAGE=30',
  'EWMS_PILOT_TIMEOUT_QUEUE_INCOMING=5',
].flatMap((kv) => ['--pilot-env', kv]);

const N = 2000;
const POISON = 1234;

describe.each(BROKER_NAMES)('ewms run on %s', (name) => {
  test(`${N} events through 4 local pilots; a poison event is dead-lettered, requeued after the fix, completed`, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ewms-cli-e2e-'));
    dirs.push(dir);
    const workflow = freshId('e2e');
    const events = Array.from({ length: N }, (_, i) => JSON.stringify(i === POISON ? { pixel: i, poison: true } : { pixel: i }));
    writeFileSync(join(dir, 'events.jsonl'), `${events.join('\n')}\n`);
    const common = ['--workflow', workflow, '--max-deliveries', '2', '--no-progress'];
    const broken = `sh -c 'grep -q poison {{INFILE}} && { echo "bad pixel" >&2; exit 3; }; cp {{INFILE}} {{OUTFILE}}'`;

    try {
      const first = await ewms(name, ['run', ...common, '--events', 'events.jsonl', '--output', 'results.jsonl', '--dead-letters', 'dead.jsonl', '--pilots', '4', '--task-args', broken, '--local-work-dir', join(dir, 'pilots-1'), ...PILOT_ENV], dir);
      expect(first.code, first.stderr).toBe(3);
      expect(first.stderr).toMatch(/1999 results, 1 dead letters/);
      const firstLines = readFileSync(join(dir, 'results.jsonl'), 'utf8').trim().split('\n');
      expect(firstLines).toHaveLength(N - 1);

      const listed = await ewms(name, ['dlq', 'list', '--workflow', workflow], dir);
      expect(listed.code, listed.stderr).toBe(0);
      const dead = listed.stdout.trim().split('\n').map((l) => JSON.parse(l) as { eventId: string; reason: string; details: Record<string, string>; data: { pixel: number } });
      expect(dead).toHaveLength(1);
      expect(dead[0]!.data).toEqual({ pixel: POISON, poison: true });
      expect(dead[0]!.reason).toMatch(/code 3/);
      expect(JSON.stringify(dead[0]!.details)).toContain('bad pixel');

      const requeued = await ewms(name, ['dlq', 'requeue', '--workflow', workflow], dir);
      expect(requeued.code, requeued.stderr).toBe(0);
      expect(JSON.parse(requeued.stdout)).toMatchObject({ requeued: 1, ids: [dead[0]!.eventId] });

      const fixed = 'cp {{INFILE}} {{OUTFILE}}';
      const second = await ewms(name, ['run', ...common, '--also-expect', '1', '--output', 'results.jsonl', '--append', '--pilots', '1', '--task-args', fixed, '--local-work-dir', join(dir, 'pilots-2'), ...PILOT_ENV], dir);
      expect(second.code, second.stderr).toBe(0);

      const lines = readFileSync(join(dir, 'results.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { eventId: string; kind: string; data: { pixel: number } });
      expect(lines).toHaveLength(N);
      expect(new Set(lines.map((l) => l.eventId)).size).toBe(N);
      expect(lines.map((l) => l.data.pixel).sort((a, b) => a - b)).toEqual(Array.from({ length: N }, (_, i) => i));
      expect(lines.find((l) => l.data.pixel === POISON)?.eventId).toBe(dead[0]!.eventId);
      // Nothing left behind: the clean second run deleted the queues.
      expect(second.stderr).toMatch(/queues deleted/);
    } finally {
      const wf = await Workflow.create({ broker: brokerOptions(name), id: workflow });
      await wf.close({ deleteQueues: true });
    }
  }, 120_000);
});

describe('ewms publish / collect', () => {
  test('publish writes ids; a real consumer moves the events; collect --ids gets each once', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ewms-cli-pc-'));
    dirs.push(dir);
    const workflow = freshId('pc');
    writeFileSync(join(dir, 'events.jsonl'), ['"a"', '{"b": 2}', '[3]'].join('\n'));
    const published = await ewms('rabbitmq', ['publish', '--workflow', workflow, '--events', 'events.jsonl', '--ids', 'ids.txt'], dir);
    expect(published.code, published.stderr).toBe(0);
    expect(JSON.parse(published.stdout)).toMatchObject({ workflow, published: 3, queues: { incoming: `ewms-${workflow}-in` } });
    const ids = readFileSync(join(dir, 'ids.txt'), 'utf8').trim().split('\n');
    expect(ids).toHaveLength(3);
    const wf = await Workflow.create({ broker: brokerOptions('rabbitmq'), id: workflow });
    const pilot = await startEchoPilot('rabbitmq', wf.queues);
    try {
      const collected = await ewms('rabbitmq', ['collect', '--workflow', workflow, '--ids', 'ids.txt', '--output', 'out.jsonl', '--no-progress'], dir);
      expect(collected.code, collected.stderr).toBe(0);
      const lines = readFileSync(join(dir, 'out.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { eventId: string; data: unknown });
      expect(lines.map((l) => l.eventId).sort()).toEqual([...ids].sort());
      expect(lines.map((l) => JSON.stringify(l.data)).sort()).toEqual(['"a"', '[3]', '{"b":2}']);
    } finally {
      await pilot.stop();
      await wf.close({ deleteQueues: true });
    }
  });
});

describe('ewms run interrupted', () => {
  test('SIGINT stops the local pilots and their tasks; the events stay queued; exit 130', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ewms-cli-int-'));
    dirs.push(dir);
    const workflow = freshId('int');
    const marker = `ewms-int-marker-${workflow}`;
    writeFileSync(join(dir, 'events.jsonl'), Array.from({ length: 20 }, (_, i) => JSON.stringify(`event ${i}`)).join('\n'));
    const child = spawn(process.execPath, [CLI, 'run', '--workflow', workflow, '--events', 'events.jsonl', '--output', 'r.jsonl', '--no-progress', '--pilots', '2',
      '--task-args', `sh -c 'sleep 30; echo ${marker}'`, '--local-work-dir', join(dir, 'pilots'), '--pilot-env', 'EWMS_PILOT_TASK_KILL_GRACE=1'], { cwd: dir, env: cliEnv('rabbitmq'), stdio: 'ignore' });
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    try {
      await waitUntil(() => processesWith(marker) >= 2, 20_000);
      child.kill('SIGINT');
      expect(await exited).toBe(130);
      expect(processesWith(marker)).toBe(0);
      const wf = await Workflow.create({ broker: brokerOptions('rabbitmq'), id: workflow });
      try {
        await waitUntil(async () => (await wf.depth()) === 20, 10_000);
      } finally {
        await wf.close();
      }
    } finally {
      child.kill('SIGKILL');
      const wf = await Workflow.create({ broker: brokerOptions('rabbitmq'), id: workflow });
      await wf.close({ deleteQueues: true });
    }
  }, 60_000);
});

/** How many running processes have `marker` in their command line. */
function processesWith(marker: string): number {
  let n = 0;
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      if (readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(marker)) n += 1;
    } catch {
      // gone meanwhile
    }
  }
  return n;
}

async function waitUntil(check: () => boolean | Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('ewms CLI usage', () => {
  test('--help lists the commands and the exit codes; bad usage exits 2 without touching a broker', async () => {
    const help = await ewms('nats', ['--help'], tmpdir());
    expect(help.code).toBe(0);
    for (const word of ['run', 'publish', 'collect', 'submit', 'status', 'rm', 'dlq', 'Exit codes']) expect(help.stdout).toContain(word);
    const runHelp = await ewms('nats', ['run', '--help'], tmpdir());
    expect(runHelp.stdout).toContain('--task-args');
    const bad = await ewms('nats', ['run', '--pilots', '1'], tmpdir());
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/nothing to run/);
  });

  test('a count that is not a whole number is a usage error (exit 2), not a crash', async () => {
    const r = await ewms('nats', ['collect', '--workflow', 'x', '--expected', '1.5'], tmpdir());
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--expected: '1\.5' is not a whole number >= 1/);
  });

  test('a password in --broker is refused (it would show in ps), and never echoed', async () => {
    const r = await ewms('nats', ['dlq', 'list', '--workflow', 'x', '--broker', 'amqp://guest:s3cr3tpw@127.0.0.1:5672'], tmpdir());
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/must not contain a password/);
    expect(r.stderr).not.toContain('s3cr3tpw');
  });
});
