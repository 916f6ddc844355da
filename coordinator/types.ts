/**
 * The coordinator's public types: what a workflow is made of, what `collect` yields, and how pilots are
 * requested and watched, whatever the backend (`local`, `condor`, `ewms`).
 */
import type { JsonValue, WireFormat } from '../common/wire.js';
import type { ProvenanceStep } from '../common/provenance.js';
import type { AdapterLogger, ConnectOptions } from '../mq-adapters/types.js';
import type { WorkflowTask } from './graph.js';
import type { LocalPilotBudget } from './backends/local-budget.js';

export type { ProvenanceStep } from '../common/provenance.js';
export type { WorkflowTask, WorkflowDescription } from './graph.js';

export type { JsonValue, WireFormat } from '../common/wire.js';
export type { AdapterLogger, ConnectOptions } from '../mq-adapters/types.js';

/** The three queues of one workflow. */
export interface WorkflowQueues {
  /** Events to process; pilots consume it. */
  incoming: string;
  /** Results; pilots publish to it, `collect` drains it. */
  outgoing: string;
  /**
   * Events that failed `maxDeliveries` times, with the reason (the incoming queue's dead-letter queue). Where
   * the backend provisions no such queue (`ewms`), the outgoing queue's name: dead letters travel there,
   * marked by their reason header (see `deadLetterRoute`).
   */
  deadLetter: string;
}

/** One queue and the broker connection (with its own credentials) that reaches it. */
export interface QueueEndpoint {
  name: string;
  broker: ConnectOptions;
}

/**
 * Where dead letters go: `queue` — a dead-letter queue of their own (`<incoming>.dlq`), declared by the
 * coordinator and the pilots; `outgoing` — the outgoing queue, each marked with its reason headers, for
 * brokers where a client may touch only the queues it was given (EWMS: one token per queue).
 */
export type DeadLetterRoute = 'queue' | 'outgoing';

/** A workflow's queues with their endpoints, as its backend provisioned them. */
export interface WorkflowEndpoints {
  incoming: QueueEndpoint;
  outgoing: QueueEndpoint;
  /** The dead-letter queue; absent when dead letters travel on the outgoing queue. */
  deadLetter?: QueueEndpoint;
  /** A graph's public queues by alias, where the backend gives each its own endpoint (ewms). */
  publicQueues?: Record<string, QueueEndpoint>;
}

/** Options for `Workflow.create`. */
export interface WorkflowOptions {
  /**
   * The broker the coordinator talks to (and, unless `PilotRequest.pilotBroker` says otherwise, the pilots).
   * Not needed (and not used) when `pilots.backend` is `ewms`: the WMS provisions the queues on its broker.
   */
  broker?: ConnectOptions;
  /** Names the queues (`ewms-<id>-in`, `ewms-<id>-out`); a random id when absent. Reuse it to resume. */
  id?: string;
  /** Queue names, overriding the ones derived from the id. */
  queues?: Partial<WorkflowQueues>;
  /**
   * The pilots this workflow will run, when their backend makes the queues: with `ewms` the WMS creates the
   * workflow and its queues (one token per queue) and starts the pilots itself; `startPilots(pilots)` then
   * returns the handle watching them. `local` and `condor` use `broker` and the queues declared here.
   */
  pilots?: PilotRequest | PilotDefaults;
  /**
   * A workflow graph, in the WMS request's `tasks[]` shape (see `graph.ts`); `pilots` then holds the settings
   * every task's pilots share (backend, broker, condor, …), each task adding its own command and workers.
   * Absent: one task between the incoming and the outgoing queue, described by `pilots` (`PilotRequest`).
   */
  tasks?: WorkflowTask[];
  /** The graph's public queue aliases: those you publish to, and those outcomes are collected from. */
  publicQueues?: string[];
  /** Accept a graph whose tasks form a cycle (refused by default: events could circle forever). */
  allowCycles?: boolean;
  /**
   * Give every task's input queue an urgent twin that pilots drain first, so `publish(…, { priority: 'urgent' })`
   * overtakes a backlog (RabbitMQ quorum queues have no message priorities). Costs one more queue per task.
   */
  urgentQueues?: boolean;
  /** The workflow's priority: the WMS request's `priority`, and HTCondor's job `priority` of its pilot clusters. */
  priority?: number;
  /** Attempts per event before it is dead-lettered (default 3). Passed to the pilots too. */
  maxDeliveries?: number;
  /** Body format on the wire (default `mqclient`, interoperable with the Python MQClient). */
  wireFormat?: WireFormat;
  /** Structured logger (pino's shape); silent when absent. */
  logger?: AdapterLogger;
}

/**
 * An event to publish: a JSON value, or bytes. Bytes need the `raw` wire format (the `mqclient` envelope
 * carries JSON only); with `raw` a string is sent as its UTF-8 bytes and any other JSON value as its JSON text.
 */
export type EventData = JsonValue | Uint8Array;

/** One event's outcome: its result, or its dead letter. Each published event settles exactly once. */
export type WorkflowOutcome =
  | {
      kind: 'result';
      /** The id `publish` returned for the input this answers. */
      inputEventId: string;
      /** The result: its JSON value (`mqclient`), or its text decoded as UTF-8 (`raw`; see `bytes`). */
      data: JsonValue;
      /** `raw` wire format only: the result's bytes exactly as the task wrote its outfile. */
      bytes?: Buffer;
      headers: Record<string, string>;
      /** The task that published this result (its `task_name`), when it says. */
      task?: string;
      /** The steps that made it, oldest first (empty for results of pilots that do not record them). */
      provenance: ProvenanceStep[];
      /** The result's own id, stable across redeliveries (what deduplication and `follow` resumption key on). */
      outcomeId: string;
    }
  | {
      kind: 'dead-letter';
      inputEventId: string;
      /** One line, e.g. `task exited with code 3`. */
      reason: string;
      /** Context the pilot attached (stderr tail, host, attempt, …), keyed without the header prefix. */
      details: Record<string, string>;
      /** The original event. */
      data: JsonValue;
      /** `raw` wire format only: the original event's bytes. */
      bytes?: Buffer;
      /** The task whose attempts ran out (its `task_name`), when the pilot said. */
      task?: string;
      /** The steps the event went through before the one that failed, oldest first. */
      provenance: ProvenanceStep[];
      /** The dead letter's own id (the failed event's id). */
      outcomeId: string;
    };

/** Options for `Workflow.collect`. */
export interface CollectOptions {
  /**
   * The ids `publish` returned (checked one by one), or just how many published events to wait for. An event
   * is done when all its outcomes are in: with a graph that fans out, several results (see `CollectStats.settled`).
   * Not with `follow`.
   */
  expected?: Iterable<string> | number;
  /**
   * Streaming: yield outcomes as they arrive, with no expected set and no end, until `signal` aborts. Each is
   * acked only once you ask for the next, so a collector stopped at any point loses nothing; duplicates are
   * dropped within a bounded window (`dedupWindow`), seeded with `alreadySeen` on a restart.
   */
  follow?: boolean;
  /** Outcome ids remembered for deduplication in `follow` mode (default 100,000). */
  dedupWindow?: number;
  /** Outcome ids (`outcome.outcomeId`) taken before a restart: never yielded again, acked when they come back. */
  alreadySeen?: Iterable<string>;
  /** Fail with `CollectTimeoutError` after this long with nothing received (default: wait forever). */
  idleTimeoutMs?: number;
  /** Stop collecting (unacked outcomes go back to their queue). */
  signal?: AbortSignal;
  /** Most results held unacknowledged at once (default 500). */
  prefetch?: number;
  /**
   * Yield dead letters but leave them in the dead-letter queue (for `deadLetters().list()` / `requeue()`)
   * instead of acking them. At most 10,000 are kept per collection; later ones are acked once taken (with a warning).
   */
  keepDeadLetters?: boolean;
  /**
   * Outcomes of these events belong to earlier runs (e.g. the dead letters already in the queue when a run
   * counting `expected` starts): never yielded nor counted, left in their queue, untouched.
   */
  ignoreIds?: Iterable<string>;
}

/** The outcomes of one `collect` call, with its own counters (live while it runs). */
export interface Collection extends AsyncIterable<WorkflowOutcome> {
  readonly stats: Readonly<CollectStats>;
}

/** Counters of one `collect` run, readable while it runs. */
export interface CollectStats {
  /** Published events whose outcomes are all in (one result or dead letter each, unless a graph fans out). */
  settled: number;
  results: number;
  deadLetters: number;
  /** Events a task filtered out (a filter marker reached the end of the graph instead of a result). */
  filtered: number;
  /** Second copies of an outcome already yielded (at-least-once delivery): acked and dropped. */
  duplicates: number;
  /** Outcomes for ids not in `expected` (another run's leftovers): left in their queue, untouched. */
  unexpected: number;
}

/** A task or init container: what to run and how. */
export interface TaskSpec {
  /** The command line; `{{INFILE}}`, `{{OUTFILE}}`, `{{DATA_HUB}}` are substituted by the pilot. */
  args: string;
  /** Container image; absent: the args run on the pilot's host (`EWMS_PILOT_CONTAINER_RUNTIME=none`). */
  image?: string;
  env?: Record<string, string>;
  timeoutSeconds?: number;
}

/** HTCondor settings for the `condor` backend. */
export interface CondorOptions {
  /** `vanilla` (default) runs the pilot command on the execute node; `container` runs it in `pilotImage`. */
  universe?: 'vanilla' | 'container';
  /** A template file of your own instead of `condor-templates/<universe>.sub`. */
  template?: string;
  /** Image of the pilot itself (container universe, or `+SingularityImage` in vanilla). */
  pilotImage?: string;
  /** Command that starts the pilot on the execute node (default `ewms-pilot`). */
  pilotCommand?: string;
  cpus?: number;
  /** `request_memory`, e.g. `2 GB` or `2048` (MB). Default `1 GB`. */
  memory?: string;
  /** `request_disk`, e.g. `4 GB` or `4194304` (KB). Default `1 GB`. */
  disk?: string;
  /** A ClassAd expression for `requirements`, ANDed with the defaults (see `defaultRequirements`). */
  requirements?: string;
  /**
   * Add the requirements the pilot needs (Apptainer present, user namespaces for Apptainer tasks, the CVMFS
   * repositories of its images). Default true; false leaves `requirements` as you give it.
   */
  defaultRequirements?: boolean;
  /**
   * The job's wall-time limit in seconds, as the EWMS TMS sets it: `+OriginalTime` in the job ad, and the
   * pilots' `EWMS_PILOT_MAX_WORKER_RUNTIME` (they stop taking events in time to finish within it).
   */
  maxRuntimeSeconds?: number;
  /** `max_retries` (default 3). */
  maxRetries?: number;
  /** Where the submit file, env file and job logs are written (default: a fresh temp directory). */
  workDir?: string;
  /** More submit commands, one `key = value` each (`+Attr` / `MY.Attr` allowed). */
  extra?: Record<string, string>;
  /** Directory holding condor_submit/condor_q/condor_rm (default: PATH). */
  binDir?: string;
  /** `-name <schedd>` / `-pool <collector>` for every tool call. */
  schedd?: string;
  pool?: string;
}

/** Settings for the `ewms` backend (an EWMS Workflow Management Service). */
export interface EwmsWmsOptions {
  /** The WMS's base URL, e.g. `https://ewms.icecube.aq`. */
  url: string;
  /**
   * A static bearer token. Secret: never logged. Default: `EWMS_WMS_TOKEN`. OAuth2 client credentials
   * (`clientCredentials`, or `EWMS_WMS_TOKEN_URL` + `EWMS_WMS_CLIENT_ID` + `EWMS_WMS_CLIENT_SECRET`) win over it.
   */
  token?: string;
  /** OAuth2 client credentials; the issuer's token endpoint is found by OpenID discovery. */
  clientCredentials?: { issuerUrl: string; clientId: string; clientSecret: string };
  /**
   * Cluster locations by the names the WMS knows (e.g. `sub-2`); the WMS looks up their collector and schedd
   * itself. One taskforce of `count` workers per location.
   */
  locations: string[];
  /** `pilot_config.image_source`: where the TMS takes the pilot image from (default `auto`, as SkyDriver sends). */
  imageSource?: 'auto' | 'cvmfs';
  /** `pilot_config.tag`: the pilot image tag, `latest` (default) or an exact `X.Y.Z` release. */
  pilotTag?: string;
  /** `pilot_config.input_files`: files on the access point to hand to every worker. */
  inputFiles?: string[];
  /** The workflow's `priority` (the WMS's default when absent). */
  priority?: number;
  /** `worker_config` fields (`max_worker_runtime`, `n_cores`, `priority`, `worker_disk`, `worker_memory`, …). */
  workerConfig?: Record<string, JsonValue>;
  /** Poll period for queue activation and taskforce status (default 15 s). */
  pollSeconds?: number;
  /** Attempts for an idempotent request that fails with 5xx or a network error (default 5). */
  maxAttempts?: number;
  /**
   * After `POST /v1/workflows` went unanswered (timeout, 5xx), look for the workflow it may have made for this
   * long before giving up (default 60 s). The request is never sent twice.
   */
  lookupSeconds?: number;
  /** Give up waiting for the WMS to activate the workflow's queues after this long (default 30 min). */
  activationTimeoutSeconds?: number;
}

/** What pilots to start, and with which task. */
export interface PilotRequest {
  backend: 'local' | 'condor' | 'ewms';
  /** How many pilots (condor jobs, local processes, EWMS workers). */
  count: number;
  task: TaskSpec;
  /** Run once per pilot before any event. */
  init?: TaskSpec;
  /** Extra `EWMS_PILOT_*` settings passed through to every pilot (e.g. `EWMS_PILOT_MAX_CONCURRENT_TASKS`). */
  pilotEnv?: Record<string, string>;
  /** Where pilots reach the broker, when not where the coordinator does (e.g. a public address). */
  pilotBroker?: ConnectOptions;
  condor?: CondorOptions;
  ewms?: EwmsWmsOptions;
  local?: LocalOptions;
  /** Keep the pilot count proportional to queue depth (local and condor). */
  autoscale?: AutoscaleOptions;
}

/**
 * Pilot settings every task of a workflow graph shares (backend, broker, condor, …); each task adds its own
 * command, init, workers (`n_workers`, else `count`, else 1), environment and autoscaling.
 */
export type PilotDefaults = Omit<PilotRequest, 'task' | 'init' | 'count' | 'autoscale'> & { count?: number };

/** Is this the one task's pilot request (rather than a graph's shared defaults)? */
export function isPilotRequest(pilots: PilotRequest | PilotDefaults): pilots is PilotRequest {
  return 'task' in pilots && pilots.task !== undefined && typeof pilots.count === 'number';
}

/** Settings for the `local` backend. */
export interface LocalOptions {
  /**
   * Each pilot gets `<workDir>/pilot-<n>/` as its scratch directory. Default: a fresh temp directory, removed by
   * `remove({ reason: 'finished' })` (kept after a failure); a directory given here is always kept.
   */
  workDir?: string;
  /** The pilot command line (default: `node dist/pilot/cli.js` of this package). */
  pilotCommand?: string[];
  /**
   * SIGTERM, then SIGKILL after this long. Default: what the pilot's own shutdown may take, twice its task
   * kill grace (`EWMS_PILOT_TASK_KILL_GRACE`, default 10 s) plus 5 s.
   */
  killGraceMs?: number;
  /**
   * A pilot budget shared with other workflows (or tasks) on this machine: pilots are granted by the
   * workflow's `priority`, higher first (see `LocalPilotBudget`).
   */
  budget?: LocalPilotBudget;
}

/** Autoscaling: `clamp(ceil(depth / eventsPerPilot), min, max)` pilots, re-evaluated every `periodSeconds`. */
export interface AutoscaleOptions {
  min: number;
  max: number;
  /** Queue depth one pilot is expected to handle (default 100). */
  eventsPerPilot?: number;
  periodSeconds?: number;
}

/** A snapshot of a pilot cluster. */
export interface ClusterStatus {
  backend: string;
  id: string;
  /** Pilots known to the backend (finished ones included while the backend still reports them). */
  total: number;
  /** Pilots per state: `idle`, `running`, `held`, `completed`, `removed`, `failed`, … */
  byState: Record<string, number>;
  /** Pilots per self-reported status (`HTChirpEWMSPilotStatus` on condor; exit summary locally). */
  byPilotStatus: Record<string, number>;
}

/** Pilots started by one backend for one workflow. */
export interface PilotCluster {
  readonly backend: string;
  /** Condor cluster id, EWMS workflow id, or the local cluster's id. */
  readonly id: string;
  status(): Promise<ClusterStatus>;
  /** Start or stop pilots until `count` are wanted. */
  scale(count: number): Promise<void>;
  /**
   * Stop every pilot (unfinished events return to the queue). `reason` tells backends that report it
   * (ewms: `actions/finished` vs `actions/abort`, as SkyDriver does); default `finished`.
   */
  remove(options?: RemoveOptions): Promise<void>;
}

/** Options for `PilotCluster.remove`. */
export interface RemoveOptions {
  /** `finished`: the work is done; `aborted`: the run failed or was stopped. */
  reason?: 'finished' | 'aborted';
}
