/**
 * Conformance, volume: 10,000 messages in and out — none lost, none duplicated — with the times printed
 * so a slow adapter shows up in the CI log (the benchmarks measure rates properly; this checks counts).
 */
import { expect, test } from 'vitest';
import { Resources, eventually } from './harness.js';
import { forEachTarget } from './targets.js';

const COUNT = 10_000;

forEachTarget('volume', (target) => {
  const res = new Resources({ address: target.url });

  test(`${COUNT.toLocaleString('en')} messages in and out (concurrent publish, prefetch 100): none lost, none duplicated`, async () => {
    const publisher = await res.connect();
    const q = await res.queue(publisher);
    const body = (i: number) => new TextEncoder().encode(`event ${i} `.padEnd(100, '.'));

    const t0 = performance.now();
    // All at once: the adapter's in-flight limit is what must keep this from flooding.
    const ids = await Promise.all(Array.from({ length: COUNT }, (_, i) => publisher.publish(q, { body: body(i), eventId: `v-${i}` })));
    const published = performance.now() - t0;
    expect(new Set(ids).size).toBe(COUNT);
    expect(await publisher.depth(q)).toBe(COUNT);

    // A separate connection, as a pilot would have.
    const consumer = await res.connect();
    const rx = await res.consume(consumer, q, { prefetch: 100 });
    const seen = new Map<string, number>();
    const acks: Array<Promise<void>> = [];
    const t1 = performance.now();
    while (seen.size < COUNT) {
      const d = await rx.next(10_000);
      seen.set(d.eventId, (seen.get(d.eventId) ?? 0) + 1);
      // Settled without waiting, as concurrent tasks would; prefetch still bounds what is in hand.
      acks.push(d.ack());
    }
    await Promise.all(acks);
    const consumed = performance.now() - t1;
    // Anything still to come would be a duplicate.
    expect(await rx.poll(1_000)).toBeUndefined();

    const duplicated = [...seen].filter(([, n]) => n > 1).map(([id]) => id);
    const missing = Array.from({ length: COUNT }, (_, i) => `v-${i}`).filter((id) => !seen.has(id));
    expect(missing).toEqual([]);
    expect(duplicated).toEqual([]);
    await eventually('depth after consuming everything', () => consumer.depth(q), (n) => n === 0);

    const rate = (ms: number) => Math.round((COUNT / ms) * 1000).toLocaleString('en');
    console.log(
      `[conformance] ${target.type}: ${COUNT} messages — publish ${Math.round(published)} ms (${rate(published)}/s), ` +
        `consume+ack ${Math.round(consumed)} ms (${rate(consumed)}/s)`,
    );
  }, 120_000);
});
