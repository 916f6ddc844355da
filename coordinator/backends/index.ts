/**
 * Every pilot backend behind one interface: a backend first provisions the workflow's queues (saying where
 * each one lives and with which credentials), then starts pilots on them.
 *
 * - `local` and `condor` use the coordinator's broker: the queues are declared there by `Workflow.create`,
 *   every queue on the one connection, with a dead-letter queue of their own.
 * - `ewms` asks the WMS, which makes the queues on its broker (one token per queue) and starts the pilots
 *   itself; its pilots come back from provisioning, and dead letters ride the outgoing queue.
 *
 * `Workflow` and `runWorkflow` use only this interface: no backend is special-cased anywhere else.
 */
import type { AdapterLogger, ConnectOptions } from '../../mq-adapters/types.js';
import { startAutoscaler, validateAutoscale } from '../autoscale.js';
import { CoordinatorConfigError } from '../errors.js';
import { buildPilotEnv, type WorkflowTarget } from '../pilot-env.js';
import type { DeadLetterRoute, PilotCluster, PilotRequest, WorkflowEndpoints, WorkflowQueues } from '../types.js';
import { LocalPilotCluster } from './local.js';
import type { PlannedWorkflow } from './plan.js';

/** What a backend needs to provision a workflow's queues. */
export interface ProvisionRequest {
  plan: PlannedWorkflow;
  /** The coordinator's broker (local, condor); unused by ewms. */
  broker: ConnectOptions | undefined;
  /** Queue names on the coordinator's broker (local, condor). */
  queues: WorkflowQueues;
  logger: AdapterLogger | undefined;
}

/** A workflow's queues as a backend provisioned them. */
export interface Provisioned {
  /** The backend that provisioned them. */
  readonly backend: PilotRequest['backend'];
  /** The workflow's id there (the WMS's workflow id; else the id naming the queues). */
  readonly id: string | undefined;
  readonly endpoints: WorkflowEndpoints;
  readonly deadLetterRoute: DeadLetterRoute;
  /** The queues belong to the backend (ewms): declared by it, retired by it, never deleted from here. */
  readonly queuesOwnedByBackend: boolean;
  /** Pilots the backend started while provisioning (ewms), handed out by the first matching `startPilots`. */
  readonly startedPilots: PilotCluster | undefined;
}

/** One pilot backend. */
export interface PilotBackend {
  readonly name: PilotRequest['backend'];
  /** Make the workflow's queues, or have them made, and say how to reach each. */
  provision(request: ProvisionRequest): Promise<Provisioned>;
  /** Start pilots on queues provisioned by `provisioned.backend`. */
  start(target: WorkflowTarget, request: PilotRequest, provisioned: Provisioned, logger?: AdapterLogger): Promise<PilotCluster>;
}

/** Queues on the coordinator's own broker, one connection for all, dead letters in a queue of their own. */
export function brokerProvisioned(backend: PilotRequest['backend'], broker: ConnectOptions | undefined, queues: WorkflowQueues): Provisioned {
  if (!broker) throw new CoordinatorConfigError('no broker given', 'pass broker (--broker URL / EWMS_BROKER_URL); only the ewms backend brings its own');
  return {
    backend,
    id: undefined,
    endpoints: {
      incoming: { name: queues.incoming, broker },
      outgoing: { name: queues.outgoing, broker },
      deadLetter: { name: queues.deadLetter, broker },
    },
    deadLetterRoute: 'queue',
    queuesOwnedByBackend: false,
    startedPilots: undefined,
  };
}

/** Pilots of `local` and `condor` run on any queues of the coordinator's broker. */
async function startOnBroker(target: WorkflowTarget, request: PilotRequest, provisioned: Provisioned, logger?: AdapterLogger): Promise<PilotCluster> {
  if (provisioned.queuesOwnedByBackend) {
    throw new CoordinatorConfigError(
      `this workflow's queues belong to the ${provisioned.backend} backend, whose pilots it starts itself`,
      `start ${request.backend} pilots on a workflow of your own broker (Workflow.create({ broker }))`,
    );
  }
  let cluster: PilotCluster;
  if (request.backend === 'local') {
    const local = new LocalPilotCluster(buildPilotEnv(target, request), request.local, logger);
    // With a shared budget, the pilots come as the workflow's priority allows.
    cluster = request.local?.budget ? request.local.budget.attach(local, target.priority ?? 0) : local;
    await cluster.scale(request.count);
  } else {
    const { submitCondorCluster } = await import('./condor.js');
    cluster = await submitCondorCluster(buildPilotEnv(target, request), target, request, logger);
  }
  if (!request.autoscale) return cluster;
  const stop = startAutoscaler(cluster, target.depth, request.autoscale, request.count, logger);
  return withCleanup(cluster, stop);
}

const BACKENDS: Record<PilotRequest['backend'], PilotBackend> = {
  local: { name: 'local', provision: async (r) => brokerProvisioned('local', r.broker, r.queues), start: startOnBroker },
  condor: { name: 'condor', provision: async (r) => brokerProvisioned('condor', r.broker, r.queues), start: startOnBroker },
  ewms: {
    name: 'ewms',
    async provision(r) {
      const request = r.plan.tasks[0]?.pilots;
      if (!request?.ewms) throw new CoordinatorConfigError('the ewms backend needs its settings', 'give pilots.ewms: { url, locations } (--wms-url, --wms-location)');
      const { provisionEwmsWorkflow } = await import('./ewms.js');
      const { cluster, endpoints } = await provisionEwmsWorkflow(r.plan, request.ewms, r.logger);
      return { backend: 'ewms', id: cluster.id, endpoints, deadLetterRoute: 'outgoing', queuesOwnedByBackend: true, startedPilots: cluster };
    },
    async start(_target, _request, provisioned) {
      if (provisioned.backend === 'ewms' && provisioned.startedPilots) return provisioned.startedPilots;
      throw new CoordinatorConfigError(
        'the WMS makes the queues and starts the pilots of an ewms workflow: it cannot serve queues declared here',
        'create the workflow with its pilots: Workflow.create({ pilots: { backend: "ewms", … } }) or runWorkflow({ pilots })',
      );
    },
  },
};

/** The backend of that name. */
export function pilotBackend(name: PilotRequest['backend']): PilotBackend {
  const backend = BACKENDS[name];
  if (!backend) throw new CoordinatorConfigError(`unknown pilot backend '${String(name)}'`, 'use local, condor or ewms');
  return backend;
}

/** Check a pilot request before anything is provisioned or started. */
export function validatePilotRequest(request: PilotRequest): void {
  pilotBackend(request.backend);
  if (!Number.isInteger(request.count) || request.count < 0) {
    throw new CoordinatorConfigError(`pilot count must be a whole number >= 0, got ${request.count}`, 'e.g. count: 4');
  }
  if (request.autoscale) {
    if (request.backend === 'ewms') throw new CoordinatorConfigError('autoscaling is not available with the ewms backend', 'the WMS sizes its taskforces itself; use local or condor');
    validateAutoscale(request.autoscale);
  }
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
    remove: async (options) => {
      stop();
      await cluster.remove(options);
    },
  };
}
