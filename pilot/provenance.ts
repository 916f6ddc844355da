/**
 * Each output's provenance (see `common/provenance.ts`): the root event id, the chain of steps with this
 * run appended, the share and priority carried on (split equally between several outputs of one input); dead
 * letters name the task that failed them. With filter markers on, a task that wrote no outfile publishes a
 * marker instead of nothing, and a marker received is passed on without running the task; so is a dead letter
 * that rides the queues (dead-letter route `outgoing`, as under EWMS).
 */
import { hostname } from 'node:os';
import { encodeEnvelope, type WireFormat } from '../common/wire.js';
import { PROVENANCE_HEADERS as P, readProvenance, readShare, splitShare, writeProvenance, writeShare, type ProvenanceStep } from '../common/provenance.js';
import { HEADERS, type Delivery, type OutgoingMessage } from '../mq-adapters/types.js';
import type { EventProcessor, TaskOutcome, TaskSlots } from './event-loop.js';
import { outputEventId } from './task-io.js';

/** Who ran the step. */
export interface StepIdentity {
  taskName: string;
  version: string;
  /** The task image as configured; undefined on the host. */
  image: string | undefined;
  /** Its content digest, when the runtime reported one. */
  imageDigest?: string | undefined;
  wireFormat: WireFormat;
  /** Publish markers for filtered events and pass received ones on. */
  filterMarkers: boolean;
}

/** The dead-letter detail naming the task whose attempts ran out (`x-ewms-dlq-task-name`). */
export const DEAD_LETTER_TASK_DETAIL = 'task-name';

/** The processor, its outputs carrying provenance. */
export function withProvenance(processor: EventProcessor, identity: StepIdentity): EventProcessor {
  const host = hostname();
  return {
    // The wrapped processor takes its task slot around the task process only: keep it so.
    slotAware: processor.slotAware,
    async process(delivery: Delivery, signal: AbortSignal, slots?: TaskSlots): Promise<TaskOutcome> {
      if (delivery.headers[HEADERS.deadLetterReason] !== undefined) {
        // A dead letter from upstream riding the queues (no dead-letter queue of its own, as under EWMS): it
        // already is its event's outcome; pass it on, untouched, towards the coordinator.
        return { kind: 'success', outputs: [{ body: delivery.body, headers: { ...delivery.headers }, eventId: delivery.eventId }], durationMs: 0 };
      }
      if (delivery.headers[P.filtered] !== undefined) {
        // Filtered upstream: nothing for this task to do, but the coordinator must still hear of it.
        return { kind: 'success', outputs: identity.filterMarkers ? [marker(delivery, delivery.headers[P.filtered] ?? identity.taskName, identity.wireFormat)] : [], durationMs: 0 };
      }
      const called = Date.now();
      const outcome = await processor.process(delivery, signal, slots);
      if (outcome.kind === 'failure') {
        return { ...outcome, reason: { ...outcome.reason, details: { ...outcome.reason.details, [DEAD_LETTER_TASK_DETAIL]: identity.taskName } } };
      }
      if (outcome.kind !== 'success') return outcome;
      const step: ProvenanceStep = {
        task_name: identity.taskName,
        input_event_id: delivery.eventId,
        pilot_version: identity.version,
        host,
        ...(identity.image !== undefined ? { image: identity.image } : {}),
        ...(identity.imageDigest !== undefined ? { image_digest: identity.imageDigest } : {}),
        attempt: delivery.deliveryCount,
        // The task run's own times: a slot-aware processor may have waited for its slot inside the call.
        ...runTimes(called, outcome.durationMs),
        duration_s: Math.round(outcome.durationMs) / 1000,
      };
      const outputs = outcome.outputs.length > 0 ? outcome.outputs : identity.filterMarkers ? [marker(delivery, identity.taskName, identity.wireFormat)] : [];
      if (outputs.length === 0) return outcome;
      const provenance = writeProvenance([...readProvenance(delivery.headers[P.provenance]), step]);
      // Several outputs of one input (EWMS_PILOT_OUTFILE_EVENTS=jsonl) share its part of the root equally, so
      // the coordinator counts the root done once all of them (or their descendants) arrived.
      const share: Record<string, string> = outputs.length > 1 ? { [P.share]: writeShare(splitShare(readShare(delivery.headers[P.share]), outputs.length)) } : {};
      return { ...outcome, outputs: outputs.map((output) => ({ ...output, headers: { ...output.headers, ...carried(delivery), ...share, [P.provenance]: provenance } })) };
    },
  };
}

/** Headers an output takes from its input: the root id (the input itself when it is a root), share, priority. */
function carried(delivery: Delivery): Record<string, string> {
  const out: Record<string, string> = { [P.rootEventId]: delivery.headers[P.rootEventId] ?? delivery.eventId };
  for (const name of [P.share, P.priority]) {
    const value = delivery.headers[name];
    if (value !== undefined) out[name] = value;
  }
  return out;
}

/** A marker standing for an event `taskName` filtered out. */
function marker(delivery: Delivery, taskName: string, wireFormat: WireFormat): OutgoingMessage {
  return {
    body: wireFormat === 'raw' ? new Uint8Array() : encodeEnvelope(null),
    eventId: outputEventId(delivery.eventId),
    headers: { [HEADERS.inputEventId]: delivery.eventId, ...carried(delivery), [P.filtered]: taskName, ...(delivery.headers[P.provenance] !== undefined ? { [P.provenance]: delivery.headers[P.provenance] } : {}) },
  };
}

/** When the task ran: it ended now, after running `durationMs` (never before the call began). */
function runTimes(called: number, durationMs: number): { start: string; end: string } {
  const end = Date.now();
  return { start: new Date(Math.max(called, end - durationMs)).toISOString(), end: new Date(end).toISOString() };
}
