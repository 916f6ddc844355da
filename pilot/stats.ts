/** Runtime statistics a pilot reports at exit (and through HTChirp while it runs). */
export interface StatsSnapshot {
  /** Events whose task ran to completion and whose output was published and input acked. */
  succeeded: number;
  /** Of the succeeded ones, those whose task wrote no outfile: acked with nothing published. */
  withoutOutput: number;
  /** Events whose task failed (including timeouts), whatever became of them afterwards. */
  failed: number;
  /** Of the failed ones, those moved to the dead-letter queue by this pilot. */
  deadLettered: number;
  /** Task wall times of finished tasks (success or failure), in seconds. */
  taskSeconds: { count: number; mean: number; median: number; max: number };
}

/**
 * Collects task durations and outcome counts. Durations are kept in full to give an exact median: a pilot
 * runs at most a few hundred thousand tasks in its life, so that is a few MB at the very worst.
 */
export class PilotStats {
  private succeededCount = 0;
  private withoutOutputCount = 0;
  private failedCount = 0;
  private deadLetteredCount = 0;
  private readonly durations: number[] = [];

  recordSuccess(durationMs: number, published: boolean): void {
    this.succeededCount += 1;
    if (!published) this.withoutOutputCount += 1;
    this.durations.push(durationMs / 1000);
  }

  recordFailure(durationMs: number | undefined): void {
    this.failedCount += 1;
    if (durationMs !== undefined) this.durations.push(durationMs / 1000);
  }

  recordDeadLetter(): void {
    this.deadLetteredCount += 1;
  }

  /** The outcome counts, cheap enough to read after every event. */
  counts(): { succeeded: number; failed: number; deadLettered: number } {
    return { succeeded: this.succeededCount, failed: this.failedCount, deadLettered: this.deadLetteredCount };
  }

  get total(): number {
    return this.succeededCount + this.failedCount;
  }

  snapshot(): StatsSnapshot {
    const sorted = [...this.durations].sort((a, b) => a - b);
    const count = sorted.length;
    const sum = sorted.reduce((acc, v) => acc + v, 0);
    const mid = Math.floor(count / 2);
    const median = count === 0 ? 0 : count % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
    return {
      succeeded: this.succeededCount,
      withoutOutput: this.withoutOutputCount,
      failed: this.failedCount,
      deadLettered: this.deadLetteredCount,
      taskSeconds: {
        count,
        mean: count === 0 ? 0 : sum / count,
        median,
        max: count === 0 ? 0 : sorted[count - 1]!,
      },
    };
  }
}
