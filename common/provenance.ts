/**
 * Provenance on the wire: what every output of a workflow graph carries so that a result, or a dead letter at
 * any stage, says which published event it descends from and which tasks made it.
 *
 * Headers (strings on every broker; the Python MQClient reads the body and leaves them alone):
 * - `x-ewms-root-event-id` — the id `publish` gave the event at the start of the graph.
 * - `x-ewms-provenance` — JSON list of steps, oldest first (`ProvenanceStep`), capped at
 *   `PROVENANCE_MAX_BYTES`: past it the oldest steps after the first are dropped and the first kept step
 *   says how many (`dropped_before`).
 * - `x-ewms-share` — the part of its root this event stands for, `n/d` (absent: all of it). A pilot that
 *   publishes n outputs for one input gives each 1/n of its input's share, and one output to k queues gives each
 *   copy 1/k; the coordinator counts a root as done when the shares of its outcomes (results, dead letters,
 *   filter markers) add up to 1.
 * - `x-ewms-filtered` — a marker for an event a task filtered out (no outfile): no data, its share, the task.
 * - `x-ewms-priority` — `urgent` on events published ahead of the rest; carried to outputs.
 */
import { createHash } from 'node:crypto';

export const PROVENANCE_HEADERS = {
  rootEventId: 'x-ewms-root-event-id',
  provenance: 'x-ewms-provenance',
  share: 'x-ewms-share',
  filtered: 'x-ewms-filtered',
  priority: 'x-ewms-priority',
} as const;

/** Most bytes the provenance header may take (AMQP puts every header in one 64 KiB frame with the rest). */
export const PROVENANCE_MAX_BYTES = 8 * 1024;

/** One task's run on the way to a result, as `x-ewms-provenance` lists it (snake_case, as EWMS's JSON is). */
export interface ProvenanceStep {
  /** The task's `task_name`. */
  task_name: string;
  /** The id of the event this step took as input. */
  input_event_id: string;
  pilot_version: string;
  host: string;
  /** The task image as configured (absent: the task ran on the pilot's host). */
  image?: string;
  /** The image's content digest, when the container runtime reports one (docker, podman). */
  image_digest?: string;
  /** The attempt that succeeded (or failed, on a dead letter): 1 for the first. */
  attempt: number;
  /** ISO 8601 times of the task run. */
  start: string;
  end: string;
  /** The task process's own run time, in seconds. */
  duration_s: number;
  /** On a dead letter's last step: the failure. */
  error?: string;
  /** Steps left out before this one to keep the header under its cap. */
  dropped_before?: number;
}

/** The steps an event carries (none when absent or unreadable: provenance never fails an event). */
export function readProvenance(header: string | undefined): ProvenanceStep[] {
  if (header === undefined) return [];
  try {
    const parsed: unknown = JSON.parse(header);
    return Array.isArray(parsed) ? (parsed.filter((s) => typeof s === 'object' && s !== null) as ProvenanceStep[]) : [];
  } catch {
    return [];
  }
}

/** The header value for `steps`, under `maxBytes`: the first step is kept, then as many of the latest as fit. */
export function writeProvenance(steps: readonly ProvenanceStep[], maxBytes = PROVENANCE_MAX_BYTES): string {
  let text = JSON.stringify(steps);
  if (Buffer.byteLength(text) <= maxBytes || steps.length <= 2) return text;
  const [first, ...rest] = steps as [ProvenanceStep, ...ProvenanceStep[]];
  let dropped = first.dropped_before ?? 0;
  let kept = rest;
  while (kept.length > 1) {
    dropped += (kept[0]?.dropped_before ?? 0) + 1;
    kept = kept.slice(1);
    const [next, ...after] = kept as [ProvenanceStep, ...ProvenanceStep[]];
    text = JSON.stringify([first, { ...next, dropped_before: dropped + (next.dropped_before ?? 0) }, ...after]);
    if (Buffer.byteLength(text) <= maxBytes) return text;
  }
  return text;
}

/** A share of a root event: `num/den` of it. */
export interface Share {
  num: number;
  den: number;
}

export const WHOLE: Share = { num: 1, den: 1 };

/** The share a header names (absent or unreadable: the whole). */
export function readShare(header: string | undefined): Share {
  const m = header === undefined ? null : /^(\d+)\/(\d+)$/.exec(header.trim());
  if (!m) return WHOLE;
  const num = Number(m[1]);
  const den = Number(m[2]);
  return num > 0 && den >= num && Number.isSafeInteger(den) ? reduce({ num, den }) : WHOLE;
}

export function writeShare(share: Share): string {
  return `${share.num}/${share.den}`;
}

/** One k-th of a share (an input published to k queues). */
export function splitShare(share: Share, k: number): Share {
  return k <= 1 ? share : reduce({ num: share.num, den: share.den * k });
}

/** The sum of two shares. */
export function addShares(a: Share, b: Share): Share {
  return reduce({ num: a.num * b.den + b.num * a.den, den: a.den * b.den });
}

export function isWhole(share: Share): boolean {
  return share.num >= share.den;
}

function reduce(share: Share): Share {
  const g = gcd(share.num, share.den);
  return { num: share.num / g, den: share.den / g };
}

function gcd(a: number, b: number): number {
  while (b !== 0) [a, b] = [b, a % b];
  return a || 1;
}

/** A deterministic event id (UUID-shaped) derived from `parts`: the same inputs always give the same id. */
export function derivedEventId(...parts: string[]): string {
  const hash = createHash('sha256');
  for (const part of parts) hash.update(part).update('\0');
  return uuidShaped(hash.digest('hex'));
}

/** A hex digest (32 digits or more) written as a UUID. */
export function uuidShaped(h: string): string {
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
}
