/**
 * Is an event's outcome the right one? Results for events that succeed (with the right text), dead letters
 * with the right reason for events that fail. One exception is allowed, and counted: a good event
 * dead-lettered for the delivery limit after as many SIGKILLed pilots held it as there are attempts — a crash
 * is indistinguishable from a task that kills its pilot, so it counts as an attempt.
 */
import type { WorkflowOutcome } from '../coordinator/types.js';
import { RESULT_KINDS, expectedResult, type EventKind, type PlannedEvent } from './events.js';

export type Classification =
  | { verdict: 'ok' }
  | { verdict: 'lost' }
  | { verdict: 'duplicate'; times: number }
  | { verdict: 'limit-after-kills'; holds: number }
  | { verdict: 'wrong'; problem: string };

/** The dead-letter reasons each failing kind may carry (besides the delivery limit). */
const EXPECTED_REASONS: Partial<Record<EventKind, RegExp>> = {
  poison: /exited with code 3/,
  hang: /timed out/,
  malformed: /malformed event/,
  bigout: /too large|exceeds the .* limit/,
};

/** Was this dead letter moved for the delivery limit (its own reason, or a detail saying so)? */
export function byDeliveryLimit(outcome: WorkflowOutcome & { kind: 'dead-letter' }): boolean {
  return /delivery limit/i.test(outcome.reason) || outcome.details['delivery-limit'] !== undefined;
}

/** `holds`: how many deliveries of the event SIGKILLed pilots held when they died. */
export function classify(
  event: PlannedEvent,
  seen: { times: number; outcome: WorkflowOutcome } | undefined,
  holds: number,
  maxDeliveries: number,
): Classification {
  if (!seen) return { verdict: 'lost' };
  if (seen.times > 1) return { verdict: 'duplicate', times: seen.times };
  const { outcome } = seen;
  if (RESULT_KINDS.has(event.kind)) {
    if (outcome.kind === 'result') {
      const text = typeof outcome.data === 'string' ? outcome.data.trim() : JSON.stringify(outcome.data);
      const want = expectedResult(event);
      return text === want ? { verdict: 'ok' } : { verdict: 'wrong', problem: `result '${text.slice(0, 80)}', expected '${want}'` };
    }
    if (byDeliveryLimit(outcome) && holds >= maxDeliveries) return { verdict: 'limit-after-kills', holds };
    return { verdict: 'wrong', problem: `a ${event.kind} event dead-lettered (${outcome.reason}; held by ${holds} SIGKILLed pilot(s))` };
  }
  if (outcome.kind === 'result') return { verdict: 'wrong', problem: `a ${event.kind} event has a result` };
  const reason = EXPECTED_REASONS[event.kind];
  if (reason?.test(outcome.reason) || byDeliveryLimit(outcome)) return { verdict: 'ok' };
  return { verdict: 'wrong', problem: `a ${event.kind} event dead-lettered with an unexpected reason: ${outcome.reason}` };
}
