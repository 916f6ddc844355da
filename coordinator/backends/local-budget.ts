/**
 * One machine's pilot budget, shared by the local pilots of several workflows (or of several tasks): each
 * cluster asks for pilots with its workflow's priority, and the budget grants the higher priorities first.
 * A cluster of higher priority asking for more takes slots from lower ones — their newest pilots are stopped
 * (SIGTERM: unfinished events go back to their queue, no attempt used) — and slots freed by a scale-down or
 * `remove()` go to whoever waits, highest priority first; equal priorities are served in the order they came.
 *
 * ```ts
 * const budget = new LocalPilotBudget(8);
 * await runWorkflow({ …, priority: 10, pilots: { backend: 'local', count: 8, task, local: { budget } } });
 * ```
 */
import { PilotBackendError } from '../errors.js';
import type { ClusterStatus, PilotCluster, RemoveOptions } from '../types.js';

interface Member {
  cluster: PilotCluster;
  priority: number;
  /** Order of arrival, for equal priorities. */
  order: number;
  wanted: number;
  granted: number;
  removed: boolean;
}

export class LocalPilotBudget {
  private readonly members: Member[] = [];
  private arrivals = 0;
  /** One rebalance at a time: scale calls on the clusters never interleave. */
  private queue: Promise<void> = Promise.resolve();

  constructor(
    /** Most pilots running at once across every cluster attached. */
    readonly slots: number,
  ) {
    if (!Number.isInteger(slots) || slots < 1) throw new PilotBackendError(`a pilot budget needs at least one slot, got ${slots}`, 'e.g. new LocalPilotBudget(os.availableParallelism())');
  }

  /** Pilots granted to each cluster now, by cluster id. */
  grants(): Record<string, number> {
    return Object.fromEntries(this.members.filter((m) => !m.removed).map((m) => [m.cluster.id, m.granted]));
  }

  /** The cluster, its `scale` going through the budget at `priority` (higher first). */
  attach(cluster: PilotCluster, priority = 0): PilotCluster {
    const member: Member = { cluster, priority, order: this.arrivals++, wanted: 0, granted: 0, removed: false };
    this.members.push(member);
    return {
      backend: cluster.backend,
      id: cluster.id,
      status: (): Promise<ClusterStatus> => cluster.status(),
      scale: (count: number) => {
        member.wanted = count;
        return this.rebalance();
      },
      remove: async (options?: RemoveOptions) => {
        member.removed = true;
        member.wanted = 0;
        await this.rebalance();
        await cluster.remove(options);
      },
    };
  }

  /** Grant slots by priority, then apply every change: shrinking clusters first, so slots are free before they are reused. */
  private rebalance(): Promise<void> {
    const run = async () => {
      let left = this.slots;
      const byPriority = this.members.filter((m) => !m.removed).sort((a, b) => b.priority - a.priority || a.order - b.order);
      const next = new Map<Member, number>();
      for (const m of byPriority) {
        const grant = Math.min(m.wanted, left);
        next.set(m, grant);
        left -= grant;
      }
      const changed = [...next].filter(([m, grant]) => grant !== m.granted);
      for (const [m, grant] of changed.filter(([m, g]) => g < m.granted)) {
        m.granted = grant;
        await m.cluster.scale(grant);
      }
      for (const [m, grant] of changed.filter(([m, g]) => g > m.granted)) {
        m.granted = grant;
        await m.cluster.scale(grant);
      }
      for (const m of this.members.filter((x) => x.removed)) m.granted = 0;
    };
    this.queue = this.queue.then(run, run);
    return this.queue;
  }
}
