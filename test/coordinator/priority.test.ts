/**
 * Urgent events overtake a backlog: with urgent queues, events published with `priority: 'urgent'` go to the
 * task's urgent twin, which pilots drain before their ordinary queue — RabbitMQ quorum queues have no
 * message priorities, so priority is a second queue. Real brokers, real local pilots, 5,000 ordinary events
 * queued ahead.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { CoordinatorConfigError, Workflow, type WorkflowOutcome } from '../../coordinator/index.js';
import { brokerOptions, freshId, type BrokerName } from './helpers.js';

let workDir = '';
beforeEach(() => {
  workDir = mkdtempSync(join(tmpdir(), 'ewms-priority-'));
});
afterEach(() => rmSync(workDir, { recursive: true, force: true }));

const BACKLOG = 5_000;
const URGENT = 10;
const brokers: BrokerName[] = ['rabbitmq', 'nats'];

describe.each(brokers)('urgent events on %s', (name) => {
  test(`${URGENT} urgent events published behind ${BACKLOG} queued ones finish first`, async () => {
    const wf = await Workflow.create({ broker: brokerOptions(name), id: freshId('urg'), urgentQueues: true });
    try {
      const backlog = await wf.publish(Array.from({ length: BACKLOG }, (_, i) => `normal ${i}`));
      const pilots = await wf.startPilots({
        backend: 'local',
        count: 1,
        task: { args: 'cp {{INFILE}} {{OUTFILE}}' },
        pilotEnv: { EWMS_PILOT_MAX_CONCURRENT_TASKS: '2', EWMS_PILOT_TIMEOUT_QUEUE_WAIT_FOR_FIRST_MESSAGE: '30', EWMS_PILOT_TIMEOUT_QUEUE_INCOMING: '30' },
        local: { workDir },
      });
      try {
        const order: WorkflowOutcome[] = [];
        let urgentIds: string[] = [];
        let publishedAt = -1;
        for await (const outcome of wf.collect({ expected: BACKLOG + URGENT, idleTimeoutMs: 60_000 })) {
          order.push(outcome);
          if (order.length === 50) {
            // The pilots are busy with the backlog: now the urgent ones.
            urgentIds = await wf.publish(Array.from({ length: URGENT }, (_, i) => `urgent ${i}`), { priority: 'urgent' });
            publishedAt = order.length;
          }
        }
        const position = new Map(order.map((o, i) => [o.inputEventId, i]));
        const urgentPositions = urgentIds.map((id) => position.get(id) ?? Infinity);
        const backlogLeft = BACKLOG - publishedAt;
        // Every urgent event finished before the rest of the backlog: within the few ordinary events the
        // pilot had already taken (its prefetch and running tasks), not after thousands.
        expect(Math.max(...urgentPositions) - publishedAt).toBeLessThan(URGENT + 30);
        expect(backlogLeft).toBeGreaterThan(4_000);
        expect(order.filter((o) => o.kind === 'result')).toHaveLength(BACKLOG + URGENT);
        expect(new Set(backlog).size).toBe(BACKLOG);
      } finally {
        await pilots.remove();
      }
    } finally {
      await wf.close({ deleteQueues: true });
    }
  }, 300_000);
});

test('urgent events need the urgent queues', async () => {
  const wf = await Workflow.create({ broker: brokerOptions('rabbitmq'), id: freshId('nourg') });
  try {
    await expect(wf.publish(['x'], { priority: 'urgent' })).rejects.toThrow(CoordinatorConfigError);
  } finally {
    await wf.close({ deleteQueues: true });
  }
});
