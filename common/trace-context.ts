/**
 * W3C Trace Context (`traceparent`) for events: made or taken at publish, carried as a message header through
 * every stage, re-parented by each pilot that exports a span for the task run, and present on the result and
 * on a dead letter. Only the header format lives here, so carrying it costs a string copy and no library.
 *
 * `traceparent: 00-<32 hex trace id>-<16 hex parent span id>-<2 hex flags>`
 * (https://www.w3.org/TR/trace-context/#traceparent-header).
 */
import { randomBytes } from 'node:crypto';
import { EwmsError } from './errors.js';

/** The header name, as W3C spells it (lower case: AMQP and NATS headers are case-sensitive). */
export const TRACEPARENT_HEADER = 'traceparent';

/** A parsed `traceparent`. */
export interface TraceParent {
  traceId: string;
  /** The span the carrier's receiver is a child of. */
  spanId: string;
  /** Trace flags; bit 0 = sampled. */
  flags: number;
}

/** A `traceparent` value that is not one. */
export class TraceParentError extends EwmsError {}

const PATTERN = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/;
const ZERO_TRACE = '0'.repeat(32);
const ZERO_SPAN = '0'.repeat(16);

/**
 * Parse a `traceparent`; undefined when it is absent or invalid (W3C: a receiver ignores an invalid header
 * and starts a new trace, it does not fail the request).
 */
export function parseTraceParent(value: string | undefined): TraceParent | undefined {
  if (value === undefined) return undefined;
  const m = PATTERN.exec(value.trim());
  if (!m) return undefined;
  const [, version, traceId, spanId, flags, rest] = m as unknown as [string, string, string, string, string, string | undefined];
  // Version ff is forbidden; version 00 has nothing after the flags.
  if (version === 'ff' || (version === '00' && rest !== undefined)) return undefined;
  if (traceId === ZERO_TRACE || spanId === ZERO_SPAN) return undefined;
  return { traceId, spanId, flags: parseInt(flags, 16) };
}

/** Format a `traceparent` (version 00). */
export function formatTraceParent(context: TraceParent): string {
  return `00-${context.traceId}-${context.spanId}-${(context.flags & 0xff).toString(16).padStart(2, '0')}`;
}

/** A new random span id (16 hex digits, never all zero). */
export function newSpanId(): string {
  for (;;) {
    const id = randomBytes(8).toString('hex');
    if (id !== ZERO_SPAN) return id;
  }
}

/** A new random trace id (32 hex digits, never all zero). */
export function newTraceId(): string {
  for (;;) {
    const id = randomBytes(16).toString('hex');
    if (id !== ZERO_TRACE) return id;
  }
}

/** A `traceparent` starting a new, sampled trace: what the coordinator gives an event published without one. */
export function newTraceParent(): string {
  return formatTraceParent({ traceId: newTraceId(), spanId: newSpanId(), flags: 1 });
}

/**
 * Check a `traceparent` a caller gave (the coordinator's `publish`): unlike a received header, a bad one is
 * the caller's mistake and is refused.
 */
export function requireTraceParent(value: string, what = 'traceparent'): string {
  const parsed = parseTraceParent(value);
  if (!parsed) {
    throw new TraceParentError(
      `${what} '${value.slice(0, 80)}' is not a W3C traceparent`,
      'give 00-<32 hex trace id>-<16 hex span id>-<2 hex flags>, e.g. from your tracer\'s active span, or leave it out for a new trace per event',
    );
  }
  return formatTraceParent(parsed);
}
