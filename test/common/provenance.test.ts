/** Provenance headers: the chain stays under its cap keeping the first and latest steps; shares add up exactly. */
import { describe, expect, test } from 'vitest';
import { addShares, isWhole, readProvenance, readShare, splitShare, WHOLE, writeProvenance, writeShare, type ProvenanceStep } from '../../common/provenance.js';

const step = (i: number): ProvenanceStep => ({ task_name: `task-${i}`, input_event_id: `ev-${i}`, pilot_version: '0.1.0', host: 'node-1', attempt: 1, start: 's', end: 'e', duration_s: 0.5 });

describe('provenance chain', () => {
  test('written and read back as it is while small', () => {
    const steps = [step(0), step(1)];
    expect(readProvenance(writeProvenance(steps))).toEqual(steps);
  });

  test('over the cap: the first step and the latest kept, the gap counted', () => {
    const steps = Array.from({ length: 200 }, (_, i) => step(i));
    const text = writeProvenance(steps, 2048);
    expect(Buffer.byteLength(text)).toBeLessThanOrEqual(2048);
    const read = readProvenance(text);
    expect(read[0]?.task_name).toBe('task-0');
    expect(read.at(-1)?.task_name).toBe('task-199');
    expect(read[1]?.dropped_before).toBe(200 - read.length);
    // Capped again further down the graph, the count keeps what was dropped before.
    const again = readProvenance(writeProvenance([...read, ...Array.from({ length: 50 }, (_, i) => step(200 + i))], 2048));
    expect(again[1]?.dropped_before).toBe(250 - again.length);
  });

  test('an unreadable header is no provenance, never an error', () => {
    expect(readProvenance('{not json')).toEqual([]);
    expect(readProvenance(undefined)).toEqual([]);
  });
});

describe('shares', () => {
  test('a fan-out to 3 then to 2 adds back to the whole, exactly', () => {
    const third = splitShare(WHOLE, 3);
    const sixth = splitShare(third, 2);
    let sum = addShares(sixth, sixth);
    expect(isWhole(sum)).toBe(false);
    sum = addShares(addShares(sum, third), third);
    expect(isWhole(sum)).toBe(true);
    expect(writeShare(sixth)).toBe('1/6');
    expect(readShare('1/6')).toEqual(sixth);
  });

  test('absent or malformed: the whole', () => {
    expect(readShare(undefined)).toEqual(WHOLE);
    expect(readShare('3/2')).toEqual(WHOLE);
    expect(readShare('x')).toEqual(WHOLE);
  });
});
