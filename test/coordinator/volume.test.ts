/**
 * Volume: 100,000 small events published, moved to the outgoing queue by a real consumer on its own
 * connection (the echo pilot), and collected — nothing lost, nothing doubled, counted by id. The time each
 * phase takes is printed for the record; it is not asserted (speed goals live in bench/).
 */
import { afterEach, describe, expect, test } from 'vitest';
import { Workflow } from '../../coordinator/index.js';
import { BROKER_NAMES, brokerOptions, freshId, startEchoPilot, type EchoPilot } from './helpers.js';

const N = 100_000;
const cleanup: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f().catch(() => undefined);
});

describe.each(BROKER_NAMES)('volume on %s', (name) => {
  test(`${N.toLocaleString('en')} events published then collected, every one exactly once`, async () => {
    const wf = await Workflow.create({ broker: brokerOptions(name), id: freshId('vol') });
    cleanup.push(() => wf.close({ deleteQueues: true }));
    const pilot: EchoPilot = await startEchoPilot(name, wf.queues, () => 'echo', 500);
    cleanup.push(() => pilot.stop());

    const t0 = Date.now();
    const ids = await wf.publish((function* () {
      for (let i = 0; i < N; i++) yield { i };
    })());
    const published = Date.now();
    expect(ids).toHaveLength(N);

    const seen = new Set<string>();
    let checksum = 0;
    for await (const o of wf.collect({ expected: ids, idleTimeoutMs: 60_000 })) {
      expect(o.kind).toBe('result');
      seen.add(o.inputEventId);
      checksum += (o.data as { i: number }).i;
    }
    const collected = Date.now();
    expect(seen.size).toBe(N);
    expect(checksum).toBe((N * (N - 1)) / 2);
    expect(wf.collectStats).toMatchObject({ results: N, deadLetters: 0, unexpected: 0 });
    // Every input acked too (the mover acks after its output is confirmed, so the last acks may trail).
    const deadline = Date.now() + 15_000;
    while ((await wf.depth()) > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
    expect(await wf.depth()).toBe(0);
    console.log(
      `[volume ${name}] ${N} events: publish ${((published - t0) / 1000).toFixed(1)} s (${Math.round(N / ((published - t0) / 1000))}/s), ` +
        `collect done ${((collected - published) / 1000).toFixed(1)} s later, total ${((collected - t0) / 1000).toFixed(1)} s; duplicates dropped ${wf.collectStats.duplicates}`,
    );
  }, 300_000);
});
