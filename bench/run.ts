/**
 * `npm run bench`: every benchmark, each printing its rate next to a baseline measured in the same run.
 * `npm run bench -- pilot` (or `adapters`, `publish`, `rss`, `heartbeats`) runs some groups; `--quick` runs
 * smaller ones (1,000 pilot events, one trial, 20,000 publishes, 10,000 events for RSS). Sizes:
 * `EWMS_BENCH_N` (adapter messages, default 20,000), `EWMS_BENCH_PILOT_N` (pilot events per trial, 2,000),
 * `EWMS_BENCH_PUBLISH_N` (100,000), `EWMS_BENCH_RSS_N` (100,000), `EWMS_BENCH_TRIALS` (alternating trials per
 * side, median reported, default 3).
 */
import { execFileSync } from 'node:child_process';
import { benchAdapters } from './adapters.js';
import { benchHeartbeats } from './heartbeats.js';
import { benchPilot } from './pilot.js';
import { benchPublish } from './publish.js';
import { type BenchRow, printRows } from './report.js';
import { benchRss } from './rss.js';

const args = process.argv.slice(2);
const quick = args.includes('--quick');
const size = (variable: string, full: number, small: number) => Number(process.env[variable] ?? (quick ? small : full));
const trials = size('EWMS_BENCH_TRIALS', 3, 1);

const groups: Record<string, () => Promise<BenchRow[]>> = {
  adapters: () => benchAdapters(size('EWMS_BENCH_N', 20_000, 5_000), trials),
  pilot: () => benchPilot(size('EWMS_BENCH_PILOT_N', 2_000, 1_000), trials),
  publish: () => benchPublish(size('EWMS_BENCH_PUBLISH_N', 100_000, 20_000), trials),
  rss: () => benchRss(size('EWMS_BENCH_RSS_N', 100_000, 10_000)),
  heartbeats: () => benchHeartbeats(size('EWMS_BENCH_PILOT_N', 2_000, 1_000), trials),
};

const wanted = args.filter((a) => !a.startsWith('--'));
const uptime = () => execFileSync('uptime', { encoding: 'utf8' }).trim();
console.log(`started ${new Date().toISOString()}; ${uptime()}`);
const rows: BenchRow[] = [];
for (const [name, run] of Object.entries(groups)) {
  if (wanted.length && !wanted.includes(name)) continue;
  console.error(`running ${name} …`);
  rows.push(...(await run()));
}
printRows(rows);
console.log(`ended ${new Date().toISOString()}; ${uptime()}`);
