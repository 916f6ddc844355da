/**
 * A pilot between several queues, as a task of a workflow graph runs: several input queues read (urgent twins
 * first), every output published to each output queue, provenance headers on every output, filter markers.
 * Real brokers, the real pilot command line, host tasks.
 */
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, test } from 'vitest';
import { PROVENANCE_HEADERS as P, readProvenance } from '../../common/provenance.js';
import { HEADERS, type Broker } from '../../mq-adapters/types.js';
import { brokerUrl, drainDeliveries, drainOutputs, openBroker, pilotEnv, publishEvents, startPilot, type BrokerName } from './run-pilot.js';

const brokers: BrokerName[] = ['rabbitmq', 'nats'];
const opened: Array<{ broker: Broker; queues: string[] }> = [];
afterEach(async () => {
  for (const { broker, queues } of opened.splice(0)) {
    for (const q of queues) await broker.deleteQueue(q).catch(() => undefined);
    await broker.close().catch(() => undefined);
  }
});

/** Fresh queues named `<prefix>-<name>` on `name`, declared, deleted after the test. */
async function queuesOn(name: BrokerName, ...names: string[]): Promise<{ broker: Broker; q: Record<string, string> }> {
  const broker = await openBroker(name);
  const id = randomUUID().slice(0, 8);
  const q = Object.fromEntries(names.map((n) => [n, `gq-${n}-${id}`]));
  for (const queue of Object.values(q)) await broker.declareQueue({ name: queue });
  opened.push({ broker, queues: Object.values(q).flatMap((x) => [x, `${x}.dlq`]) });
  return { broker, q };
}

describe.each(brokers)('pilot between several queues on %s', (name) => {
  test('reads two input queues and publishes each output to both output queues, with provenance', async () => {
    const { broker, q } = await queuesOn(name, 'a', 'b', 'x', 'y');
    const fromA = await publishEvents(broker, q.a!, ['a0', 'a1', 'a2']);
    const fromB = await publishEvents(broker, q.b!, ['b0', 'b1']);
    const env = pilotEnv(name, { incoming: `${q.a};${q.b}`, outgoing: `${q.x};${q.y}` }, {
      EWMS_PILOT_TASK_ARGS: 'cp {{INFILE}} {{OUTFILE}}',
      EWMS_PILOT_TASK_NAME: 'copy',
    });
    const pilot = startPilot(env);
    expect((await pilot.exited).code, pilot.stderr().slice(-2000)).toBe(0);
    const inputs = [...fromA, ...fromB];
    const ids: string[][] = [];
    for (const out of [q.x!, q.y!]) {
      const outputs = await drainOutputs(broker, out, 5);
      ids.push(outputs.map((o) => o.delivery.eventId));
      expect(outputs.map((o) => o.inputEventId).sort()).toEqual([...inputs].sort());
      for (const o of outputs) {
        const h = o.delivery.headers;
        expect(h[P.rootEventId]).toBe(o.inputEventId);
        expect(h[P.share]).toBe('1/2');
        const steps = readProvenance(h[P.provenance]);
        expect(steps).toHaveLength(1);
        expect(steps[0]).toMatchObject({ task_name: 'copy', input_event_id: o.inputEventId, attempt: 1 });
        expect(steps[0]!.pilot_version).toMatch(/\d+\.\d+/);
        expect(Date.parse(steps[0]!.end)).toBeGreaterThanOrEqual(Date.parse(steps[0]!.start));
        expect(steps[0]!.duration_s).toBeGreaterThanOrEqual(0);
      }
    }
    // The two copies of one output have ids of their own: meeting again downstream, neither is taken for the other.
    expect(new Set([...ids[0]!, ...ids[1]!]).size).toBe(10);
  }, 90_000);

  test('what waits in the urgent twin is taken before the ordinary backlog, and its output goes to the urgent output', async () => {
    const { broker, q } = await queuesOn(name, 'in', 'inu', 'out', 'outu');
    await publishEvents(broker, q.in!, Array.from({ length: 30 }, (_, i) => `normal-${i}`));
    await Promise.all(
      ['urgent-0', 'urgent-1'].map((d) =>
        broker.publish(q.inu!, { body: Buffer.from(JSON.stringify(d)), headers: { [P.priority]: 'urgent' } }).then(() => undefined),
      ),
    );
    const env = pilotEnv(name, { incoming: q.in!, outgoing: q.out! }, {
      EWMS_PILOT_TASK_ARGS: 'cp {{INFILE}} {{OUTFILE}}',
      EWMS_PILOT_WIRE_FORMAT: 'raw',
      EWMS_PILOT_QUEUE_INCOMING_URGENT: q.inu!,
      EWMS_PILOT_QUEUE_OUTGOING_URGENT: q.outu!,
    });
    const pilot = startPilot(env);
    expect((await pilot.exited).code, pilot.stderr().slice(-2000)).toBe(0);
    const urgent = await drainDeliveries(broker, q.outu!, 2);
    expect(urgent.map((d) => Buffer.from(d.body).toString()).sort()).toEqual(['"urgent-0"', '"urgent-1"']);
    const normal = await drainDeliveries(broker, q.out!, 30);
    expect(normal).toHaveLength(30);
    // Taken first: both urgent outputs are older than all but the first ordinary one (held by the prefetch).
    const steps = (d: (typeof normal)[number]) => readProvenance(d.headers[P.provenance])[0]!;
    const lastUrgentStart = Math.max(...urgent.map((d) => Date.parse(steps(d).start)));
    expect(normal.filter((d) => Date.parse(steps(d).start) < lastUrgentStart).length).toBeLessThanOrEqual(1);
  }, 90_000);

  test('filter markers: an event the task drops becomes a marker, and a marker received is passed on untouched', async () => {
    const { broker, q } = await queuesOn(name, 'in', 'out');
    const ids = await publishEvents(broker, q.in!, ['keep', 'DROP']);
    await broker.publish(q.in!, { body: Buffer.from('ignored'), eventId: 'upstream-marker', headers: { [P.filtered]: 'earlier-task', [P.rootEventId]: 'root-9', [P.share]: '1/3' } });
    const env = pilotEnv(name, { incoming: q.in!, outgoing: q.out! }, {
      EWMS_PILOT_TASK_ARGS: `sh -c 'grep -q DROP "$EWMS_TASK_INFILE" || cp "$EWMS_TASK_INFILE" "$EWMS_TASK_OUTFILE"'`,
      EWMS_PILOT_TASK_NAME: 'filter',
      EWMS_PILOT_FILTER_MARKERS: 'true',
    });
    const pilot = startPilot(env);
    expect((await pilot.exited).code, pilot.stderr().slice(-2000)).toBe(0);
    const outputs = await drainDeliveries(broker, q.out!, 3);
    const byInput = new Map(outputs.map((d) => [d.headers[HEADERS.inputEventId], d.headers]));
    expect(byInput.get(ids[0]!)?.[P.filtered]).toBeUndefined();
    expect(byInput.get(ids[1]!)?.[P.filtered]).toBe('filter');
    expect(byInput.get(ids[1]!)?.[P.rootEventId]).toBe(ids[1]);
    expect(byInput.get('upstream-marker')).toMatchObject({ [P.filtered]: 'earlier-task', [P.rootEventId]: 'root-9', [P.share]: '1/3' });
  }, 90_000);

  test('a dead letter names the task and keeps the provenance its event came with', async () => {
    const { broker, q } = await queuesOn(name, 'in', 'out');
    const chain = JSON.stringify([{ task_name: 'first', input_event_id: 'r', pilot_version: '0', host: 'h', attempt: 1, start: '', end: '', duration_s: 0 }]);
    await broker.publish(q.in!, { body: Buffer.from('x'), eventId: 'ev-1', headers: { [P.rootEventId]: 'r', [P.provenance]: chain } });
    const env = pilotEnv(name, { incoming: q.in!, outgoing: q.out! }, {
      EWMS_PILOT_TASK_ARGS: `sh -c 'exit 4'`,
      EWMS_PILOT_TASK_NAME: 'second',
      EWMS_PILOT_WIRE_FORMAT: 'raw',
      EWMS_PILOT_MAX_DELIVERIES: '1',
      EWMS_PILOT_STOP_LISTENING_ON_TASK_ERROR: 'false',
    });
    const pilot = startPilot(env);
    expect((await pilot.exited).code, pilot.stderr().slice(-2000)).toBe(0);
    const [dead] = await drainDeliveries(broker, `${q.in}.dlq`, 1);
    expect(dead?.headers[`${HEADERS.deadLetterDetailPrefix}task-name`]).toBe('second');
    expect(dead?.headers[P.rootEventId]).toBe('r');
    expect(readProvenance(dead?.headers[P.provenance])[0]?.task_name).toBe('first');
  }, 90_000);
});

test('the Python MQClient side reads a pilot output with provenance: body decoded, headers readable', async () => {
  const { broker, q } = await queuesOn('rabbitmq', 'in', 'out');
  await publishEvents(broker, q.in!, [{ pixel: 7 }]);
  const env = pilotEnv('rabbitmq', { incoming: q.in!, outgoing: q.out! }, {
    EWMS_PILOT_TASK_ARGS: 'cp {{INFILE}} {{OUTFILE}}',
    EWMS_PILOT_INFILE_EXT: '.json',
    EWMS_PILOT_OUTFILE_EXT: '.json',
    EWMS_PILOT_TASK_NAME: 'copy',
  });
  const pilot = startPilot(env);
  expect((await pilot.exited).code, pilot.stderr().slice(-2000)).toBe(0);
  const script = fileURLToPath(new URL('../interop/python_mqclient_rabbitmq.py', import.meta.url));
  const r = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    const child = spawn('/usr/bin/python3', [script, 'consume', brokerUrl('rabbitmq'), q.out!, '1', '20', 'amqp-headers']);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
  expect(r.code, r.stderr).toBe(0);
  const got = JSON.parse(r.stdout.trim()) as { data: unknown; amqp_headers: Record<string, string> };
  expect(got.data).toEqual({ pixel: 7 });
  expect(readProvenance(got.amqp_headers[P.provenance])[0]?.task_name).toBe('copy');
}, 90_000);
