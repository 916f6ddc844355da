/** The provenance wrapper around the task processor: it adds the step and changes nothing else about the call. */
import { describe, expect, test } from 'vitest';
import { PROVENANCE_HEADERS, readProvenance } from '../../common/provenance.js';
import type { EventProcessor, TaskSlots } from '../../pilot/event-loop.js';
import { withProvenance } from '../../pilot/provenance.js';
import type { Delivery } from '../../mq-adapters/types.js';

const never = async () => {
  throw new Error('not settled here');
};
const delivery: Delivery = { body: Buffer.from('x'), headers: {}, eventId: 'ev-1', deliveryCount: 2, ack: never, nack: never, release: never, deadLetter: never, extendLease: never };
const identity = { taskName: 'fit', version: '1.2.3', image: 'img:1', imageDigest: `sha256:${'a'.repeat(64)}`, wireFormat: 'raw' as const, filterMarkers: false };

describe('withProvenance', () => {
  test('a slot-aware processor stays slot-aware and gets the loop\'s slots (its slot is held around the task process only)', async () => {
    const slots: TaskSlots = { acquire: async () => true, release: () => undefined };
    let given: TaskSlots | undefined;
    const inner: EventProcessor = {
      slotAware: true,
      process: async (_d, _s, s) => {
        given = s;
        return { kind: 'success', outputs: [{ body: Buffer.from('y'), eventId: 'ev-1.out' }], durationMs: 5 };
      },
    };
    const wrapped = withProvenance(inner, identity);
    expect(wrapped.slotAware).toBe(true);
    const outcome = await wrapped.process(delivery, new AbortController().signal, slots);
    expect(given).toBe(slots);
    if (outcome.kind !== 'success') throw new Error(`expected success, got ${outcome.kind}`);
    const [step] = readProvenance(outcome.outputs[0]?.headers?.[PROVENANCE_HEADERS.provenance]);
    expect(step).toMatchObject({ task_name: 'fit', input_event_id: 'ev-1', pilot_version: '1.2.3', image: 'img:1', image_digest: identity.imageDigest, attempt: 2, duration_s: 0.005 });
  });

  test("the step's start and end are the task run's, not the wait for a slot inside the call", async () => {
    const inner: EventProcessor = {
      slotAware: true,
      process: async () => {
        await new Promise((r) => setTimeout(r, 200)); // waiting for a slot, preparing files
        return { kind: 'success', outputs: [{ body: Buffer.from('y'), eventId: 'ev-1.out' }], durationMs: 20 };
      },
    };
    const before = Date.now();
    const outcome = await withProvenance(inner, identity).process(delivery, new AbortController().signal);
    if (outcome.kind !== 'success') throw new Error(`expected success, got ${outcome.kind}`);
    const [step] = readProvenance(outcome.outputs[0]?.headers?.[PROVENANCE_HEADERS.provenance]);
    expect(Date.parse(step!.end) - Date.parse(step!.start)).toBe(20);
    expect(Date.parse(step!.start)).toBeGreaterThanOrEqual(before + 150);
  });

  test('a processor that is not slot-aware stays so (the loop then holds the slot for the whole call)', () => {
    const inner: EventProcessor = { process: async () => ({ kind: 'aborted', durationMs: undefined }) };
    expect(withProvenance(inner, identity).slotAware).toBeUndefined();
  });
});
