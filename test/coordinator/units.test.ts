/** Unit tests of the coordinator's small parts (no broker: fakes are fine here). */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { describe, expect, test } from 'vitest';
import { buildPilotEnv, LocalPilotCluster, PublishError, targetPilots, type WorkflowTarget } from '../../coordinator/index.js';
import { readEvents } from '../../coordinator/event-files.js';
import { formatDuration, ProgressDisplay, progressLine } from '../../coordinator/progress.js';
import { publishEvents } from '../../coordinator/publish.js';
import type { Broker } from '../../mq-adapters/types.js';

const target: WorkflowTarget = {
  id: 'u1',
  queues: { incoming: 'ewms-u1-in', outgoing: 'ewms-u1-out', deadLetter: 'ewms-u1-in.dlq' },
  broker: { address: 'amqps://alice@mq.example.org/vh', authToken: 'pw-secret' },
  maxDeliveries: 4,
  wireFormat: 'raw',
  depth: async () => 0,
};

describe('pilot environment', () => {
  test('one builder: queues, broker without password, token as a secret, task and init settings', () => {
    const { env, secretKeys } = buildPilotEnv(target, {
      backend: 'local',
      count: 1,
      task: { args: 'scan {{INFILE}}', env: { A: '1' }, timeoutSeconds: 30 },
      init: { args: 'setup', image: 'img' },
      pilotEnv: { EWMS_PILOT_MAX_CONCURRENT_TASKS: '2' },
    });
    expect(env).toMatchObject({
      EWMS_PILOT_QUEUE_INCOMING: 'ewms-u1-in',
      EWMS_PILOT_QUEUE_OUTGOING: 'ewms-u1-out',
      EWMS_PILOT_QUEUE_DEAD_LETTER: 'ewms-u1-in.dlq',
      EWMS_PILOT_QUEUE_INCOMING_BROKER_TYPE: 'rabbitmq',
      EWMS_PILOT_QUEUE_INCOMING_BROKER_ADDRESS: 'amqps://alice@mq.example.org:5671/vh',
      EWMS_PILOT_QUEUE_INCOMING_AUTH_TOKEN: 'pw-secret',
      EWMS_PILOT_MAX_DELIVERIES: '4',
      EWMS_PILOT_WIRE_FORMAT: 'raw',
      EWMS_PILOT_TASK_ARGS: 'scan {{INFILE}}',
      EWMS_PILOT_TASK_ENV_JSON: '{"A":"1"}',
      EWMS_PILOT_TASK_TIMEOUT: '30',
      EWMS_PILOT_INIT_ARGS: 'setup',
      EWMS_PILOT_INIT_IMAGE: 'img',
      EWMS_PILOT_CONTAINER_RUNTIME: 'none',
      EWMS_PILOT_MAX_CONCURRENT_TASKS: '2',
    });
    expect(env.EWMS_PILOT_QUEUE_INCOMING_BROKER_ADDRESS).not.toContain('pw-secret');
    expect(env.EWMS_PILOT_HTCHIRP).toBeUndefined();
    expect(secretKeys.sort()).toEqual(['EWMS_PILOT_QUEUE_INCOMING_AUTH_TOKEN', 'EWMS_PILOT_QUEUE_OUTGOING_AUTH_TOKEN']);
    expect(() => buildPilotEnv(target, { backend: 'local', count: 1, task: { args: 'x' }, pilotEnv: { PATH: '/x' } })).toThrow(/not a pilot setting/);
    expect(() => buildPilotEnv(target, { backend: 'local', count: 1, task: { args: ' ' } })).toThrow(/no task command/);
  });
});

describe('local backend', () => {
  test('pilots get exactly the pilot env; remove() sends SIGTERM, then SIGKILL after the grace', async () => {
    const workDir = mkdtempSync(join(tmpdir(), 'ewms-local-unit-'));
    // A "pilot" that records its environment, then ignores SIGTERM.
    const script = `env | grep -E '^(EWMS_|PATH=)' | sort > env.txt; trap '' TERM; while :; do sleep 0.1; done`;
    const pilotEnv = buildPilotEnv(target, { backend: 'local', count: 2, task: { args: 'x' } });
    const cluster = new LocalPilotCluster(pilotEnv, { workDir, pilotCommand: ['sh', '-c', script], killGraceMs: 300 });
    await cluster.scale(2);
    await new Promise((r) => setTimeout(r, 300));
    expect((await cluster.status()).byState).toEqual({ running: 2 });
    const recorded = readFileSync(join(workDir, 'pilot-0', 'env.txt'), 'utf8').trim().split('\n');
    const expected = Object.entries(pilotEnv.env).map(([k, v]) => `${k}=${v}`);
    expect(recorded.filter((l) => l.startsWith('EWMS_')).sort()).toEqual(expected.sort());
    const t0 = Date.now();
    await cluster.remove();
    expect(Date.now() - t0).toBeGreaterThanOrEqual(250);
    expect(await cluster.status()).toMatchObject({ total: 2, byState: { removed: 2 }, byPilotStatus: { 'signal SIGKILL': 2 } });
  });

  test('scale down stops the newest pilots', async () => {
    const cluster = new LocalPilotCluster(buildPilotEnv(target, { backend: 'local', count: 1, task: { args: 'x' } }), { pilotCommand: ['sleep', '30'], killGraceMs: 1000 });
    await cluster.scale(3);
    await cluster.scale(1);
    expect((await cluster.status()).byState).toEqual({ running: 1, removed: 2 });
    await cluster.remove();
  });
});

describe('autoscaling and progress', () => {
  test('target pilots follow depth between min and max', () => {
    const o = { min: 1, max: 10, eventsPerPilot: 100 };
    expect([0, 1, 100, 101, 550, 1e6].map((d) => targetPilots(d, o))).toEqual([1, 1, 1, 2, 6, 10]);
  });

  test('on a TTY the line is redrawn in place; elsewhere one plain line per interval', () => {
    const chunks: string[] = [];
    const tty = Object.assign(new PassThrough(), { isTTY: true });
    tty.on('data', (b: Buffer) => chunks.push(b.toString()));
    const snap = { published: 10, expected: 10, results: 10, deadLetters: 0 };
    const d = new ProgressDisplay(() => snap, { stream: tty });
    d.draw();
    d.stop();
    expect(chunks[0]).toMatch(/^\r\x1b\[2Ksettled 10\/10/);
    expect(chunks.at(-1)).toBe('\n');
    const plain: string[] = [];
    const log = Object.assign(new PassThrough(), { isTTY: false });
    log.on('data', (b: Buffer) => plain.push(b.toString()));
    new ProgressDisplay(() => snap, { stream: log }).stop();
    expect(plain).toEqual([expect.stringMatching(/^\[progress\] settled 10\/10 .*\n$/)]);
  });

  test('progress line and durations', () => {
    expect(progressLine({ published: 100, expected: 100, results: 40, deadLetters: 10 }, 5)).toBe('settled 50/100 (50.0%): 40 results, 10 dead letters | 50 pending | 5.0/s | ETA 10s');
    expect(progressLine({ published: 10, expected: undefined, results: 1, deadLetters: 0 }, 0)).toBe('settled 1 of 10 published so far: 1 result, 0 dead letters | 9 pending | 0.0/s | ETA publishing');
    // Every event dead-lettered: 100 % settled, and the line says how (never "done 0/200 (100.0%)").
    expect(progressLine({ published: 200, expected: 200, results: 0, deadLetters: 200 }, 0)).toBe('settled 200/200 (100.0%): 0 results, 200 dead letters | 0 pending | 0.0/s | ETA done');
    expect(formatDuration(3725)).toBe('1h02m');
    expect(formatDuration(185)).toBe('3m05s');
  });
});

describe('event files and publishing', () => {
  test('JSONL and directories; a bad line names its place', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ewms-events-'));
    writeFileSync(join(dir, 'a.json'), '{"x": 1}');
    writeFileSync(join(dir, 'b.txt'), 'plain text');
    const fromDir: unknown[] = [];
    for await (const e of readEvents(dir)) fromDir.push(e);
    expect(fromDir).toEqual([{ x: 1 }, 'plain text']);
    const file = join(mkdtempSync(join(tmpdir(), 'ewms-events-')), 'e.jsonl');
    writeFileSync(file, '1\n\n"two"\n{bad\n');
    const got: unknown[] = [];
    await expect((async () => {
      for await (const e of readEvents(file)) got.push(e);
    })()).rejects.toThrow(/e.jsonl:4 is not valid JSON/);
    expect(got).toEqual([1, 'two']);
  });

  test('a failing publish reports exactly which events were confirmed', async () => {
    let n = 0;
    const broker = {
      publish: async (_q: string, m: { eventId?: string }) => {
        if (n++ === 3) throw new Error('channel closed');
        return m.eventId!;
      },
    } as unknown as Broker;
    const err = (await publishEvents(broker, 'q', [1, 2, 3, 4, 5, 6], { wireFormat: 'raw', window: 1 }).catch((e: unknown) => e)) as PublishError;
    expect(err).toBeInstanceOf(PublishError);
    expect(err.published).toHaveLength(3);
    expect(err.message).toMatch(/after 3 of 4 events/);
  });
});
