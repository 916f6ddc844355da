/**
 * `runWorkflow`: a whole workflow in one call — publish the events, start pilots, collect every outcome
 * with a live progress display, stop the pilots, and report.
 */
import type { JsonValue } from '../common/wire.js';
import { describeError } from '../common/redact.js';
import { ProgressDisplay, type ProgressOptions } from './progress.js';
import type { ClusterStatus, PilotCluster, PilotRequest, WorkflowOptions, WorkflowOutcome, WorkflowQueues } from './types.js';
import { Workflow } from './workflow.js';

/** Options for `runWorkflow`. */
export interface RunWorkflowOptions extends WorkflowOptions {
  /** Events to publish (may be empty when only `alsoExpect` outcomes are awaited). */
  events?: Iterable<JsonValue> | AsyncIterable<JsonValue>;
  /** Outcomes to await besides those of `events`: a count, or ids (e.g. dead letters requeued before). */
  alsoExpect?: number;
  /** The pilots to run; omit when pilots are already running elsewhere. */
  pilots?: PilotRequest;
  /** Called with each outcome, once; the outcome is acked after it returns. */
  onOutcome(outcome: WorkflowOutcome): void | Promise<void>;
  /** Give up after this long without any outcome (default 10 minutes). */
  idleTimeoutMs?: number;
  /** Progress display settings, or `false` for none. */
  progress?: ProgressOptions | false;
  /**
   * Delete the queues at the end: `'if-clean'` (default) when no dead letter is left to inspect,
   * `true` always, `false` never.
   */
  deleteQueues?: boolean | 'if-clean';
  signal?: AbortSignal;
}

/** What happened. */
export interface WorkflowReport {
  workflowId: string;
  queues: WorkflowQueues;
  published: number;
  results: number;
  deadLetters: number;
  duplicates: number;
  unexpected: number;
  seconds: number;
  /** Outcomes per second over the whole run. */
  ratePerSecond: number;
  /** The pilots' last status before they were removed. */
  pilots: ClusterStatus | undefined;
  queuesDeleted: boolean;
}

/** Run a workflow from first event to last outcome. Dead letters are reported and left in their queue. */
export async function runWorkflow(options: RunWorkflowOptions): Promise<WorkflowReport> {
  const started = Date.now();
  const workflow = await Workflow.create(options);
  const log = options.logger;
  let cluster: PilotCluster | undefined;
  let expected: number | undefined;
  let display: ProgressDisplay | undefined;
  let pilotStatus: ClusterStatus | undefined;
  let closed = false;
  try {
    if (options.progress !== false) {
      display = new ProgressDisplay(
        () => ({ published: workflow.publishedCount, expected, results: workflow.collectStats.results, deadLetters: workflow.collectStats.deadLetters }),
        options.progress ?? {},
      );
    }
    // Pilots start while events are published: their start-up overlaps the publishing.
    const [ids, started_] = await Promise.all([
      options.events ? workflow.publish(options.events) : Promise.resolve([] as string[]),
      options.pilots ? workflow.startPilots(options.pilots) : Promise.resolve(undefined),
    ]);
    cluster = started_;
    const extra = options.alsoExpect ?? 0;
    expected = ids.length + extra;
    log?.info({ workflow: workflow.id, published: ids.length, expected, pilots: cluster?.id }, 'events published; collecting');

    // With extra outcomes to await, ids cannot all be named: count instead.
    const outcomes = workflow.collect({
      expected: extra > 0 ? expected : ids,
      idleTimeoutMs: options.idleTimeoutMs ?? 600_000,
      keepDeadLetters: true,
      ...(options.signal ? { signal: options.signal } : {}),
    });
    for await (const outcome of outcomes) await options.onOutcome(outcome);

    if (cluster) {
      pilotStatus = await cluster.status().catch(() => undefined);
      await cluster.remove();
      cluster = undefined;
    }
    const stats = { ...workflow.collectStats };
    const deleteQueues = options.deleteQueues ?? 'if-clean';
    const queuesDeleted = deleteQueues === true || (deleteQueues === 'if-clean' && (await workflow.deadLetters().depth()) === 0 && stats.deadLetters === 0);
    display?.stop();
    display = undefined;
    closed = true;
    await workflow.close({ deleteQueues: queuesDeleted });
    const seconds = (Date.now() - started) / 1000;
    return {
      workflowId: workflow.id,
      queues: workflow.queues,
      published: workflow.publishedCount,
      ...stats,
      seconds,
      ratePerSecond: seconds > 0 ? (stats.results + stats.deadLetters) / seconds : 0,
      pilots: pilotStatus,
      queuesDeleted,
    };
  } finally {
    display?.stop();
    if (cluster) await cluster.remove().catch((err: unknown) => log?.error({ err: describeError(err) }, 'stopping the pilots failed'));
    if (!closed) await workflow.close().catch(() => undefined);
  }
}
