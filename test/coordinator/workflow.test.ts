/**
 * The Workflow API against the real brokers: publish → (a real consumer moves events) → collect, with
 * dedup, dead letters, requeue and ack-after-take.
 */
import { afterEach, describe, expect, test } from 'vitest';
import { Workflow } from '../../coordinator/index.js';
import type { WorkflowOutcome } from '../../coordinator/types.js';
import { BROKER_NAMES, brokerOptions, freshId, startEchoPilot, type EchoPilot } from './helpers.js';

const cleanup: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f().catch(() => undefined);
});

async function workflow(name: (typeof BROKER_NAMES)[number], wireFormat: 'mqclient' | 'raw' = 'mqclient'): Promise<Workflow> {
  const wf = await Workflow.create({ broker: brokerOptions(name), id: freshId('wf'), wireFormat });
  cleanup.push(() => wf.close({ deleteQueues: true }));
  return wf;
}

function track(p: EchoPilot): EchoPilot {
  cleanup.push(() => p.stop());
  return p;
}

async function all(it: AsyncIterable<WorkflowOutcome>): Promise<WorkflowOutcome[]> {
  const got: WorkflowOutcome[] = [];
  for await (const o of it) got.push(o);
  return got;
}

describe.each(BROKER_NAMES)('Workflow on %s', (name) => {
  test('publish then collect: each event once, data intact, duplicates counted and dropped', async () => {
    const wf = await workflow(name);
    const events = Array.from({ length: 500 }, (_, i) => ({ pixel: i, nside: 8 }));
    const ids = await wf.publish(events);
    expect(new Set(ids).size).toBe(500);
    track(await startEchoPilot(name, wf.queues, (_id, i) => (i % 50 === 0 ? 'echo-twice' : 'echo')));
    const outcomes = await all(wf.collect({ expected: ids, idleTimeoutMs: 20_000 }));
    expect(outcomes).toHaveLength(500);
    const byId = new Map(outcomes.map((o) => [o.inputEventId, o]));
    ids.forEach((id, i) => expect(byId.get(id)).toMatchObject({ kind: 'result', data: { pixel: i, nside: 8 } }));
    expect(wf.collectStats).toMatchObject({ results: 500, deadLetters: 0 });
    // The second copies may still be in flight when the last first copy arrives; none reached the caller.
    expect(wf.collectStats.duplicates).toBeLessThanOrEqual(10);
  });

  test('the raw wire format carries strings as they are', async () => {
    const wf = await workflow(name, 'raw');
    const ids = await wf.publish((async function* () {
      for (let i = 0; i < 20; i++) yield `line ${i}`;
    })());
    track(await startEchoPilot(name, wf.queues));
    const outcomes = await all(wf.collect({ expected: ids.length, idleTimeoutMs: 20_000 }));
    expect(outcomes.map((o) => o.data).sort()).toEqual(Array.from({ length: 20 }, (_, i) => `line ${i}`).sort());
  });

  test('a dead-lettered event settles as a dead letter with its reason; requeue brings it back with the same id', async () => {
    const wf = await workflow(name);
    const ids = await wf.publish(['ok-0', 'POISON', 'ok-2']);
    const poisonId = ids[1]!;
    let pilot = await startEchoPilot(name, wf.queues, (id) => (id === poisonId ? 'dead-letter' : 'echo'));
    const outcomes = await all(wf.collect({ expected: ids, idleTimeoutMs: 20_000 }));
    await pilot.stop();
    const dead = outcomes.filter((o) => o.kind === 'dead-letter');
    expect(dead).toEqual([{ kind: 'dead-letter', inputEventId: poisonId, reason: 'task exited with code 3', details: expect.objectContaining({ stderr: 'bad pixel' }), data: 'POISON', provenance: [], outcomeId: poisonId }]);

    // collect acked the dead letter: the queue is empty again. Put it back for listing and requeueing.
    expect(await wf.deadLetters().list()).toEqual([]);
    pilot = track(await startEchoPilot(name, wf.queues, () => 'dead-letter'));
    await wf.broker.publish(wf.queues.incoming, { body: (await import('../../common/wire.js')).encodeEnvelope('POISON'), eventId: poisonId });
    await waitFor(async () => (await wf.deadLetters().depth()) === 1);
    await pilot.stop();

    const listed = await wf.deadLetters().list();
    expect(listed).toHaveLength(1);
    expect(listed[0]).toMatchObject({ inputEventId: poisonId, reason: 'task exited with code 3', data: 'POISON' });
    expect(await wf.deadLetters().list(), 'listing does not consume').toHaveLength(1);

    const requeued = await wf.deadLetters().requeue();
    expect(requeued).toEqual([poisonId]);
    track(await startEchoPilot(name, wf.queues));
    const again = await all(wf.collect({ expected: [poisonId], idleTimeoutMs: 20_000 }));
    expect(again).toEqual([expect.objectContaining({ kind: 'result', inputEventId: poisonId, data: 'POISON' })]);
  });

  test('an outcome is acked only once the caller asks for the next: stopping early leaves it in the queue', async () => {
    const wf = await workflow(name);
    const ids = await wf.publish(['a', 'b', 'c']);
    track(await startEchoPilot(name, wf.queues));
    const first: WorkflowOutcome[] = [];
    for await (const o of wf.collect({ expected: ids, idleTimeoutMs: 20_000 })) {
      first.push(o);
      break;
    }
    expect(first).toHaveLength(1);
    const rest = await all(wf.collect({ expected: ids, idleTimeoutMs: 20_000 }));
    expect(rest.map((o) => o.inputEventId).sort()).toEqual([...ids].sort());
  });

  test('collect times out with the counts when nothing arrives', async () => {
    const wf = await workflow(name);
    const ids = await wf.publish(['lonely']);
    await expect(all(wf.collect({ expected: ids, idleTimeoutMs: 300 }))).rejects.toThrow(/0 of 1 events settled/);
  });
});

async function waitFor(check: () => Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 100));
  }
}
