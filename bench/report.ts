/** One benchmark line: our path against the baseline measured in the same run. */
export interface BenchRow {
  name: string;
  baseline: number;
  ours: number;
  unit: string;
}

/** Events per second for `n` events since `startedMs` (a `performance.now()` reading). */
export function rate(n: number, startedMs: number): number {
  return n / ((performance.now() - startedMs) / 1000);
}

/** The median of some measurements (the middle one, or the mean of the middle two). */
export function median(values: number[]): number {
  if (values.length === 0) throw new RangeError('median of nothing');
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/**
 * Measure `baseline` and `ours` in alternation, `trials` times each, and keep the medians: on a shared
 * machine the load changes from second to second, and alternating spreads it over both sides alike.
 */
export async function alternate(
  trials: number,
  baseline: () => Promise<number[]>,
  ours: () => Promise<number[]>,
): Promise<{ baseline: number[]; ours: number[] }> {
  const b: number[][] = [];
  const o: number[][] = [];
  for (let t = 0; t < trials; t++) {
    b.push(await baseline());
    o.push(await ours());
  }
  const medians = (runs: number[][]) => runs[0]!.map((_, i) => median(runs.map((r) => r[i]!)));
  return { baseline: medians(b), ours: medians(o) };
}

/** Print rows as a fixed-width table with the ratio ours/baseline. */
export function printRows(rows: BenchRow[]): void {
  const width = Math.max(...rows.map((r) => r.name.length), 10);
  console.log(`${'benchmark'.padEnd(width)}  ${'baseline'.padStart(12)}  ${'ours'.padStart(12)}  ratio`);
  for (const r of rows) {
    const fmt = (v: number) => `${r.unit === 'MB' ? v.toFixed(1) : Math.round(v).toLocaleString('en-US')} ${r.unit}`.padStart(12);
    console.log(`${r.name.padEnd(width)}  ${fmt(r.baseline)}  ${fmt(r.ours)}  ${(r.ours / r.baseline).toFixed(2)}`);
  }
}
