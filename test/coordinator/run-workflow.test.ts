/**
 * `runWorkflow` as the library call a generator makes: real broker, local backend with real pilots, and
 * autoscaling from 1 towards 3 pilots while the queue is deep.
 */
import { PassThrough } from 'node:stream';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { PilotBackendError, runWorkflow, Workflow, type WorkflowOutcome } from '../../coordinator/index.js';
import { brokerOptions, freshId } from './helpers.js';

let workDir = '';
beforeEach(() => {
  workDir = mkdtempSync(join(tmpdir(), 'ewms-rw-pilots-'));
});
afterEach(() => rmSync(workDir, { recursive: true, force: true }));

describe('runWorkflow', () => {
  test('publishes, autoscales local pilots with the queue depth, collects every outcome, removes pilots and queues', async () => {
    const outcomes: WorkflowOutcome[] = [];
    let progress = '';
    const report = await runWorkflow({
      broker: brokerOptions('nats'),
      id: freshId('rw'),
      events: Array.from({ length: 300 }, (_, i) => `event ${i}`),
      pilots: {
        backend: 'local',
        count: 1,
        task: { args: `sh -c 'sleep 0.05; cp {{INFILE}} {{OUTFILE}}'` },
        pilotEnv: { EWMS_PILOT_TIMEOUT_QUEUE_WAIT_FOR_FIRST_MESSAGE: '20', EWMS_PILOT_TIMEOUT_QUEUE_INCOMING: '3' },
        autoscale: { min: 1, max: 3, eventsPerPilot: 50, periodSeconds: 1 },
        local: { workDir },
      },
      onOutcome: (o) => {
        outcomes.push(o);
      },
      idleTimeoutMs: 60_000,
      progress: { stream: Object.assign(new PassThrough(), { isTTY: false }).on('data', (b: Buffer) => (progress += b.toString())), logIntervalMs: 500 },
    });
    expect(report).toMatchObject({ published: 300, results: 300, deadLetters: 0, queuesDeleted: true });
    expect(new Set(outcomes.map((o) => o.inputEventId)).size).toBe(300);
    expect(outcomes.map((o) => o.data).sort()).toEqual(Array.from({ length: 300 }, (_, i) => `event ${i}`).sort());
    // The autoscaler added pilots while the queue was deep.
    expect(report.pilots?.total).toBeGreaterThan(1);
    expect(progress).toMatch(/\[progress\] settled 300\/300 \(100\.0%\): 300 results, 0 dead letters \| 0 pending .*ETA done/);
  }, 90_000);

  test('pilots that cannot start end the run with the cause, not a long idle timeout', async () => {
    const id = freshId('rwfail');
    const t0 = Date.now();
    const err = await runWorkflow({
      broker: brokerOptions('rabbitmq'),
      id,
      events: ['a', 'b'],
      pilots: { backend: 'local', count: 2, task: { args: 'true' }, local: { workDir, pilotCommand: ['sh', '-c', 'echo "bad setting" >&2; exit 2'] } },
      onOutcome: () => undefined,
      idleTimeoutMs: 120_000,
      progress: false,
      deleteQueues: true,
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PilotBackendError);
    expect(String(err)).toMatch(/every pilot has ended \(2 failed; 2× exit 2\)/);
    expect(Date.now() - t0).toBeLessThan(15_000);
    const wf = await Workflow.create({ broker: brokerOptions('rabbitmq'), id });
    await wf.close({ deleteQueues: true });
  }, 30_000);
});
