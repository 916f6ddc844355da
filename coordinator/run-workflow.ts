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
import type { ClusterStatus, CollectStats, DeadLetterRoute, EventData as Event, PilotCluster, PilotDefaults, PilotRequest, WorkflowOptions, WorkflowOutcome, WorkflowQueues } from './types.js';
import { WorkflowPilots } from './backends/workflow-pilots.js';
import { Workflow } from './workflow.js';

/** Options for `runWorkflow`. */
export interface RunWorkflowOptions extends WorkflowOptions {
  /** Events to publish (may be empty when only `alsoExpect` outcomes are awaited). */
  events?: Iterable<EventData> | AsyncIterable<EventData>;
  /**
   * Outcomes to await besides those of `events`: their ids (e.g. the dead letters `requeue` returned), or
   * just a count — a count takes any outcome, except the dead letters already in the dead-letter queue when
   * the run starts (earlier runs' leftovers, which stay there).
   */
  alsoExpect?: number | Iterable<string>;
  /** Called once every event is published (and confirmed), with their ids in input order, before collecting. */
  onPublished?(ids: readonly string[]): void | Promise<void>;
  /**
   * The pilots to run (with a graph: the settings every task's pilots share); omit when pilots are already
   * running elsewhere.
   */
  pilots?: PilotRequest | PilotDefaults;
  /**
   * Events per public input queue of a graph with several (by alias); `events` then goes to none. With one
   * public input, `events` is enough.
   */
  eventsByQueue?: Record<string, Iterable<EventData> | AsyncIterable<EventData>>;
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
  /**
   * Streaming: collect every outcome as it arrives, with no expected set and no end, until `signal` aborts;
   * then stop the pilots and keep the queues (pilots autoscaled from `min: 0` scale to zero while the feed
   * is idle). `alsoExpect` does not apply.
   */
  follow?: boolean;
  /** Outcome ids handed over before a restart (`follow`): skipped if they come again. */
  alreadySeen?: Iterable<string>;
  /** Told once the queues exist, before anything is published (e.g. to start `ewms monitor` on the run). */
  onWorkflow?: (workflow: Workflow, progress: () => ProgressSnapshot) => void | Promise<void>;
}

/** What happened. */
export interface WorkflowReport {
  workflowId: string;
  queues: WorkflowQueues;
  published: number;
  /** Published events whose outcomes are all in. */
  settled: number;
  results: number;
  deadLetters: number;
  /** Events a task filtered out (graphs). */
  filtered: number;
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
  let collected: Readonly<CollectStats> = { settled: 0, results: 0, deadLetters: 0, filtered: 0, duplicates: 0, unexpected: 0 };
  let expected: number | undefined;
  let display: ProgressDisplay | undefined;
  let pilotStatus: ClusterStatus | undefined;
  let closed = false;
  let stages: ProgressSnapshot['stages'];
  const readProgress = (): ProgressSnapshot => ({ published: workflow.publishedCount, expected, settled: collected.settled, results: collected.results, deadLetters: collected.deadLetters, ...(stages ? { stages } : {}) });
  try {
    await options.onWorkflow?.(workflow, readProgress);
    if (options.progress !== false) display = new ProgressDisplay(readProgress, options.progress ?? {});
    // Dead letters already waiting belong to earlier runs: a count of outcomes must not take them. Read
    // before any pilot starts, so none of this run's can be among them.
    const earlierDeadLetters =
      typeof options.alsoExpect === 'number' && options.alsoExpect > 0 && workflow.deadLetterRoute === 'queue'
        ? (await workflow.deadLetters().list({ limit: await workflow.deadLetters().depth() })).map((d) => d.inputEventId)
        : [];
    // Pilots start while events are published: their start-up overlaps the publishing. Both are waited
    // for whatever happens, so pilots that did start are removed below when publishing fails, and a
    // failed start stops the publishing.
    const stopPublishing = new AbortController();
    const publishSignal = options.signal ? AbortSignal.any([options.signal, stopPublishing.signal]) : stopPublishing.signal;
    const [published, startedPilots] = await Promise.allSettled([
      publishAll(workflow, options, publishSignal),
      (options.pilots ? workflow.startPilots(options.pilots) : Promise.resolve(undefined)).catch((err: unknown) => {
        stopPublishing.abort(err);
        throw err;
      }),
    ]);
    if (startedPilots.status === 'fulfilled') cluster = startedPilots.value;
    if (startedPilots.status === 'rejected') throw startedPilots.reason;
    if (published.status === 'rejected') throw published.reason;
    const ids = published.value;
    await options.onPublished?.(ids);
    const extraIds = options.alsoExpect === undefined || typeof options.alsoExpect === 'number' ? undefined : [...options.alsoExpect];
    const extra = extraIds ? extraIds.length : ((options.alsoExpect as number | undefined) ?? 0);
    expected = options.follow ? undefined : ids.length + extra;
    log?.info({ workflow: workflow.id, published: ids.length, expected, pilots: cluster?.id }, 'events published; collecting');

    // With extra outcomes to await, ids cannot all be named: count instead.
    const watchdog = cluster ? watchPilots(cluster, log) : undefined;
    // A progress line per stage of a graph: each task's queued events and running pilots.
    const stageWatch = workflow.layout.isGraph ? watchStages(workflow, cluster, (s) => (stages = s)) : undefined;
    const signals = [watchdog?.signal, options.signal].filter((s): s is AbortSignal => s !== undefined);
    try {
      const signal = signals.length > 0 ? { signal: AbortSignal.any(signals) } : {};
      const collection = options.follow
        ? // Streaming: every outcome as it comes (dead letters acked once handed over) until the signal.
          workflow.collect({ follow: true, ...(options.alreadySeen ? { alreadySeen: options.alreadySeen } : {}), ...signal })
        : workflow.collect({
            expected: extraIds ? [...ids, ...extraIds] : extra > 0 ? expected : ids,
            idleTimeoutMs: options.idleTimeoutMs ?? 600_000,
            keepDeadLetters: true,
            ignoreIds: earlierDeadLetters,
            ...signal,
          });
      collected = collection.stats;
      for await (const outcome of collection) await options.onOutcome(outcome);
      // A stream ends quietly on its signal: pilots that all failed must still fail the run.
      if (options.follow && watchdog?.signal.aborted) throw watchdog.signal.reason;
    } finally {
      watchdog?.stop();
      stageWatch?.stop();
    }

    if (cluster) {
      pilotStatus = await cluster.status().catch(() => undefined);
      await cluster.remove({ reason: 'finished' });
      cluster = undefined;
    }
    const stats = { ...collected };
    // A stream's queues outlive the collector: it resumes from them.
    const deleteQueues = options.deleteQueues ?? (options.follow ? false : 'if-clean');
    const queuesDeleted =
      !workflow.queuesOwnedByBackend && (deleteQueues === true || (deleteQueues === 'if-clean' && (await deadLetterDepth(workflow)) === 0 && stats.deadLetters === 0));
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
              "read the pilots' logs (local: pilot-N/pilot.err in the pilots' work dir is each pilot's own log, pilot-N/pilot.out the output of its failed tasks; condor: the jobs' error and output files) — exit 2 means a bad pilot setting",
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

/** Publish `events` (to the one public input) and `eventsByQueue` (each to its alias); all ids, in that order. */
async function publishAll(workflow: Workflow, options: RunWorkflowOptions, signal: AbortSignal): Promise<string[]> {
  const ids: string[] = [];
  if (options.events) ids.push(...(await workflow.publish(options.events, { signal })));
  for (const [queue, events] of Object.entries(options.eventsByQueue ?? {})) ids.push(...(await workflow.publish(events as Iterable<Event> | AsyncIterable<Event>, { signal, queue })));
  return ids;
}

/** Dead letters left in every task's dead-letter queue. */
async function deadLetterDepth(workflow: Workflow): Promise<number> {
  let total = 0;
  for (const task of workflow.layout.tasks) for (const queue of task.inputs) total += await workflow.deadLetters({ task: task.name, queue }).depth();
  return total;
}

const STAGE_PERIOD_MS = 2_000;

/** Poll each task's queue depth and running pilots for the progress line. */
function watchStages(workflow: Workflow, cluster: PilotCluster | undefined, update: (stages: NonNullable<ProgressSnapshot['stages']>) => void): { stop(): void } {
  let busy = false;
  const poll = async () => {
    const byTask = cluster instanceof WorkflowPilots ? await cluster.statusByTask() : [];
    const stages = [];
    for (const name of workflow.taskNames) {
      const status = byTask.find((t) => t.task === name)?.status;
      stages.push({ task: name, queued: await workflow.depth(name).catch(() => undefined), ...(status ? { pilots: status.byState.running ?? 0 } : {}) });
    }
    update(stages);
  };
  const tick = () => {
    if (busy) return;
    busy = true;
    poll()
      .catch(() => undefined)
      .finally(() => (busy = false));
  };
  tick();
  const timer = setInterval(tick, STAGE_PERIOD_MS);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}
