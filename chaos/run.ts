/**
 * One chaos run on one broker target: publish a seeded mix of events, run pilots through the coordinator's
 * local backend, SIGKILL and SIGTERM pilots (replacing them) and restart the broker while they work, then
 * account for every event and every process.
 *
 * Reproducible by seed: the event mix and the action schedule come from it. Actions fire at progress
 * milestones (a share of the expected outcomes collected), not at wall-clock times, so the same seed gives
 * the same schedule on a fast or a loaded machine; which deliveries a kill catches in flight still depends
 * on timing.
 */
import { randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { join } from 'node:path';
import { pino } from 'pino';
import { encodeEvent } from '../coordinator/codec.js';
import { CollectTimeoutError } from '../coordinator/errors.js';
import type { PilotCluster, WorkflowOutcome } from '../coordinator/types.js';
import { Workflow } from '../coordinator/workflow.js';
import { MessageTooLargeError } from '../mq-adapters/errors.js';
import { describeError } from '../common/redact.js';
import { classify, type Classification } from './classify.js';
import { buildReport } from './report.js';
import { planEvents, type PlannedEvent } from './events.js';
import { endedDeliveries, findLeaks, type CutWindow, type Leak } from './pilot-logs.js';
import { OrphanWatch, stillIn, type Orphan, type RunProcess } from './processes.js';
import { Rng } from './rng.js';
import { TASK_SCRIPT } from './task.js';
import { startTarget, type ChaosBrokerType, type ChaosTarget, type DisruptionSignal } from './targets.js';

/** Settings of one run. Defaults are those of `npm run chaos`. */
export interface ChaosOptions {
  broker: ChaosBrokerType;
  /** The 3-node cluster of that broker instead of a single node; the disruptions hit the queue's leader. */
  cluster?: boolean;
  seed: number;
  /** Events planned (default 10,000), a few of them oversize ones that the broker must refuse. */
  events?: number;
  /** Pilots kept running (default 4). */
  pilots?: number;
  /** Pilots SIGKILLed during the run (default 45 per 10,000 events). */
  sigkills?: number;
  /** Pilots SIGTERMed during the run (default 50 per 10,000 events). */
  sigterms?: number;
  /** Kill (SIGKILL) and later stop (SIGTERM) the broker, or the queue's leader, once each (default true). */
  brokerDisruptions?: boolean;
  /** Attempts per event (default 3, the product's default). */
  maxDeliveries?: number;
  /** Tasks per pilot at once (default 2); pilots use the automatic prefetch (3 × tasks + 2). */
  concurrency?: number;
  /** A task's timeout (default 2 s): `hang` events end by it. */
  taskTimeoutSeconds?: number;
  /** The pilots' EWMS_PILOT_TASK_KILL_GRACE (default 2 s). */
  killGraceSeconds?: number;
  /** Give up when no outcome arrives for this long (default 120 s): what is missing then is lost. */
  stallTimeoutMs?: number;
  /** Keep the run's directory (pilot logs, task files) even when the run passes. */
  keepFiles?: boolean;
  /** Progress lines (default: none). */
  log?: (line: string) => void;
}

/** What a run found. `failures` is empty when it passed. */
export interface ChaosReport {
  target: string;
  seed: number;
  planned: number;
  /** Confirmed by the broker. */
  published: number;
  /** Oversize events the broker refused at publish (as it must). */
  refusedAtPublish: number;
  results: number;
  deadLetters: number;
  deadLettersByReason: Record<string, number>;
  /** Published events with no outcome when the run ended. */
  lost: string[];
  /** Second copies of an outcome the coordinator recognised and dropped. */
  duplicatesAbsorbed: number;
  /** Events whose outcome reached the user more than once. */
  duplicatesToUser: string[];
  orphans: Orphan[];
  /** Files holding the broker password; undefined when the broker ran without one (nothing to look for). */
  leaks: Leak[] | undefined;
  wrongOutcomes: Array<{ id: string; kind: string; problem: string }>;
  /**
   * Good events dead-lettered for the delivery limit after at least as many of their deliveries as there are
   * attempts were ended by SIGKILLed holders (`killed`) or cut by a broker disruption (`cut`): expected.
   * `killed` and `cut` sum those events' deliveries of each kind.
   */
  deliveryLimitExpected: { events: number; killed: number; cut: number };
  sigkills: number;
  /** SIGKILLs that hit a pilot while one of its tasks slept: each should leave a task to be cleaned up. */
  sigkillsDuringSleep: number;
  sigterms: number;
  pilotsStarted: number;
  brokerDisruptions: string[];
  durationMs: number;
  failures: string[];
  /** The run's directory, when kept. */
  keptDir: string | undefined;
}

/** Shares of the expected outcomes at which the broker is disrupted. */
const DISRUPTIONS: ReadonlyArray<{ at: number; signal: DisruptionSignal }> = [
  { at: 0.3, signal: 'SIGKILL' },
  { at: 0.6, signal: 'SIGTERM' },
];
/** Least time between two pilot actions. */
const ACTION_SPACING_MS = 300;
/** How long an aimed SIGKILL waits for a pilot whose task sleeps before it takes any pilot. */
const AIM_WAIT_MS = 5_000;
/** How long a disrupted broker (or node) stays down. */
const BROKER_DOWN_MS = 3_000;
/** Share of the events published before the pilots start; the rest follow in chunks as outcomes come in. */
const PUBLISHED_UP_FRONT = 0.7;
const LATE_CHUNKS = 6;

/** Run the suite once on one target. */
export async function runChaos(options: ChaosOptions): Promise<ChaosReport> {
  const started = Date.now();
  const events = options.events ?? 10_000;
  const pilotCount = options.pilots ?? 4;
  const sigkills = options.sigkills ?? Math.max(3, Math.round((45 * events) / 10_000));
  const sigterms = options.sigterms ?? Math.max(3, Math.round((50 * events) / 10_000));
  const maxDeliveries = options.maxDeliveries ?? 3;
  const concurrency = options.concurrency ?? 2;
  const killGraceSeconds = options.killGraceSeconds ?? 2;
  const stallTimeoutMs = options.stallTimeoutMs ?? 120_000;
  const log = options.log ?? (() => undefined);

  const target = await startTarget(options.broker, options.cluster ?? false);
  const runDir = mkdtempSync(join(tmpdir(), 'ewms-chaos-'));
  const workDir = join(runDir, 'pilots');
  mkdirSync(workDir);
  const taskPath = join(runDir, 'task.sh');
  writeFileSync(taskPath, TASK_SCRIPT, { mode: 0o755 });
  const coordinatorLog = join(runDir, 'coordinator.log');
  const logger = pino({ level: 'info' }, pino.destination({ dest: coordinatorLog, sync: true }));
  log(`[chaos] ${target.label}: seed ${options.seed}, ${events} events, ${pilotCount} pilots, run dir ${runDir}`);

  // A task's tree must be gone within the pilot's grace (TERM, then KILL after it) plus slack for a loaded box.
  const watch = new OrphanWatch(workDir, killGraceSeconds * 1000 + 5_000);
  let wf: Workflow | undefined;
  let pilots: PilotCluster | undefined;
  const stoppers: Array<() => void> = [];
  // Kept for a look when asked, when the run fails, or when it breaks off.
  let keep = true;
  try {
    wf = await Workflow.create({ broker: { ...target.broker, reconnectWindowMs: 120_000 }, id: `chaos-${options.seed}-${randomUUID().slice(0, 8)}`, maxDeliveries, logger });
    const workflow = wf;
    const plan = planEvents({ seed: options.seed, events, maxMessageBytes: target.maxMessageBytes });
    const queued = plan.filter((e) => e.kind !== 'oversize');
    const oversize = plan.filter((e) => e.kind === 'oversize');

    // --- collecting, from the start -------------------------------------------------------------------
    const outcomes = new Map<string, { times: number; outcome: WorkflowOutcome }>();
    const collecting = collectAll(workflow, queued.map((e) => e.id), outcomes, stallTimeoutMs, log);

    // --- publishing ---------------------------------------------------------------------------------
    const publisher = new Publisher(workflow, stallTimeoutMs);
    const upFront = Math.round(queued.length * PUBLISHED_UP_FRONT);
    await publisher.publishAll(queued.slice(0, upFront)).catch((err: unknown) => log(`[chaos] publishing gave up: ${describeError(err)}`));
    const refused = await publisher.publishOversize(oversize);
    const lateChunks = chunk(queued.slice(upFront), LATE_CHUNKS);
    log(`[chaos] published ${publisher.confirmed} up front; ${refused.refused} oversize refused`);

    // --- pilots, kept at pilotCount ---------------------------------------------------------------------
    pilots = await workflow.startPilots({
      backend: 'local',
      count: pilotCount,
      task: { args: `/bin/sh ${taskPath} {{INFILE}} {{OUTFILE}}`, timeoutSeconds: options.taskTimeoutSeconds ?? 2 },
      pilotEnv: {
        EWMS_PILOT_MAX_CONCURRENT_TASKS: String(concurrency),
        EWMS_PILOT_PREFETCH: 'auto',
        EWMS_PILOT_TASK_KILL_GRACE: String(killGraceSeconds),
        // NATS: a SIGKILLed pilot's deliveries come back after this (renewed while a task runs).
        EWMS_PILOT_LEASE_TIMEOUT: '5',
        // Pilots end when removed, not when the queue looks idle during a broker restart.
        EWMS_PILOT_TIMEOUT_QUEUE_INCOMING: '3600',
        EWMS_PILOT_TIMEOUT_QUEUE_WAIT_FOR_FIRST_MESSAGE: '3600',
        // `event received` / `event settled` lines tell which events a SIGKILLed pilot held.
        EWMS_PILOT_LOG_LEVEL: 'debug',
      },
      local: { workDir, killGraceMs: 30_000 },
    });
    const cluster = pilots;
    let scaling = false;
    let lastScale = 0;
    let disrupting: Promise<void> | undefined;
    const supervisor = setInterval(() => {
      // While the broker is down a replacement only fails to connect: start them slower then (a batch
      // system would too), so the churn does not eat the machine.
      if (scaling || (disrupting && Date.now() - lastScale < 3_000)) return;
      scaling = true;
      lastScale = Date.now();
      cluster
        .scale(pilotCount)
        .catch((err: unknown) => log(`[chaos] scaling failed: ${describeError(err)}`))
        .finally(() => (scaling = false));
    }, 300);
    stoppers.push(() => clearInterval(supervisor));
    let procs: RunProcess[] = [];
    const monitor = setInterval(() => (procs = watch.scan()), 500);
    stoppers.push(() => clearInterval(monitor));

    // --- the action schedule: pilot kills, broker disruptions, late publishing, all at progress milestones ---
    const rng = new Rng(options.seed ^ 0x5bd1e995);
    const signals = rng.shuffle([...Array<NodeJS.Signals>(sigkills).fill('SIGKILL'), ...Array<NodeJS.Signals>(sigterms).fill('SIGTERM')]);
    const expected = queued.length;
    // Half the SIGKILLs aim at a pilot whose task is asleep (a slow or hanging event): that task is still
    // running when its pilot dies, which is what the orphan count must catch.
    const pilotActions: Array<{ signal: NodeJS.Signals; at: number; pick: number; aimAtSleeper: boolean; dueSince?: number }> = signals.map((signal, i) => ({
      signal,
      at: 0.05 + (0.85 * i) / Math.max(1, signals.length),
      pick: rng.next(),
      aimAtSleeper: signal === 'SIGKILL' && rng.next() < 0.5,
    }));
    const kills: Array<{ signal: NodeJS.Signals; pid: number; pilotDir: string; duringSleep: boolean; at: string }> = [];
    const disruptions = options.brokerDisruptions === false ? [] : [...DISRUPTIONS];
    const disruptionLog: string[] = [];
    const disruptionStarts: Array<{ signal: DisruptionSignal; at: string }> = [];
    const cutWindows: CutWindow[] = [];
    let lastActionAt = 0;
    let lateIndex = 0;
    let lastProgress = 0;
    let done = false;
    void collecting.finally(() => (done = true));

    while (!done) {
      const progress = outcomes.size / expected;
      // After a stall (a broker down) several actions fall due at once: fire them apart, not in one burst.
      for (let i = 0; i < pilotActions.length && pilotActions[i]!.at <= progress && Date.now() - lastActionAt >= ACTION_SPACING_MS; ) {
        const live = procs.filter((p) => p.role === 'pilot' && !kills.some((k) => k.pid === p.pid)).sort((a, b) => pilotIndex(a) - pilotIndex(b));
        if (live.length === 0) break; // none up right now: try again on the next tick
        const action = pilotActions[i]!;
        action.dueSince ??= Date.now();
        const sleepers = new Set(procs.filter((p) => p.role === 'task' && /^(\/bin\/)?sleep /.test(p.command)).map((p) => p.pilotDir));
        const aimed = action.aimAtSleeper ? live.filter((p) => sleepers.has(p.pilotDir)) : [];
        // An aimed kill waits a while for a task to be asleep (slow events come every second or two); the
        // actions after it go ahead meanwhile.
        if (action.aimAtSleeper && aimed.length === 0 && Date.now() - action.dueSince < AIM_WAIT_MS) {
          i += 1;
          continue;
        }
        pilotActions.splice(i, 1);
        const candidates = aimed.length > 0 ? aimed : live;
        const victim = candidates[Math.floor(action.pick * candidates.length)]!;
        // The process list is up to 0.5 s old: signal only the pilot it names, never whoever has its pid now.
        if (!stillIn(victim.pid, victim.pilotDir)) continue;
        lastActionAt = Date.now();
        try {
          process.kill(victim.pid, action.signal);
          kills.push({ signal: action.signal, pid: victim.pid, pilotDir: victim.pilotDir, duringSleep: sleepers.has(victim.pilotDir), at: new Date().toISOString() });
        } catch {
          // exited meanwhile: the action is spent
        }
      }
      if (!disrupting && disruptions.length > 0 && disruptions[0]!.at <= progress) {
        const d = disruptions.shift()!;
        disruptionStarts.push({ signal: d.signal, at: new Date().toISOString() });
        log(`[chaos] broker disruption (${d.signal}) at ${(progress * 100).toFixed(0)}%`);
        disrupting = target
          .disrupt(d.signal, workflow.queues.incoming, BROKER_DOWN_MS)
          .then((d) => {
            disruptionLog.push(d.description);
            cutWindows.push(d.cut);
            log(`[chaos] ${d.description}`);
          })
          .catch((err: unknown) => {
            disruptionLog.push(`${d.signal} disruption failed: ${describeError(err)}`);
            log(`[chaos] broker disruption failed: ${describeError(err)}`);
          })
          .finally(() => (disrupting = undefined));
      }
      if (lateIndex < lateChunks.length && progress >= (lateIndex + 1) / (LATE_CHUNKS + 4)) {
        // A publish never confirmed makes its event lost in the count; the run goes on.
        publisher.publishAll(lateChunks[lateIndex++]!).catch((err: unknown) => log(`[chaos] publishing gave up: ${describeError(err)}`));
      }
      if (Date.now() - lastProgress > 5_000) {
        lastProgress = Date.now();
        log(`[chaos] ${((Date.now() - started) / 1000).toFixed(0)} s: ${outcomes.size}/${expected} outcomes, ${kills.length} pilots signalled, ${procs.filter((p) => p.role === 'pilot').length} pilots up`);
      }
      await sleep(100);
    }
    const collected = await collecting;
    await disrupting;
    await publisher.idle();
    stoppers.splice(0).forEach((stop) => stop());
    log(`[chaos] collection ended (${collected}); removing the pilots`);

    // --- the end: pilots removed, then a grace for their task processes ----------------------------------
    await pilots.remove({ reason: 'aborted' }).catch((err: unknown) => log(`[chaos] remove failed: ${describeError(err)}`));
    const graceEnd = Date.now() + killGraceSeconds * 1000 + 6_000;
    for (;;) {
      watch.scan();
      if (Date.now() > graceEnd) break;
      await sleep(250);
    }
    watch.killLeftovers();

    // --- accounting ------------------------------------------------------------------------------------
    const ended = endedDeliveries(pilotLogs(workDir, kills), cutWindows);
    const none = { killed: 0, cut: 0 };
    const verdicts: Classification[] = queued.map((e) => classify(e, outcomes.get(e.id), ended.get(e.id) ?? none, maxDeliveries));
    const oversizeAccepted = refused.accepted.map((e) => ({ id: e.id, kind: e.kind, problem: 'the broker accepted an event over its size limit' }));
    const report = buildReport({
      target,
      seed: options.seed,
      plan,
      published: publisher.confirmed,
      refusedAtPublish: refused.refused,
      outcomes,
      verdicts,
      extraWrong: oversizeAccepted,
      duplicatesAbsorbed: workflow.collectStats.duplicates,
      orphans: watch.found(),
      leaks: target.secret === undefined ? undefined : findLeaks(workDir, target.secret, [coordinatorLog]),
      kills,
      pilotsStarted: countPilotDirs(workDir),
      disruptions: disruptionLog,
      durationMs: Date.now() - started,
    });
    // What was done when, beside the pilots' logs, for a look at a failed run.
    const cutWindowsIso = cutWindows.map((w) => ({ from: new Date(w.from).toISOString(), until: new Date(w.until).toISOString() }));
    writeFileSync(join(runDir, 'actions.json'), `${JSON.stringify({ kills, disruptions: disruptionStarts, cutWindows: cutWindowsIso, ended: Object.fromEntries(ended) }, null, 1)}\n`);
    keep = options.keepFiles === true || report.failures.length > 0;
    report.keptDir = keep ? runDir : undefined;
    return report;
  } finally {
    stoppers.forEach((stop) => stop());
    await pilots?.remove({ reason: 'aborted' }).catch(() => undefined);
    watch.killLeftovers();
    await wf?.close({ deleteQueues: true }).catch(() => undefined);
    logger.flush();
    await target.dispose();
    if (keep) log(`[chaos] run directory kept: ${runDir}`);
    else rmSync(runDir, { recursive: true, force: true });
  }
}

/** Collect until every expected id has an outcome; a broker error starts a new collection for the rest. */
async function collectAll(
  wf: Workflow,
  ids: string[],
  outcomes: Map<string, { times: number; outcome: WorkflowOutcome }>,
  stallTimeoutMs: number,
  log: (line: string) => void,
): Promise<string> {
  for (;;) {
    const missing = ids.filter((id) => !outcomes.has(id));
    if (missing.length === 0) return 'every outcome collected';
    try {
      for await (const outcome of wf.collect({ expected: missing, idleTimeoutMs: stallTimeoutMs })) {
        const seen = outcomes.get(outcome.inputEventId);
        if (seen) seen.times += 1;
        else outcomes.set(outcome.inputEventId, { times: 1, outcome });
      }
    } catch (err) {
      if (err instanceof CollectTimeoutError) return `nothing arrived for ${stallTimeoutMs / 1000} s`;
      log(`[chaos] collection interrupted (${describeError(err)}); collecting the rest again`);
      await sleep(1_000);
    }
  }
}

/** Publishes planned events with their own ids, retrying each until the broker confirms it. */
class Publisher {
  confirmed = 0;
  private readonly pending = new Set<Promise<void>>();

  constructor(
    private readonly wf: Workflow,
    private readonly giveUpAfterMs: number,
  ) {}

  async publishAll(events: PlannedEvent[]): Promise<void> {
    const window = 200;
    for (const event of events) {
      const p: Promise<void> = this.publishOne(event).finally(() => this.pending.delete(p));
      this.pending.add(p);
      while (this.pending.size >= window) await Promise.race(this.pending);
    }
    await this.idle();
  }

  /** Publish each oversize event once: the broker must refuse it. */
  async publishOversize(events: PlannedEvent[]): Promise<{ refused: number; accepted: PlannedEvent[] }> {
    let refused = 0;
    const accepted: PlannedEvent[] = [];
    for (const event of events) {
      try {
        await this.wf.broker.publish(this.wf.queues.incoming, { body: encodeEvent(event.data, 'mqclient'), eventId: event.id });
        accepted.push(event);
      } catch (err) {
        if (err instanceof MessageTooLargeError) refused += 1;
        else throw err;
      }
    }
    return { refused, accepted };
  }

  async idle(): Promise<void> {
    while (this.pending.size > 0) await Promise.allSettled([...this.pending]);
  }

  private async publishOne(event: PlannedEvent): Promise<void> {
    // A malformed event goes around the coordinator's encoder: its body is no wire-format envelope.
    const body = event.kind === 'malformed' ? Buffer.from(`not an envelope: ${event.data}`) : encodeEvent(event.data, 'mqclient');
    const deadline = Date.now() + this.giveUpAfterMs;
    for (;;) {
      try {
        // The same id on every try: a copy that did arrive unconfirmed is a duplicate the coordinator absorbs.
        await this.wf.broker.publish(this.wf.queues.incoming, { body, eventId: event.id });
        this.confirmed += 1;
        return;
      } catch (err) {
        if (Date.now() > deadline) throw err;
        await sleep(500);
      }
    }
  }
}

/** Every pilot's log (its stderr), marked when the suite SIGKILLed that pilot. */
function pilotLogs(workDir: string, kills: Array<{ signal: NodeJS.Signals; pilotDir: string }>): Array<{ text: string; sigkilled: boolean }> {
  const killed = new Set(kills.filter((k) => k.signal === 'SIGKILL').map((k) => k.pilotDir));
  const logs: Array<{ text: string; sigkilled: boolean }> = [];
  for (const name of readdirSync(workDir).filter((d) => d.startsWith('pilot-'))) {
    const pilotDir = join(workDir, name);
    try {
      logs.push({ text: readFileSync(join(pilotDir, 'pilot.err'), 'utf8'), sigkilled: killed.has(pilotDir) });
    } catch {
      // a pilot that never wrote a log held nothing
    }
  }
  return logs;
}

function pilotIndex(p: RunProcess): number {
  return Number(/pilot-(\d+)$/.exec(p.pilotDir)?.[1] ?? 0);
}

function countPilotDirs(workDir: string): number {
  return readdirSync(workDir).filter((d) => d.startsWith('pilot-')).length;
}

function chunk<T>(list: T[], parts: number): T[][] {
  const size = Math.ceil(list.length / parts);
  const out: T[][] = [];
  for (let i = 0; i < list.length; i += size) out.push(list.slice(i, i + size));
  return out;
}
