/**
 * The `ewms` backend: pilots through an EWMS Workflow Management Service, driven the way IceCube's SkyDriver
 * drives it. The WMS owns the queues: it has the Message Queue Service reserve them (one token per queue,
 * covering that queue only) and its Task Management Services start the pilots on HTCondor with the queues'
 * tokens. So this backend provisions by asking:
 *
 *   POST /v1/workflows                                   → workflow id; task directive with input/output mqids
 *   GET  /v1/mqs/workflows/{id}/mq-profiles/public       → broker type/address/token per queue (poll until activated)
 *   POST /v1/query/taskforces                            → taskforce phases and compound statuses
 *   POST /v1/workflows/{id}/actions/finished | abort     → deactivate: finished on success, abort on failure
 *
 * Requests carry a bearer token (`wms-auth.ts`: OAuth2 client credentials or a static token), refreshed on a
 * 401 once. Idempotent requests are retried on 5xx and network errors with backoff; `POST /v1/workflows` is
 * not idempotent and is never sent twice: when its answer is lost, the workflow it may have made is looked
 * up by the request id it carries.
 *
 * Dead letters: no token may declare a queue beside the workflow's own, so pilots (and this coordinator) use
 * no dead-letter queue; pilots send a dead letter to the outgoing queue, marked by its reason headers
 * (`EWMS_PILOT_DEAD_LETTER=outgoing`, set in `pilot_config.environment`).
 */
import { randomUUID } from 'node:crypto';
import { request as httpRequest } from 'undici';
import { describeError, redact } from '../../common/redact.js';
import { isBrokerType } from '../../mq-adapters/address.js';
import type { AdapterLogger, ConnectOptions } from '../../mq-adapters/types.js';
import { CoordinatorConfigError, PilotBackendError, WmsError, WmsWorkflowUnconfirmedError } from '../errors.js';
import type { ClusterStatus, EwmsWmsOptions, JsonValue, PilotCluster, PilotRequest, QueueEndpoint, RemoveOptions, WorkflowEndpoints } from '../types.js';
import { wmsAuthFromEnv, wmsTokenSource, type WmsTokenSource } from '../wms-auth.js';
import { publicDirections, QUEUE_ALIASES, type PlannedWorkflow } from './plan.js';

/** The API version prefix of the WMS routes (and of the MQS routes it serves under `/v1/mqs`). */
export const WMS_ROUTE_PREFIX = '/v1';
/** The `pilot_config.environment` entry that lets a workflow be found again after a lost `POST /v1/workflows` answer. */
export const REQUEST_ID_VARIABLE = 'EWMS_COORDINATOR_REQUEST_ID';
/**
 * `pilot_config.environment` keys the WMS refuses (`rest_handlers/workflow_handlers.py`): the task and init
 * are given by the top-level `task_*` / `init_*` fields instead.
 */
export const WMS_FORBIDDEN_PILOT_VARIABLES = [
  'EWMS_PILOT_TASK_IMAGE',
  'EWMS_PILOT_TASK_ARGS',
  'EWMS_PILOT_TASK_ENV_JSON',
  'EWMS_PILOT_INIT_IMAGE',
  'EWMS_PILOT_INIT_ARGS',
  'EWMS_PILOT_INIT_ENV_JSON',
] as const;

/** One queue as the MQS describes it (`mq-profiles`). */
export interface MqProfile {
  mqid: string;
  alias: string;
  is_activated: boolean;
  broker_type: string;
  broker_address: string;
  /** Secret: never logged. */
  auth_token: string;
}

/** What `POST /v1/workflows` (or the look-up after a lost answer) tells about the new workflow. */
export interface CreatedWorkflow {
  workflowId: string;
  /** Each task directive's input and output mqids, in the order of the request's tasks. */
  tasks: Array<{ inputQueues: string[]; outputQueues: string[] }>;
}

/** A request whose answer was lost: the WMS may or may not have acted on it. */
class Unanswered extends Error {
  constructor(
    readonly detail: string,
    readonly status: number | undefined,
  ) {
    super(detail);
  }
}

/** A thin client of the WMS REST API. */
export class WmsClient {
  private readonly base: string;
  private readonly tokens: WmsTokenSource;

  constructor(
    private readonly options: EwmsWmsOptions,
    private readonly logger?: AdapterLogger,
    private readonly sleep: (ms: number) => Promise<void> = (ms) => new Promise((r) => setTimeout(r, ms)),
    tokens?: WmsTokenSource,
  ) {
    if (!options.url) throw new CoordinatorConfigError('the ewms backend needs the WMS url', 'set ewms.url (--wms-url)');
    this.base = options.url.replace(/\/+$/, '');
    this.tokens =
      tokens ??
      wmsTokenSource({
        ...wmsAuthFromEnv(),
        ...(options.token ? { token: options.token } : {}),
        ...(options.clientCredentials ? { clientCredentials: options.clientCredentials } : {}),
        ...(logger ? { logger } : {}),
      });
  }

  /** Secrets to keep out of messages: the tokens and the client secret. */
  private secrets(): string[] {
    return this.tokens.secrets();
  }

  /**
   * One JSON request. 401: a fresh token, once. 5xx and network errors: retried with backoff when
   * `idempotent` (default), else thrown as `Unanswered` for the caller to resolve. 4xx: `WmsError` at once.
   */
  async call<T>(method: 'GET' | 'POST', path: string, body?: unknown, options: { idempotent?: boolean } = {}): Promise<T> {
    const idempotent = options.idempotent ?? true;
    const attempts = Math.max(1, this.options.maxAttempts ?? 5);
    let refreshed = false;
    for (let attempt = 1; ; attempt++) {
      const token = await this.tokens.token();
      let status: number;
      let text: string;
      try {
        const res = await httpRequest(`${this.base}${path}`, {
          method,
          headers: {
            accept: 'application/json',
            ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
            ...(token ? { authorization: `Bearer ${token}` } : {}),
          },
          ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
          headersTimeout: 60_000,
          bodyTimeout: 60_000,
        });
        status = res.statusCode;
        text = await res.body.text();
      } catch (err) {
        const why = `${method} ${path}: ${describeError(err, this.secrets())}`;
        if (!idempotent) throw new Unanswered(why, undefined);
        if (attempt >= attempts) {
          throw new WmsError(`cannot reach the WMS at ${this.base} (${why})`, 'check ewms.url (--wms-url) and the network; the request was retried', undefined, { cause: err });
        }
        await this.backoff(attempt, why);
        continue;
      }
      if (status >= 200 && status < 300) {
        try {
          return (text ? JSON.parse(text) : {}) as T;
        } catch {
          throw new WmsError(`the WMS answered ${method} ${path} with something that is not JSON`, 'is ewms.url the WMS (not a login page or proxy)?', status);
        }
      }
      const detail = redact(wmsMessage(text), this.secrets());
      // A refused token means the request was not acted on: safe to send again with a fresh one, even a POST.
      if ((status === 401 || status === 403) && !refreshed && this.tokens.invalidate()) {
        refreshed = true;
        this.logger?.info({ path, status }, 'the WMS refused the token; fetching a new one');
        attempt -= 1;
        continue;
      }
      if (status >= 500) {
        const why = `${method} ${path}: HTTP ${status}${detail ? ` ${detail}` : ''}`;
        if (!idempotent) throw new Unanswered(why, status);
        if (attempt < attempts) {
          await this.backoff(attempt, why);
          continue;
        }
      }
      throw new WmsError(`the WMS refused ${method} ${path}: HTTP ${status}${detail ? ` — ${detail}` : ''}`, hintFor(status), status);
    }
  }

  private async backoff(attempt: number, why: string): Promise<void> {
    const ms = Math.min(30_000, 500 * 2 ** (attempt - 1)) * (0.75 + Math.random() / 2);
    this.logger?.warn({ attempt, retryInMs: Math.round(ms), why }, 'WMS request failed; retrying');
    await this.sleep(ms);
  }

  /**
   * Create the workflow. The body must carry `requestId` in each task's `pilot_config.environment`
   * (`REQUEST_ID_VARIABLE`): when the answer is lost (timeout, 5xx such as a gateway's 504), the workflow is
   * looked up by it instead of sending the request again; `WmsWorkflowUnconfirmedError` when none shows up.
   */
  async createWorkflow(body: WorkflowRequestBody, requestId: string): Promise<CreatedWorkflow> {
    let res: { workflow?: { workflow_id?: string }; task_directives?: Array<{ input_queues?: string[]; output_queues?: string[] }> };
    try {
      res = await this.call('POST', `${WMS_ROUTE_PREFIX}/workflows`, body, { idempotent: false });
    } catch (err) {
      if (!(err instanceof Unanswered)) throw err;
      this.logger?.warn({ why: err.detail, requestId }, 'POST /v1/workflows went unanswered; looking the workflow up instead of sending it again');
      return this.lookUpCreated(requestId, err);
    }
    const workflowId = res.workflow?.workflow_id;
    const tasks = (res.task_directives ?? []).map((td) => ({ inputQueues: td.input_queues ?? [], outputQueues: td.output_queues ?? [] }));
    if (!workflowId || tasks.length === 0) throw new WmsError('the WMS created a workflow but did not name it or its task', 'is this WMS version compatible (v1 API)?', 200);
    return { workflowId, tasks };
  }

  private async lookUpCreated(requestId: string, lost: Unanswered): Promise<CreatedWorkflow> {
    const deadline = Date.now() + (this.options.lookupSeconds ?? 60) * 1000;
    const pollMs = Math.min(5_000, (this.options.pollSeconds ?? 15) * 1000);
    for (;;) {
      const found = await this.findByRequestId(requestId);
      if (found) {
        this.logger?.info({ workflowId: found.workflowId, requestId }, 'found the workflow the unanswered request made');
        return found;
      }
      if (Date.now() >= deadline) {
        throw new WmsWorkflowUnconfirmedError(
          `the WMS did not answer POST /v1/workflows (${lost.detail}) and no workflow with request id ${requestId} has appeared; the request was not sent again`,
          `the WMS may still create it: look for taskforces with pilot_config.environment.${REQUEST_ID_VARIABLE}=${requestId} (POST /v1/query/taskforces) and abort it, or run again once the WMS is healthy`,
          requestId,
        );
      }
      await this.sleep(pollMs);
    }
  }

  /** The workflow whose taskforces carry `requestId`, with its task directives' queues; undefined when none. */
  async findByRequestId(requestId: string): Promise<CreatedWorkflow | undefined> {
    const taskforces = await this.query<{ workflow_id?: string }>('taskforces', { [`pilot_config.environment.${REQUEST_ID_VARIABLE}`]: requestId }, ['workflow_id']);
    const workflowId = taskforces.find((tf) => typeof tf.workflow_id === 'string')?.workflow_id;
    if (!workflowId) return undefined;
    const directives = await this.query<{ input_queues?: string[]; output_queues?: string[] }>('task-directives', { workflow_id: workflowId }, ['input_queues', 'output_queues']);
    return { workflowId, tasks: directives.map((td) => ({ inputQueues: td.input_queues ?? [], outputQueues: td.output_queues ?? [] })) };
  }

  /** Every object of a `/v1/query/<what>` search, page by page (`next_after`). */
  private async query<T>(what: 'taskforces' | 'task-directives', query: Record<string, JsonValue>, projection: string[]): Promise<T[]> {
    const key = what === 'taskforces' ? 'taskforces' : 'task_directives';
    const all: T[] = [];
    let after: JsonValue | undefined;
    do {
      const res = await this.call<Record<string, unknown>>('POST', `${WMS_ROUTE_PREFIX}/query/${what}`, {
        query,
        projection,
        ...(typeof after === 'string' ? { after } : {}),
      });
      all.push(...((res[key] as T[] | undefined) ?? []));
      after = res.next_after as JsonValue | undefined;
    } while (typeof after === 'string');
    return all;
  }

  /** The workflow's public queues, once the MQS has activated them all. */
  async activatedQueues(workflowId: string): Promise<MqProfile[]> {
    const pollMs = (this.options.pollSeconds ?? 15) * 1000;
    const deadline = Date.now() + (this.options.activationTimeoutSeconds ?? 30 * 60) * 1000;
    for (;;) {
      const res = await this.call<{ mqprofiles?: MqProfile[] }>('GET', `${WMS_ROUTE_PREFIX}/mqs/workflows/${encodeURIComponent(workflowId)}/mq-profiles/public`);
      const profiles = res.mqprofiles ?? [];
      if (profiles.length > 0 && profiles.every((p) => p.is_activated)) return profiles;
      if (Date.now() > deadline) {
        throw new WmsError(`the WMS did not activate the queues of workflow ${workflowId} in time`, 'the message queue service may be short of resources; check the workflow in the WMS', undefined);
      }
      await this.sleep(pollMs);
    }
  }

  /** The workflow's taskforces (one per cluster location). */
  taskforces(workflowId: string): Promise<Array<Record<string, JsonValue>>> {
    return this.query('taskforces', { workflow_id: workflowId }, ['taskforce_uuid', 'phase', 'n_workers', 'compound_statuses', 'cluster_id']);
  }

  /**
   * Deactivate the workflow: `finished` when its work is done, `aborted` when it failed; either way the WMS
   * stops its taskforces and retires its queues. A workflow already deactivated (our earlier attempt went
   * through although its answer was lost) counts as done.
   */
  async deactivate(workflowId: string, reason: 'finished' | 'aborted'): Promise<void> {
    const action = reason === 'finished' ? 'finished' : 'abort';
    const path = `${WMS_ROUTE_PREFIX}/workflows/${encodeURIComponent(workflowId)}/actions/${action}`;
    try {
      await this.call('POST', path);
    } catch (err) {
      if (err instanceof WmsError && err.status === 404 && (await this.isDeactivated(workflowId))) return;
      throw err;
    }
  }

  private async isDeactivated(workflowId: string): Promise<boolean> {
    const workflow = await this.call<{ deactivated?: unknown }>('GET', `${WMS_ROUTE_PREFIX}/workflows/${encodeURIComponent(workflowId)}`).catch(() => undefined);
    return typeof workflow?.deactivated === 'string';
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
  if (status === 401 || status === 403) {
    return 'the WMS refused the credentials: check EWMS_WMS_TOKEN_URL / EWMS_WMS_CLIENT_ID / EWMS_WMS_CLIENT_SECRET (or EWMS_WMS_TOKEN: expired? wrong audience?)';
  }
  if (status === 404) return 'no such workflow or route: check the workflow id and that ewms.url (--wms-url) is the WMS';
  if (status >= 500) return 'the WMS kept failing through the retries; try again later';
  return 'the WMS refused the request as invalid: the message above says which field';
}

// ---------------------------------------------------------------------------------------------------------
// The request body
// ---------------------------------------------------------------------------------------------------------

/** A task of `POST /v1/workflows`, as the WMS's request schema defines it (`wms/schema/openapi.json`). */
export interface WorkflowRequestTask {
  cluster_locations: string[];
  task_image: string;
  task_args: string;
  task_env?: Record<string, string>;
  init_image?: string;
  init_args?: string;
  init_env?: Record<string, string>;
  input_queue_aliases: string[];
  output_queue_aliases: string[];
  pilot_config?: {
    tag: string;
    image_source: 'auto' | 'cvmfs';
    environment: Record<string, string | number | string[]>;
    input_files: string[];
  };
  worker_config: {
    do_transfer_worker_stdouterr: boolean;
    max_worker_runtime: number;
    n_cores: number;
    priority: number;
    worker_disk: string | number;
    worker_memory: string | number;
    condor_requirements: string;
  };
  n_workers?: number | null;
}

/** The body of `POST /v1/workflows`. */
export interface WorkflowRequestBody {
  tasks: WorkflowRequestTask[];
  public_queue_aliases: string[];
  priority?: number;
}

/** Defaults for `worker_config` (the WMS requires every field). */
const DEFAULT_WORKER_CONFIG: WorkflowRequestTask['worker_config'] = {
  do_transfer_worker_stdouterr: true,
  max_worker_runtime: 4 * 3600,
  n_cores: 1,
  priority: 0,
  worker_disk: '1GB',
  worker_memory: '1GB',
  condor_requirements: '',
};

const WORKER_INTEGER_FIELDS = ['max_worker_runtime', 'n_cores', 'priority'] as const;
/** `pilot_config.tag` as the WMS's schema allows it: `X.Y.Z`, `latest`, or a feature-branch tag. */
const PILOT_TAG = /^([0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3})|(latest)|([a-z0-9._-]+-[a-z0-9]{1,128})$/;

/** The request body for a planned workflow; every task gets `requestId` in its pilot environment. */
export function workflowRequestBody(plan: PlannedWorkflow, ewms: EwmsWmsOptions, requestId: string): WorkflowRequestBody {
  const locations = [...new Set(ewms.locations ?? [])];
  if (locations.length === 0) {
    throw new CoordinatorConfigError('the ewms backend needs at least one cluster location', 'name one the WMS knows, e.g. --wms-location sub-2');
  }
  for (const name of locations) {
    if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(name)) {
      throw new CoordinatorConfigError(`'${name}' is not a cluster location name`, 'give the name the WMS knows (e.g. sub-2); the WMS looks up the collector and schedd itself');
    }
  }
  const imageSource = ewms.imageSource ?? 'auto';
  if (imageSource !== 'auto' && imageSource !== 'cvmfs') throw new CoordinatorConfigError(`unknown pilot image source '${String(imageSource)}'`, 'use auto (default) or cvmfs');
  const tag = ewms.pilotTag ?? 'latest';
  if (!PILOT_TAG.test(tag)) throw new CoordinatorConfigError(`pilot tag '${tag}' is not one the WMS accepts`, 'use latest, an exact release such as 1.2.3, or a feature-branch tag');
  const body: WorkflowRequestBody = {
    // Each task may name its own locations and pilot image (graph tasks' cluster_locations / pilot_config).
    tasks: plan.tasks.map((task) => {
      const own = task.pilots.ewms;
      const taskLocations = own?.locations && own.locations.length > 0 ? [...new Set(own.locations)] : locations;
      const request = plan.graph ? { ...task.pilots, pilotEnv: graphPilotEnv(task.name, task.pilots.pilotEnv) } : task.pilots;
      return requestTask(request, task.inputQueues, task.outputQueues, plan, own ?? ewms, taskLocations, { tag: own?.pilotTag ?? tag, imageSource: own?.imageSource ?? imageSource }, requestId);
    }),
    public_queue_aliases: plan.publicQueues,
  };
  const priority = plan.priority ?? ewms.priority;
  if (priority !== undefined) body.priority = integer(priority, 'priority');
  return body;
}

/**
 * A graph task's pilots name their task (provenance, heartbeats) and publish filter markers, as the other
 * backends' pilots do. `task_name` itself is no field of the WMS request; the pilot setting is.
 */
function graphPilotEnv(taskName: string, pilotEnv: Record<string, string> | undefined): Record<string, string> {
  return { EWMS_PILOT_TASK_NAME: taskName, EWMS_PILOT_FILTER_MARKERS: 'true', ...pilotEnv };
}

function requestTask(
  request: PilotRequest,
  inputs: string[],
  outputs: string[],
  plan: PlannedWorkflow,
  ewms: EwmsWmsOptions,
  locations: string[],
  pilot: { tag: string; imageSource: 'auto' | 'cvmfs' },
  requestId: string,
): WorkflowRequestTask {
  if (!request.task.image) throw new CoordinatorConfigError('the ewms backend runs tasks in containers: the task needs an image', 'set task.image (--task-image), e.g. a /cvmfs path');
  if (!Number.isInteger(request.count) || request.count < 1) throw new CoordinatorConfigError(`the ewms backend needs a worker count >= 1, got ${request.count}`, 'e.g. --pilots 4');
  const task: WorkflowRequestTask = {
    cluster_locations: locations,
    task_image: request.task.image,
    task_args: request.task.args,
    task_env: stringEnv(request.task.env, 'task.env'),
    input_queue_aliases: inputs,
    output_queue_aliases: outputs,
    n_workers: request.count,
    pilot_config: { tag: pilot.tag, image_source: pilot.imageSource, environment: pilotEnvironment(request, plan, requestId), input_files: [...(ewms.inputFiles ?? [])] },
    worker_config: workerConfig(request, ewms),
  };
  if (request.init) {
    task.init_image = request.init.image ?? request.task.image;
    task.init_args = request.init.args;
    task.init_env = stringEnv(request.init.env, 'init.env');
  }
  return task;
}

/** The pilots' settings: the request's, this coordinator's, and the request id. */
function pilotEnvironment(request: PilotRequest, plan: PlannedWorkflow, requestId: string): Record<string, string | number | string[]> {
  const env: Record<string, string | number | string[]> = {};
  for (const [key, value] of Object.entries(request.pilotEnv ?? {})) {
    if ((WMS_FORBIDDEN_PILOT_VARIABLES as readonly string[]).includes(key)) {
      throw new CoordinatorConfigError(`pilot setting ${key} cannot be passed to the WMS`, 'give the task and init through task.* / init.* (--task-image, --task-args, --task-env, --init-*)');
    }
    if (!key.startsWith('EWMS_PILOT_')) throw new CoordinatorConfigError(`pilotEnv key '${key}' is not a pilot setting`, 'only EWMS_PILOT_* variables are passed to pilots');
    env[key] = value;
  }
  if (request.task.timeoutSeconds !== undefined) env.EWMS_PILOT_TASK_TIMEOUT = seconds(request.task.timeoutSeconds);
  if (request.init?.timeoutSeconds !== undefined) env.EWMS_PILOT_INIT_TIMEOUT = seconds(request.init.timeoutSeconds);
  env.EWMS_PILOT_MAX_DELIVERIES = plan.maxDeliveries;
  env.EWMS_PILOT_WIRE_FORMAT = plan.wireFormat;
  // Each token covers one queue: no dead-letter queue can be declared, so dead letters ride the outgoing queue.
  env.EWMS_PILOT_DEAD_LETTER = 'outgoing';
  env[REQUEST_ID_VARIABLE] = requestId;
  return env;
}

function workerConfig(request: PilotRequest, ewms: EwmsWmsOptions): WorkflowRequestTask['worker_config'] {
  const condor = request.condor ?? {};
  const config: Record<string, JsonValue> = { ...DEFAULT_WORKER_CONFIG };
  if (condor.cpus !== undefined) config.n_cores = condor.cpus;
  if (condor.memory !== undefined) config.worker_memory = condor.memory;
  if (condor.disk !== undefined) config.worker_disk = condor.disk;
  if (condor.requirements !== undefined) config.condor_requirements = condor.requirements;
  if (condor.maxRuntimeSeconds !== undefined) config.max_worker_runtime = condor.maxRuntimeSeconds;
  for (const [key, value] of Object.entries(ewms.workerConfig ?? {})) {
    if (!(key in DEFAULT_WORKER_CONFIG)) {
      throw new CoordinatorConfigError(`worker_config has no field '${key}'`, `the WMS takes: ${Object.keys(DEFAULT_WORKER_CONFIG).join(', ')}`);
    }
    config[key] = value;
  }
  for (const key of WORKER_INTEGER_FIELDS) config[key] = integer(config[key], `worker_config.${key}`);
  for (const key of ['worker_disk', 'worker_memory'] as const) {
    const v = config[key];
    if (typeof v === 'number') config[key] = integer(v, `worker_config.${key}`);
    else if (typeof v !== 'string') throw new CoordinatorConfigError(`worker_config.${key} must be a size such as "4GB" or a number of bytes`, 'e.g. --wms-worker-config \'{"worker_memory": "4GB"}\'');
  }
  if (typeof config.condor_requirements !== 'string') throw new CoordinatorConfigError('worker_config.condor_requirements must be a string (a ClassAd expression)', 'e.g. "HAS_CVMFS_icecube_opensciencegrid_org"');
  if (typeof config.do_transfer_worker_stdouterr !== 'boolean') throw new CoordinatorConfigError('worker_config.do_transfer_worker_stdouterr must be true or false', 'e.g. true');
  return config as unknown as WorkflowRequestTask['worker_config'];
}

function integer(value: JsonValue | undefined, what: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value)) throw new CoordinatorConfigError(`${what} must be a whole number, got ${JSON.stringify(value)}`, 'the WMS schema takes integers there');
  return value;
}

/** Seconds as the WMS's environment values take them: an integer, or its text when fractional. */
function seconds(value: number): number | string {
  return Number.isInteger(value) ? value : String(value);
}

/** Task/init env as the WMS's schema takes it: string values only. */
function stringEnv(env: Record<string, string> | undefined, what: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(env ?? {})) {
    if (typeof value !== 'string') throw new CoordinatorConfigError(`${what}.${key} must be a string for the WMS`, 'quote numbers, e.g. {"THREADS": "4"}');
    out[key] = value;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// Provisioning and the pilot cluster
// ---------------------------------------------------------------------------------------------------------

/** The connection options for one MQS queue: its broker, and a token that covers it alone. */
export function endpointOf(profile: MqProfile): ConnectOptions {
  if (!isBrokerType(profile.broker_type)) {
    throw new WmsError(`the WMS names an unknown broker type '${profile.broker_type}' for queue ${profile.mqid}`, 'supported: rabbitmq, nats, pulsar', undefined);
  }
  // A per-queue token cannot install broker policies: never call the management API with it.
  return { type: profile.broker_type, address: profile.broker_address, authToken: profile.auth_token, managementUrl: false };
}

/** A workflow the WMS runs, and the queues it made for it. */
export interface EwmsProvisioned {
  cluster: EwmsPilotCluster;
  endpoints: WorkflowEndpoints;
}

/**
 * Ask the WMS for the planned workflow and wait until its queues are activated. On any failure after the
 * workflow was made, it is aborted before the error is thrown.
 */
export async function provisionEwmsWorkflow(plan: PlannedWorkflow, ewms: EwmsWmsOptions, logger?: AdapterLogger): Promise<EwmsProvisioned> {
  const client = new WmsClient(ewms, logger);
  const requestId = randomUUID();
  const created = await client.createWorkflow(workflowRequestBody(plan, ewms, requestId), requestId);
  const cluster = new EwmsPilotCluster(client, created.workflowId, logger);
  try {
    logger?.info({ workflowId: created.workflowId }, 'EWMS workflow requested; waiting for its queues');
    const profiles = await client.activatedQueues(created.workflowId);
    const directions = publicDirections(plan);
    const single = plan.tasks.length === 1;
    // A single task's queues are also known by the task directive's mqids; a graph's only by alias.
    const find = (alias: string, side: 'inputQueues' | 'outputQueues') =>
      publicQueue(profiles, alias, single ? created.tasks[0]?.[side] : undefined, created.workflowId);
    const publicQueues: Record<string, QueueEndpoint> = {};
    for (const alias of directions.inputs) publicQueues[alias] = endpointFor(find(alias, 'inputQueues'));
    for (const alias of directions.outputs) publicQueues[alias] = endpointFor(find(alias, 'outputQueues'));
    const incoming = publicQueues[directions.inputs[0] ?? QUEUE_ALIASES.incoming];
    const outgoing = publicQueues[directions.outputs[0] ?? QUEUE_ALIASES.outgoing];
    if (!incoming || !outgoing) throw new WmsError(`the WMS did not list the public queues of workflow ${created.workflowId}`, 'ask the WMS operators: the input and output queues must be public', undefined);
    logger?.info({ workflowId: created.workflowId, incoming: incoming.name, outgoing: outgoing.name }, 'EWMS queues activated');
    return { cluster, endpoints: { incoming, outgoing, publicQueues } };
  } catch (err) {
    await cluster.remove({ reason: 'aborted' }).catch((e: unknown) => logger?.error({ err: describeError(e) }, `could not abort EWMS workflow ${created.workflowId}`));
    throw err;
  }
}

function endpointFor(profile: MqProfile): QueueEndpoint {
  return { name: profile.mqid, broker: endpointOf(profile) };
}

/** The activated public queue with `alias`, checked against the task directive's mqids when known. */
function publicQueue(profiles: MqProfile[], alias: string, taskQueues: string[] | undefined, workflowId: string): MqProfile {
  const profile = profiles.find((p) => p.alias === alias) ?? (taskQueues?.length === 1 ? profiles.find((p) => p.mqid === taskQueues[0]) : undefined);
  if (!profile || (taskQueues && taskQueues.length > 0 && !taskQueues.includes(profile.mqid))) {
    throw new WmsError(`the WMS did not list queue '${alias}' of workflow ${workflowId} among its public queues`, 'ask the WMS operators: the input and output queues must be public', undefined);
  }
  return profile;
}

/** A workflow running on an EWMS WMS. */
export class EwmsPilotCluster implements PilotCluster {
  readonly backend = 'ewms';
  private deactivated: Promise<void> | undefined;

  constructor(
    private readonly client: WmsClient,
    /** The WMS's workflow id. */
    readonly id: string,
    private readonly logger?: AdapterLogger,
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

  /** Deactivate the workflow (`finished` by default, `aborted` on failure): the WMS stops its workers and retires its queues. Once. */
  remove(options: RemoveOptions = {}): Promise<void> {
    const reason = options.reason ?? 'finished';
    this.deactivated ??= this.client.deactivate(this.id, reason).then(
      () => this.logger?.info({ workflowId: this.id, reason }, 'EWMS workflow deactivated'),
      (err: unknown) => {
        this.deactivated = undefined; // a later call may try again
        throw err;
      },
    );
    return this.deactivated;
  }
}

/** A workflow requested earlier (by id), for `status` and `rm`. */
export function attachEwmsWorkflow(workflowId: string, ewms: EwmsWmsOptions, logger?: AdapterLogger): EwmsPilotCluster {
  return new EwmsPilotCluster(new WmsClient(ewms, logger), workflowId, logger);
}
