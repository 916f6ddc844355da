/**
 * The pilots of a workflow graph: one cluster per task (local: a set of processes, condor: a cluster, each
 * with its own settings and autoscaler), watched and stopped as one.
 */
import { PilotBackendError } from '../errors.js';
import type { ClusterStatus, PilotCluster, RemoveOptions } from '../types.js';

export class WorkflowPilots implements PilotCluster {
  constructor(
    readonly backend: string,
    /** Each task's cluster, by task name, in the order of the workflow's tasks. */
    readonly tasks: ReadonlyArray<{ task: string; cluster: PilotCluster }>,
  ) {}

  get id(): string {
    return this.tasks.map((t) => t.cluster.id).join(',');
  }

  /** The cluster running one task. */
  clusterOf(task: string): PilotCluster {
    const found = this.tasks.find((t) => t.task === task);
    if (!found) throw new PilotBackendError(`no pilots for task '${task}'`, `the tasks: ${this.tasks.map((t) => t.task).join(', ')}`);
    return found.cluster;
  }

  /** Every task's pilots added up. */
  async status(): Promise<ClusterStatus> {
    const all = await Promise.all(this.tasks.map((t) => t.cluster.status()));
    const sum = (pick: (s: ClusterStatus) => Record<string, number>) => {
      const out: Record<string, number> = {};
      for (const s of all) for (const [k, n] of Object.entries(pick(s))) out[k] = (out[k] ?? 0) + n;
      return out;
    };
    return { backend: this.backend, id: this.id, total: all.reduce((n, s) => n + s.total, 0), byState: sum((s) => s.byState), byPilotStatus: sum((s) => s.byPilotStatus) };
  }

  /** Each task's own status, for a progress line per stage. */
  async statusByTask(): Promise<Array<{ task: string; status: ClusterStatus }>> {
    return Promise.all(this.tasks.map(async (t) => ({ task: t.task, status: await t.cluster.status() })));
  }

  async scale(count: number): Promise<void> {
    if (this.tasks.length === 1) return this.tasks[0]!.cluster.scale(count);
    throw new PilotBackendError('a workflow graph is scaled task by task', `scale one task: pilots.clusterOf('${this.tasks[0]?.task ?? 'name'}').scale(${count})`);
  }

  /** Stop every task's pilots; all are tried, the first failure is thrown after. */
  async remove(options?: RemoveOptions): Promise<void> {
    const results = await Promise.allSettled(this.tasks.map((t) => t.cluster.remove(options)));
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  }
}
