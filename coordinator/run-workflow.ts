/**
 * `runWorkflow`: a whole workflow in one call — provision the queues through the pilots' backend, publish the
 * events, start the pilots, collect every outcome with a live progress display, stop the pilots (`finished`
 * on success, `aborted` on failure, as the ewms backend reports it to the WMS), and report.
 */
import type { EventData } from './types.js';
import { describeError } from '../common/redact.js';
import { failedPilots } from './autoscale.js';
import { PilotBackendError } from './errors.js';
import { ProgressDisplay, type ProgressOptions, type ProgressSnapshot } from './progress.js';
import type { ClusterStatus, CollectStats, DeadLetterRoute, PilotCluster, PilotRequest, WorkflowOptions, WorkflowOutcome, WorkflowQueues } from './types.js';
import { Workflow } from './workflow.js';

/** Options for `runWorkflow`. */
export interface RunWorkflowOptions extends WorkflowOptions {
  /** Events to publish (may be empty when only `alsoExpect` outcomes are awaited). */
  events?: Iterable<EventData> | AsyncIterable<EventData>;
  /**
   * Outcomes to await besides those of `events`: their ids (e.g. the dead letters `requeue` returned), or
   * just a count — a count also takes dead letters still waiting in the dead-letter queue for outcomes.
   */
  alsoExpect?: number | Iterable<string>;
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
  /** Told once the queues exist, before anything is published (e.g. to start `ewms monitor` on the run). */
  onWorkflow?: (workflow: Workflow, progress: () => ProgressSnapshot) => void | Promise<void>;
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
  /** Where the dead letters were: their own queue (left there), or with the results (ewms). */
  deadLetterRoute: DeadLetterRoute;
}

/**
 * Run a workflow from first event to last outcome. Dead letters are reported, and left in their queue where
 * they have one (with the ewms backend they arrive with the results and are handed to `onOutcome` only).
 */
export async function runWorkflow(options: RunWorkflowOptions): Promise<WorkflowReport> {
  const started = Date.now();
  const log = options.logger;
  // The pilots' backend provisions the queues (the WMS makes them for ewms); pilots start below.
  const workflow = await Workflow.create(options);
  let cluster: PilotCluster | undefined;
  let collected: Readonly<CollectStats> = { results: 0, deadLetters: 0, duplicates: 0, unexpected: 0 };
  let expected: number | undefined;
  let display: ProgressDisplay | undefined;
  let pilotStatus: ClusterStatus | undefined;
  let closed = false;
  const readProgress = (): ProgressSnapshot => ({ published: workflow.publishedCount, expected, results: collected.results, deadLetters: collected.deadLetters });
  try {
    await options.onWorkflow?.(workflow, readProgress);
    if (options.progress !== false) display = new ProgressDisplay(readProgress, options.progress ?? {});
    // Pilots start while events are published: their start-up overlaps the publishing. Both are waited
    // for whatever happens, so pilots that did start are removed below when publishing fails, and a
    // failed start stops the publishing.
    const stopPublishing = new AbortController();
    const publishSignal = options.signal ? AbortSignal.any([options.signal, stopPublishing.signal]) : stopPublishing.signal;
    const [published, startedPilots] = await Promise.allSettled([
      options.events ? workflow.publish(options.events, { signal: publishSignal }) : Promise.resolve([] as string[]),
      (options.pilots ? workflow.startPilots(options.pilots) : Promise.resolve(undefined)).catch((err: unknown) => {
        stopPublishing.abort(err);
        throw err;
      }),
    ]);
    if (startedPilots.status === 'fulfilled') cluster = startedPilots.value;
    if (startedPilots.status === 'rejected') throw startedPilots.reason;
    if (published.status === 'rejected') throw published.reason;
    const ids = published.value;
    const extraIds = options.alsoExpect === undefined || typeof options.alsoExpect === 'number' ? undefined : [...options.alsoExpect];
    const extra = extraIds ? extraIds.length : ((options.alsoExpect as number | undefined) ?? 0);
    expected = ids.length + extra;
    log?.info({ workflow: workflow.id, published: ids.length, expected, pilots: cluster?.id }, 'events published; collecting');

    // With extra outcomes to await, ids cannot all be named: count instead.
    const watchdog = cluster ? watchPilots(cluster, log) : undefined;
    const signals = [watchdog?.signal, options.signal].filter((s): s is AbortSignal => s !== undefined);
    try {
      const collection = workflow.collect({
        expected: extraIds ? [...ids, ...extraIds] : extra > 0 ? expected : ids,
        idleTimeoutMs: options.idleTimeoutMs ?? 600_000,
        keepDeadLetters: true,
        ...(signals.length > 0 ? { signal: AbortSignal.any(signals) } : {}),
      });
      collected = collection.stats;
      for await (const outcome of collection) await options.onOutcome(outcome);
    } finally {
      watchdog?.stop();
    }

    if (cluster) {
      pilotStatus = await cluster.status().catch(() => undefined);
      await cluster.remove({ reason: 'finished' });
      cluster = undefined;
    }
    const stats = { ...collected };
    const deleteQueues = options.deleteQueues ?? 'if-clean';
    const queuesDeleted =
      !workflow.queuesOwnedByBackend && (deleteQueues === true || (deleteQueues === 'if-clean' && (await workflow.deadLetters().depth()) === 0 && stats.deadLetters === 0));
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
      deadLetterRoute: workflow.deadLetterRoute,
    };
  } catch (err) {
    // Say where the events and outcomes are: with a random workflow id nothing else names the queues.
    log?.error({ workflow: workflow.id, queues: workflow.queues }, 'the run failed; its queues are kept');
    throw err;
  } finally {
    display?.stop();
    if (cluster) await cluster.remove({ reason: 'aborted' }).catch((err: unknown) => log?.error({ err: describeError(err) }, 'stopping the pilots failed'));
    if (!closed) await workflow.close().catch(() => undefined);
  }
}

/** States in which a pilot does no more work. */
const ENDED_STATES = new Set(['failed', 'held', 'removed', 'completed']);
const WATCH_PERIOD_MS = 2_000;

/**
 * Abort collection when every pilot has ended and some failed (a task image that cannot start, a bad
 * setting): waiting for the idle timeout would only hide the cause. Two checks in a row must agree, so a
 * pilot being replaced by the autoscaler does not trip it.
 */
function watchPilots(cluster: PilotCluster, log: RunWorkflowOptions['logger']): { signal: AbortSignal; stop(): void } {
  const abort = new AbortController();
  let strikes = 0;
  let busy = false;
  const timer = setInterval(() => {
    if (busy) return;
    busy = true;
    cluster
      .status()
      .then((status) => {
        const present = Object.entries(status.byState).filter(([, n]) => n > 0);
        const down = status.total > 0 && present.every(([state]) => ENDED_STATES.has(state)) && failedPilots(status) > 0;
        strikes = down ? strikes + 1 : 0;
        if (strikes >= 2) {
          abort.abort(
            new PilotBackendError(
              `every pilot has ended (${present.map(([s, n]) => `${n} ${s}`).join(', ')}; ${Object.entries(status.byPilotStatus).map(([s, n]) => `${n}× ${s}`).join(', ')}) before all outcomes arrived`,
              "read the pilots' stderr (local: <work dir>/pilot-N/pilot.err; condor: the jobs' error files) — exit 2 means a bad pilot setting",
            ),
          );
        }
      })
      .catch((err: unknown) => log?.warn({ err: describeError(err) }, 'could not read the pilot status'))
      .finally(() => (busy = false));
  }, WATCH_PERIOD_MS);
  timer.unref();
  return { signal: abort.signal, stop: () => clearInterval(timer) };
}
