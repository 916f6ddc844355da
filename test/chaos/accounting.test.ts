/**
 * The chaos suite's own accounting, without brokers: which deliveries a SIGKILLed pilot held or a broker
 * disruption cut (the pilots' delivery and lost-connection lines against the disruption windows), which
 * outcomes are right, that the seed fixes the event mix, and that a secret is found in any file.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { classify } from '../../chaos/classify.js';
import { planEvents, type PlannedEvent } from '../../chaos/events.js';
import { endedDeliveries, findLeaks, readPilotLog } from '../../chaos/pilot-logs.js';
import type { WorkflowOutcome } from '../../coordinator/types.js';

const line = (msg: string, eventId: string, second = 0, brokerDeliveries?: number) =>
  JSON.stringify({ level: 'debug', time: new Date(T0 + second * 1000).toISOString(), eventId, attempt: 1, brokerDeliveries, msg });
const lost = (msg: string, second: number) => JSON.stringify({ level: 'warn', time: new Date(T0 + second * 1000).toISOString(), msg });
const T0 = Date.parse('2026-01-01T00:00:00Z');
const at = (second: number) => T0 + second * 1000;
/** Events held when the log ends, with how many deliveries each. */
const heldAtEnd = (log: string) => {
  const held = new Map<string, number>();
  for (const s of readPilotLog(log).stays) if (s.until === undefined) held.set(s.eventId, (held.get(s.eventId) ?? 0) + 1);
  return held;
};
const good: PlannedEvent = { n: 7, kind: 'good', id: 'e7', data: 'good 7' };
const poison: PlannedEvent = { n: 8, kind: 'poison', id: 'e8', data: 'poison 8' };
const result = (data: string): WorkflowOutcome => ({ kind: 'result', inputEventId: 'x', data, headers: {}, provenance: [], outcomeId: 'x' });
const deadLetter = (reason: string, details: Record<string, string> = {}): WorkflowOutcome => ({ kind: 'dead-letter', inputEventId: 'x', reason, details, data: '', provenance: [], outcomeId: 'x.dlq' });
const once = (outcome: WorkflowOutcome) => ({ times: 1, outcome });

describe('chaos accounting', () => {
  test('a pilot log tells the events received and not settled when it ends (a line cut by the kill is skipped)', () => {
    const log = [
      line('event received', 'a'),
      line('event received', 'b'),
      line('event settled', 'a'),
      line('event received', 'c'),
      line('event received', 'a'),
      '{"level":"debug","eventId":"d","msg":"event rec',
    ].join('\n');
    expect([...heldAtEnd(log)].sort()).toEqual([
      ['a', 1],
      ['b', 1],
      ['c', 1],
    ]);
  });

  test("with the adapter's lines, a delivery still in the prefetch buffer is held too; one dropped with its channel is not", () => {
    const log = [
      line('delivery received', 'a'),
      line('event received', 'a'),
      line('event settled', 'a'),
      line('delivery received', 'b'),
      line('event received', 'b'),
      line('delivery received', 'c'),
      line('delivery received', 'd'),
      line('delivery dropped: its channel died', 'd'),
      line('delivery received', 'e'),
      line('delivery over the limit dead-lettered', 'e'),
    ].join('\n');
    expect([...heldAtEnd(log)].sort()).toEqual([
      ['b', 1],
      ['c', 1],
    ]);
  });

  test('a delivery has its times; two deliveries of one event in one pilot are let go oldest first', () => {
    const log = [line('delivery received', 'a', 1), line('delivery received', 'a', 2), line('event settled', 'a', 3)].join('\n');
    expect(readPilotLog(log).stays).toEqual([
      { eventId: 'a', from: at(1), until: at(3), brokerDeliveries: undefined },
      { eventId: 'a', from: at(2), until: undefined, brokerDeliveries: undefined },
    ]);
  });

  test("deliveries ended: held when a SIGKILLed pilot's log ends, or held when its pilot lost its connection or channel in a disruption; each once", () => {
    const killedPilot = [
      line('delivery received', 'a', 1), // held at the end: killed (held at its pilot's loss too; counted once)
      line('delivery received', 'b', 1),
      line('event settled', 'b', 2), // let go before the loss: neither
      lost('rabbitmq connection lost; reconnecting', 6),
    ].join('\n');
    const livePilot = [
      line('delivery received', 'a', 4), // held at the loss at 7 s, settled (its ack in vain) after: cut
      line('event settled', 'a', 12),
      line('delivery received', 'c', 3),
      lost('rabbitmq consumer channel lost; its deliveries go back to the broker', 7),
      line('delivery dropped: its channel died', 'c', 7), // dropped with its channel: cut
      line('delivery received', 'd', 8), // received after the loss: neither
      line('delivery received', 'e', 1),
      line('event settled', 'e', 6), // settled before the loss: neither
      lost('nats connection lost; reconnecting', 30), // outside every disruption: excuses nothing
    ].join('\n');
    const calmPilot = [line('delivery received', 'f', 6), line('event settled', 'f', 7)].join('\n'); // no loss: neither
    const logs = [
      { text: killedPilot, sigkilled: true },
      { text: livePilot, sigkilled: false },
      { text: calmPilot, sigkilled: false },
    ];
    const window = { from: at(5), until: at(15) };
    expect(Object.fromEntries(endedDeliveries(logs, [window]))).toEqual({ a: { killed: 1, cut: 1 }, c: { killed: 0, cut: 1 } });
    // Without a disruption, only the SIGKILLed pilot's held delivery counts: its lost connection excuses nothing.
    expect(Object.fromEntries(endedDeliveries(logs, []))).toEqual({ a: { killed: 1, cut: 0 } });
    // A line without a time cannot show a delivery cut.
    const untimed = [JSON.stringify({ level: 'debug', eventId: 'g', msg: 'delivery received' }), lost('nats connection lost; reconnecting', 6)].join('\n');
    expect(endedDeliveries([{ text: untimed, sigkilled: false }], [window]).size).toBe(0);
  });

  test('a delivery the broker counted and no log shows is cut when the time it fell in overlaps a disruption', () => {
    const window = { from: at(5), until: at(15) };
    // Delivery 2 of 'a' reached no pilot: between delivery 1's end (4 s) and delivery 3 (12 s), the window.
    const pilots = [
      { text: [line('delivery received', 'a', 1, 1), line('event settled', 'a', 4)].join('\n'), sigkilled: false },
      { text: [line('delivery received', 'a', 12, 3), line('delivery over the limit dead-lettered', 'a', 12)].join('\n'), sigkilled: false },
      // 'b': deliveries 1 and 3 seen, the gap (2 s to 3 s) before the window: excuses nothing.
      { text: [line('delivery received', 'b', 1, 1), line('event settled', 'b', 2), line('delivery received', 'b', 3, 3)].join('\n'), sigkilled: false },
      // 'c': 1, 2, then a copy that starts again at 1 — no gap.
      { text: [line('delivery received', 'c', 6, 1), line('event settled', 'c', 7), line('delivery received', 'c', 8, 2), line('event settled', 'c', 9), line('delivery received', 'c', 10, 1)].join('\n'), sigkilled: false },
      // 'd': first seen as delivery 2 in the window: the unseen first one fell before it, in the window too.
      { text: line('delivery received', 'd', 6, 2), sigkilled: false },
    ];
    expect(Object.fromEntries(endedDeliveries(pilots, [window]))).toEqual({ a: { killed: 0, cut: 1 }, d: { killed: 0, cut: 1 } });
    expect(endedDeliveries(pilots, []).size).toBe(0);
  });

  test('outcomes: right results and reasons pass; a good event dead-lettered for the limit passes only when SIGKILLs and broker cuts ended every attempt', () => {
    const none = { killed: 0, cut: 0 };
    expect(classify(good, once(result('ok 7\n')), none, 3)).toEqual({ verdict: 'ok' });
    expect(classify(good, once(result('ok 8')), none, 3).verdict).toBe('wrong');
    expect(classify(good, undefined, none, 3)).toEqual({ verdict: 'lost' });
    expect(classify(good, { times: 2, outcome: result('ok 7') }, none, 3)).toEqual({ verdict: 'duplicate', times: 2 });
    const limit = deadLetter('delivery limit exceeded: attempt 4 of 3 (a consumer died or lost its connection while holding it)');
    expect(classify(good, once(limit), { killed: 3, cut: 0 }, 3)).toEqual({ verdict: 'limit-expected', killed: 3, cut: 0 });
    // The case a queue-leader failover makes: two pilots SIGKILLed, the third delivery cut by the failover.
    expect(classify(good, once(limit), { killed: 2, cut: 1 }, 3)).toEqual({ verdict: 'limit-expected', killed: 2, cut: 1 });
    expect(classify(good, once(limit), { killed: 0, cut: 3 }, 3)).toEqual({ verdict: 'limit-expected', killed: 0, cut: 3 });
    const short = classify(good, once(limit), { killed: 1, cut: 1 }, 3);
    expect(short.verdict).toBe('wrong');
    expect(short.verdict === 'wrong' && short.problem).toMatch(/SIGKILLed holders 1, cut by a broker disruption 1/);
    // Only the delivery limit is excused: another reason stays wrong however many deliveries were cut.
    expect(classify(good, once(deadLetter('task exited with code 3')), { killed: 3, cut: 2 }, 3).verdict).toBe('wrong');

    expect(classify(poison, once(deadLetter('task exited with code 3')), none, 3)).toEqual({ verdict: 'ok' });
    expect(classify(poison, once(deadLetter('task timed out after 2 s and was stopped', { 'delivery-limit': 'exceeded' })), none, 3)).toEqual({ verdict: 'ok' });
    expect(classify(poison, once(deadLetter('task timed out after 2 s and was stopped')), none, 3).verdict).toBe('wrong');
    expect(classify(poison, once(result('ok 8')), none, 3).verdict).toBe('wrong');
  });

  test('the seed fixes the event mix; every kind is planned, oversize ones only where the broker limit is known', () => {
    const a = planEvents({ seed: 5, events: 1_000, maxMessageBytes: 4096 });
    const b = planEvents({ seed: 5, events: 1_000, maxMessageBytes: 4096 });
    expect(a.map((e) => e.data)).toEqual(b.map((e) => e.data));
    expect(planEvents({ seed: 6, events: 1_000, maxMessageBytes: 4096 }).map((e) => e.kind)).not.toEqual(a.map((e) => e.kind));
    expect(new Set(a.map((e) => e.kind))).toEqual(new Set(['good', 'slow', 'large', 'poison', 'hang', 'bigout', 'malformed', 'oversize']));
    const kinds = new Set(planEvents({ seed: 5, events: 1_000, maxMessageBytes: undefined }).map((e) => e.kind));
    expect(kinds.has('oversize') || kinds.has('bigout')).toBe(false);
  });

  const dir = mkdtempSync(join(tmpdir(), 'ewms-chaos-leaks-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test('a secret is found in any file under the pilots, however deep', () => {
    mkdirSync(join(dir, 'pilot-0', 'ewms-pilot-data', 'e1'), { recursive: true });
    writeFileSync(join(dir, 'pilot-0', 'pilot.err'), '{"msg":"connected"}\n');
    writeFileSync(join(dir, 'pilot-0', 'ewms-pilot-data', 'e1', 'stderr'), 'TOKEN=s3cret-x\nagain s3cret-x\n');
    expect(findLeaks(dir, 's3cret-x')).toEqual([{ file: join('pilot-0', 'ewms-pilot-data', 'e1', 'stderr'), occurrences: 2 }]);
    expect(findLeaks(dir, 'not-there')).toEqual([]);
  });
});
