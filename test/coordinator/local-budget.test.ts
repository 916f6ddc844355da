/**
 * A pilot budget shared by several workflows on one machine: the higher priority gets its pilots first,
 * taking slots from lower ones, which get them back when it is done. Real local pilot processes (a stand-in
 * pilot command that just waits) and, through `Workflow`, the real broker.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, expect, test } from 'vitest';
import { LocalPilotBudget, Workflow, type PilotCluster } from '../../coordinator/index.js';
import { brokerOptions, freshId } from './helpers.js';

let workDir = '';
beforeEach(() => {
  workDir = mkdtempSync(join(tmpdir(), 'ewms-budget-'));
});
afterEach(() => rmSync(workDir, { recursive: true, force: true }));

/** A pilot that only waits: what is measured is how many run. */
const WAITING_PILOT = ['sleep', '60'];

async function running(cluster: PilotCluster): Promise<number> {
  return (await cluster.status()).byState.running ?? 0;
}

test('two workflows share a budget of 3: the higher priority gets its pilots first, the lower gets the rest back after', async () => {
  const budget = new LocalPilotBudget(3);
  const low = await Workflow.create({ broker: brokerOptions('rabbitmq'), id: freshId('low'), priority: 1 });
  const high = await Workflow.create({ broker: brokerOptions('rabbitmq'), id: freshId('high'), priority: 10 });
  const pilots = (priorityDir: string) => ({
    backend: 'local' as const,
    count: 3,
    task: { args: 'true' },
    local: { budget, pilotCommand: WAITING_PILOT, workDir: join(workDir, priorityDir), killGraceMs: 500 },
  });
  try {
    const lowPilots = await low.startPilots(pilots('low'));
    expect(await running(lowPilots)).toBe(3);
    const highPilots = await high.startPilots({ ...pilots('high'), count: 2 });
    // The higher priority took two slots from the lower one.
    expect(await running(highPilots)).toBe(2);
    expect(await running(lowPilots)).toBe(1);
    expect(budget.grants()).toEqual({ [lowPilots.id]: 1, [highPilots.id]: 2 });
    await highPilots.remove();
    // Its slots went back to the one that waited.
    expect(await running(lowPilots)).toBe(3);
    await lowPilots.remove();
    expect(budget.grants()).toEqual({});
  } finally {
    await low.close({ deleteQueues: true });
    await high.close({ deleteQueues: true });
  }
}, 60_000);

test('a budget needs at least one slot', () => {
  expect(() => new LocalPilotBudget(0)).toThrow(/at least one slot/);
});
