/**
 * The event mix of a chaos run, drawn from the seed: mostly good events, plus the kinds that stress the
 * pilot's failure paths. Each event's data names its kind and number (`good 17`, `slow 18 0.25`), so every
 * outcome (a result's text, a dead letter's original data) says by itself which event it belongs to.
 */
import { Rng } from './rng.js';

/** What the task (`TASK_SCRIPT`, chaos/task.ts) does with an event, and what outcome the suite expects for it. */
export type EventKind =
  /** Writes `ok <n>`: a result. */
  | 'good'
  /** Sleeps a fraction of a second first: a result. */
  | 'slow'
  /** A ~100 KB input; the task writes its size back: a result. */
  | 'large'
  /** Exits 3 (after printing its environment to stderr, which the pilot dumps to its log): dead-lettered. */
  | 'poison'
  /** Never ends: timed out on every attempt, dead-lettered. */
  | 'hang'
  /** Writes an output larger than the broker takes: dead-lettered. */
  | 'bigout'
  /** A body that is not a wire-format envelope (published around the coordinator): dead-lettered at once. */
  | 'malformed'
  /** An input larger than the broker takes: refused at publish, never in the queue. */
  | 'oversize';

/** Kinds whose expected outcome is a result. */
export const RESULT_KINDS: ReadonlySet<EventKind> = new Set(['good', 'slow', 'large']);

/** One planned event. */
export interface PlannedEvent {
  /** 0-based position in the plan; also in the event's data. */
  n: number;
  kind: EventKind;
  /** The event id the suite publishes it with (stable across publish retries). */
  id: string;
  /** The event's data (a string: the pilot writes it to the infile as it is). */
  data: string;
}

/** How many events of each special kind, per 10,000 (the rest are good). At least one of each is planned. */
export const MIX_PER_10K: Readonly<Record<Exclude<EventKind, 'good' | 'oversize'>, number>> = {
  slow: 200,
  large: 100,
  poison: 100,
  hang: 10,
  bigout: 20,
  malformed: 50,
};
/** Oversize inputs refused at publish (a few: each is a megabyte of work for nothing). */
export const OVERSIZE_EVENTS = 3;
/** Size of a `large` event's padding. */
export const LARGE_INPUT_BYTES = 100_000;
/** Longest sleep of a `slow` event, seconds. */
export const SLOW_MAX_SECONDS = 0.4;

export interface PlanOptions {
  seed: number;
  events: number;
  /**
   * The broker's message size limit (bytes): `bigout` outputs and `oversize` inputs exceed it. Undefined
   * (a limit too large to exceed cheaply): neither kind is planned.
   */
  maxMessageBytes: number | undefined;
}

/** The seeded list of events, in publish order. */
export function planEvents(options: PlanOptions): PlannedEvent[] {
  const rng = new Rng(options.seed);
  const kinds: EventKind[] = [];
  const sized = options.maxMessageBytes !== undefined;
  for (const [kind, per10k] of Object.entries(MIX_PER_10K) as Array<[EventKind, number]>) {
    if (kind === 'bigout' && !sized) continue;
    const count = Math.max(1, Math.round((per10k * options.events) / 10_000));
    for (let i = 0; i < count; i++) kinds.push(kind);
  }
  if (sized) for (let i = 0; i < OVERSIZE_EVENTS; i++) kinds.push('oversize');
  while (kinds.length < options.events) kinds.push('good');
  rng.shuffle(kinds);
  return kinds.map((kind, n) => ({ n, kind, id: `chaos-${options.seed}-${n}`, data: eventData(kind, n, rng, options.maxMessageBytes) }));
}

function eventData(kind: EventKind, n: number, rng: Rng, maxMessageBytes = 0): string {
  switch (kind) {
    case 'slow':
      return `slow ${n} ${(0.05 + rng.next() * (SLOW_MAX_SECONDS - 0.05)).toFixed(2)}`;
    case 'large':
      return `large ${n}\n${padding(rng, LARGE_INPUT_BYTES)}`;
    case 'bigout':
      // Random bytes, base64: ~4/3 of this on the wire after compression, well over the limit.
      return `bigout ${n} ${Math.ceil(maxMessageBytes * 1.2)}`;
    case 'oversize':
      return `oversize ${n}\n${padding(rng, Math.ceil(maxMessageBytes * 1.5))}`;
    default:
      return `${kind} ${n}`;
  }
}

/** Letters that do not compress much (the wire format compresses with zstd). */
function padding(rng: Rng, bytes: number): string {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
  const out = Buffer.allocUnsafe(bytes);
  for (let i = 0; i < bytes; i++) out[i] = alphabet.charCodeAt(Math.floor(rng.next() * 64));
  return out.toString('latin1');
}

/** The result text the task writes for an event that succeeds. */
export function expectedResult(event: PlannedEvent): string {
  return event.kind === 'large' ? `ok ${event.n} ${Buffer.byteLength(event.data)}` : `ok ${event.n}`;
}
