/**
 * Status reporting to HTCondor through `condor_chirp`, with the attribute names the Python ewms-pilot uses
 * (so the EWMS/SkyDriver watchers that read them work unchanged with this pilot).
 *
 * Chirping is best-effort: a failing `condor_chirp` is logged once and never disturbs event processing.
 * Updates are coalesced: at most one call per attribute per rate-limit interval, the latest value winning.
 */
import { execFile } from 'node:child_process';

/** The job-ad attributes the pilot sets. */
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

/** Where chirps go: job ad attributes (visible in `condor_q`) or the job event log. */
export type ChirpDestination = 'JOB_ATTR' | 'JOB_EVENT_LOG';

export interface ChirpOptions {
  enabled: boolean;
  destination: ChirpDestination;
  /** Minimum seconds between two calls for the same attribute. */
  rateLimitSeconds: number;
  /** The chirp executable (tests put a stand-in on PATH). */
  command?: string;
  onError?: (message: string) => void;
}

type ChirpValue = string | number | boolean;

/** Render a value as a ClassAd literal: strings quoted and escaped, booleans as `true`/`false`. */
export function classAdLiteral(value: ChirpValue): string {
  if (typeof value === 'string') return `"${value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`;
  if (typeof value === 'boolean') return value ? 'true' : 'false';
  return Number.isFinite(value) ? String(value) : '0';
}

export class HTChirp {
  private readonly pending = new Map<string, ChirpValue>();
  private readonly lastSent = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;
  private inFlight: Promise<void> = Promise.resolve();
  private reportedFailure = false;

  constructor(private readonly options: ChirpOptions) {}

  /** Queue an attribute update; sent now or at the end of its rate-limit window. */
  set(attr: string, value: ChirpValue): void {
    if (!this.options.enabled) return;
    this.pending.set(attr, value);
    this.schedule();
  }

  /** Status line plus the last-updated timestamp, as the Python pilot sends them. */
  status(text: string): void {
    this.set(CHIRP_ATTRS.status, text);
    this.set(CHIRP_ATTRS.lastUpdated, Math.floor(Date.now() / 1000));
  }

  /**
   * Send everything still pending, ignoring the rate limit (at exit), for at most `budgetMs` (the Python pilot
   * gives its backlog 10 s): a hung `condor_chirp` must not keep a finished job in its slot.
   */
  async flush(budgetMs = 10_000): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    let deadline: NodeJS.Timeout | undefined;
    const expired = new Promise<void>((resolve) => {
      deadline = setTimeout(resolve, budgetMs);
    });
    await Promise.race([this.inFlight.then(() => this.sendDue(true)), expired]);
    clearTimeout(deadline);
  }

  private schedule(): void {
    if (this.timer) return;
    const now = Date.now();
    const intervalMs = this.options.rateLimitSeconds * 1000;
    let wait = 0;
    for (const attr of this.pending.keys()) {
      const last = this.lastSent.get(attr);
      if (last !== undefined) wait = Math.max(wait, Math.min(intervalMs, last + intervalMs - now));
    }
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.inFlight = this.inFlight.then(() => this.sendDue(false));
    }, Math.max(0, wait));
    // A pending chirp must never keep a finished pilot alive.
    this.timer.unref();
  }

  private async sendDue(force: boolean): Promise<void> {
    const now = Date.now();
    const intervalMs = this.options.rateLimitSeconds * 1000;
    for (const attr of [...this.pending.keys()]) {
      // Read the value now, not from a snapshot: a newer one may have been set while an earlier call ran.
      const value = this.pending.get(attr);
      if (value === undefined) continue;
      const last = this.lastSent.get(attr);
      if (!force && last !== undefined && now - last < intervalMs) continue;
      this.pending.delete(attr);
      this.lastSent.set(attr, now);
      await this.call(attr, value);
    }
    if (this.pending.size > 0 && !force) this.schedule();
  }

  private call(attr: string, value: ChirpValue): Promise<void> {
    const args =
      this.options.destination === 'JOB_EVENT_LOG'
        ? ['ulog', `${attr}: ${typeof value === 'string' ? value : classAdLiteral(value)}`]
        : ['set_job_attr', attr, classAdLiteral(value)];
    return new Promise((resolve) => {
      execFile(this.options.command ?? 'condor_chirp', args, { timeout: 30_000 }, (err) => {
        if (err && !this.reportedFailure) {
          this.reportedFailure = true;
          this.options.onError?.(`condor_chirp failed (further failures not logged): ${err.message}`);
        }
        resolve();
      });
    });
  }
}
