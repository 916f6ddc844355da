/**
 * Status reporting to HTCondor ("chirping"), with the Python ewms-pilot's attribute names, status values
 * and value formats, so the EWMS Task Management Service's job-event-log watcher and `condor_q` read this
 * pilot exactly as they read the Python one.
 *
 * - Statuses (`HTChirpEWMSPilotStatus`): `Started`, `RunningInitCommand`, `AwaitingFirstMessage`,
 *   `Tasking`, `PendingRemainingTasks`, `FatalError`, `Done` (the Python pilot's `PilotStatus` names).
 * - `JOB_ATTR`: `set_job_attr <attr> <ClassAd expression>`: numbers as they are, everything else as a
 *   quoted ClassAd string. `JOB_EVENT_LOG`: a generic job event whose text is `<attr>: <quoted value>`,
 *   every value quoted (the TMS watcher splits at the first `:` and unquotes).
 * - Statuses and errors are sent at once with everything pending, every status change in order (a job
 *   event log reader sees each phase); task counts wait for the rate-limit interval, the latest value
 *   winning; every send also sets `HTChirpEWMSPilotLastUpdatedTimestamp`.
 * - Best effort: a failed chirp is logged once and never disturbs event processing; what could not be
 *   sent is kept and tried again with the next send.
 */
import type { Delivery, Subscription } from '../mq-adapters/types.js';
import { CHIRP_LINE_MAX, chirpRequest, findChirpTransport, type ChirpCommand, type ChirpTransport } from './chirp-client.js';

/** The job-ad attributes the pilot sets (the Python pilot's names). */
export const CHIRP_ATTRS = {
  started: 'HTChirpEWMSPilotStartedTimestamp',
  lastUpdated: 'HTChirpEWMSPilotLastUpdatedTimestamp',
  status: 'HTChirpEWMSPilotStatus',
  tasksTotal: 'HTChirpEWMSPilotTasksTotal',
  tasksFailed: 'HTChirpEWMSPilotTasksFailed',
  tasksSuccess: 'HTChirpEWMSPilotTasksSuccess',
  error: 'HTChirpEWMSPilotError',
  errorTraceback: 'HTChirpEWMSPilotErrorTraceback',
} as const;

/** The pilot's phases, as the Python pilot names them (the values watchers count and filter on). */
export const PILOT_STATUSES = ['Started', 'RunningInitCommand', 'AwaitingFirstMessage', 'Tasking', 'PendingRemainingTasks', 'FatalError', 'Done'] as const;
export type PilotStatus = (typeof PILOT_STATUSES)[number];

/** Where chirps go: job ad attributes (visible in `condor_q`) or the job event log. */
export type ChirpDestination = 'JOB_ATTR' | 'JOB_EVENT_LOG';

/**
 * The most of a generic event's text the starter keeps: `GenericEvent::setInfoText` copies it into a
 * 128-byte buffer, NUL included. Longer values are cut here, so the closing quote survives.
 */
export const ULOG_TEXT_MAX = 127;

export interface ChirpOptions {
  enabled: boolean;
  destination: ChirpDestination;
  /** Least seconds between two sends of task counts (statuses and errors go at once). */
  rateLimitSeconds: number;
  /** How chirps are sent (default: found from the job's environment, see `findChirpTransport`). */
  transport?: ChirpTransport;
  /** Told once when chirping is impossible or fails. */
  onError?: (message: string) => void;
}

type ChirpValue = string | number;

/** A ClassAd string literal: `"…"` with `\`, `"` and control characters escaped. */
export function classAdString(text: string): string {
  const escaped = text.replace(/[\\"\u0000-\u001f\u007f]/g, (c) => {
    switch (c) {
      case '\\':
        return '\\\\';
      case '"':
        return '\\"';
      case '\n':
        return '\\n';
      case '\t':
        return '\\t';
      case '\r':
        return '\\r';
      default:
        return `\\${c.charCodeAt(0).toString(8).padStart(3, '0')}`;
    }
  });
  return `"${escaped}"`;
}

/** A value as `set_job_attr` takes it: a number as a ClassAd number, anything else as a quoted string. */
export function jobAttrExpression(value: ChirpValue): string {
  return typeof value === 'number' && Number.isFinite(value) ? String(value) : classAdString(String(value));
}

/**
 * The longest prefix of `text` whose rendering `fits`, marked `...` when cut. Cuts on code points, so an
 * escape or a multi-byte character is never split.
 */
function fitText(text: string, render: (t: string) => string, fits: (rendered: string) => boolean): string {
  if (fits(render(text))) return render(text);
  const chars = [...text];
  let lo = 0;
  let hi = chars.length;
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (fits(render(`${chars.slice(0, mid).join('')}...`))) lo = mid;
    else hi = mid - 1;
  }
  return render(`${chars.slice(0, lo).join('')}...`);
}

/** The chirp command for one attribute, within HTCondor's size limits. */
export function chirpCommand(destination: ChirpDestination, attr: string, value: ChirpValue): ChirpCommand {
  if (destination === 'JOB_EVENT_LOG') {
    const text = fitText(String(value), (t) => `${attr}: ${classAdString(t)}`, (r) => Buffer.byteLength(r) <= ULOG_TEXT_MAX);
    return { kind: 'ulog', text };
  }
  if (typeof value === 'number' && Number.isFinite(value)) return { kind: 'set_job_attr', attr, expr: String(value) };
  // The escaped request line, newline included, must fit the starter's line limit.
  const fits = (expr: string) => Buffer.byteLength(chirpRequest({ kind: 'set_job_attr', attr, expr })) + 1 <= CHIRP_LINE_MAX;
  return { kind: 'set_job_attr', attr, expr: fitText(String(value), classAdString, fits) };
}

export class HTChirp {
  private readonly backlog = new Map<string, ChirpValue>();
  /** Status changes not sent yet, in order. */
  private readonly statuses: PilotStatus[] = [];
  private readonly transport: ChirpTransport | undefined;
  private lastSend = 0;
  private timer: NodeJS.Timeout | undefined;
  private sending: Promise<void> = Promise.resolve();
  private reportedFailure = false;

  constructor(private readonly options: ChirpOptions) {
    this.transport = options.enabled ? (options.transport ?? findChirpTransport(process.env)) : undefined;
    if (options.enabled && !this.transport) {
      options.onError?.(
        'EWMS_PILOT_HTCHIRP is on but this job has no chirp configuration (_CONDOR_CHIRP_CONFIG, $_CONDOR_SCRATCH_DIR/.chirp.config) ' +
          'and no condor_chirp was found; nothing is reported to HTCondor (submit with +WantIOProxy = true)',
      );
    }
  }

  /** Whether anything is reported at all. */
  get active(): boolean {
    return this.transport !== undefined;
  }

  /** A new phase; sent at once. `Started` also sets the start timestamp. */
  status(status: PilotStatus): void {
    if (!this.transport) return;
    if (status === 'Started') this.backlog.set(CHIRP_ATTRS.started, unixSeconds());
    this.statuses.push(status);
    this.sendSoon(true);
  }

  /** The error that ends the pilot: `<Type>: <message>` and its stack, sent at once. */
  error(err: unknown): void {
    if (!this.transport) return;
    const error = err instanceof Error ? err : new Error(String(err));
    const name = error.name && error.name !== 'Error' ? error.name : error.constructor?.name || 'Error';
    this.backlog.set(CHIRP_ATTRS.error, `${name}: ${error.message}`);
    this.backlog.set(CHIRP_ATTRS.errorTraceback, error.stack ?? `${name}: ${error.message}`);
    this.sendSoon(true);
  }

  /** Task counts, sent at most once per rate-limit interval; zero counts are not sent (as the Python pilot). */
  taskCounts(counts: { received: number; succeeded: number; failed: number }): void {
    if (!this.transport) return;
    if (counts.received > 0) this.backlog.set(CHIRP_ATTRS.tasksTotal, counts.received);
    if (counts.succeeded > 0) this.backlog.set(CHIRP_ATTRS.tasksSuccess, counts.succeeded);
    if (counts.failed > 0) this.backlog.set(CHIRP_ATTRS.tasksFailed, counts.failed);
    this.sendSoon(false);
  }

  /**
   * Send everything pending, ignoring the rate limit (at exit), for at most `budgetMs` (the Python pilot
   * gives its backlog 10 s): a hung starter must not keep a finished job in its slot.
   */
  async flush(budgetMs = 10_000): Promise<void> {
    if (!this.transport) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    let deadline: NodeJS.Timeout | undefined;
    const expired = new Promise<void>((resolve) => {
      deadline = setTimeout(resolve, budgetMs);
    });
    await Promise.race([this.enqueueSend(), expired]);
    clearTimeout(deadline);
  }

  private sendSoon(urgent: boolean): void {
    const waitMs = urgent ? 0 : Math.max(0, this.lastSend + this.options.rateLimitSeconds * 1000 - Date.now());
    if (this.timer) {
      if (!urgent) return; // a send is already scheduled and will take these values along
      clearTimeout(this.timer);
    }
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.enqueueSend();
    }, waitMs);
    // A pending chirp must never keep a finished pilot alive.
    this.timer.unref();
  }

  /** One send at a time; values are read when the send starts, so the latest value is the one sent. */
  private enqueueSend(): Promise<void> {
    this.sending = this.sending.then(() => this.sendBacklog());
    return this.sending;
  }

  private async sendBacklog(): Promise<void> {
    if (!this.transport || (this.backlog.size === 0 && this.statuses.length === 0)) return;
    this.backlog.set(CHIRP_ATTRS.lastUpdated, unixSeconds());
    const batch: [string, ChirpValue][] = [...this.backlog.entries(), ...this.statuses.map((s): [string, ChirpValue] => [CHIRP_ATTRS.status, s])];
    const statuses = this.statuses.splice(0);
    this.backlog.clear();
    this.lastSend = Date.now();
    try {
      await this.transport.send(batch.map(([attr, value]) => chirpCommand(this.options.destination, attr, value)));
    } catch (err) {
      // Keep what did not go out (unless a newer value arrived meanwhile) for the next send.
      for (const [attr, value] of batch) if (attr !== CHIRP_ATTRS.status && !this.backlog.has(attr)) this.backlog.set(attr, value);
      this.statuses.unshift(...statuses);
      if (!this.reportedFailure) {
        this.reportedFailure = true;
        this.options.onError?.(`chirping through ${this.transport.description} failed (further failures not logged): ${(err as Error).message}`);
      }
    }
  }
}

/**
 * The subscription as the event loop sees it, telling `onReceived` about each delivery as it is taken
 * (the Python pilot counts `TasksTotal` and enters `Tasking` on receipt, not on completion).
 */
export function observeIntake(subscription: Subscription, onReceived: (delivery: Delivery) => void): Subscription {
  return {
    close: () => subscription.close(),
    async *[Symbol.asyncIterator]() {
      for await (const delivery of subscription) {
        onReceived(delivery);
        yield delivery;
      }
    },
  };
}

function unixSeconds(): number {
  return Math.floor(Date.now() / 1000);
}
