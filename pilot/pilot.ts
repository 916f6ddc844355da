/**
 * A pilot's whole life: connect, declare, run the init command once, process events until a stop
 * condition, release what is unfinished, report, and choose the exit code HTCondor will see.
 *
 * Exit codes: 0 — the queue drained (idle timeout) or the wall-time budget ran out; 1 — fail-fast after a
 * task error (following the quarantine sleep) or a broker failure; 2 — bad configuration (raised before
 * this runs); 128+N — stopped by signal N (SIGTERM → 143, SIGINT → 130).
 */
import { hostname } from 'node:os';
import { connect } from '../mq-adapters/index.js';
import type { Broker, ConnectOptions } from '../mq-adapters/types.js';
import { describeError } from '../common/redact.js';
import { EventLoop, type EventProcessor, type StopReason } from './event-loop.js';
import { DEFAULT_TASK_NAME } from '../common/heartbeat.js';
import { PilotReporter, type MonitorSettings } from './heartbeat-reporter.js';
import { HTChirp, observeIntake, type ChirpDestination } from './htchirp.js';
import type { Logger } from './logger.js';
import { PilotQueues } from './queues.js';
import { PilotStats, type StatsSnapshot } from './stats.js';

/** Where one queue lives. */
export interface QueueEndpoint {
  queue: string;
  broker: ConnectOptions;
  /** Its urgent twin on the same broker: read before the queue itself (incoming), where urgent outputs go (outgoing). */
  urgent?: string;
  /** Incoming queues after the first: where their dead letters go (the first's is `deadLetterQueue`). */
  deadLetterQueue?: string;
}

/** Everything the runtime needs, already validated. */
export interface PilotSettings {
  incoming: QueueEndpoint;
  outgoing: QueueEndpoint;
  /** Further input queues (a task reading several queues): all read, urgent twins first. */
  moreIncoming?: QueueEndpoint[];
  /** Further output queues: every output goes to each of them too (fan-out). */
  moreOutgoing?: QueueEndpoint[];
  /** Publish a marker for an event the task filtered out (no outfile), and pass received markers on. */
  filterMarkers?: boolean;
  /** Where dead letters go: this queue (`queue` route), or the outgoing queue's name (`outgoing` route). */
  deadLetterQueue: string;
  /**
   * `queue`: a dead-letter queue the pilot declares; `outgoing`: none — dead letters go to the outgoing queue,
   * and the pilot touches no queue but its two (per-queue credentials, as under EWMS).
   */
  deadLetterRoute: 'queue' | 'outgoing';
  maxDeliveries: number;
  /** `auto`: room for one event prepared beside each task and for finished ones being acked; else as given. */
  prefetch: number | 'auto';
  maxConcurrentTasks: number;
  stopOnTaskError: boolean;
  quarantineSeconds: number;
  firstMessageTimeoutSeconds: number | undefined;
  idleTimeoutSeconds: number | undefined;
  /** Stop intake this long after start, so in-flight work can finish before the job's wall-time limit. */
  maxWorkerRuntimeSeconds: number | undefined;
  /** Longest a task may run: used to stop intake early enough before the wall-time limit. */
  taskTimeoutSeconds: number | undefined;
  /** Grace for in-flight tasks on SIGTERM/SIGINT before they are killed and their events released. */
  killGraceSeconds: number;
  leaseSeconds: number;
  chirp: { enabled: boolean; destination: ChirpDestination; rateLimitSeconds: number };
  /** The task's name in heartbeats and spans (default `task-0`). */
  taskName?: string;
  /** Heartbeats to the workflow's monitoring queue; absent: none. */
  monitor?: MonitorSettings;
}

/** What the runtime is given besides settings: the parts that do I/O. */
export interface PilotParts {
  logger: Logger;
  /** Builds the event processor once the outgoing broker is known. */
  makeProcessor(): EventProcessor;
  /**
   * The init command, run once before any event (absent: none configured). Throws on failure; `signal`
   * aborts it (SIGTERM/SIGINT during init).
   */
  runInit?: (signal: AbortSignal) => Promise<void>;
  /** For tests: connect differently. */
  connectBroker?: (options: ConnectOptions) => Promise<Broker>;
  /** Signals to honour (default SIGTERM and SIGINT). */
  signals?: NodeJS.Signals[];
  /** Resolves after `ms`, or as soon as `signal` is aborted (a SIGTERM cuts the quarantine short). */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  version: string;
}

export interface PilotOutcome {
  exitCode: number;
  stopReason: StopReason | 'subscription-ended' | 'init-failed';
  stats: StatsSnapshot;
  summary: string;
}

const SIGNAL_EXIT: Partial<Record<NodeJS.Signals, number>> = { SIGTERM: 143, SIGINT: 130, SIGHUP: 129 };

export async function runPilot(settings: PilotSettings, parts: PilotParts): Promise<PilotOutcome> {
  const { logger } = parts;
  const stats = new PilotStats();
  const chirp = new HTChirp({ ...settings.chirp, onError: (m) => logger.warn(m) });
  const started = Date.now();
  chirp.status('Started');
  const connectBroker = parts.connectBroker ?? connect;

  const queues = await PilotQueues.open(settings, connectBroker, logger);
  let reporter: PilotReporter;
  try {
    reporter = await PilotReporter.start({ monitor: settings.monitor, taskName: settings.taskName ?? DEFAULT_TASK_NAME, broker: queues.outgoing, incomingQueue: settings.incoming.queue, version: parts.version, logger, counts: () => stats.counts() });
  } catch (err) {
    await queues.close();
    throw err;
  }
  const closeBrokers = async () => {
    await reporter.close();
    await queues.close();
  };

  let signalled: NodeJS.Signals | undefined;
  const signals = parts.signals ?? ['SIGTERM', 'SIGINT'];
  let loop: EventLoop | undefined;
  // Aborted by the first SIGTERM/SIGINT: an eviction must wait neither for a long init (a model download)
  // nor for the quarantine sleep.
  const initAbort = new AbortController();
  const onSignal = (signal: NodeJS.Signals) => {
    if (signalled) {
      logger.warn({ signal }, 'second signal: stopping in-flight tasks now');
      loop?.abortAll();
      return;
    }
    signalled = signal;
    logger.info({ signal, graceSeconds: settings.killGraceSeconds }, 'signal received: stopping intake');
    chirp.status('PendingRemainingTasks');
    initAbort.abort();
    loop?.stop('signal', settings.killGraceSeconds * 1000);
  };
  for (const s of signals) process.on(s, onSignal);

  const timers: NodeJS.Timeout[] = [];
  try {
    await queues.declare(settings.maxDeliveries);

    if (parts.runInit) {
      chirp.status('RunningInitCommand');
      reporter.state('init');
      try {
        await parts.runInit(initAbort.signal);
      } catch (err) {
        if (signalled) return finish(SIGNAL_EXIT[signalled] ?? 1, 'signal', `stopped by ${signalled} during init`);
        const message = describeError(err);
        reporter.noteError(`init command failed: ${message}`);
        logger.error({ err: message }, 'init command failed; no event was taken');
        chirp.error(err);
        chirp.status('FatalError');
        // As the Python pilot: a node that cannot even run init is the classic black hole; keep its slot busy.
        await quarantine();
        if (signalled) return finish(SIGNAL_EXIT[signalled] ?? 1, 'signal', `stopped by ${signalled}; init command failed: ${message}`);
        return finish(1, 'init-failed', `init command failed: ${message}`);
      }
    }
    if (signalled) return finish(SIGNAL_EXIT[signalled] ?? 1, 'signal', `stopped by ${signalled} before taking work`);

    // Beside each running task, one event prepared and waiting for its slot; the prefetch also leaves room
    // for finished events being published and acked, and one more, so the next event is always in hand.
    const lookahead = settings.maxConcurrentTasks;
    const subscription = await queues.consume({
      prefetch: settings.prefetch === 'auto' ? 3 * settings.maxConcurrentTasks + 2 : Math.max(settings.prefetch, settings.maxConcurrentTasks),
      maxDeliveries: settings.maxDeliveries,
      leaseMs: settings.leaseSeconds * 1000,
    });
    let received = 0;
    const chirpCounts = () => chirp.taskCounts({ received, ...stats.counts() });
    loop = new EventLoop({
      // Counted on receipt, as the Python pilot does: the first event is the start of Tasking.
      subscription: reporter.wrapSubscription(
        chirp.active
          ? observeIntake(subscription, () => {
              received += 1;
              if (received === 1) chirp.status('Tasking');
              chirpCounts();
            })
          : subscription,
      ),
      publishOutput: (message) => queues.publish(message),
      processor: reporter.wrapProcessor(parts.makeProcessor()),
      maxConcurrentTasks: settings.maxConcurrentTasks,
      lookahead,
      maxDeliveries: settings.maxDeliveries,
      stopOnTaskError: settings.stopOnTaskError,
      firstMessageTimeoutMs: secondsToMs(settings.firstMessageTimeoutSeconds),
      idleTimeoutMs: secondsToMs(settings.idleTimeoutSeconds),
      leaseRenewMs: Math.max(1000, (settings.leaseSeconds * 1000) / 3),
      logger,
      stats,
      // Per event: counters only (a snapshot sorts every duration), and nothing at all without HTChirp.
      onProgress: chirp.active ? chirpCounts : undefined,
      version: parts.version,
    });
    if (signalled) loop.stop('signal', settings.killGraceSeconds * 1000);
    scheduleWallTime(settings, loop, timers, logger, () => chirp.status('PendingRemainingTasks'));
    chirp.status('AwaitingFirstMessage');
    reporter.state('tasking');
    logger.info(
      { ...queues.describe(), broker: queues.incoming.displayAddress, concurrency: settings.maxConcurrentTasks },
      'pilot started',
    );

    const result = await loop.run();
    switch (result.stopReason) {
      case 'task-error': {
        const summary = `stopped after a task failed: ${result.fatalTaskError ?? 'unknown error'}`;
        chirp.error(Object.assign(new Error(result.fatalTaskError ?? 'task failed'), { name: 'TaskError' }));
        chirp.status('FatalError');
        await quarantine();
        if (signalled) return finish(SIGNAL_EXIT[signalled] ?? 1, 'signal', `stopped by ${signalled}; ${summary}`);
        return finish(1, result.stopReason, summary);
      }
      case 'broker-error':
        reporter.noteError(`broker failure: ${describeError(result.brokerError)}`);
        chirp.error(result.brokerError);
        chirp.status('FatalError');
        return finish(1, result.stopReason, `broker failure: ${describeError(result.brokerError)}`);
      case 'signal':
        return finish(SIGNAL_EXIT[signalled ?? 'SIGTERM'] ?? 1, result.stopReason, `stopped by ${signalled ?? 'signal'}`);
      default:
        // A signal while draining after an idle or wall-time stop is still a stop by that signal.
        if (signalled) return finish(SIGNAL_EXIT[signalled] ?? 1, 'signal', `stopped by ${signalled} (after ${result.stopReason})`);
        return finish(0, result.stopReason, `finished: ${result.stopReason}`);
    }
  } finally {
    for (const t of timers) clearTimeout(t);
    for (const s of signals) process.off(s, onSignal);
    await closeBrokers();
    await chirp.flush();
  }

  /** Sleep QUARANTINE_TIME before a failure exit, so HTCondor does not hand this node's slot straight back; a signal ends it. */
  async function quarantine(): Promise<void> {
    if (settings.quarantineSeconds <= 0 || signalled) return;
    logger.warn({ seconds: settings.quarantineSeconds }, 'quarantine: sleeping before exit so this node does not take more work');
    reporter.state('quarantine');
    await (parts.sleep ?? sleep)(settings.quarantineSeconds * 1000, initAbort.signal);
  }

  function finish(exitCode: number, stopReason: PilotOutcome['stopReason'], why: string): PilotOutcome {
    const snapshot = stats.snapshot();
    const t = snapshot.taskSeconds;
    const summary =
      `${why}; ${snapshot.succeeded} succeeded${snapshot.withoutOutput > 0 ? ` (${snapshot.withoutOutput} without output)` : ''}, ${snapshot.failed} failed (${snapshot.deadLettered} dead-lettered); ` +
      `task seconds mean ${t.mean.toFixed(2)} median ${t.median.toFixed(2)} max ${t.max.toFixed(2)}; ` +
      `ran ${((Date.now() - started) / 1000).toFixed(1)} s on ${hostname()}`;
    logger.info({ exitCode, stopReason, stats: snapshot, version: parts.version }, summary);
    // Python's statuses: Done on success; FatalError was sent where the failure happened; a signal leaves
    // PendingRemainingTasks, the phase the pilot was in when it stopped.
    if (exitCode === 0) chirp.status('Done');
    reporter.finish(exitCode, stopReason);
    return { exitCode, stopReason, stats: snapshot, summary };
  }
}

/**
 * Stop intake early enough that the longest task can still finish inside the wall-time budget. The budget is
 * the job's, so it counts from the process start: image preparation, connecting and the init command have
 * already spent part of it.
 */
function scheduleWallTime(settings: PilotSettings, loop: EventLoop, timers: NodeJS.Timeout[], logger: Logger, onStop: () => void): void {
  const budget = settings.maxWorkerRuntimeSeconds;
  if (budget === undefined) return;
  const reserve = Math.min(settings.taskTimeoutSeconds ?? 0, budget);
  const spentMs = process.uptime() * 1000;
  const stopIntakeAt = Math.max(0, (budget - reserve) * 1000 - spentMs);
  timers.push(
    setTimeout(() => {
      logger.info({ budgetSeconds: budget }, 'wall-time budget: no new events');
      onStop();
      loop.stop('max-runtime', Math.max(0, budget * 1000 - process.uptime() * 1000));
    }, stopIntakeAt),
  );
}

function secondsToMs(s: number | undefined): number | undefined {
  return s === undefined ? undefined : s * 1000;
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}
