/**
 * What heartbeats cost a pilot: the pilot benchmark (task `true`, concurrency 1) with a monitoring queue and
 * without one, alternated in the same run. Heartbeats every 0.5 s here (four times the local default's rate),
 * so a cost would show; the ratio should sit within the trial-to-trial noise. The pilot ends 3 s after the queue
 * drained (not counted): on a loaded machine a shorter idle limit ends some runs early, on either side.
 * `npm run bench -- heartbeats`.
 */
import { randomUUID } from 'node:crypto';
import { MONITOR_QUEUE_BOUND } from '../common/heartbeat.js';
import { connect } from '../mq-adapters/index.js';
import { BROKERS, throughPilot } from './pilot.js';
import { type BenchRow, alternate } from './report.js';

const IDLE_SECONDS = 3;

export async function benchHeartbeats(n: number, trials: number): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  for (const [name, url] of Object.entries(BROKERS)) {
    const broker = await connect({ address: url });
    const monitorQueue = `bench-monitor-${randomUUID().slice(0, 8)}`;
    try {
      await broker.declareQueue({ name: monitorQueue, deadLetter: false, bound: { ...MONITOR_QUEUE_BOUND } });
      const { baseline, ours } = await alternate(
        trials,
        async () => [await throughPilot(broker, url, n, 1, {}, IDLE_SECONDS)],
        async () => [await throughPilot(broker, url, n, 1, { EWMS_PILOT_QUEUE_MONITOR: monitorQueue, EWMS_PILOT_HEARTBEAT_INTERVAL: '0.5' }, IDLE_SECONDS)],
      );
      rows.push({ name: `pilot on ${name}, task \`true\`, heartbeats every 0.5 s (vs no monitoring queue)`, baseline: baseline[0]!, ours: ours[0]!, unit: '/s' });
    } finally {
      await broker.deleteQueue(monitorQueue, { deadLetterQueue: false }).catch(() => undefined);
      await broker.close();
    }
  }
  return rows;
}
