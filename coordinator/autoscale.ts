/**
 * Autoscaling: keep the pilot count proportional to the incoming queue's depth, between a minimum and a
 * maximum — `clamp(ceil(depth / eventsPerPilot), min, max)`, re-evaluated every period. Scaling down only
 * happens when the queue is empty or the target is lower for two periods in a row, so a momentary dip
 * does not kill pilots that would be needed again a moment later. Pilots that ended on their own are
 * replaced (`scale` counts live pilots), so at least `min` keep running.
 */
import { describeError } from '../common/redact.js';
import type { AdapterLogger } from '../mq-adapters/types.js';
import { CoordinatorConfigError } from './errors.js';
import type { AutoscaleOptions, ClusterStatus, PilotCluster } from './types.js';

/** The pilot count autoscaling aims for at a given queue depth. */
export function targetPilots(depth: number, options: AutoscaleOptions): number {
  const perPilot = Math.max(1, options.eventsPerPilot ?? 100);
  return Math.min(options.max, Math.max(options.min, Math.ceil(depth / perPilot)));
}

/** Pilots a cluster reports as failed (local: non-zero exit; condor: held). */
export function failedPilots(status: ClusterStatus): number {
  return (status.byState.failed ?? 0) + (status.byState.held ?? 0);
}

/** Check autoscaling options; throws `CoordinatorConfigError`. */
export function validateAutoscale(options: AutoscaleOptions): void {
  if (!Number.isInteger(options.min) || !Number.isInteger(options.max) || options.min < 0 || options.max < options.min) {
    throw new CoordinatorConfigError(`autoscale min/max must be whole numbers with 0 <= min <= max, got ${options.min}/${options.max}`, 'e.g. { min: 1, max: 20 }');
  }
}

/** Start scaling `cluster` to `depth()`; returns a function that stops it. */
export function startAutoscaler(
  cluster: PilotCluster,
  depth: () => Promise<number>,
  options: AutoscaleOptions,
  initial: number,
  logger?: AdapterLogger,
): () => void {
  validateAutoscale(options);
  let current = initial;
  let lowerStreak = 0;
  let busy = false;
  let crashLooping = false;
  const tick = async () => {
    if (busy) return;
    busy = true;
    try {
      const d = await depth();
      const target = targetPilots(d, options);
      lowerStreak = target < current ? lowerStreak + 1 : 0;
      if (target > current || (target < current && (d === 0 || lowerStreak >= 2))) {
        logger?.info({ cluster: cluster.id, depth: d, from: current, to: target }, 'autoscaling pilots');
        await cluster.scale(target);
        current = target;
        lowerStreak = 0;
      } else if (target === current && !crashLooping) {
        // Pilots end by themselves (queue drained, wall time, failure): replace them while work remains,
        // unless they keep failing — replacing a pilot that cannot start only burns the pool.
        const failed = failedPilots(await cluster.status());
        if (failed >= Math.max(2, options.max * 2)) {
          crashLooping = true;
          logger?.error({ cluster: cluster.id, failed }, 'pilots keep failing: autoscaling stops replacing them');
        } else {
          await cluster.scale(target);
        }
      }
    } catch (err) {
      logger?.warn({ cluster: cluster.id, err: describeError(err) }, 'autoscaling step failed; trying again next period');
    } finally {
      busy = false;
    }
  };
  const timer = setInterval(() => void tick(), Math.max(1, options.periodSeconds ?? 30) * 1000);
  timer.unref();
  return () => clearInterval(timer);
}
