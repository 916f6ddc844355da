/**
 * What the monitor knows of a workflow: the latest heartbeat of every pilot, queue depths, and (inside
 * `ewms run`) the collector's exact counts; from them, per task, done / failed / in flight / queued with
 * rate and ETA, pilots by state (a pilot that stopped sending turns `stale`), dead letters by reason, and a
 * throughput series for the chart. Pure bookkeeping: no I/O, the clock injected, so it is tested alone.
 *
 * Counts per task are what pilots report (at least once: an event whose first pilot died after its task
 * succeeded but before the ack is run, and counted, twice); the collector's numbers in `run` are exact.
 */
import { redact } from '../../common/redact.js';
import { RateMeter } from '../../common/rate.js';
import {
  addDurations,
  emptyDurations,
  FINAL_STATES,
  PILOT_STATES,
  type DurationCounts,
  type Heartbeat,
  type PilotState,
} from '../../common/heartbeat.js';

/** A pilot's status as shown: its own state, or `stale` when its heartbeats stopped before a final state. */
export type PilotStatus = PilotState | 'stale';
export const PILOT_STATUSES: readonly PilotStatus[] = [...PILOT_STATES, 'stale'];

/** Missed heartbeats before a pilot is called stale (plus a fixed margin for a loaded broker or node). */
const STALE_MISSED_HEARTBEATS = 3;
const STALE_MARGIN_MS = 5_000;
/** Pilots kept one by one; beyond it the oldest finished ones are folded into per-task totals. */
const MAX_PILOT_RECORDS = 2_000;
/** Throughput points kept (one per tick: an hour at the default 2 s). */
const MAX_SERIES_POINTS = 1_800;

/** The exact progress of an `ewms run` (from its collector), when the monitor runs inside one. */
export interface RunProgress {
  published: number;
  /** Outcomes awaited; undefined while publishing. */
  expected: number | undefined;
  results: number;
  deadLetters: number;
}

/** A task the monitor expects before any of its pilots reported (the single task of `ewms run`). */
export interface KnownTask {
  name: string;
  queue: string;
}

export interface MonitorStateOptions {
  workflowId: string;
  /** Tasks known up front, with the queue each takes events from. */
  tasks?: KnownTask[];
  /** True when the broker's depth counts delivered-but-unacked messages too (NATS, Pulsar), so in-flight events are not counted twice. */
  depthIncludesInFlight?: boolean;
  /** Secrets to keep off the page, whatever a pilot sent (a second line behind the pilots' own redaction). */
  secrets?: readonly string[];
  now?: () => number;
}

interface PilotRecord {
  heartbeat: Heartbeat;
  /** Monitor clock (pilots' clocks may differ): what staleness is judged by. */
  receivedAt: number;
}

/** Totals of pilots folded away, per task. */
interface Retired {
  succeeded: number;
  failed: number;
  deadLettered: number;
  durations: DurationCounts;
  byStatus: Partial<Record<PilotStatus, number>>;
  deadLetters: Map<string, { count: number; errorType?: string; sampleStderrTail?: string }>;
}

/** One task's line on the page and in the metrics. */
export interface TaskView {
  name: string;
  queue: string | undefined;
  /** Events whose task succeeded (results published). */
  done: number;
  /** Events dead-lettered by pilots. */
  failed: number;
  /** Failed attempts, retried or not. */
  attemptsFailed: number;
  inFlight: number;
  /** Waiting in the task's queue; undefined while unknown. */
  queued: number | undefined;
  /** done + failed + in flight + queued (or the run's expected count, when larger). */
  total: number;
  /** (done + failed) / total, 0..1. */
  progress: number;
  ratePerSecond: number;
  /** Seconds to go at the current rate; undefined when there is no rate or nothing left. */
  etaSeconds: number | undefined;
  pilots: Partial<Record<PilotStatus, number>>;
  durations: DurationCounts;
}

/** One pilot's line. */
export interface PilotView {
  id: string;
  host: string;
  condorJobId: string | undefined;
  task: string;
  status: PilotStatus;
  /** The state it last reported (differs from `status` when stale). */
  state: PilotState;
  lastSeenSecondsAgo: number;
  startedAt: number;
  succeeded: number;
  failed: number;
  deadLettered: number;
  inFlight: number;
  /** Start of its longest-running task (ms, pilot clock). */
  oldestTaskStartedAt: number | undefined;
  ratePerSecond: number;
  lastError: string | undefined;
  pilotVersion: string;
  stopReason: string | undefined;
  exitCode: number | undefined;
}

/** Dead letters of one task for one reason, over all pilots. */
export interface DeadLetterView {
  task: string;
  reason: string;
  count: number;
  errorType: string | undefined;
  sampleStderrTail: string | undefined;
}

/** Everything the page, `/api/status` and `/metrics` show. */
export interface MonitorSnapshot {
  workflow: string;
  generatedAt: number;
  run: (RunProgress & { progress: number }) | undefined;
  tasks: TaskView[];
  pilots: PilotView[];
  deadLetters: DeadLetterView[];
  queues: Array<{ name: string; depth: number | undefined }>;
  /** Outcomes per second per task, one point per tick. */
  throughput: Array<{ at: number; perTask: Record<string, number> }>;
  heartbeats: { accepted: number; rejected: number; lastRejection: string | undefined };
}

/** The monitor's bookkeeping. */
export class MonitorState {
  private readonly pilots = new Map<string, PilotRecord>();
  private readonly retired = new Map<string, Retired>();
  /** Ids of folded pilots: a late copy of one of their heartbeats must not count them again. */
  private readonly retiredIds = new Set<string>();
  private readonly known = new Map<string, KnownTask>();
  private readonly depths = new Map<string, number | undefined>();
  private readonly rates = new Map<string, RateMeter>();
  private readonly series: Array<{ at: number; perTask: Record<string, number> }> = [];
  private readonly lastTotals = new Map<string, { at: number; settled: number }>();
  private readonly now: () => number;
  private runProgress: (() => RunProgress | undefined) | undefined;
  private accepted = 0;
  private rejected = 0;
  private lastRejection: string | undefined;

  constructor(private readonly opts: MonitorStateOptions) {
    this.now = opts.now ?? Date.now;
    for (const task of opts.tasks ?? []) this.known.set(task.name, task);
  }

  get workflowId(): string {
    return this.opts.workflowId;
  }

  /** Take a heartbeat; an older one than what we have for that pilot (reordered, redelivered) is ignored. */
  ingest(heartbeat: Heartbeat, receivedAt = this.now()): void {
    this.accepted += 1;
    if (this.retiredIds.has(heartbeat.pilotId)) return;
    const current = this.pilots.get(heartbeat.pilotId);
    if (current && current.heartbeat.seq >= heartbeat.seq) return;
    this.pilots.set(heartbeat.pilotId, { heartbeat, receivedAt });
    if (!this.known.has(heartbeat.task)) this.known.set(heartbeat.task, { name: heartbeat.task, queue: heartbeat.queue });
    if (this.pilots.size > MAX_PILOT_RECORDS) this.retireOldest();
  }

  /** Count a message that was not a heartbeat (shown, so a misconfigured publisher is noticed). */
  reject(why: string): void {
    this.rejected += 1;
    this.lastRejection = why;
  }

  /** The queues whose depth the monitor should know. */
  queuesToWatch(extra: readonly string[] = []): string[] {
    const names = new Set<string>(extra);
    for (const task of this.known.values()) names.add(task.queue);
    return [...names];
  }

  /** A queue's depth; undefined when it cannot be read (deleted, broker away). */
  setQueueDepth(queue: string, depth: number | undefined): void {
    this.depths.set(queue, depth);
  }

  /** Inside `ewms run`: read the collector's exact progress. */
  attachRun(read: () => RunProgress | undefined): void {
    this.runProgress = read;
  }

  /** Record one throughput point (the caller's timer: every couple of seconds). */
  tick(at = this.now()): void {
    const perTask: Record<string, number> = {};
    for (const [name, totals] of this.taskTotals()) {
      const settled = totals.succeeded + totals.deadLettered;
      perTask[name] = this.meter(name).sample(settled, at);
      const last = this.lastTotals.get(name);
      // The chart shows each interval's own rate, the table the smoothed one.
      if (last && at > last.at) perTask[name] = Math.max(0, ((settled - last.settled) * 1000) / (at - last.at));
      this.lastTotals.set(name, { at, settled });
    }
    this.series.push({ at, perTask });
    if (this.series.length > MAX_SERIES_POINTS) this.series.shift();
  }

  /** A pilot's status now. */
  statusOf(record: PilotRecord, now = this.now()): PilotStatus {
    const { heartbeat } = record;
    if (FINAL_STATES.has(heartbeat.state)) return heartbeat.state;
    const staleAfterMs = STALE_MISSED_HEARTBEATS * heartbeat.intervalSeconds * 1000 + STALE_MARGIN_MS;
    return now - record.receivedAt > staleAfterMs ? 'stale' : heartbeat.state;
  }

  snapshot(): MonitorSnapshot {
    const now = this.now();
    const secrets = this.opts.secrets ?? [];
    const clean = (text: string | undefined) => (text === undefined ? undefined : redact(text, secrets));
    const run = this.runProgress?.();
    const totals = this.taskTotals(now);

    const tasks: TaskView[] = [];
    for (const [name, t] of totals) {
      const queue = this.known.get(name)?.queue;
      const depth = queue === undefined ? undefined : this.depths.get(queue);
      const queued = depth === undefined ? undefined : Math.max(0, this.opts.depthIncludesInFlight ? depth - t.inFlight : depth);
      const settled = t.succeeded + t.deadLettered;
      const estimate = settled + t.inFlight + (queued ?? 0);
      // Inside `ewms run` with one task, the run's expected count is the task's too.
      const total = run?.expected !== undefined && totals.size === 1 ? Math.max(run.expected, estimate) : estimate;
      const rate = this.meter(name).rate();
      const left = Math.max(0, total - settled);
      tasks.push({
        name,
        queue,
        done: t.succeeded,
        failed: t.deadLettered,
        attemptsFailed: t.failed,
        inFlight: t.inFlight,
        queued,
        total,
        progress: total > 0 ? Math.min(1, settled / total) : 0,
        ratePerSecond: rate,
        etaSeconds: left > 0 && rate > 0 ? left / rate : undefined,
        pilots: t.byStatus,
        durations: t.durations,
      });
    }
    tasks.sort((a, b) => a.name.localeCompare(b.name, undefined, { numeric: true }));

    const pilots: PilotView[] = [...this.pilots.values()].map((record) => {
      const hb = record.heartbeat;
      return {
        id: hb.pilotId,
        host: hb.host,
        condorJobId: hb.condorJobId,
        task: hb.task,
        status: this.statusOf(record, now),
        state: hb.state,
        lastSeenSecondsAgo: Math.max(0, (now - record.receivedAt) / 1000),
        startedAt: hb.startedAt,
        succeeded: hb.counts.succeeded,
        failed: hb.counts.failed,
        deadLettered: hb.counts.deadLettered,
        inFlight: hb.inFlight.count,
        oldestTaskStartedAt: hb.inFlight.events[0]?.startedAt,
        ratePerSecond: hb.ratePerSecond,
        lastError: clean(hb.lastError?.message),
        pilotVersion: hb.pilotVersion,
        stopReason: hb.stopReason,
        exitCode: hb.exitCode,
      };
    });
    // Trouble first: stale and quarantined pilots stand out at the top.
    const rank = (s: PilotStatus) => ['stale', 'fatal', 'quarantine', 'stopping', 'init', 'starting', 'tasking', 'done'].indexOf(s);
    pilots.sort((a, b) => rank(a.status) - rank(b.status) || a.task.localeCompare(b.task) || a.host.localeCompare(b.host) || a.id.localeCompare(b.id));

    const deadLetters: DeadLetterView[] = [];
    for (const [task, groups] of this.deadLetterGroups()) {
      for (const [reason, g] of groups) {
        deadLetters.push({ task, reason: clean(reason)!, count: g.count, errorType: g.errorType, sampleStderrTail: clean(g.sampleStderrTail) });
      }
    }
    deadLetters.sort((a, b) => b.count - a.count || a.reason.localeCompare(b.reason));

    return {
      workflow: this.opts.workflowId,
      generatedAt: now,
      run: run ? { ...run, progress: run.expected ? Math.min(1, (run.results + run.deadLetters) / run.expected) : 0 } : undefined,
      tasks,
      pilots,
      deadLetters,
      queues: [...this.depths.entries()].map(([name, depth]) => ({ name, depth })).sort((a, b) => a.name.localeCompare(b.name)),
      throughput: this.series.slice(),
      heartbeats: { accepted: this.accepted, rejected: this.rejected, lastRejection: this.lastRejection },
    };
  }

  private meter(task: string): RateMeter {
    let meter = this.rates.get(task);
    if (!meter) this.rates.set(task, (meter = new RateMeter()));
    return meter;
  }

  /** Per task: summed counts of live and retired pilots, in-flight of pilots still working, pilots by status. */
  private taskTotals(now = this.now()) {
    const totals = new Map<string, { succeeded: number; failed: number; deadLettered: number; inFlight: number; durations: DurationCounts; byStatus: Partial<Record<PilotStatus, number>> }>();
    const entry = (task: string) => {
      let t = totals.get(task);
      if (!t) totals.set(task, (t = { succeeded: 0, failed: 0, deadLettered: 0, inFlight: 0, durations: emptyDurations(), byStatus: {} }));
      return t;
    };
    for (const task of this.known.keys()) entry(task);
    for (const [task, r] of this.retired) {
      const t = entry(task);
      t.succeeded += r.succeeded;
      t.failed += r.failed;
      t.deadLettered += r.deadLettered;
      t.durations = addDurations(t.durations, r.durations);
      for (const [status, n] of Object.entries(r.byStatus)) t.byStatus[status as PilotStatus] = (t.byStatus[status as PilotStatus] ?? 0) + (n ?? 0);
    }
    for (const record of this.pilots.values()) {
      const hb = record.heartbeat;
      const t = entry(hb.task);
      const status = this.statusOf(record, now);
      t.succeeded += hb.counts.succeeded;
      t.failed += hb.counts.failed;
      t.deadLettered += hb.counts.deadLettered;
      // A stale pilot's tasks are not running anywhere we know of: the broker will hand them out again.
      if (status !== 'stale' && !FINAL_STATES.has(hb.state)) t.inFlight += hb.inFlight.count;
      t.durations = addDurations(t.durations, hb.durations);
      t.byStatus[status] = (t.byStatus[status] ?? 0) + 1;
    }
    return totals;
  }

  private deadLetterGroups(): Map<string, Map<string, { count: number; errorType?: string; sampleStderrTail?: string }>> {
    const out = new Map<string, Map<string, { count: number; errorType?: string; sampleStderrTail?: string }>>();
    const add = (task: string, reason: string, count: number, errorType?: string, tail?: string) => {
      let groups = out.get(task);
      if (!groups) out.set(task, (groups = new Map()));
      const g = groups.get(reason) ?? { count: 0 };
      g.count += count;
      if (errorType) g.errorType = errorType;
      if (tail) g.sampleStderrTail = tail;
      groups.set(reason, g);
    };
    for (const [task, r] of this.retired) for (const [reason, g] of r.deadLetters) add(task, reason, g.count, g.errorType, g.sampleStderrTail);
    // Oldest heartbeat first, so the newest stderr sample wins.
    const records = [...this.pilots.values()].sort((a, b) => a.receivedAt - b.receivedAt);
    for (const { heartbeat } of records) for (const g of heartbeat.deadLetters) add(heartbeat.task, g.reason, g.count, g.errorType, g.sampleStderrTail);
    return out;
  }

  /**
   * Fold the longest-finished pilots into their task's totals, keeping their counts. Only finished ones: a
   * stale pilot may yet speak again (a slow node), and must then not be counted twice.
   */
  private retireOldest(): void {
    const now = this.now();
    const candidates = [...this.pilots.values()]
      .filter((r) => FINAL_STATES.has(r.heartbeat.state))
      .sort((a, b) => a.receivedAt - b.receivedAt);
    for (const record of candidates.slice(0, Math.max(1, this.pilots.size - MAX_PILOT_RECORDS))) {
      const hb = record.heartbeat;
      let r = this.retired.get(hb.task);
      if (!r) this.retired.set(hb.task, (r = { succeeded: 0, failed: 0, deadLettered: 0, durations: emptyDurations(), byStatus: {}, deadLetters: new Map() }));
      r.succeeded += hb.counts.succeeded;
      r.failed += hb.counts.failed;
      r.deadLettered += hb.counts.deadLettered;
      r.durations = addDurations(r.durations, hb.durations);
      const status = this.statusOf(record, now);
      r.byStatus[status] = (r.byStatus[status] ?? 0) + 1;
      for (const g of hb.deadLetters) {
        const d = r.deadLetters.get(g.reason) ?? { count: 0 };
        d.count += g.count;
        if (g.errorType) d.errorType = g.errorType;
        if (g.sampleStderrTail) d.sampleStderrTail = g.sampleStderrTail;
        r.deadLetters.set(g.reason, d);
      }
      this.pilots.delete(hb.pilotId);
      this.retiredIds.add(hb.pilotId);
    }
  }
}
