/**
 * `/metrics`: the monitor's state in the Prometheus text format, through prom-client's registry. Values are
 * read from a fresh snapshot at each scrape (collect callbacks), so a scrape always sees the newest heartbeats.
 *
 * Counters are pilots' cumulative counts summed over pilots (a dead pilot's last counts included), so they only
 * go down if the monitor restarts — which Prometheus handles as a counter reset.
 */
import { Counter, Gauge, Histogram, Registry, type MetricObjectWithValues, type MetricValueWithName } from 'prom-client';
import { DURATION_BUCKETS } from '../../common/heartbeat.js';
import { PILOT_STATUSES, type MonitorSnapshot, type MonitorState } from './state.js';

/** The metric names, for docs and tests. */
export const METRIC_NAMES = {
  events: 'ewms_events_total',
  inFlight: 'ewms_events_in_flight',
  queueDepth: 'ewms_queue_depth',
  pilots: 'ewms_pilots',
  taskDuration: 'ewms_task_duration_seconds',
  deadLetters: 'ewms_dead_letters_total',
  attemptsFailed: 'ewms_task_attempts_failed_total',
  heartbeats: 'ewms_monitor_heartbeats_total',
} as const;

type TaskLabels = 'workflow' | 'task';

/**
 * A histogram whose buckets are given (summed from pilots), not observed here. prom-client's registry formats
 * whatever `get()` returns; its Histogram class only knows `observe`, so `get()` (and the `getForPromString`
 * the registry prefers) are replaced.
 */
class SummedHistogram extends Histogram<TaskLabels> {
  constructor(
    private readonly metricName: string,
    private readonly metricHelp: string,
    registry: Registry,
    private readonly read: () => MonitorSnapshot,
  ) {
    super({ name: metricName, help: metricHelp, labelNames: ['workflow', 'task'], buckets: [...DURATION_BUCKETS], registers: [registry] });
    (this as unknown as { getForPromString: () => Promise<unknown> }).getForPromString = () => this.get();
  }

  override async get(): Promise<MetricObjectWithValues<MetricValueWithName<TaskLabels>>> {
    const snapshot = this.read();
    const name = this.metricName;
    const values: Array<MetricValueWithName<TaskLabels>> = [];
    for (const task of snapshot.tasks) {
      const labels = { workflow: snapshot.workflow, task: task.name };
      // `le` is not one of the declared label names, as in prom-client's own histogram output.
      DURATION_BUCKETS.forEach((le, i) => values.push({ metricName: `${name}_bucket`, labels: { ...labels, le } as never, value: task.durations.buckets[i] ?? 0 }));
      values.push({ metricName: `${name}_bucket`, labels: { ...labels, le: '+Inf' } as never, value: task.durations.count });
      values.push({ metricName: `${name}_sum`, labels, value: task.durations.sum });
      values.push({ metricName: `${name}_count`, labels, value: task.durations.count });
    }
    return { name, help: this.metricHelp, type: 'histogram' as never, values, aggregator: 'sum', collect: () => undefined };
  }
}

/** A registry exposing `state`. Each scrape takes one snapshot shared by every metric. */
export function createMetricsRegistry(state: MonitorState): Registry {
  const registry = new Registry();
  // One snapshot per scrape: the collect callbacks of one scrape run back to back.
  let cached: { at: number; snapshot: MonitorSnapshot } | undefined;
  const read = () => {
    const now = Date.now();
    if (!cached || now - cached.at > 250) cached = { at: now, snapshot: state.snapshot() };
    return cached.snapshot;
  };

  new Counter({
    name: METRIC_NAMES.events,
    help: 'Events settled by pilots, by outcome: result (task succeeded, output published) or dead_letter.',
    labelNames: ['workflow', 'task', 'outcome'],
    registers: [registry],
    collect() {
      this.reset();
      const s = read();
      for (const t of s.tasks) {
        this.inc({ workflow: s.workflow, task: t.name, outcome: 'result' }, t.done);
        this.inc({ workflow: s.workflow, task: t.name, outcome: 'dead_letter' }, t.failed);
      }
    },
  });
  new Gauge({
    name: METRIC_NAMES.inFlight,
    help: 'Events whose task is running now, on pilots that are not stale.',
    labelNames: ['workflow', 'task'],
    registers: [registry],
    collect() {
      this.reset();
      const s = read();
      for (const t of s.tasks) this.set({ workflow: s.workflow, task: t.name }, t.inFlight);
    },
  });
  new Gauge({
    name: METRIC_NAMES.queueDepth,
    help: "Messages in a workflow queue as the broker counts them (RabbitMQ: ready only; NATS: not yet acked).",
    labelNames: ['workflow', 'queue'],
    registers: [registry],
    collect() {
      this.reset();
      const s = read();
      for (const q of s.queues) if (q.depth !== undefined) this.set({ workflow: s.workflow, queue: q.name }, q.depth);
    },
  });
  new Gauge({
    name: METRIC_NAMES.pilots,
    help: 'Pilots by state (starting, init, tasking, stopping, quarantine, done, fatal; stale: stopped sending heartbeats).',
    labelNames: ['workflow', 'task', 'state'],
    registers: [registry],
    collect() {
      this.reset();
      const s = read();
      for (const t of s.tasks) for (const state of PILOT_STATUSES) this.set({ workflow: s.workflow, task: t.name, state }, t.pilots[state] ?? 0);
    },
  });
  new SummedHistogram(METRIC_NAMES.taskDuration, 'Task run wall time in seconds (successes and failures), summed over pilots.', registry, read);
  new Counter({
    name: METRIC_NAMES.deadLetters,
    help: 'Events dead-lettered by pilots, by reason (at most 16 reasons per pilot; the rest under "(other reasons)").',
    labelNames: ['workflow', 'task', 'reason'],
    registers: [registry],
    collect() {
      this.reset();
      const s = read();
      for (const d of s.deadLetters) this.inc({ workflow: s.workflow, task: d.task, reason: d.reason }, d.count);
    },
  });
  new Counter({
    name: METRIC_NAMES.attemptsFailed,
    help: 'Failed task attempts, whether retried or dead-lettered.',
    labelNames: ['workflow', 'task'],
    registers: [registry],
    collect() {
      this.reset();
      const s = read();
      for (const t of s.tasks) this.inc({ workflow: s.workflow, task: t.name }, t.attemptsFailed);
    },
  });
  new Counter({
    name: METRIC_NAMES.heartbeats,
    help: 'Messages read from the monitoring queue: accepted heartbeats and rejected messages.',
    labelNames: ['workflow', 'result'],
    registers: [registry],
    collect() {
      this.reset();
      const s = read();
      this.inc({ workflow: s.workflow, result: 'accepted' }, s.heartbeats.accepted);
      this.inc({ workflow: s.workflow, result: 'rejected' }, s.heartbeats.rejected);
    },
  });
  return registry;
}
