/**
 * The `ewms` backend: pilots through an EWMS Workflow Management Service, as IceCube's SkyDriver requests
 * them. The WMS owns the queues there: it creates them (named by their `mqid`) on its broker and hands out
 * a token per queue, so a coordinator first asks for the workflow, then publishes to and collects from the
 * queues the WMS returns.
 *
 *   POST /v1/workflows                                   → workflow id, input/output mqids
 *   GET  /v1/mqs/workflows/{id}/mq-profiles/public       → broker type/address/token per queue (poll until activated)
 *   POST /v1/query/taskforces                            → taskforce phases and compound statuses
 *   POST /v1/workflows/{id}/actions/finished             → deactivate when done
 *
 * Every request carries the bearer token; 5xx answers and network errors are retried with exponential
 * backoff, 4xx answers fail at once with the WMS's own message.
 */
import { request as httpRequest } from 'undici';
import { describeError, redact } from '../../common/redact.js';
import type { AdapterLogger } from '../../mq-adapters/types.js';
import { CoordinatorConfigError, PilotBackendError, WmsError } from '../errors.js';
import { isBrokerType } from '../../mq-adapters/address.js';
import type { ClusterStatus, EwmsWmsOptions, JsonValue, PilotCluster, PilotRequest, WorkflowOptions } from '../types.js';

/** The API version prefix the WMS routes carry. */
export const WMS_ROUTE_PREFIX = '/v1';
/** Queue aliases this coordinator asks for. */
export const QUEUE_ALIASES = { incoming: 'input-queue', outgoing: 'output-queue' } as const;

/** One queue as the WMS describes it. */
export interface MqProfile {
  mqid: string;
  alias: string;
  is_activated: boolean;
  broker_type: string;
  broker_address: string;
  auth_token: string;
}

/** A thin, retrying client of the WMS REST API. */
export class WmsClient {
  private readonly base: string;
  private readonly token: string | undefined;

  constructor(
    private readonly options: EwmsWmsOptions,
    private readonly logger?: AdapterLogger,
    private readonly sleep: (ms: number) => Promise<void> = (ms) => new Promise((r) => setTimeout(r, ms)),
  ) {
    if (!options.url) throw new CoordinatorConfigError('the ewms backend needs the WMS url', 'set ewms.url (--wms-url)');
    this.base = options.url.replace(/\/+$/, '');
    this.token = options.token ?? process.env.EWMS_WMS_TOKEN;
  }

  /** One JSON request, retried on 5xx and network errors. */
  async call<T>(method: 'GET' | 'POST', path: string, body?: unknown): Promise<T> {
    const attempts = Math.max(1, this.options.maxAttempts ?? 5);
    const secrets = [this.token];
    for (let attempt = 1; ; attempt++) {
      let status: number | undefined;
      let text = '';
      try {
        const res = await httpRequest(`${this.base}${path}`, {
          method,
          headers: {
            accept: 'application/json',
            ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
            ...(this.token ? { authorization: `Bearer ${this.token}` } : {}),
          },
          ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
          headersTimeout: 60_000,
          bodyTimeout: 60_000,
        });
        status = res.statusCode;
        text = await res.body.text();
      } catch (err) {
        if (attempt >= attempts) {
          throw new WmsError(`cannot reach the WMS at ${this.base} (${method} ${path}): ${describeError(err, secrets)}`, 'check ewms.url and the network; the request was retried', undefined, { cause: err });
        }
        await this.backoff(attempt, `${method} ${path}: ${describeError(err, secrets)}`);
        continue;
      }
      if (status >= 200 && status < 300) {
        try {
          return (text ? JSON.parse(text) : {}) as T;
        } catch {
          throw new WmsError(`the WMS answered ${method} ${path} with something that is not JSON`, 'is ewms.url the WMS (not a login page or proxy)?', status);
        }
      }
      const detail = redact(wmsMessage(text), secrets);
      if (status >= 500 && attempt < attempts) {
        await this.backoff(attempt, `${method} ${path}: HTTP ${status} ${detail}`);
        continue;
      }
      throw new WmsError(`the WMS refused ${method} ${path}: HTTP ${status}${detail ? ` — ${detail}` : ''}`, hintFor(status), status);
    }
  }

  private async backoff(attempt: number, why: string): Promise<void> {
    const ms = Math.min(30_000, 500 * 2 ** (attempt - 1)) * (0.75 + Math.random() / 2);
    this.logger?.warn({ attempt, retryInMs: Math.round(ms), why }, 'WMS request failed; retrying');
    await this.sleep(ms);
  }

  /** Ask for a workflow; resolves with its id and the mqids of its input and output queues. */
  async createWorkflow(body: WorkflowRequestBody): Promise<{ workflowId: string; inputMqid: string; outputMqid: string }> {
    const res = await this.call<{ workflow?: { workflow_id?: string }; task_directives?: Array<{ input_queues?: string[]; output_queues?: string[] }> }>(
      'POST',
      `${WMS_ROUTE_PREFIX}/workflows`,
      body,
    );
    const workflowId = res.workflow?.workflow_id;
    const inputMqid = res.task_directives?.[0]?.input_queues?.[0];
    const outputMqid = res.task_directives?.[0]?.output_queues?.[0];
    if (!workflowId || !inputMqid || !outputMqid) throw new WmsError('the WMS created a workflow but did not name it or its queues', 'is this WMS version compatible (v1 API)?', 200);
    return { workflowId, inputMqid, outputMqid };
  }

  /** The workflow's public queues, once the WMS has activated them all. */
  async activatedQueues(workflowId: string, pollMs: number, timeoutMs = 30 * 60_000): Promise<MqProfile[]> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const res = await this.call<{ mqprofiles?: MqProfile[] }>('GET', `${WMS_ROUTE_PREFIX}/mqs/workflows/${encodeURIComponent(workflowId)}/mq-profiles/public`);
      const profiles = res.mqprofiles ?? [];
      if (profiles.length > 0 && profiles.every((p) => p.is_activated)) return profiles;
      if (Date.now() > deadline) throw new WmsError(`the WMS did not activate the queues of workflow ${workflowId} in time`, 'the message queue service may be short of resources; check the workflow in the WMS', undefined);
      await this.sleep(pollMs);
    }
  }

  /** The workflow's taskforces (one per cluster location). */
  async taskforces(workflowId: string): Promise<Array<Record<string, JsonValue>>> {
    const all: Array<Record<string, JsonValue>> = [];
    // The WMS answers page by page: `next_after` names where the next page starts (null on the last).
    let after: JsonValue | undefined;
    do {
      const res = await this.call<{ taskforces?: Array<Record<string, JsonValue>>; next_after?: JsonValue }>('POST', `${WMS_ROUTE_PREFIX}/query/taskforces`, {
        query: { workflow_id: workflowId },
        projection: ['taskforce_uuid', 'cluster_location', 'phase', 'n_workers', 'compound_statuses', 'cluster_id'],
        ...(after !== undefined && after !== null ? { after } : {}),
      });
      all.push(...(res.taskforces ?? []));
      after = res.next_after;
    } while (after !== undefined && after !== null);
    return all;
  }

  /** Tell the WMS the workflow is done: it stops its taskforces and retires the queues. */
  async finish(workflowId: string): Promise<void> {
    await this.call('POST', `${WMS_ROUTE_PREFIX}/workflows/${encodeURIComponent(workflowId)}/actions/finished`, {});
  }
}

function wmsMessage(text: string): string {
  try {
    const parsed = JSON.parse(text) as { error?: unknown; reason?: unknown };
    return String(parsed.error ?? parsed.reason ?? text).slice(0, 500);
  } catch {
    return text.slice(0, 500);
  }
}

function hintFor(status: number): string {
  if (status === 401 || status === 403) return 'the WMS refused the token: check EWMS_WMS_TOKEN (expired? wrong audience?)';
  if (status === 404) return 'no such workflow or route: check the workflow id and that ewms.url is the WMS';
  if (status >= 500) return 'the WMS kept failing through the retries; try again later';
  return 'the request was refused as invalid: the message above says which field';
}

/** The body of `POST /v1/workflows` (the WMS's documented schema). */
export interface WorkflowRequestBody {
  public_queue_aliases: string[];
  tasks: Array<{
    cluster_locations: string[];
    input_queue_aliases: string[];
    output_queue_aliases: string[];
    task_image: string;
    task_args: string;
    task_env?: Record<string, string>;
    init_image?: string;
    init_args?: string;
    init_env?: Record<string, string>;
    n_workers?: number;
    worker_config: Record<string, JsonValue>;
    pilot_config?: Record<string, JsonValue>;
  }>;
}

/** Defaults for `worker_config` (the WMS requires the object; these are its usual fields). */
const DEFAULT_WORKER_CONFIG: Record<string, JsonValue> = {
  do_transfer_worker_stdouterr: true,
  max_worker_runtime: 4 * 3600,
  n_cores: 1,
  priority: 0,
  worker_disk: '1GB',
  worker_memory: '1GB',
  condor_requirements: '',
};

/** The workflow request for a pilot request. */
export function workflowRequestBody(request: PilotRequest, ewms: EwmsWmsOptions): WorkflowRequestBody {
  const locations = Object.keys(ewms.locations ?? {});
  if (locations.length === 0) throw new CoordinatorConfigError('the ewms backend needs at least one cluster location', 'set ewms.locations (--wms-location NAME=COLLECTOR,SCHEDD)');
  if (!request.task.image) throw new CoordinatorConfigError('the ewms backend runs tasks in containers: the task needs an image', 'set task.image (--task-image)');
  const condor = request.condor ?? {};
  const workerConfig: Record<string, JsonValue> = { ...DEFAULT_WORKER_CONFIG };
  if (condor.cpus !== undefined) workerConfig.n_cores = condor.cpus;
  if (condor.memory !== undefined) workerConfig.worker_memory = condor.memory;
  if (condor.disk !== undefined) workerConfig.worker_disk = condor.disk;
  if (condor.requirements !== undefined) workerConfig.condor_requirements = condor.requirements;
  if (condor.maxRuntimeSeconds !== undefined) workerConfig.max_worker_runtime = condor.maxRuntimeSeconds;
  Object.assign(workerConfig, ewms.workerConfig ?? {});
  const pilotEnvironment: Record<string, JsonValue> = { ...(request.pilotEnv ?? {}) };
  if (request.task.timeoutSeconds !== undefined) pilotEnvironment.EWMS_PILOT_TASK_TIMEOUT = request.task.timeoutSeconds;
  if (request.init?.timeoutSeconds !== undefined) pilotEnvironment.EWMS_PILOT_INIT_TIMEOUT = request.init.timeoutSeconds;
  const pilotConfig: Record<string, JsonValue> = { tag: 'latest', environment: pilotEnvironment, input_files: [], ...(ewms.pilotConfig ?? {}) };
  const task: WorkflowRequestBody['tasks'][number] = {
    cluster_locations: locations,
    input_queue_aliases: [QUEUE_ALIASES.incoming],
    output_queue_aliases: [QUEUE_ALIASES.outgoing],
    task_image: request.task.image,
    task_args: request.task.args,
    task_env: request.task.env ?? {},
    n_workers: request.count,
    worker_config: workerConfig,
    pilot_config: pilotConfig,
  };
  if (request.init) {
    task.init_image = request.init.image ?? request.task.image;
    task.init_args = request.init.args;
    task.init_env = request.init.env ?? {};
  }
  return { public_queue_aliases: [QUEUE_ALIASES.incoming, QUEUE_ALIASES.outgoing], tasks: [task] };
}

/** A workflow running on an EWMS WMS. */
export class EwmsPilotCluster implements PilotCluster {
  readonly backend = 'ewms';

  constructor(
    private readonly client: WmsClient,
    /** The WMS's workflow id. */
    readonly id: string,
    /** The queues the WMS made (publish to `incoming`, collect from `outgoing`); empty when attached by id. */
    readonly queues: { incoming?: MqProfile; outgoing?: MqProfile } = {},
  ) {}

  async status(): Promise<ClusterStatus> {
    const byState: Record<string, number> = {};
    const byPilotStatus: Record<string, number> = {};
    let total = 0;
    for (const tf of await this.client.taskforces(this.id)) {
      const phase = String(tf.phase ?? 'unknown');
      const workers = typeof tf.n_workers === 'number' ? tf.n_workers : 0;
      byState[phase] = (byState[phase] ?? 0) + workers;
      total += workers;
      // compound_statuses: { <condor job status>: { <pilot status>: count } }
      const compound = tf.compound_statuses;
      if (compound && typeof compound === 'object' && !Array.isArray(compound)) {
        for (const perPilot of Object.values(compound)) {
          if (!perPilot || typeof perPilot !== 'object' || Array.isArray(perPilot)) continue;
          for (const [pilotStatus, n] of Object.entries(perPilot)) {
            if (typeof n === 'number') byPilotStatus[pilotStatus] = (byPilotStatus[pilotStatus] ?? 0) + n;
          }
        }
      }
    }
    return { backend: this.backend, id: this.id, total, byState, byPilotStatus };
  }

  async scale(_count: number): Promise<void> {
    throw new PilotBackendError('the ewms backend cannot rescale a running workflow from here', 'the WMS sizes its taskforces; request a new workflow for more workers');
  }

  /** Deactivate the workflow: the WMS stops its workers and retires its queues. */
  async remove(): Promise<void> {
    await this.client.finish(this.id);
  }
}

/**
 * Request a workflow from the WMS and wait until its queues are activated. The WMS makes its own queues on
 * its own broker: publish to and collect from them with `Workflow.create(ewmsWorkflowOptions(cluster))`
 * (`runWorkflow` does this by itself for `backend: 'ewms'`).
 */
export async function requestEwmsWorkflow(request: PilotRequest, logger?: AdapterLogger): Promise<EwmsPilotCluster> {
  if (!request.ewms) throw new CoordinatorConfigError('the ewms backend needs its settings', 'give request.ewms: { url, locations }');
  const client = new WmsClient(request.ewms, logger);
  const { workflowId, inputMqid, outputMqid } = await client.createWorkflow(workflowRequestBody(request, request.ewms));
  logger?.info({ workflowId }, 'EWMS workflow requested; waiting for its queues');
  const profiles = await client.activatedQueues(workflowId, (request.ewms.pollSeconds ?? 15) * 1000);
  const incoming = profiles.find((p) => p.mqid === inputMqid);
  const outgoing = profiles.find((p) => p.mqid === outputMqid);
  if (!incoming || !outgoing) {
    throw new WmsError(`the WMS did not list both queues of workflow ${workflowId} among its public queues`, 'ask the WMS operators: the input and output queues must be public', undefined);
  }
  return new EwmsPilotCluster(client, workflowId, { incoming, outgoing });
}

/**
 * Workflow options for the queues the WMS made: its broker (with the incoming queue's token: one
 * connection serves both queues, so the token must grant both) and the queues by their mqids.
 */
export function ewmsWorkflowOptions(cluster: EwmsPilotCluster): Pick<WorkflowOptions, 'broker' | 'queues'> {
  const { incoming, outgoing } = cluster.queues;
  if (!incoming || !outgoing) throw new CoordinatorConfigError(`workflow ${cluster.id} was attached by id: its queues are unknown here`, 'use the cluster requestEwmsWorkflow returned');
  if (!isBrokerType(incoming.broker_type)) throw new WmsError(`the WMS names an unknown broker type '${incoming.broker_type}'`, `supported: rabbitmq, nats, pulsar`, undefined);
  return {
    broker: { type: incoming.broker_type, address: incoming.broker_address, authToken: incoming.auth_token },
    queues: { incoming: incoming.mqid, outgoing: outgoing.mqid },
  };
}

/** A workflow requested earlier (by id), for `status` and `remove`. */
export function attachEwmsWorkflow(workflowId: string, ewms: EwmsWmsOptions): EwmsPilotCluster {
  return new EwmsPilotCluster(new WmsClient(ewms), workflowId);
}
