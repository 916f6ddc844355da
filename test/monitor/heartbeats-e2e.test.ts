/**
 * Heartbeats over the real brokers with the real pilot command line: a pilot that finishes shows `done` with
 * its counts and dead letters by reason; a pilot SIGKILLed in the middle of a task stops sending and turns
 * `stale` (page data and /metrics), its last counts kept and its task no longer counted as running.
 */
import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import parsePrometheusTextFormat from 'parse-prometheus-text-format';
import { startMonitor, type Monitor, type MonitorSnapshot } from '../../coordinator/monitor/index.js';
import { Workflow } from '../../coordinator/workflow.js';
import type { ConnectOptions } from '../../mq-adapters/types.js';
import { alive, pilotEnv, startPilot, waitFor, type BrokerName, type PilotRun } from '../pilot-integration/run-pilot.js';

const BROKER_OPTIONS: Record<BrokerName, ConnectOptions> = {
  rabbitmq: { address: 'amqp://guest@127.0.0.1:5672', authToken: 'guest' },
  nats: { address: 'nats://127.0.0.1:4222' },
};

async function status(monitor: Monitor): Promise<MonitorSnapshot> {
  const res = await fetch(`${monitor.url}api/status`);
  expect(res.status).toBe(200);
  return (await res.json()) as MonitorSnapshot;
}

/** Poll /api/status until `check` holds (the monitor is fed asynchronously; no fixed sleeps). */
async function until(monitor: Monitor, what: string, check: (s: MonitorSnapshot) => boolean, timeoutMs = 40_000): Promise<MonitorSnapshot> {
  const deadline = Date.now() + timeoutMs;
  let last: MonitorSnapshot | undefined;
  while (Date.now() < deadline) {
    last = await status(monitor);
    if (check(last)) return last;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`timed out waiting for ${what}; last status: ${JSON.stringify(last).slice(0, 2000)}`);
}

describe.each(['rabbitmq', 'nats'] as const)('heartbeats on %s', (brokerName) => {
  let workflow: Workflow | undefined;
  let monitor: Monitor | undefined;
  const pilots: PilotRun[] = [];
  afterEach(async () => {
    for (const p of pilots.splice(0)) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
    await monitor?.close();
    await workflow?.close({ deleteQueues: true }).catch(() => undefined);
  });

  it('shows a finished pilot as done with its counts, and a SIGKILLed one as stale', async () => {
    const id = `mon-${randomUUID().slice(0, 8)}`;
    workflow = await Workflow.create({ broker: BROKER_OPTIONS[brokerName], id, maxDeliveries: 1 });
    monitor = await startMonitor({ workflowId: id, broker: BROKER_OPTIONS[brokerName], port: 0, pollMs: 300 });
    const queues = { incoming: workflow.queues.incoming, outgoing: workflow.queues.outgoing };
    const common = {
      EWMS_PILOT_QUEUE_MONITOR: `ewms-${id}-monitor`,
      EWMS_PILOT_QUEUE_DEAD_LETTER: workflow.queues.deadLetter,
      EWMS_PILOT_MAX_DELIVERIES: '1',
      EWMS_PILOT_HEARTBEAT_INTERVAL: '0.5',
      EWMS_PILOT_STOP_LISTENING_ON_TASK_ERROR: 'false',
    };

    // A pilot that works through 5 events, one of which fails, and ends when the queue is empty.
    await workflow.publish(['a', 'b', 'c', 'd', 'FAIL']);
    const worker = startPilot(
      pilotEnv(brokerName, queues, {
        ...common,
        EWMS_PILOT_TASK_ARGS: `sh -c 'grep -q FAIL "$0" && { echo "bad input: FAIL" >&2; exit 3; }; cp "$0" "$1"' {{INFILE}} {{OUTFILE}}`,
        EWMS_PILOT_TIMEOUT_QUEUE_INCOMING: '1',
      }),
    );
    pilots.push(worker);
    expect((await worker.exited).code).toBe(0);
    let s = await until(monitor, 'the finished pilot', (x) => x.pilots.some((p) => p.status === 'done'));
    expect(s.tasks[0]).toMatchObject({ name: 'task-0', done: 4, failed: 1, inFlight: 0 });
    expect(s.pilots[0]).toMatchObject({ status: 'done', succeeded: 4, deadLettered: 1, exitCode: 0, stopReason: 'idle-timeout' });
    expect(s.deadLetters).toEqual([expect.objectContaining({ task: 'task-0', reason: 'task exited with code 3', count: 1, errorType: 'TaskExitError' })]);
    expect(s.deadLetters[0]!.sampleStderrTail).toContain('bad input: FAIL');

    // A pilot killed (SIGKILL: no last word) while its task runs.
    await workflow.publish(['slow']);
    const victim = startPilot(pilotEnv(brokerName, queues, { ...common, EWMS_PILOT_TASK_ARGS: 'sleep 6', EWMS_PILOT_TIMEOUT_QUEUE_INCOMING: '60' }));
    pilots.push(victim);
    s = await until(monitor, 'the second pilot running its task', (x) => x.pilots.some((p) => p.status === 'tasking' && p.inFlight === 1));
    expect(s.tasks[0]!.inFlight).toBe(1);
    const victimId = s.pilots.find((p) => p.status === 'tasking')!.id;
    victim.child.kill('SIGKILL');
    await waitFor(() => !alive(victim.child.pid!), 10_000, 'the pilot to die');

    s = await until(monitor, 'the killed pilot to turn stale', (x) => x.pilots.some((p) => p.id === victimId && p.status === 'stale'));
    expect(s.pilots[0]!.id).toBe(victimId); // trouble is listed first
    expect(s.tasks[0]).toMatchObject({ done: 4, failed: 1, inFlight: 0, pilots: { done: 1, stale: 1 } });

    const metrics = parsePrometheusTextFormat(await (await fetch(`${monitor.url}metrics`)).text());
    const pilotsByState = metrics.find((f) => f.name === 'ewms_pilots')!.metrics;
    expect(Number(pilotsByState.find((m) => m.labels?.state === 'stale')!.value)).toBe(1);
    expect(Number(pilotsByState.find((m) => m.labels?.state === 'done')!.value)).toBe(1);
  });
});
