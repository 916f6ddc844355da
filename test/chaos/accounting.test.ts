/**
 * The chaos suite's own accounting, without brokers: which events a SIGKILLed pilot held (from its log), which
 * outcomes are right, that the seed fixes the event mix, and that a secret is found in any file.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { classify } from '../../chaos/classify.js';
import { planEvents, type PlannedEvent } from '../../chaos/events.js';
import { findLeaks, heldAtEnd } from '../../chaos/pilot-logs.js';
import type { WorkflowOutcome } from '../../coordinator/types.js';

const line = (msg: string, eventId: string) => JSON.stringify({ level: 'debug', eventId, attempt: 1, msg });
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

  test('outcomes: right results and reasons pass; a good event dead-lettered passes only when SIGKILLed pilots held every attempt', () => {
    expect(classify(good, once(result('ok 7\n')), 0, 3)).toEqual({ verdict: 'ok' });
    expect(classify(good, once(result('ok 8')), 0, 3).verdict).toBe('wrong');
    expect(classify(good, undefined, 0, 3)).toEqual({ verdict: 'lost' });
    expect(classify(good, { times: 2, outcome: result('ok 7') }, 0, 3)).toEqual({ verdict: 'duplicate', times: 2 });
    const limit = deadLetter('delivery limit exceeded: attempt 4 of 3 (a consumer died or lost its connection while holding it)');
    expect(classify(good, once(limit), 3, 3)).toEqual({ verdict: 'limit-after-kills', holds: 3 });
    expect(classify(good, once(limit), 2, 3).verdict).toBe('wrong');
    expect(classify(good, once(deadLetter('task exited with code 3')), 5, 3).verdict).toBe('wrong');

    expect(classify(poison, once(deadLetter('task exited with code 3')), 0, 3)).toEqual({ verdict: 'ok' });
    expect(classify(poison, once(deadLetter('task timed out after 2 s and was stopped', { 'delivery-limit': 'exceeded' })), 0, 3)).toEqual({ verdict: 'ok' });
    expect(classify(poison, once(deadLetter('task timed out after 2 s and was stopped')), 0, 3).verdict).toBe('wrong');
    expect(classify(poison, once(result('ok 8')), 0, 3).verdict).toBe('wrong');
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
