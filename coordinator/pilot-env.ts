/**
 * The one place that turns a pilot request into the pilot's `EWMS_PILOT_*` environment. Every backend uses
 * it, so a local pilot runs with exactly the settings a condor job gets (condor adds only the HTChirp
 * switches, which need a condor starter to talk to; local pilots do not fail fast unless asked to).
 */
import { formatBrokerAddress, resolveAddress, type BrokerAddress } from '../mq-adapters/address.js';
import { formatManagementUrl } from '../mq-adapters/management-url.js';
import type { ConnectOptions } from '../mq-adapters/types.js';
import type { WireFormat } from '../common/wire.js';
import { CoordinatorConfigError } from './errors.js';
import { monitorQueueName } from './monitor/feed.js';
import type { PilotRequest, TaskSpec, WorkflowQueues } from './types.js';

/** What a backend needs to know about the workflow it starts pilots for. */
export interface WorkflowTarget {
  id: string;
  queues: WorkflowQueues;
  broker: ConnectOptions;
  maxDeliveries: number;
  wireFormat: WireFormat;
  /** Events waiting in the incoming queue (for autoscaling). */
  depth(): Promise<number>;
  /** One task of a graph (or a single task with urgent twins): its queues, which `queues` then does not name. */
  task?: TaskQueues;
  /** The workflow's priority (a shared local pilot budget grants the higher first). */
  priority?: number;
}

/** The queues of one task of a graph, as its pilots see them. */
export interface TaskQueues {
  name: string;
  inputs: Array<{ queue: string; deadLetter: string; urgent?: string }>;
  outputs: Array<{ queue: string; urgent?: string }>;
  /** Filtered events become markers (graphs: so the coordinator can count them done). */
  filterMarkers: boolean;
}

/** A pilot's environment, and which of its values are secrets (to keep out of logs and command lines). */
export interface PilotEnvironment {
  env: Record<string, string>;
  /** Names of variables holding secrets (auth tokens). */
  secretKeys: string[];
}

const PILOT_PREFIX = 'EWMS_PILOT_';

/**
 * The pilot's broker address without its password, in the form `EWMS_PILOT_QUEUE_*_BROKER_ADDRESS` takes
 * (every node of a cluster, comma-separated). The one formatter: `formatBrokerAddress`.
 */
export const pilotBrokerAddress: (address: BrokerAddress) => string = formatBrokerAddress;

function taskEnv(prefix: 'TASK' | 'INIT', spec: TaskSpec | undefined): Record<string, string> {
  if (!spec) return {};
  const env: Record<string, string> = { [`${PILOT_PREFIX}${prefix}_ARGS`]: spec.args };
  if (spec.image) env[`${PILOT_PREFIX}${prefix}_IMAGE`] = spec.image;
  if (spec.env && Object.keys(spec.env).length > 0) env[`${PILOT_PREFIX}${prefix}_ENV_JSON`] = JSON.stringify(spec.env);
  if (spec.timeoutSeconds !== undefined) env[`${PILOT_PREFIX}${prefix}_TIMEOUT`] = String(spec.timeoutSeconds);
  return env;
}

/** Build the environment of every pilot of `request` on `target`'s queues. */
export function buildPilotEnv(target: WorkflowTarget, request: PilotRequest): PilotEnvironment {
  if (!request.task?.args?.trim()) {
    throw new CoordinatorConfigError('the pilot request has no task command', 'set task.args, e.g. "python scan.py {{INFILE}} {{OUTFILE}}"');
  }
  const broker = request.pilotBroker ?? target.broker;
  const address = resolveAddress(broker);
  const env: Record<string, string> = {};
  const secretKeys: string[] = [];
  const task = target.task;
  for (const side of ['INCOMING', 'OUTGOING'] as const) {
    // Several queues `;`-separated, as the EWMS TMS names them; one broker for all of them here.
    const queues = task ? (side === 'INCOMING' ? task.inputs : task.outputs) : [{ queue: side === 'INCOMING' ? target.queues.incoming : target.queues.outgoing }];
    env[`${PILOT_PREFIX}QUEUE_${side}`] = queues.map((q) => q.queue).join(';');
    const urgent = queues.map((q) => ('urgent' in q ? (q.urgent ?? '') : ''));
    if (urgent.some((u) => u !== '')) env[`${PILOT_PREFIX}QUEUE_${side}_URGENT`] = urgent.join(';');
    env[`${PILOT_PREFIX}QUEUE_${side}_BROKER_TYPE`] = address.type;
    env[`${PILOT_PREFIX}QUEUE_${side}_BROKER_ADDRESS`] = pilotBrokerAddress(address);
    // The pilots' broker API is the one the user gave for the broker they reach (RabbitMQ: the policy).
    if (broker.managementUrl !== undefined) env[`${PILOT_PREFIX}QUEUE_${side}_BROKER_MANAGEMENT_URL`] = formatManagementUrl(broker.managementUrl);
    if (address.password) {
      env[`${PILOT_PREFIX}QUEUE_${side}_AUTH_TOKEN`] = address.password;
      secretKeys.push(`${PILOT_PREFIX}QUEUE_${side}_AUTH_TOKEN`);
    }
  }
  env[`${PILOT_PREFIX}QUEUE_DEAD_LETTER`] = task ? task.inputs.map((q) => q.deadLetter).join(';') : target.queues.deadLetter;
  if (task) {
    env[`${PILOT_PREFIX}TASK_NAME`] = task.name;
    if (task.filterMarkers) env[`${PILOT_PREFIX}FILTER_MARKERS`] = 'true';
  }
  env[`${PILOT_PREFIX}MAX_DELIVERIES`] = String(target.maxDeliveries);
  env[`${PILOT_PREFIX}WIRE_FORMAT`] = target.wireFormat;
  // Heartbeats for `ewms monitor`; the WMS sets its pilots' environment itself.
  if (request.backend !== 'ewms') env[`${PILOT_PREFIX}QUEUE_MONITOR`] = monitorQueueName(target.id);
  Object.assign(env, taskEnv('TASK', request.task), taskEnv('INIT', request.init));
  if (!request.task.image) env[`${PILOT_PREFIX}CONTAINER_RUNTIME`] = 'none';
  if (request.backend === 'condor') {
    env[`${PILOT_PREFIX}HTCHIRP`] = 'True';
    env[`${PILOT_PREFIX}HTCHIRP_DEST`] = 'JOB_ATTR';
  }
  if (request.backend === 'local' && !request.pilotEnv?.[`${PILOT_PREFIX}STOP_LISTENING_ON_TASK_ERROR`] && !request.pilotEnv?.[`${PILOT_PREFIX}QUARANTINE_TIME`]) {
    // Local pilots share one machine: fail-fast protects no other node there and would leave the remaining
    // events without pilots. A failed event is retried and dead-lettered with its reason instead.
    env[`${PILOT_PREFIX}STOP_LISTENING_ON_TASK_ERROR`] = 'false';
  }
  for (const [key, value] of Object.entries(request.pilotEnv ?? {})) {
    if (!key.startsWith(PILOT_PREFIX)) {
      throw new CoordinatorConfigError(`pilotEnv key '${key}' is not a pilot setting`, `only ${PILOT_PREFIX}* variables are passed to pilots`);
    }
    env[key] = String(value);
    if (/TOKEN|PASSWORD|SECRET/i.test(key) && !secretKeys.includes(key)) secretKeys.push(key);
  }
  return { env, secretKeys };
}

/** The secret values of a pilot environment (for `redact`). */
export function pilotSecrets(pilot: PilotEnvironment): string[] {
  return pilot.secretKeys.map((k) => pilot.env[k]).filter((v): v is string => typeof v === 'string');
}
