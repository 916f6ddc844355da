/**
 * The pilot's heartbeat publisher: at start, on every state change and every `intervalSeconds`, one complete
 * heartbeat (see `common/heartbeat.ts`) to the workflow's monitoring queue.
 *
 * It never slows or endangers events: publishing is fire and forget with at most one heartbeat in flight; one
 * due while another waits for its confirm replaces any older pending one (the newest state wins), and a failed
 * publish is logged once per outage and dropped. Only the final heartbeat is awaited, and only for a bounded time.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { describeError } from '../common/redact.js';
export { DEFAULT_TASK_NAME } from '../common/heartbeat.js';
import { encodeHeartbeat, HEARTBEAT_KIND, HEARTBEAT_VERSION, type Heartbeat, type PilotState } from '../common/heartbeat.js';
import { RateMeter } from '../common/rate.js';
import type { OutgoingMessage } from '../mq-adapters/types.js';
import type { TaskProbe } from './heartbeat-probe.js';
import type { Logger } from './logger.js';

/** Default seconds between heartbeats under HTCondor (where thousands of pilots may report) and elsewhere. */
export const DEFAULT_INTERVAL_SECONDS = { condor: 30, local: 2 } as const;
/** How long the final heartbeat may hold up the pilot's exit. */
const FINAL_BUDGET_MS = 3_000;

/** Where and how often to report. */
export interface HeartbeatSettings {
  /** The monitoring queue (`EWMS_PILOT_QUEUE_MONITOR`). */
  queue: string;
  intervalSeconds: number;
  /** The task this pilot runs (`EWMS_PILOT_TASK_NAME`). */
  taskName: string;
}

/** Is this process running in an HTCondor job? (The starter sets these in every job's environment.) */
export function underCondor(env: Readonly<Record<string, string | undefined>> = process.env): boolean {
  return Boolean(env._CONDOR_JOB_AD || env._CONDOR_SCRATCH_DIR);
}

/**
 * The HTCondor job id (`ClusterId.ProcId`) from the job ad the starter writes for every job (its path is in
 * `_CONDOR_JOB_AD`); undefined outside HTCondor or when the ad cannot be read.
 */
export function condorJobId(env: Readonly<Record<string, string | undefined>> = process.env, read: (path: string) => string = (p) => readFileSync(p, 'utf8')): string | undefined {
  const path = env._CONDOR_JOB_AD;
  if (!path) return undefined;
  let ad: string;
  try {
    ad = read(path);
  } catch {
    return undefined;
  }
  const attr = (name: string) => new RegExp(`^\\s*${name}\\s*=\\s*(\\d+)\\s*$`, 'im').exec(ad)?.[1];
  const cluster = attr('ClusterId');
  const proc = attr('ProcId');
  return cluster !== undefined && proc !== undefined ? `${cluster}.${proc}` : undefined;
}

/** A new pilot id: host, pid and a random suffix (pids repeat across nodes and restarts). */
export function newPilotId(host = hostname()): string {
  return `${host}-${process.pid}-${randomBytes(3).toString('hex')}`;
}

/** What the publisher reads from the running pilot. */
export interface HeartbeatSources {
  /** The pilot's outcome counts (cheap: read on every heartbeat). */
  counts(): { succeeded: number; failed: number; deadLettered: number };
  probe: TaskProbe;
}

export interface HeartbeatPublisherOptions {
  settings: HeartbeatSettings;
  /** Publish one message to the monitoring queue, resolving on the broker's confirm. */
  publish(message: OutgoingMessage): Promise<unknown>;
  sources: HeartbeatSources;
  /** The queue this pilot takes events from. */
  incomingQueue: string;
  pilotVersion: string;
  logger: Logger;
  env?: Readonly<Record<string, string | undefined>>;
}

/** Sends a pilot's heartbeats. Create it once connected; `stop` with the final state before closing the broker. */
export class HeartbeatPublisher {
  readonly pilotId: string;
  private readonly host = hostname();
  private readonly condorJobId: string | undefined;
  private readonly startedAt = Date.now();
  private readonly rate = new RateMeter();
  private state: PilotState = 'starting';
  private stopReason: string | undefined;
  private exitCode: number | undefined;
  private seq = 0;
  private timer: NodeJS.Timeout | undefined;
  private inFlight: Promise<void> | undefined;
  private pending = false;
  private failing = false;
  private finished = false;

  constructor(private readonly opts: HeartbeatPublisherOptions) {
    this.condorJobId = condorJobId(opts.env ?? process.env);
    this.pilotId = newPilotId(this.host);
  }

  /** Send the first heartbeat (`starting`) and start the periodic ones. */
  start(): void {
    this.send();
    this.timer = setInterval(() => this.send(), this.opts.settings.intervalSeconds * 1000);
    // A heartbeat must never keep a finished pilot alive.
    this.timer.unref();
  }

  /** Change state; sends at once when it changed. `stopReason` is kept once given. */
  setState(state: PilotState, stopReason?: string): void {
    if (this.finished) return;
    if (stopReason !== undefined) this.stopReason ??= stopReason;
    if (state === this.state && stopReason === undefined) return;
    this.state = state;
    this.send();
  }

  /** Send the final heartbeat (`done` or `fatal`) and wait for its confirm, for at most a few seconds. */
  async stop(exitCode: number, stopReason: string): Promise<void> {
    if (this.finished) return;
    if (this.timer) clearInterval(this.timer);
    this.exitCode = exitCode;
    this.stopReason ??= stopReason;
    // A pilot stopped by a signal (eviction, condor_rm) did nothing wrong.
    this.state = exitCode === 0 || stopReason === 'signal' ? 'done' : 'fatal';
    this.send();
    this.finished = true;
    let timer: NodeJS.Timeout | undefined;
    const budget = new Promise<void>((resolve) => (timer = setTimeout(resolve, FINAL_BUDGET_MS)));
    const flushed = (async () => {
      while (this.inFlight) await this.inFlight;
    })();
    await Promise.race([flushed, budget]);
    clearTimeout(timer);
  }

  /** The heartbeat as it would be sent now. */
  snapshot(): Heartbeat {
    const { settings, sources } = this.opts;
    const counts = sources.counts();
    const heartbeat: Heartbeat = {
      kind: HEARTBEAT_KIND,
      version: HEARTBEAT_VERSION,
      pilotId: this.pilotId,
      seq: this.seq,
      sentAt: Date.now(),
      startedAt: this.startedAt,
      intervalSeconds: settings.intervalSeconds,
      host: this.host,
      pilotVersion: this.opts.pilotVersion,
      task: settings.taskName,
      queue: this.opts.incomingQueue,
      state: this.state,
      counts,
      inFlight: sources.probe.inFlight(),
      ratePerSecond: this.rate.sample(counts.succeeded + counts.failed),
      durations: sources.probe.durations(),
      deadLetters: sources.probe.deadLetters(),
    };
    if (this.condorJobId !== undefined) heartbeat.condorJobId = this.condorJobId;
    if (this.stopReason !== undefined) heartbeat.stopReason = this.stopReason;
    if (this.exitCode !== undefined) heartbeat.exitCode = this.exitCode;
    const lastError = sources.probe.lastError;
    if (lastError) heartbeat.lastError = lastError;
    return heartbeat;
  }

  /** Publish now, or right after the heartbeat in flight (built then, so it carries the newest state). */
  private send(): void {
    if (this.finished) return;
    if (this.inFlight) {
      this.pending = true;
      return;
    }
    const heartbeat = this.snapshot();
    this.seq += 1;
    const message: OutgoingMessage = { body: encodeHeartbeat(heartbeat), eventId: `${this.pilotId}/${heartbeat.seq}` };
    this.inFlight = this.opts
      .publish(message)
      .then(
        () => {
          if (this.failing) this.opts.logger.info({ queue: this.opts.settings.queue }, 'heartbeats are getting through again');
          this.failing = false;
        },
        (err: unknown) => {
          // Once per outage: the broker's own trouble is logged where events are concerned.
          if (!this.failing) this.opts.logger.warn({ queue: this.opts.settings.queue, err: describeError(err) }, 'a heartbeat could not be published; dropped (events are not affected)');
          this.failing = true;
        },
      )
      .finally(() => {
        this.inFlight = undefined;
        if (this.pending) {
          this.pending = false;
          this.sendNow();
        }
      });
  }

  /** `send` for the pending heartbeat, which may be the final one. */
  private sendNow(): void {
    const wasFinished = this.finished;
    this.finished = false;
    this.send();
    this.finished = wasFinished;
  }

  /** For the exit summary and tests. */
  get currentState(): PilotState {
    return this.state;
  }
}
