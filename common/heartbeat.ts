/**
 * The heartbeat: the small message every pilot publishes to its workflow's monitoring queue, and the only
 * thing the monitor (`ewms monitor`) knows of a pilot. Shared by both sides so the two cannot drift apart.
 *
 * Every heartbeat is complete and cumulative (counts, duration histogram and dead letters per reason since
 * the pilot started): a lost heartbeat costs nothing, the monitor keeps a pilot's latest one by `seq`, and
 * sums across pilots (a dead pilot's last counts stay in the sums).
 *
 * Wire form: UTF-8 JSON, no compression (a heartbeat is well under 16 KiB; the Python MQClient never reads
 * this queue). `version` changes only when a change would break an older monitor; fields are only ever added.
 */
import { EwmsError } from './errors.js';

/** The task a single-task workflow's pilots report, unless named (workflow graphs name each task). */
export const DEFAULT_TASK_NAME = 'task-0';

/** The message kind, so a stray message on the monitoring queue is recognised as not ours. */
export const HEARTBEAT_KIND = 'ewms-pilot-heartbeat';
/** The wire version this code writes and reads. */
export const HEARTBEAT_VERSION = 1;

/**
 * A pilot's lifecycle, in order: `starting` (connecting, declaring), `init` (the init command), `tasking`
 * (taking events), `stopping` (intake stopped, in-flight work finishing), `quarantine` (sleeping after a
 * failure before exit), then `done` (exit 0, or stopped by a signal) or `fatal` (any other exit).
 */
export const PILOT_STATES = ['starting', 'init', 'tasking', 'stopping', 'quarantine', 'done', 'fatal'] as const;
export type PilotState = (typeof PILOT_STATES)[number];

/** States after which a pilot sends nothing more: it never turns stale. */
export const FINAL_STATES: ReadonlySet<PilotState> = new Set(['done', 'fatal']);

/**
 * Upper bounds (seconds) of the task-duration histogram buckets, shared by pilots and the monitor so the
 * monitor can add pilots' buckets. From a `cp` (milliseconds) to a long reconstruction (hours).
 */
export const DURATION_BUCKETS: readonly number[] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600];

/** Caps that keep one heartbeat small whatever a pilot has seen. */
export const HEARTBEAT_LIMITS = {
  /** Largest encoded heartbeat a monitor accepts. */
  maxBytes: 64 * 1024,
  /** In-flight events listed by id (the count is always exact). */
  inFlightListed: 32,
  /** Distinct dead-letter reasons per pilot; further ones are counted under `OTHER_REASON`. */
  deadLetterReasons: 16,
  reasonChars: 200,
  stderrTailChars: 600,
  errorChars: 500,
  idChars: 200,
} as const;

/**
 * The monitoring queue's bound: room for a long outage of the monitor with thousands of pilots, never more
 * (oldest dropped first), and nothing kept past an hour (a heartbeat that old says nothing a newer one does not).
 */
export const MONITOR_QUEUE_BOUND = { maxMessages: 20_000, maxAgeSeconds: 3600 } as const;

/** The reason under which dead letters past `HEARTBEAT_LIMITS.deadLetterReasons` distinct ones are counted. */
export const OTHER_REASON = '(other reasons)';

/** Cumulative task-duration histogram, Prometheus style: `buckets[i]` counts runs of at most `DURATION_BUCKETS[i]` s. */
export interface DurationCounts {
  buckets: number[];
  /** Seconds, all runs. */
  sum: number;
  /** Runs (the +Inf bucket). */
  count: number;
}

/** Dead letters this pilot made for one reason. */
export interface DeadLetterGroup {
  /** The one-line reason, e.g. `task exited with code 3`. */
  reason: string;
  count: number;
  /** The failure kind (`TaskExitError`, …) when the pilot knows it. */
  errorType?: string;
  /** The end of the latest such task's stderr (redacted). */
  sampleStderrTail?: string;
}

/** One event a task is running for. */
export interface InFlightEvent {
  eventId: string;
  attempt: number;
  /** ms since the epoch (the pilot's clock). */
  startedAt: number;
}

/** One heartbeat. */
export interface Heartbeat {
  kind: typeof HEARTBEAT_KIND;
  version: typeof HEARTBEAT_VERSION;
  /** Unique per pilot process. */
  pilotId: string;
  /** Increases by one per heartbeat of this pilot: the monitor keeps the highest. */
  seq: number;
  /** ms since the epoch, pilot's clock. */
  sentAt: number;
  startedAt: number;
  /** How often this pilot sends: the monitor calls it stale after a few missed ones. */
  intervalSeconds: number;
  host: string;
  /** `ClusterId.ProcId` when the pilot runs in an HTCondor job. */
  condorJobId?: string;
  pilotVersion: string;
  /** The task this pilot runs (`task-0` unless named; workflow graphs name each task). */
  task: string;
  /** The queue the pilot takes events from. */
  queue: string;
  state: PilotState;
  /** Why intake stopped (`idle-timeout`, `task-error`, `signal`, …), once it has. */
  stopReason?: string;
  /** Set on the final heartbeat. */
  exitCode?: number;
  counts: { succeeded: number; failed: number; deadLettered: number };
  inFlight: { count: number; events: InFlightEvent[] };
  /** The latest failure this pilot saw (task or broker), redacted. */
  lastError?: { message: string; at: number };
  /** Events settled per second over the last half minute. */
  ratePerSecond: number;
  durations: DurationCounts;
  deadLetters: DeadLetterGroup[];
}

/** A message on the monitoring queue that is not a heartbeat this code can read. */
export class HeartbeatFormatError extends EwmsError {}

/** Cut `text` to `max` characters, marking the cut. */
export function clip(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, Math.max(0, max - 1))}…`;
}

/** Encode a heartbeat for the wire. */
export function encodeHeartbeat(heartbeat: Heartbeat): Uint8Array {
  return Buffer.from(JSON.stringify(heartbeat), 'utf8');
}

/** Decode and check a heartbeat; throws `HeartbeatFormatError` saying what is wrong. */
export function decodeHeartbeat(body: Uint8Array): Heartbeat {
  if (body.byteLength > HEARTBEAT_LIMITS.maxBytes) {
    throw bad(`a ${body.byteLength}-byte message, over the ${HEARTBEAT_LIMITS.maxBytes}-byte limit`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString('utf8'));
  } catch {
    throw bad('not JSON');
  }
  const o = object(parsed, 'heartbeat');
  if (o.kind !== HEARTBEAT_KIND) throw bad(`kind is ${JSON.stringify(o.kind)}, not "${HEARTBEAT_KIND}"`);
  if (o.version !== HEARTBEAT_VERSION) {
    throw new HeartbeatFormatError(
      `heartbeat version ${JSON.stringify(o.version)} is not ${HEARTBEAT_VERSION}, the one this monitor reads`,
      'run the monitor from the same ewms-pilot release as the pilots',
    );
  }
  const state = string(o.state, 'state');
  if (!(PILOT_STATES as readonly string[]).includes(state)) throw bad(`state '${clip(state, 40)}' is not one of ${PILOT_STATES.join(', ')}`);
  const counts = object(o.counts, 'counts');
  const inFlight = object(o.inFlight, 'inFlight');
  const durations = object(o.durations, 'durations');
  const buckets = array(durations.buckets, 'durations.buckets').map((b, i) => count(b, `durations.buckets[${i}]`));
  if (buckets.length !== DURATION_BUCKETS.length) throw bad(`durations.buckets has ${buckets.length} entries, not ${DURATION_BUCKETS.length}`);
  const runs = count(durations.count, 'durations.count');
  for (let i = 0; i < buckets.length; i++) {
    if (buckets[i]! > runs || (i > 0 && buckets[i]! < buckets[i - 1]!)) throw bad('durations.buckets is not cumulative');
  }
  const heartbeat: Heartbeat = {
    kind: HEARTBEAT_KIND,
    version: HEARTBEAT_VERSION,
    pilotId: text(o.pilotId, 'pilotId', HEARTBEAT_LIMITS.idChars),
    seq: count(o.seq, 'seq'),
    sentAt: count(o.sentAt, 'sentAt'),
    startedAt: count(o.startedAt, 'startedAt'),
    intervalSeconds: positive(o.intervalSeconds, 'intervalSeconds'),
    host: text(o.host, 'host', HEARTBEAT_LIMITS.idChars),
    pilotVersion: text(o.pilotVersion, 'pilotVersion', HEARTBEAT_LIMITS.idChars),
    task: text(o.task, 'task', HEARTBEAT_LIMITS.idChars),
    queue: text(o.queue, 'queue', HEARTBEAT_LIMITS.idChars),
    state: state as PilotState,
    counts: {
      succeeded: count(counts.succeeded, 'counts.succeeded'),
      failed: count(counts.failed, 'counts.failed'),
      deadLettered: count(counts.deadLettered, 'counts.deadLettered'),
    },
    inFlight: {
      count: count(inFlight.count, 'inFlight.count'),
      events: array(inFlight.events, 'inFlight.events')
        .slice(0, HEARTBEAT_LIMITS.inFlightListed)
        .map((e, i) => {
          const ev = object(e, `inFlight.events[${i}]`);
          return {
            eventId: text(ev.eventId, 'eventId', HEARTBEAT_LIMITS.idChars),
            attempt: count(ev.attempt, 'attempt'),
            startedAt: count(ev.startedAt, 'startedAt'),
          };
        }),
    },
    ratePerSecond: nonNegative(o.ratePerSecond, 'ratePerSecond'),
    durations: { buckets, sum: nonNegative(durations.sum, 'durations.sum'), count: runs },
    deadLetters: array(o.deadLetters, 'deadLetters')
      .slice(0, HEARTBEAT_LIMITS.deadLetterReasons + 1)
      .map((g, i) => {
        const group = object(g, `deadLetters[${i}]`);
        const out: DeadLetterGroup = { reason: text(group.reason, 'reason', HEARTBEAT_LIMITS.reasonChars), count: count(group.count, 'count') };
        if (group.errorType !== undefined) out.errorType = text(group.errorType, 'errorType', HEARTBEAT_LIMITS.idChars);
        if (group.sampleStderrTail !== undefined) out.sampleStderrTail = text(group.sampleStderrTail, 'sampleStderrTail', HEARTBEAT_LIMITS.stderrTailChars);
        return out;
      }),
  };
  if (o.condorJobId !== undefined) heartbeat.condorJobId = text(o.condorJobId, 'condorJobId', HEARTBEAT_LIMITS.idChars);
  if (o.stopReason !== undefined) heartbeat.stopReason = text(o.stopReason, 'stopReason', HEARTBEAT_LIMITS.idChars);
  if (o.exitCode !== undefined) heartbeat.exitCode = count(o.exitCode, 'exitCode');
  if (o.lastError !== undefined) {
    const e = object(o.lastError, 'lastError');
    heartbeat.lastError = { message: text(e.message, 'lastError.message', HEARTBEAT_LIMITS.errorChars), at: count(e.at, 'lastError.at') };
  }
  return heartbeat;
}

function bad(what: string): HeartbeatFormatError {
  return new HeartbeatFormatError(`not a pilot heartbeat: ${what}`, 'only ewms pilots should publish to a workflow\'s monitoring queue');
}

function object(v: unknown, name: string): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw bad(`${name} is not an object`);
  return v as Record<string, unknown>;
}

function array(v: unknown, name: string): unknown[] {
  if (!Array.isArray(v)) throw bad(`${name} is not an array`);
  return v;
}

function string(v: unknown, name: string): string {
  if (typeof v !== 'string') throw bad(`${name} is not a string`);
  return v;
}

/** A string, clipped to `max` (a newer pilot may send more than we show; that is not an error). */
function text(v: unknown, name: string, max: number): string {
  return clip(string(v, name), max);
}

function nonNegative(v: unknown, name: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw bad(`${name} is not a number >= 0`);
  return v;
}

function positive(v: unknown, name: string): number {
  const n = nonNegative(v, name);
  if (n === 0) throw bad(`${name} is 0`);
  return n;
}

function count(v: unknown, name: string): number {
  const n = nonNegative(v, name);
  if (!Number.isInteger(n)) throw bad(`${name} is not a whole number`);
  return n;
}

/** Task-run durations, bucketed as `DURATION_BUCKETS`. O(buckets) per run, constant memory. */
export class DurationHistogram {
  private readonly perBucket = new Array<number>(DURATION_BUCKETS.length).fill(0);
  private sum = 0;
  private count = 0;

  observe(seconds: number): void {
    if (!Number.isFinite(seconds) || seconds < 0) return;
    this.sum += seconds;
    this.count += 1;
    const i = DURATION_BUCKETS.findIndex((upper) => seconds <= upper);
    if (i >= 0) this.perBucket[i]! += 1;
  }

  /** The cumulative counts, as they travel. */
  counts(): DurationCounts {
    let running = 0;
    const buckets = this.perBucket.map((n) => (running += n));
    return { buckets, sum: this.sum, count: this.count };
  }
}

/** Add cumulative histograms (the monitor's sum across pilots). */
export function addDurations(a: DurationCounts, b: DurationCounts): DurationCounts {
  return { buckets: a.buckets.map((n, i) => n + (b.buckets[i] ?? 0)), sum: a.sum + b.sum, count: a.count + b.count };
}

/** An empty cumulative histogram. */
export function emptyDurations(): DurationCounts {
  return { buckets: DURATION_BUCKETS.map(() => 0), sum: 0, count: 0 };
}
