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

/** One sample: its labels and value. */
type Sample = [Record<string, string>, number];

/**
 * Register a counter or gauge whose samples are computed from the snapshot at each scrape. Counters carry
 * sums of pilots' cumulative counts, so they are reset and set to the sum rather than counted here.
 */
function collected(
  kind: 'counter' | 'gauge',
  registry: Registry,
  read: () => MonitorSnapshot,
  name: string,
  help: string,
  labelNames: string[],
  samples: (s: MonitorSnapshot) => Sample[],
): void {
  const config = { name, help, labelNames, registers: [registry] };
  if (kind === 'counter') {
    new Counter({
      ...config,
      collect() {
        this.reset();
        for (const [labels, value] of samples(read())) this.inc(labels, value);
      },
    });
  } else {
    new Gauge({
      ...config,
      collect() {
        this.reset();
        for (const [labels, value] of samples(read())) this.set(labels, value);
      },
    });
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
  const perTask = (s: MonitorSnapshot, value: (t: MonitorSnapshot['tasks'][number]) => number): Sample[] =>
    s.tasks.map((t) => [{ workflow: s.workflow, task: t.name }, value(t)]);

  collected('counter', registry, read, METRIC_NAMES.events, 'Events settled by pilots, by outcome: result (task succeeded, output published) or dead_letter.', ['workflow', 'task', 'outcome'], (s) =>
    s.tasks.flatMap((t): Sample[] => [
      [{ workflow: s.workflow, task: t.name, outcome: 'result' }, t.done],
      [{ workflow: s.workflow, task: t.name, outcome: 'dead_letter' }, t.failed],
    ]),
  );
  collected('gauge', registry, read, METRIC_NAMES.inFlight, 'Events whose task is running now, on pilots that are not stale.', ['workflow', 'task'], (s) => perTask(s, (t) => t.inFlight));
  collected('gauge', registry, read, METRIC_NAMES.queueDepth, 'Messages in a workflow queue as the broker counts them (RabbitMQ: ready only; NATS: not yet acked).', ['workflow', 'queue'], (s) =>
    s.queues.filter((q) => q.depth !== undefined).map((q): Sample => [{ workflow: s.workflow, queue: q.name }, q.depth!]),
  );
  collected('gauge', registry, read, METRIC_NAMES.pilots, 'Pilots by state (starting, init, tasking, stopping, quarantine, done, fatal; stale: stopped sending heartbeats).', ['workflow', 'task', 'state'], (s) =>
    s.tasks.flatMap((t) => PILOT_STATUSES.map((state): Sample => [{ workflow: s.workflow, task: t.name, state }, t.pilots[state] ?? 0])),
  );
  new SummedHistogram(METRIC_NAMES.taskDuration, 'Task run wall time in seconds (successes and failures), summed over pilots.', registry, read);
  collected('counter', registry, read, METRIC_NAMES.deadLetters, 'Events dead-lettered by pilots, by reason (at most 16 reasons per pilot; the rest under "(other reasons)").', ['workflow', 'task', 'reason'], (s) =>
    s.deadLetters.map((d): Sample => [{ workflow: s.workflow, task: d.task, reason: d.reason }, d.count]),
  );
  collected('counter', registry, read, METRIC_NAMES.attemptsFailed, 'Failed task attempts, whether retried or dead-lettered.', ['workflow', 'task'], (s) => perTask(s, (t) => t.attemptsFailed));
  collected('counter', registry, read, METRIC_NAMES.heartbeats, 'Messages read from the monitoring queue: accepted heartbeats and rejected messages.', ['workflow', 'result'], (s) => [
    [{ workflow: s.workflow, result: 'accepted' }, s.heartbeats.accepted],
    [{ workflow: s.workflow, result: 'rejected' }, s.heartbeats.rejected],
  ]);
  return registry;
}
