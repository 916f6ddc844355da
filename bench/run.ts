/**
 * `npm run bench`: every benchmark, each printing its rate next to a baseline measured in the same run.
 * `npm run bench -- adapters` (or `pilot`) runs one group; `EWMS_BENCH_N` (messages per trial, default 20,000) and
 * `EWMS_BENCH_TRIALS` (alternating trials per side, median reported, default 3) size it.
 */
import { benchAdapters } from './adapters.js';
import { benchHeartbeats } from './heartbeats.js';
import { benchPilot } from './pilot.js';
import { type BenchRow, printRows } from './report.js';

const groups: Record<string, () => Promise<BenchRow[]>> = {
  adapters: () => benchAdapters(Number(process.env.EWMS_BENCH_N ?? 20_000), Number(process.env.EWMS_BENCH_TRIALS ?? 3)),
  pilot: () => benchPilot(Number(process.env.EWMS_BENCH_PILOT_N ?? 2_000), Number(process.env.EWMS_BENCH_TRIALS ?? 3)),
  heartbeats: () => benchHeartbeats(Number(process.env.EWMS_BENCH_PILOT_N ?? 2_000), Number(process.env.EWMS_BENCH_TRIALS ?? 3)),
};

const wanted = process.argv.slice(2);
const rows: BenchRow[] = [];
for (const [name, run] of Object.entries(groups)) {
  if (wanted.length && !wanted.includes(name)) continue;
  console.error(`running ${name} …`);
  rows.push(...(await run()));
}
printRows(rows);
