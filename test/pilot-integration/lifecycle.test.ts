/**
 * The pilot's life around its tasks, on the real command line and real brokers: eviction (SIGTERM) and a
 * crash (SIGKILL) mid-task lose nothing and duplicate nothing a consumer can see; malformed events go to
 * the dead-letter queue at once; long tasks keep their lease; HTChirp reports to the starter's chirp proxy.
 */
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, test } from 'vitest';
import { HEADERS } from '../../mq-adapters/types.js';
// @ts-expect-error -- a plain .mjs test stand-in without types
import { startChirpStarter } from '../pilot/stand-ins/chirp-starter.mjs';
import { alive, drainDeliveries, drainOutputs, pilotEnv, publishEvents, startPilot, TestQueues, waitFor, type BrokerName, type Output } from './run-pilot.js';

const testQueues = new TestQueues();
afterEach(() => testQueues.cleanup());

const lines = (file: string) => (existsSync(file) ? readFileSync(file, 'utf8').trim().split('\n').filter(Boolean) : []);
const scratch = (prefix: string) => mkdtempSync(join(tmpdir(), prefix));

/** Every input answered, and answered by one output event id (what a deduplicating consumer keeps). */
function expectEachAnsweredOnce(outputs: Output[], inputIds: string[], data: (i: number) => string): void {
  const outputIdByInput = new Map<string, Set<string>>();
  for (const o of outputs) {
    const ids = outputIdByInput.get(o.inputEventId) ?? new Set<string>();
    ids.add(o.delivery.eventId);
    outputIdByInput.set(o.inputEventId, ids);
  }
  expect([...outputIdByInput.keys()].sort()).toEqual([...inputIds].sort());
  for (const ids of outputIdByInput.values()) expect(ids.size).toBe(1);
  inputIds.forEach((id, i) => expect(outputs.find((o) => o.inputEventId === id)?.data).toBe(data(i)));
}

describe.each(['rabbitmq', 'nats'] as BrokerName[])('pilot lifecycle on %s', (name) => {
  test('SIGTERM mid-task: in-flight tasks stopped after the grace, events released; a second pilot completes each once', async () => {
    const { broker, queues } = await testQueues.create(name);
    const pids = join(scratch('ewms-term-'), 'pids');
    const ids = await publishEvents(broker, queues.incoming, Array.from({ length: 6 }, (_, i) => `e${i}`));
    const task = `sh -c 'echo $$ >> ${pids}; sleep 3; cp "$EWMS_TASK_INFILE" "$EWMS_TASK_OUTFILE"'`;
    const first = startPilot(pilotEnv(name, queues, { EWMS_PILOT_TASK_ARGS: task, EWMS_PILOT_MAX_CONCURRENT_TASKS: '2', EWMS_PILOT_TASK_KILL_GRACE: '0.5' }));
    await waitFor(() => lines(pids).length >= 2, 15_000, 'two tasks to start');
    first.child.kill('SIGTERM');
    const ended = await first.exited;
    expect(ended.code, first.stderr().slice(-2000)).toBe(143);
    for (const pid of lines(pids).map(Number)) expect(alive(pid), `task ${pid} outlived the pilot`).toBe(false);

    const second = startPilot(pilotEnv(name, queues, { EWMS_PILOT_TASK_ARGS: 'cp {{INFILE}} {{OUTFILE}}', EWMS_PILOT_MAX_CONCURRENT_TASKS: '2' }));
    expect((await second.exited).code, second.stderr().slice(-2000)).toBe(0);
    const outputs = await drainOutputs(broker, queues.outgoing, 100, 3000);
    expect(outputs).toHaveLength(6); // a graceful stop publishes nothing twice
    expectEachAnsweredOnce(outputs, ids, (i) => `e${i}`);
    expect(await broker.depth(queues.incoming)).toBe(0);
  }, 90_000);

  test('SIGKILL mid-task: unacked events come back; a second pilot completes each, deduplicated by event id', async () => {
    const { broker, queues } = await testQueues.create(name);
    const pids = join(scratch('ewms-kill-'), 'pids');
    const ids = await publishEvents(broker, queues.incoming, Array.from({ length: 6 }, (_, i) => `k${i}`));
    // A short lease, so NATS hands the dead pilot's events out again soon (RabbitMQ does at disconnect).
    const common = { EWMS_PILOT_MAX_CONCURRENT_TASKS: '2', EWMS_PILOT_LEASE_TIMEOUT: '2', EWMS_PILOT_TIMEOUT_QUEUE_INCOMING: '6' };
    const task = `sh -c 'echo $$ >> ${pids}; sleep 1; cp "$EWMS_TASK_INFILE" "$EWMS_TASK_OUTFILE"'`;
    const first = startPilot(pilotEnv(name, queues, { ...common, EWMS_PILOT_TASK_ARGS: task }));
    await waitFor(() => lines(pids).length >= 3, 15_000, 'a task to start after one completed');
    first.child.kill('SIGKILL');
    expect((await first.exited).signal).toBe('SIGKILL');
    // The crashed pilot's tasks lead their own process groups; HTCondor would remove them with the job.
    for (const pid of lines(pids).map(Number)) {
      try {
        process.kill(-pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }

    const second = startPilot(pilotEnv(name, queues, { ...common, EWMS_PILOT_TASK_ARGS: 'cp {{INFILE}} {{OUTFILE}}' }));
    expect((await second.exited).code, second.stderr().slice(-2000)).toBe(0);
    const outputs = await drainOutputs(broker, queues.outgoing, 100, 3000);
    expectEachAnsweredOnce(outputs, ids, (i) => `k${i}`);
    expect(await broker.depth(queues.incoming)).toBe(0);
  }, 90_000);

  test('a malformed event is dead-lettered on its first delivery with the reason; the pilot goes on', async () => {
    const { broker, queues } = await testQueues.create(name);
    await publishEvents(broker, queues.incoming, ['good-1']);
    const badId = await broker.publish(queues.incoming, { body: Buffer.from('this is not zstd at all') });
    await publishEvents(broker, queues.incoming, ['good-2']);
    const pilot = startPilot(pilotEnv(name, queues, { EWMS_PILOT_TASK_ARGS: 'cp {{INFILE}} {{OUTFILE}}' }));
    expect((await pilot.exited).code, pilot.stderr().slice(-2000)).toBe(0);
    const outputs = await drainOutputs(broker, queues.outgoing, 2);
    expect(outputs.map((o) => o.data).sort()).toEqual(['good-1', 'good-2']);
    const dead = await drainDeliveries(broker, `${queues.incoming}.dlq`, 1);
    expect(dead).toHaveLength(1);
    expect(dead[0]!.eventId).toBe(badId);
    expect(Buffer.from(dead[0]!.body).toString()).toBe('this is not zstd at all');
    expect(dead[0]!.headers[HEADERS.deadLetterReason]).toMatch(/malformed event.*zstd/);
    expect(dead[0]!.headers[HEADERS.deadLetterDeliveries]).toBe('1');
  }, 60_000);
});

describe('long tasks keep their lease (NATS)', () => {
  test('a task twice as long as the lease is not handed to another pilot meanwhile', async () => {
    const { broker, queues } = await testQueues.create('nats');
    const starts = join(scratch('ewms-lease-'), 'starts');
    await publishEvents(broker, queues.incoming, ['long']);
    const env = pilotEnv('nats', queues, {
      EWMS_PILOT_TASK_ARGS: `sh -c 'echo start >> ${starts}; sleep 6; cp "$EWMS_TASK_INFILE" "$EWMS_TASK_OUTFILE"'`,
      EWMS_PILOT_LEASE_TIMEOUT: '3',
      EWMS_PILOT_TIMEOUT_QUEUE_WAIT_FOR_FIRST_MESSAGE: '9',
    });
    const first = startPilot(env);
    await waitFor(() => lines(starts).length >= 1, 15_000, 'the task to start');
    await new Promise((r) => setTimeout(r, 1000)); // the second pilot is pulling before the lease would lapse
    const second = startPilot({ ...env, EWMS_PILOT_DATA_DIR_PARENT_PATH_ON_HOST: scratch('ewms-lease-2-') });
    const [a, b] = await Promise.all([first.exited, second.exited]);
    expect(a.code, first.stderr().slice(-2000)).toBe(0);
    expect(b.code, second.stderr().slice(-2000)).toBe(0);
    expect(lines(starts)).toHaveLength(1);
    const outputs = await drainOutputs(broker, queues.outgoing, 10, 2000);
    expect(outputs.map((o) => o.data)).toEqual(['long']);
  }, 60_000);
});

describe('HTChirp', () => {
  test('the Python pilot\'s statuses and counts reach the starter\'s chirp proxy as typed ClassAd values', async () => {
    const { broker, queues } = await testQueues.create('rabbitmq');
    const jobDir = scratch('ewms-chirp-job-');
    const starter = await startChirpStarter(jobDir);
    try {
      await publishEvents(broker, queues.incoming, ['a', 'b', 'c']);
      const pilot = startPilot(
        pilotEnv('rabbitmq', queues, {
          EWMS_PILOT_TASK_ARGS: 'cp {{INFILE}} {{OUTFILE}}',
          EWMS_PILOT_HTCHIRP: 'true',
          EWMS_PILOT_HTCHIRP_RATELIMIT_INTERVAL: '0',
          _CONDOR_SCRATCH_DIR: jobDir,
        }),
      );
      expect((await pilot.exited).code, pilot.stderr().slice(-2000)).toBe(0);
      const ad = starter.ad as Map<string, { type: string; value?: unknown }>;
      expect(ad.get('HTChirpEWMSPilotStatus')).toEqual({ type: 'string', value: 'Done' });
      expect(ad.get('HTChirpEWMSPilotTasksTotal')).toEqual({ type: 'integer', value: 3 });
      expect(ad.get('HTChirpEWMSPilotTasksSuccess')).toEqual({ type: 'integer', value: 3 });
      expect(ad.has('HTChirpEWMSPilotTasksFailed')).toBe(false);
      expect(Number(ad.get('HTChirpEWMSPilotStartedTimestamp')?.value)).toBeGreaterThan(1_600_000_000);
      const statuses = (starter.requests as string[]).filter((r) => r.startsWith('set_job_attr HTChirpEWMSPilotStatus ')).map((r) => r.split(' ')[2]);
      expect(statuses).toEqual(['"Started"', '"AwaitingFirstMessage"', '"Tasking"', '"Done"']);
    } finally {
      await starter.close();
    }
  }, 60_000);
});

describe('wall-time budget', () => {
  test('MAX_WORKER_RUNTIME stops intake a task timeout before the budget; in-flight work finishes; exit 0', async () => {
    const { broker, queues } = await testQueues.create('rabbitmq');
    await publishEvents(broker, queues.incoming, Array.from({ length: 40 }, (_, i) => `w${i}`));
    const started = Date.now();
    const pilot = startPilot(
      pilotEnv('rabbitmq', queues, {
        EWMS_PILOT_TASK_ARGS: `sh -c 'sleep 0.3; cp "$EWMS_TASK_INFILE" "$EWMS_TASK_OUTFILE"'`,
        EWMS_PILOT_MAX_WORKER_RUNTIME: '3',
        EWMS_PILOT_TASK_TIMEOUT: '1',
      }),
    );
    const { code } = await pilot.exited;
    expect(code, pilot.stderr().slice(-2000)).toBe(0);
    expect(pilot.stderr()).toMatch(/max-runtime/);
    expect(Date.now() - started).toBeLessThan(40 * 300); // well short of running them all
    const outputs = await drainOutputs(broker, queues.outgoing, 40, 2000);
    expect(outputs.length).toBeGreaterThan(0);
    expect(outputs.length).toBeLessThan(40);
    expect(await broker.depth(queues.incoming)).toBe(40 - outputs.length);
  }, 60_000);
});

describe('secrets', () => {
  test("a task's environment holds none of the pilot's EWMS_PILOT_* variables (they carry broker credentials)", async () => {
    const { broker, queues } = await testQueues.create('rabbitmq');
    await publishEvents(broker, queues.incoming, ['x']);
    const pilot = startPilot(
      pilotEnv('rabbitmq', queues, { EWMS_PILOT_TASK_ARGS: `sh -c 'env > "$EWMS_TASK_OUTFILE"'`, EWMS_PILOT_TASK_ENV_JSON: '{"MINE": "kept"}' }),
    );
    expect((await pilot.exited).code, pilot.stderr().slice(-2000)).toBe(0);
    const [out] = await drainOutputs(broker, queues.outgoing, 1);
    expect(String(out?.data)).toMatch(/^EWMS_TASK_INFILE=/m);
    expect(String(out?.data)).toMatch(/^MINE=kept$/m);
    expect(String(out?.data)).not.toMatch(/EWMS_PILOT_|AUTH_TOKEN/);
  }, 60_000);
});

describe('start-up', () => {
  test('a failing init command stops the pilot with exit 1 before it takes any event', async () => {
    const { broker, queues } = await testQueues.create('rabbitmq');
    await publishEvents(broker, queues.incoming, ['a', 'b']);
    const pilot = startPilot(pilotEnv('rabbitmq', queues, { EWMS_PILOT_TASK_ARGS: 'cp {{INFILE}} {{OUTFILE}}', EWMS_PILOT_INIT_ARGS: `sh -c 'echo no-model >&2; exit 5'` }));
    expect((await pilot.exited).code).toBe(1);
    expect(pilot.stderr()).toMatch(/init command exited with code 5.*no-model/);
    expect(pilot.stdout()).toContain('no-model'); // its output is dumped
    expect(await broker.depth(queues.incoming)).toBe(2);
  }, 60_000);

  test('a failing init command quarantines before exit 1, as the Python pilot does', async () => {
    const { broker, queues } = await testQueues.create('rabbitmq');
    await publishEvents(broker, queues.incoming, ['a']);
    const started = Date.now();
    const pilot = startPilot(pilotEnv('rabbitmq', queues, { EWMS_PILOT_TASK_ARGS: 'true', EWMS_PILOT_INIT_ARGS: 'false', EWMS_PILOT_QUARANTINE_TIME: '2' }));
    expect((await pilot.exited).code, pilot.stderr().slice(-2000)).toBe(1);
    expect(pilot.stderr()).toMatch(/quarantine: sleeping/);
    expect(Date.now() - started).toBeGreaterThanOrEqual(2000);
    expect(await broker.depth(queues.incoming)).toBe(1);
  }, 60_000);

  test('SIGTERM during a long init stops it and the pilot (exit 143) without taking work', async () => {
    const { broker, queues } = await testQueues.create('rabbitmq');
    await publishEvents(broker, queues.incoming, ['a']);
    const pids = join(scratch('ewms-init-term-'), 'pids');
    const pilot = startPilot(
      pilotEnv('rabbitmq', queues, { EWMS_PILOT_TASK_ARGS: 'true', EWMS_PILOT_INIT_ARGS: `sh -c 'echo $$ > ${pids}; sleep 300'`, EWMS_PILOT_TASK_KILL_GRACE: '1' }),
    );
    await waitFor(() => lines(pids).length === 1, 15_000, 'init to start');
    pilot.child.kill('SIGTERM');
    expect((await pilot.exited).code, pilot.stderr().slice(-2000)).toBe(143);
    expect(alive(Number(lines(pids)[0]))).toBe(false);
    expect(await broker.depth(queues.incoming)).toBe(1);
  }, 60_000);

  test('a container runtime that is not installed is exit 2 before any broker work', async () => {
    const pilot = startPilot(
      pilotEnv('rabbitmq', { incoming: 'rt-in', outgoing: 'rt-out' }, {
        EWMS_PILOT_TASK_ARGS: 'true',
        EWMS_PILOT_TASK_IMAGE: '/images/task.sif',
        EWMS_PILOT_CONTAINER_RUNTIME: 'apptainer',
        PATH: scratch('ewms-empty-path-'),
      }),
    );
    expect((await pilot.exited).code).toBe(2);
    expect(pilot.stderr()).toMatch(/RuntimeSetupError: apptainer/);
  }, 30_000);

  test('DUMP_TASK_OUTPUT copies each task\'s stdout and stderr to the pilot\'s stdout', async () => {
    const { broker, queues } = await testQueues.create('rabbitmq');
    await publishEvents(broker, queues.incoming, ['dump-me']);
    const pilot = startPilot(
      pilotEnv('rabbitmq', queues, { EWMS_PILOT_TASK_ARGS: `sh -c 'echo "out:$(cat {{INFILE}})"; echo err-line >&2'`, EWMS_PILOT_DUMP_TASK_OUTPUT: 'true' }),
    );
    expect((await pilot.exited).code, pilot.stderr().slice(-2000)).toBe(0);
    expect(pilot.stdout()).toContain('out:dump-me');
    expect(pilot.stdout()).toContain('err-line');
  }, 60_000);
});

describe('stops that must be prompt and on time (review)', () => {
  test('SIGTERM during the fail-fast quarantine ends the pilot at once with 143', async () => {
    const { broker, queues } = await testQueues.create('rabbitmq');
    await publishEvents(broker, queues.incoming, ['a']);
    const pilot = startPilot(pilotEnv('rabbitmq', queues, { EWMS_PILOT_TASK_ARGS: 'false', EWMS_PILOT_QUARANTINE_TIME: '120' }));
    await waitFor(() => /quarantine: sleeping/.test(pilot.stderr()), 20_000, 'the quarantine');
    const signalled = Date.now();
    pilot.child.kill('SIGTERM');
    expect((await pilot.exited).code, pilot.stderr().slice(-2000)).toBe(143);
    expect(Date.now() - signalled).toBeLessThan(10_000);
  }, 60_000);

  test('MAX_WORKER_RUNTIME counts from the pilot start: an init that used the budget up leaves no time for events', async () => {
    const { broker, queues } = await testQueues.create('rabbitmq');
    await publishEvents(broker, queues.incoming, ['a', 'b', 'c', 'd', 'e', 'f']);
    const started = Date.now();
    const pilot = startPilot(
      pilotEnv('rabbitmq', queues, {
        EWMS_PILOT_TASK_ARGS: 'sleep 0.5',
        EWMS_PILOT_INIT_ARGS: 'sleep 4',
        EWMS_PILOT_TASK_TIMEOUT: '1',
        EWMS_PILOT_MAX_WORKER_RUNTIME: '4',
      }),
    );
    expect((await pilot.exited).code, pilot.stderr().slice(-2000)).toBe(0);
    expect(pilot.stderr()).toMatch(/"stopReason":"max-runtime"/);
    expect(Date.now() - started).toBeLessThan(7_000); // budget 4 s (+ process start-up and exit)
    expect(await broker.depth(queues.incoming)).toBe(6); // nothing was taken after the budget ran out
  }, 60_000);

  test('a host task runs in the pilot\'s working directory (a transferred script by relative path works)', async () => {
    const { broker, queues } = await testQueues.create('rabbitmq');
    await publishEvents(broker, queues.incoming, ['hello']);
    const sandbox = scratch('ewms-job-sandbox-');
    writeFileSync(join(sandbox, 'task.sh'), 'tr a-z A-Z < "$1" > "$2"\n');
    const env = pilotEnv('rabbitmq', queues, { EWMS_PILOT_TASK_ARGS: 'sh task.sh {{INFILE}} {{OUTFILE}}' });
    const { spawn } = await import('node:child_process');
    const { PILOT_CLI } = await import('./run-pilot.js');
    const child = spawn(process.execPath, [PILOT_CLI], { cwd: sandbox, env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env }, stdio: 'ignore' });
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    expect(code).toBe(0);
    const outputs = await drainOutputs(broker, queues.outgoing, 1);
    expect(outputs.map((o) => o.data)).toEqual(['HELLO']);
  }, 60_000);
});
