/**
 * One entry point for every pilot backend: validate the request, build the pilots' environment once, start
 * the backend's cluster, and attach the autoscaler when asked.
 */
import type { AdapterLogger } from '../../mq-adapters/types.js';
import { startAutoscaler, validateAutoscale } from '../autoscale.js';
import { CoordinatorConfigError } from '../errors.js';
import { buildPilotEnv, type WorkflowTarget } from '../pilot-env.js';
import type { PilotCluster, PilotRequest } from '../types.js';
import { LocalPilotCluster } from './local.js';

/** Start the pilots `request` asks for, on `target`'s queues. */
export async function startPilotCluster(target: WorkflowTarget, request: PilotRequest, logger?: AdapterLogger): Promise<PilotCluster> {
  if (!Number.isInteger(request.count) || request.count < 0) {
    throw new CoordinatorConfigError(`pilot count must be a whole number >= 0, got ${request.count}`, 'e.g. count: 4');
  }
  if (request.autoscale) {
    if (request.backend === 'ewms') throw new CoordinatorConfigError('autoscaling is not available with the ewms backend', 'the WMS sizes its taskforces itself; use local or condor');
    validateAutoscale(request.autoscale);
  }
  let cluster: PilotCluster;
  switch (request.backend) {
    case 'local': {
      const local = new LocalPilotCluster(buildPilotEnv(target, request), request.local, logger);
      await local.scale(request.count);
      cluster = local;
      break;
    }
    case 'condor': {
      const { submitCondorCluster } = await import('./condor.js');
      cluster = await submitCondorCluster(buildPilotEnv(target, request), target, request, logger);
      break;
    }
    case 'ewms':
      // Pilots started by the WMS read the WMS's own queues, never this workflow's: refuse rather than
      // publish events no pilot will see.
      throw new CoordinatorConfigError(
        'with the ewms backend the WMS makes the queues, so pilots cannot be started for queues declared here',
        'use runWorkflow({ pilots: { backend: "ewms", … } }), or requestEwmsWorkflow(request) then Workflow.create(ewmsWorkflowOptions(cluster))',
      );
    default:
      throw new CoordinatorConfigError(`unknown pilot backend '${String((request as { backend: unknown }).backend)}'`, 'use local, condor or ewms');
  }
  if (!request.autoscale) return cluster;
  const stop = startAutoscaler(cluster, target.depth, request.autoscale, request.count, logger);
  return withCleanup(cluster, stop);
}

/** The same cluster, with `stop` run before `remove()`. */
function withCleanup(cluster: PilotCluster, stop: () => void): PilotCluster {
  return {
    get backend() {
      return cluster.backend;
    },
    get id() {
      return cluster.id;
    },
    status: () => cluster.status(),
    scale: (count) => cluster.scale(count),
    remove: async () => {
      stop();
      await cluster.remove();
    },
  };
}
