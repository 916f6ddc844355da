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

/** Print rows as a fixed-width table with the ratio ours/baseline. */
export function printRows(rows: BenchRow[]): void {
  const width = Math.max(...rows.map((r) => r.name.length), 10);
  console.log(`${'benchmark'.padEnd(width)}  ${'baseline'.padStart(12)}  ${'ours'.padStart(12)}  ratio`);
  for (const r of rows) {
    const fmt = (v: number) => `${Math.round(v).toLocaleString('en-US')} ${r.unit}`.padStart(12);
    console.log(`${r.name.padEnd(width)}  ${fmt(r.baseline)}  ${fmt(r.ours)}  ${(r.ours / r.baseline).toFixed(2)}`);
  }
}
