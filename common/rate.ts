/**
 * A rate over a sliding window of (time, running total) samples: what a pilot reports as its rate and what
 * the monitor shows per task, following the current speed rather than the whole run's average.
 */
export class RateMeter {
  private readonly samples: Array<{ at: number; total: number }> = [];

  /** @param windowMs how far back the rate looks (default 30 s). */
  constructor(private readonly windowMs = 30_000) {}

  /** Record the running total at `at` (ms) and return the rate per second over the window. */
  sample(total: number, at = Date.now()): number {
    const last = this.samples[this.samples.length - 1];
    // A total that went down (a counter restarted) starts a new window rather than a negative rate.
    if (last && total < last.total) this.samples.length = 0;
    this.samples.push({ at, total });
    while (this.samples.length > 2 && at - this.samples[1]!.at >= this.windowMs) this.samples.shift();
    return this.rate();
  }

  /** The rate per second between the oldest and newest sample in the window (0 with fewer than two). */
  rate(): number {
    const first = this.samples[0];
    const last = this.samples[this.samples.length - 1];
    if (!first || !last || last.at <= first.at) return 0;
    return ((last.total - first.total) * 1000) / (last.at - first.at);
  }
}
