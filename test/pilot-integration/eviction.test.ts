/**
 * Evictions are not attempts, on the real pilot command line and real brokers: an event whose pilot is
 * SIGTERMed mid-task more often than MAX_DELIVERIES allows attempts still completes on the next pilot; an
 * event that failed once and then crashed pilots (SIGKILL) is dead-lettered with the failure, not with
 * "delivery limit"; and a pilot stopped while its broker is down shuts down cleanly, logging no error.
 */
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, test } from 'vitest';
import { connect } from '../../mq-adapters/index.js';
import { HEADERS } from '../../mq-adapters/types.js';
import { startPrivateNats, startPrivateRabbitMQ, type PrivateBroker } from '../helpers/brokers.js';
import { drainDeliveries, drainOutputs, pilotEnv, publishEvents, startPilot, TestQueues, waitFor, type BrokerName } from './run-pilot.js';

const testQueues = new TestQueues();
const privateBrokers: PrivateBroker[] = [];
afterEach(async () => {
  await testQueues.cleanup();
  for (const b of privateBrokers.splice(0)) await b.dispose();
});

const lines = (file: string) => (existsSync(file) ? readFileSync(file, 'utf8').trim().split('\n').filter(Boolean) : []);
const scratch = (prefix: string) => mkdtempSync(join(tmpdir(), prefix));
const MAX_DELIVERIES = 2;

/** The pilot's log records (one JSON object per stderr line). */
function records(stderr: string): Array<{ level: string; msg: string }> {
  return stderr
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as { level: string; msg: string });
}

/** Kill what a SIGKILLed pilot left running (its tasks lead their own process groups). */
function killTasks(pidFile: string): void {
  for (const pid of lines(pidFile).map(Number)) {
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      // gone already
    }
  }
}

describe.each(['rabbitmq', 'nats'] as BrokerName[])('evictions on %s', (name) => {
  test(`an event evicted (SIGTERM mid-task) ${MAX_DELIVERIES + 1} times on MAX_DELIVERIES=${MAX_DELIVERIES} still completes on the next pilot`, async () => {
    const { broker, queues } = await testQueues.create(name);
    const pids = join(scratch('ewms-evict-'), 'pids');
    const [id] = await publishEvents(broker, queues.incoming, ['sky-map pixel 42']);
    const common = { EWMS_PILOT_MAX_DELIVERIES: String(MAX_DELIVERIES), EWMS_PILOT_TASK_KILL_GRACE: '0.5' };
    const slow = `sh -c 'echo $$ >> ${pids}; sleep 60; cp "$EWMS_TASK_INFILE" "$EWMS_TASK_OUTFILE"'`;
    for (let eviction = 1; eviction <= MAX_DELIVERIES + 1; eviction++) {
      const pilot = startPilot(pilotEnv(name, queues, { ...common, EWMS_PILOT_TASK_ARGS: slow }));
      await waitFor(() => lines(pids).length >= eviction, 20_000, `the task of eviction ${eviction} to start`);
      pilot.child.kill('SIGTERM');
      const ended = await pilot.exited;
      expect(ended.code, pilot.stderr().slice(-2000)).toBe(143);
      expect(records(pilot.stderr()).filter((r) => r.level === 'error' || r.level === 'fatal')).toEqual([]);
    }
    expect(await broker.depth(`${queues.incoming}.dlq`)).toBe(0);

    const last = startPilot(pilotEnv(name, queues, { ...common, EWMS_PILOT_TASK_ARGS: 'cp {{INFILE}} {{OUTFILE}}', EWMS_PILOT_LOG_LEVEL: 'debug' }));
    expect((await last.exited).code, last.stderr().slice(-2000)).toBe(0);
    // Still its first attempt: no eviction counted.
    expect(last.stderr()).toMatch(/"attempt":1,[^\n]*"msg":"event received"/);
    const outputs = await drainOutputs(broker, queues.outgoing, 10, 3000);
    expect(outputs.map((o) => [o.inputEventId, o.data])).toEqual([[id, 'sky-map pixel 42']]);
    expect(await broker.depth(`${queues.incoming}.dlq`)).toBe(0);
    expect(await broker.depth(queues.incoming)).toBe(0);
  }, 120_000);

  test('a task that failed once, then pilots SIGKILLed holding the event: the dead letter names the failure', async () => {
    const { broker, queues } = await testQueues.create(name);
    const dir = scratch('ewms-failkill-');
    const pids = join(dir, 'pids');
    await publishEvents(broker, queues.incoming, ['bad pixel']);
    // First run: fail with a traceback. Every later run: hang until the pilot is killed.
    const task = `sh -c 'if [ ! -e ${dir}/failed ]; then touch ${dir}/failed; echo "ValueError: bad pixel" >&2; exit 3; fi; echo $$ >> ${pids}; sleep 60'`;
    // A short lease, so NATS hands a dead pilot's event out again soon (RabbitMQ does at disconnect).
    const common = { EWMS_PILOT_MAX_DELIVERIES: String(MAX_DELIVERIES), EWMS_PILOT_LEASE_TIMEOUT: '2', EWMS_PILOT_TASK_ARGS: task };

    const failing = startPilot(pilotEnv(name, queues, common));
    // Fail-fast: the failure stops the pilot (exit 1), its event goes back for another attempt.
    expect((await failing.exited).code, failing.stderr().slice(-2000)).toBe(1);

    for (let kill = 1; kill < MAX_DELIVERIES; kill++) {
      const crashing = startPilot(pilotEnv(name, queues, common));
      await waitFor(() => lines(pids).length >= kill, 20_000, `attempt ${kill + 1} to start`);
      crashing.child.kill('SIGKILL');
      await crashing.exited;
      killTasks(pids);
    }

    // The next pilot finds the event beyond its last attempt and dead-letters it without running it.
    const last = startPilot(pilotEnv(name, queues, { ...common, EWMS_PILOT_TIMEOUT_QUEUE_INCOMING: '4' }));
    expect((await last.exited).code, last.stderr().slice(-2000)).toBe(0);
    expect(lines(pids)).toHaveLength(MAX_DELIVERIES - 1);
    const [dead] = await drainDeliveries(broker, `${queues.incoming}.dlq`, 1, 10_000);
    expect(dead?.headers[HEADERS.deadLetterReason]).toBe('task exited with code 3');
    expect(dead?.headers['x-ewms-dlq-stderr-tail']).toContain('ValueError: bad pixel');
    expect(dead?.headers['x-ewms-dlq-error-type']).toBe('TaskExitError');
    expect(dead?.headers['x-ewms-dlq-delivery-limit']).toMatch(/^exceeded: attempt 3 of 2/);
  }, 120_000);
});

describe.each([
  ['rabbitmq', () => startPrivateRabbitMQ()],
  ['nats', () => startPrivateNats()],
] as const)('a pilot stopped while its %s broker is down', (type, start) => {
  test('exits with 143, its summary last, and logs no error', async () => {
    const server = await start();
    privateBrokers.push(server);
    const broker = await connect({ address: server.url, ...(server.managementUrl ? { managementUrl: server.managementUrl } : {}) });
    const queues = { incoming: `pit-down-in-${Date.now()}`, outgoing: `pit-down-out-${Date.now()}` };
    await broker.declareQueue({ name: queues.incoming });
    await publishEvents(broker, queues.incoming, ['x']);
    await broker.close();

    const pids = join(scratch('ewms-down-'), 'pids');
    const address = type === 'rabbitmq' ? `guest@127.0.0.1:${server.port}` : `127.0.0.1:${server.port}`;
    const env = pilotEnv(type, queues, {
      EWMS_PILOT_QUEUE_INCOMING_BROKER_ADDRESS: address,
      EWMS_PILOT_QUEUE_OUTGOING_BROKER_ADDRESS: address,
      EWMS_PILOT_TASK_ARGS: `sh -c 'echo $$ >> ${pids}; sleep 60'`,
      EWMS_PILOT_TASK_KILL_GRACE: '0.5',
    });
    const pilot = startPilot(env);
    await waitFor(() => lines(pids).length >= 1, 20_000, 'the task to start');
    await server.kill();
    await waitFor(() => /connection lost/.test(pilot.stderr()), 20_000, 'the pilot to notice the broker is gone');
    pilot.child.kill('SIGTERM');
    const ended = await pilot.exited;
    expect(ended.code, pilot.stderr().slice(-3000)).toBe(143);
    const logged = records(pilot.stderr());
    expect(logged.filter((r) => r.level === 'error' || r.level === 'fatal'), pilot.stderr().slice(-3000)).toEqual([]);
    // The exit summary is the last word: nothing is logged after it.
    expect(logged.at(-1)?.msg, pilot.stderr().slice(-3000)).toMatch(/^stopped by SIGTERM/);
  }, 120_000);
});
