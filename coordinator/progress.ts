/**
 * A live progress display for a running workflow: settled / results / dead letters / pending / rate / ETA. On a TTY one
 * line redrawn in place (ANSI carriage return + erase line); elsewhere (CI logs, files) one plain line per
 * interval, so logs stay readable.
 */

/** What the display shows at one instant. */
export interface ProgressSnapshot {
  published: number;
  /** Total outcomes awaited; undefined while publishing is still going. */
  expected: number | undefined;
  /** Published events whose outcomes are all in (default: results + dead letters, one outcome per event). */
  settled?: number;
  results: number;
  deadLetters: number;
  /** A graph's stages: each task's queued events and running pilots (when known). */
  stages?: Array<{ task: string; queued: number | undefined; pilots?: number }>;
}

/** Where and how often to draw. */
export interface ProgressOptions {
  /** Default: process.stderr. */
  stream?: NodeJS.WritableStream & { isTTY?: boolean };
  /** Redraw period on a TTY (default 250 ms). */
  ttyIntervalMs?: number;
  /** Line period elsewhere (default 10 s). */
  logIntervalMs?: number;
}

/** Rate over a sliding window, so the ETA follows the current speed rather than the whole run's. */
const RATE_WINDOW_MS = 10_000;

/** Format seconds as `1h02m`, `3m05s` or `42s`. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '?';
  const s = Math.round(seconds);
  if (s >= 3600) return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
  if (s >= 60) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${s}s`;
}

/**
 * The one-line summary for a snapshot, given the current rate (outcomes per second): how many events have
 * settled (a result or a dead letter) out of how many, split into results and dead letters, and how many are
 * still pending (published, no outcome yet: queued or being worked on).
 *
 *   settled 47/200 (23.5%): 45 results, 2 dead letters | 153 pending | 3.0/s | ETA 44s
 */
export function progressLine(snap: ProgressSnapshot, ratePerSecond: number): string {
  const settled = snap.settled ?? snap.results + snap.deadLetters;
  const total = snap.expected ?? snap.published;
  const pending = Math.max(0, total - settled);
  const pct = snap.expected !== undefined && total > 0 ? ` (${((100 * settled) / total).toFixed(1)}%)` : '';
  const of = snap.expected === undefined ? ` of ${snap.published} published so far` : `/${total}`;
  const eta = snap.expected === undefined ? 'publishing' : pending === 0 ? 'done' : ratePerSecond > 0 ? formatDuration(pending / ratePerSecond) : '?';
  const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;
  const stages = (snap.stages ?? []).map((s) => `${s.task}: ${s.queued ?? '?'} queued${s.pilots !== undefined ? `, ${plural(s.pilots, 'pilot')}` : ''}`);
  return `settled ${settled}${of}${pct}: ${plural(snap.results, 'result')}, ${plural(snap.deadLetters, 'dead letter')} | ${pending} pending | ${ratePerSecond.toFixed(1)}/s | ETA ${eta}${stages.length > 0 ? ` | ${stages.join(' · ')}` : ''}`;
}

/** Draws progress until `stop()`. */
export class ProgressDisplay {
  private readonly stream: NodeJS.WritableStream & { isTTY?: boolean };
  private readonly samples: Array<{ at: number; settled: number }> = [];
  private readonly timer: NodeJS.Timeout;
  private drawnOnTty = false;

  constructor(
    private readonly read: () => ProgressSnapshot,
    options: ProgressOptions = {},
  ) {
    this.stream = options.stream ?? process.stderr;
    const interval = this.stream.isTTY ? (options.ttyIntervalMs ?? 250) : (options.logIntervalMs ?? 10_000);
    this.timer = setInterval(() => this.draw(), interval);
    this.timer.unref();
  }

  /** Outcomes per second over the last few seconds. */
  rate(now = Date.now()): number {
    const snap = this.read();
    this.samples.push({ at: now, settled: snap.settled ?? snap.results + snap.deadLetters });
    while (this.samples.length > 2 && now - this.samples[0]!.at > RATE_WINDOW_MS) this.samples.shift();
    const first = this.samples[0]!;
    const last = this.samples[this.samples.length - 1]!;
    const seconds = (last.at - first.at) / 1000;
    return seconds > 0 ? (last.settled - first.settled) / seconds : 0;
  }

  /** Draw once now. */
  draw(): void {
    const line = progressLine(this.read(), this.rate());
    if (this.stream.isTTY) {
      this.stream.write(`\r\x1b[2K${line}`);
      this.drawnOnTty = true;
    } else {
      this.stream.write(`[progress] ${line}\n`);
    }
  }

  /** Draw the final state and stop. */
  stop(): void {
    clearInterval(this.timer);
    this.draw();
    if (this.drawnOnTty) this.stream.write('\n');
  }
}
