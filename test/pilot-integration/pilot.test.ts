/**
 * The pilot end to end, as HTCondor runs it: `node dist/pilot/cli.js` configured by environment, real
 * brokers, host runtime (`none`), real task processes.
 */
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, test } from 'vitest';
import { HEADERS } from '../../mq-adapters/types.js';
import { decodeEnvelope } from '../../common/wire.js';
import { alive, drainOutputs, pilotEnv, publishEvents, startPilot, TestQueues, type BrokerName } from './run-pilot.js';

const brokers: BrokerName[] = ['rabbitmq', 'nats'];
const testQueues = new TestQueues();
afterEach(() => testQueues.cleanup());
const setup = (name: BrokerName) => testQueues.create(name);

describe.each(brokers)('pilot on %s', (name) => {
  test('1,000 events through 2 pilots with cp: every output present once, every input acked', async () => {
    const { broker, queues } = await setup(name);
    const ids = await publishEvents(broker, queues.incoming, Array.from({ length: 1000 }, (_, i) => `event ${i}\n`));
    const env = pilotEnv(name, queues, { EWMS_PILOT_TASK_ARGS: 'cp {{INFILE}} {{OUTFILE}}', EWMS_PILOT_MAX_CONCURRENT_TASKS: '2' });
    const pilots = [startPilot(env), startPilot(env)];
    const results = await Promise.all(pilots.map((p) => p.exited));
    for (const [i, r] of results.entries()) expect(r.code, pilots[i]!.stderr().slice(-2000)).toBe(0);
    const outputs = await drainOutputs(broker, queues.outgoing, 1000);
    expect(outputs).toHaveLength(1000);
    const byInput = new Map(outputs.map((o) => [o.inputEventId, o.data]));
    expect(byInput.size).toBe(1000);
    ids.forEach((id, i) => expect(byInput.get(id)).toBe(`event ${i}\n`));
    expect(await broker.depth(queues.incoming)).toBe(0);
  }, 180_000);

  test('a task failing on one event: retried, then dead-lettered with the reason; the rest unaffected', async () => {
    const { broker, queues } = await setup(name);
    const events = ['ok-1', 'POISON', 'ok-2', 'ok-3'];
    const ids = await publishEvents(broker, queues.incoming, events);
    const env = pilotEnv(name, queues, {
      EWMS_PILOT_TASK_ARGS: `sh -c 'if grep -q POISON "$EWMS_TASK_INFILE"; then echo "bad pixel" >&2; exit 3; fi; cp "$EWMS_TASK_INFILE" "$EWMS_TASK_OUTFILE"'`,
      EWMS_PILOT_STOP_LISTENING_ON_TASK_ERROR: 'false',
      EWMS_PILOT_MAX_DELIVERIES: '3',
    });
    const pilot = startPilot(env);
    const { code } = await pilot.exited;
    expect(code, pilot.stderr().slice(-2000)).toBe(0);
    const outputs = await drainOutputs(broker, queues.outgoing, 3);
    expect(outputs.map((o) => o.data).sort()).toEqual(['ok-1', 'ok-2', 'ok-3']);
    const dead = await drainOutputs(broker, `${queues.incoming}.dlq`, 1);
    expect(dead).toHaveLength(1);
    const d = dead[0]!.delivery;
    expect(d.eventId).toBe(ids[1]);
    expect(decodeEnvelope(d.body).data).toBe('POISON');
    expect(d.headers[HEADERS.deadLetterReason]).toMatch(/exit(ed)? (with )?code 3/);
    expect(d.headers[HEADERS.deadLetterDeliveries]).toBe('3');
    expect(Object.values(d.headers).join('\n')).toContain('bad pixel');
  }, 120_000);

  test('fail-fast: the first task failure stops the pilot, which exits non-zero after the quarantine', async () => {
    const { broker, queues } = await setup(name);
    await publishEvents(broker, queues.incoming, ['POISON', ...Array.from({ length: 20 }, (_, i) => `ok-${i}`)]);
    const env = pilotEnv(name, queues, {
      EWMS_PILOT_TASK_ARGS: `sh -c 'grep -q POISON "$EWMS_TASK_INFILE" && exit 7; sleep 0.2; cp "$EWMS_TASK_INFILE" "$EWMS_TASK_OUTFILE"'`,
      EWMS_PILOT_QUARANTINE_TIME: '2',
    });
    const started = Date.now();
    const pilot = startPilot(env);
    const { code } = await pilot.exited;
    expect(code).not.toBe(0);
    expect(Date.now() - started).toBeGreaterThanOrEqual(2000);
    expect(pilot.stderr()).toMatch(/task/i);
    // It stopped taking work: most events are still there for a healthy pilot.
    expect(await broker.depth(queues.incoming)).toBeGreaterThan(10);
  }, 60_000);

  test('a task past its timeout: its whole process tree is killed and the event is redelivered', async () => {
    const { broker, queues } = await setup(name);
    const pidDir = mkdtempSync(join(tmpdir(), 'ewms-pids-'));
    await publishEvents(broker, queues.incoming, ['slow']);
    const env = pilotEnv(name, queues, {
      EWMS_PILOT_TASK_ARGS: `sh -c 'echo $$ >> ${pidDir}/pids; sleep 300 & echo $! >> ${pidDir}/pids; wait'`,
      EWMS_PILOT_TASK_TIMEOUT: '1',
      EWMS_PILOT_TASK_KILL_GRACE: '1',
      EWMS_PILOT_MAX_DELIVERIES: '2',
      EWMS_PILOT_STOP_LISTENING_ON_TASK_ERROR: 'false',
    });
    const pilot = startPilot(env);
    const { code } = await pilot.exited;
    expect(code, pilot.stderr().slice(-2000)).toBe(0);
    const pids = readFileSync(join(pidDir, 'pids'), 'utf8').trim().split('\n').map(Number);
    expect(pids.length).toBe(4); // two attempts, a shell and a sleep each: it was redelivered
    for (const pid of pids) expect(alive(pid), `pid ${pid} still running`).toBe(false);
    const dead = await drainOutputs(broker, `${queues.incoming}.dlq`, 1);
    expect(dead[0]?.delivery.headers[HEADERS.deadLetterReason]).toMatch(/timed out|timeout/i);
  }, 60_000);

  test('init runs once before any event; the data hub is shared by init and tasks', async () => {
    const { broker, queues } = await setup(name);
    await publishEvents(broker, queues.incoming, ['a', 'b', 'c']);
    const env = pilotEnv(name, queues, {
      EWMS_PILOT_INIT_ARGS: `sh -c 'echo init >> {{DATA_HUB}}/init-ran; echo shared-model > {{DATA_HUB}}/model.txt'`,
      EWMS_PILOT_TASK_ARGS: `sh -c 'cat {{DATA_HUB}}/model.txt {{INFILE}} > {{OUTFILE}}; cat {{DATA_HUB}}/init-ran | wc -l >> {{OUTFILE}}'`,
    });
    const pilot = startPilot(env);
    expect((await pilot.exited).code, pilot.stderr().slice(-2000)).toBe(0);
    const outputs = await drainOutputs(broker, queues.outgoing, 3);
    expect(outputs.map((o) => String(o.data).split('\n').map((s) => s.trim()).join('|')).sort()).toEqual([
      'shared-model|a1|',
      'shared-model|b1|',
      'shared-model|c1|',
    ]);
  }, 60_000);

  test('event data and args with quotes, $(), ; and newlines reach the task verbatim and run nothing', async () => {
    const { broker, queues } = await setup(name);
    const marker = join(mkdtempSync(join(tmpdir(), 'ewms-inject-')), 'pwned');
    const nasty = `it's "quoted" $(touch ${marker}) \`touch ${marker}\`; touch ${marker}\nline2`;
    await publishEvents(broker, queues.incoming, [nasty]);
    const env = pilotEnv(name, queues, {
      EWMS_PILOT_TASK_ARGS: `sh -c 'cat "$1" > "$2"; printf "%s|" "$3" >> "$2"' task {{INFILE}} {{OUTFILE}} 'arg with $(touch ${marker}); and "quotes"'`,
    });
    const pilot = startPilot(env);
    expect((await pilot.exited).code, pilot.stderr().slice(-2000)).toBe(0);
    const [out] = await drainOutputs(broker, queues.outgoing, 1);
    expect(out?.data).toBe(`${nasty}arg with $(touch ${marker}); and "quotes"|`);
    expect(existsSync(marker)).toBe(false);
  }, 60_000);

  test('idle timeout ends a pilot with nothing to do with exit 0', async () => {
    const { queues } = await setup(name);
    const env = pilotEnv(name, queues, {
      EWMS_PILOT_TASK_ARGS: 'true',
      EWMS_PILOT_TIMEOUT_QUEUE_WAIT_FOR_FIRST_MESSAGE: '1',
    });
    const pilot = startPilot(env);
    const started = Date.now();
    expect((await pilot.exited).code, pilot.stderr().slice(-2000)).toBe(0);
    expect(Date.now() - started).toBeLessThan(15_000);
  }, 30_000);
});

describe('configuration errors stop the pilot at start with exit 2 and no secret', () => {
  const secret = 'sup3r-s3cret-t0ken';
  const base = (extra: Record<string, string>) =>
    pilotEnv('rabbitmq', { incoming: 'cfg-in', outgoing: 'cfg-out' }, { EWMS_PILOT_QUEUE_INCOMING_AUTH_TOKEN: secret, ...extra });

  test.each([
    ['missing task args', { EWMS_PILOT_TASK_ARGS: '' }, /TASK_ARGS/],
    ['unknown broker type', { EWMS_PILOT_TASK_ARGS: 'true', EWMS_PILOT_QUEUE_INCOMING_BROKER_TYPE: 'kafka' }, /BROKER_TYPE/],
    ['malformed TASK_ENV_JSON', { EWMS_PILOT_TASK_ARGS: 'true', EWMS_PILOT_TASK_ENV_JSON: '{not json' }, /TASK_ENV_JSON/],
  ])('%s', async (_label, extra, pattern) => {
    const pilot = startPilot(base(extra as Record<string, string>));
    const { code } = await pilot.exited;
    expect(code).toBe(2);
    const all = pilot.stdout() + pilot.stderr();
    expect(all).toMatch(pattern);
    expect(all).not.toContain(secret);
  });
});

