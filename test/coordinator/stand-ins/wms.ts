/**
 * A strict stand-in for an EWMS deployment, for tests: the WMS's REST API, the MQS routes the WMS serves under
 * `/v1/mqs`, a Keycloak-like OAuth2 issuer, and a TMS that starts pilots. Each part enforces what the upstream
 * enforces (see `wms-schema.ts` for where each rule was read):
 *
 * - WMS: bearer tokens only from the issuer, refused (401) once expired; `POST /v1/workflows` validated against
 *   the WMS's own request schema (ajv) and its handler's checks (forbidden pilot variables, known cluster
 *   locations); `FindObject` bodies validated on the query routes; `actions/abort|finished` deactivate once
 *   (404 afterwards, as upstream).
 * - MQS: one queue per alias, each with a broker user of its own on a private RabbitMQ node whose permissions
 *   are exactly that queue — configure and read on it, write on it and the default exchange (the rights the
 *   MQS's per-queue token grants) — so a client touching any other queue is refused by the broker.
 * - TMS: once the queues are activated, it writes `ewms_htcondor_envfile.sh` per taskforce exactly as the
 *   TMS's starter writes it (the taskforce's `pilot_config.environment`, the task directive's task/init, the
 *   queues' names/tokens/brokers, the HTChirp settings; `shlex.quote`d `export` lines) and starts
 *   `n_workers` pilots per taskforce, each sourcing that file in a job directory of its own.
 *
 * Failure injection: `failNext` answers the next requests 503 before acting; `gatewayTimeoutAfterCreate`
 * makes the next `POST /v1/workflows` create the workflow and then answer 504, as a gateway does when the
 * WMS is slow.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdirSync, writeFileSync, chmodSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { Ajv, type ValidateFunction } from 'ajv';
import type { PrivateBroker } from '../../helpers/brokers.js';
import { FIND_OBJECT_SCHEMA, WMS_HANDLER_CHECKS, WORKFLOW_REQUEST_SCHEMA } from './wms-schema.js';

/** How the stand-in TMS starts pilots. */
export interface TmsOptions {
  /** Each taskforce gets `<workDir>/ewms-taskforce-<uuid>/` (env file) with a job directory per pilot. */
  workDir: string;
  /** The pilot command (default: `node dist/pilot/cli.js` of this checkout). */
  pilotCommand?: string[];
  /** The job's own environment before the env file is sourced (PATH, HOME, …). */
  jobEnv: Record<string, string>;
  /** Site additions (the TMS's `TMS_ENV_VARS_AND_VALS_ADD_TO_PILOT`), only `EWMS_PILOT_*` kept, never overriding. */
  addToPilot?: Record<string, string>;
}

export interface WmsStandInOptions {
  /** The private RabbitMQ node queues are made on (its management API makes the per-queue users). */
  broker?: PrivateBroker;
  /** Cluster locations the WMS knows (upstream `KNOWN_CLUSTERS`: `sub-2`). */
  knownLocations?: string[];
  /** Lifetime of issued access tokens (default 2 s: they expire during a test). */
  tokenLifetimeSeconds?: number;
  clientId?: string;
  clientSecret?: string;
  /** `mq-profiles/public` answers not-yet-activated this many times first (default 1). */
  inactivePolls?: number;
  /** Start pilots as the TMS does; absent: no pilots. */
  tms?: TmsOptions;
}

export interface RecordedRequest {
  method: string;
  path: string;
  body: unknown;
  status: number;
}

interface Taskforce {
  taskforce_uuid: string;
  task_id: string;
  workflow_id: string;
  timestamp: number;
  priority: number;
  collector: string;
  schedd: string;
  n_workers: number | null;
  pilot_config: { tag: string; image_source: string; environment: Record<string, unknown>; input_files: string[] };
  worker_config: Record<string, unknown>;
  cluster_id: number | null;
  phase: string;
  compound_statuses: Record<string, Record<string, number>>;
  top_task_errors: Record<string, number>;
}

interface Profile {
  mqid: string;
  alias: string;
  workflow_id: string;
  is_public: boolean;
  is_activated: boolean;
  broker_type: string;
  broker_address: string;
  auth_token: string;
}

/** A started pilot. */
export interface StandInPilot {
  taskforce: string;
  process: ChildProcess;
  jobDir: string;
  exited: Promise<number | null>;
  output(): string;
}

export interface WmsStandIn {
  url: string;
  /** The issuer URL to set as `EWMS_WMS_TOKEN_URL` (a Keycloak realm URL). */
  issuerUrl: string;
  clientId: string;
  clientSecret: string;
  requests: RecordedRequest[];
  /** Answer this many next requests with 503, before acting on them. */
  failNext: number;
  /** Create the next N workflows, then answer their POST with 504. */
  gatewayTimeoutAfterCreate: number;
  tokensIssued(): number;
  /** Requests refused because their token had expired. */
  expiredTokenRefusals(): number;
  /** Forget every issued token (as a restarted issuer would): the next request gets 401. */
  revokeTokens(): void;
  workflows: Map<string, Record<string, unknown>>;
  taskforces: Taskforce[];
  profiles: Profile[];
  pilots: StandInPilot[];
  /** The env files the TMS wrote. */
  envFiles: string[];
  close(): Promise<void>;
}

const REALM = '/auth/realms/ewms';
const PILOT_CLI = new URL('../../../dist/pilot/cli.js', import.meta.url).pathname;

export async function startWmsStandIn(options: WmsStandInOptions = {}): Promise<WmsStandIn> {
  const ajv = new Ajv({ allErrors: true, strict: false });
  const validateWorkflow: ValidateFunction = ajv.compile(WORKFLOW_REQUEST_SCHEMA);
  const validateFind: ValidateFunction = ajv.compile(FIND_OBJECT_SCHEMA);
  const knownLocations = options.knownLocations ?? ['sub-2'];
  const lifetime = options.tokenLifetimeSeconds ?? 2;
  const clientId = options.clientId ?? 'ewms-test-client';
  const clientSecret = options.clientSecret ?? `client-secret-${randomBytes(8).toString('hex')}`;
  const tokens = new Map<string, number>();
  let issued = 0;
  let expiredRefusals = 0;
  const profilePolls = new Map<string, number>();
  let clusterIds = 100;

  const wms: WmsStandIn = {
    url: '',
    issuerUrl: '',
    clientId,
    clientSecret,
    requests: [],
    failNext: 0,
    gatewayTimeoutAfterCreate: 0,
    tokensIssued: () => issued,
    expiredTokenRefusals: () => expiredRefusals,
    revokeTokens: () => tokens.clear(),
    workflows: new Map(),
    taskforces: [],
    profiles: [],
    pilots: [],
    envFiles: [],
    close: async () => undefined,
  };

  const server: Server = createServer((req, res) => {
    void handle(req, res).catch((err: unknown) => send(res, 500, { code: 500, error: String(err) }));
  });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const text = await readBody(req);
    const path = (req.url ?? '').split('?')[0] ?? '';
    const method = req.method ?? '';
    let body: unknown;
    const record = (status: number) => wms.requests.push({ method, path, body, status });
    const reply = (status: number, payload: unknown) => {
      record(status);
      send(res, status, payload);
    };

    // --- the issuer -------------------------------------------------------------------------------------
    if (method === 'GET' && path === `${REALM}/.well-known/openid-configuration`) {
      return reply(200, { issuer: wms.issuerUrl, token_endpoint: `${wms.issuerUrl}/protocol/openid-connect/token`, grant_types_supported: ['client_credentials'] });
    }
    if (method === 'POST' && path === `${REALM}/protocol/openid-connect/token`) {
      const form = new URLSearchParams(text);
      if (form.get('grant_type') !== 'client_credentials') return reply(400, { error: 'unsupported_grant_type' });
      if (form.get('client_id') !== clientId || form.get('client_secret') !== clientSecret) return reply(401, { error: 'unauthorized_client', error_description: 'Invalid client or Invalid client credentials' });
      const token = `at-${randomBytes(16).toString('hex')}`;
      tokens.set(token, Date.now() + lifetime * 1000);
      issued += 1;
      return reply(200, { access_token: token, expires_in: lifetime, token_type: 'Bearer' });
    }

    // --- everything else needs a valid bearer token ------------------------------------------------------
    const bearer = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1];
    const expiresAt = bearer ? tokens.get(bearer) : undefined;
    if (expiresAt === undefined) return reply(401, { code: 401, error: 'invalid or missing token' });
    if (Date.now() >= expiresAt) {
      expiredRefusals += 1;
      return reply(401, { code: 401, error: 'token is expired' });
    }
    if (wms.failNext > 0) {
      wms.failNext -= 1;
      return reply(503, { code: 503, error: 'service unavailable' });
    }
    if (text) {
      try {
        body = JSON.parse(text);
      } catch {
        return reply(400, { code: 400, error: 'body is not JSON' });
      }
    }

    if (method === 'POST' && path === '/v1/workflows') {
      if (!validateWorkflow(body)) return reply(400, { code: 400, error: `request body does not match the schema: ${ajv.errorsText(validateWorkflow.errors)}` });
      const request = body as { tasks: Array<Record<string, unknown>>; public_queue_aliases: string[]; priority?: number };
      const refused = WMS_HANDLER_CHECKS(request, knownLocations);
      if (refused) return reply(400, { code: 400, error: refused });
      const created = await createWorkflow(request);
      if (wms.gatewayTimeoutAfterCreate > 0) {
        wms.gatewayTimeoutAfterCreate -= 1;
        record(504);
        res.writeHead(504, { 'content-type': 'text/html' });
        res.end('<html><body><h1>504 Gateway Time-out</h1></body></html>');
        return;
      }
      return reply(200, created);
    }
    const query = /^\/v1\/query\/(workflows|task-directives|taskforces)$/.exec(path);
    if (method === 'POST' && query) {
      if (!validateFind(body)) return reply(400, { code: 400, error: `request body does not match FindObject: ${ajv.errorsText(validateFind.errors)}` });
      const find = body as { query: Record<string, unknown>; projection?: string[] };
      const kind = query[1]!;
      const source: Array<Record<string, unknown>> =
        kind === 'workflows' ? [...wms.workflows.values()] : kind === 'taskforces' ? (wms.taskforces as unknown as Array<Record<string, unknown>>) : directives;
      const found = source.filter((o) => matches(o, find.query)).map((o) => project(o, find.projection));
      const key = kind === 'task-directives' ? 'task_directives' : kind;
      return reply(200, { [key]: found, next_after: null });
    }
    const profilesRoute = /^\/v1\/mqs\/workflows\/([\w-]+)\/mq-profiles\/public$/.exec(path);
    if (method === 'GET' && profilesRoute) {
      const id = profilesRoute[1]!;
      const polls = (profilePolls.get(id) ?? 0) + 1;
      profilePolls.set(id, polls);
      const mine = wms.profiles.filter((p) => p.workflow_id === id && p.is_public);
      if (polls > (options.inactivePolls ?? 1) && mine.some((p) => !p.is_activated)) activate(id);
      return reply(200, { mqprofiles: mine.map((p) => ({ ...p })) });
    }
    const workflowRoute = /^\/v1\/workflows\/([\w-]+)(\/actions\/(abort|finished))?$/.exec(path);
    if (workflowRoute) {
      const id = workflowRoute[1]!;
      const workflow = wms.workflows.get(id);
      if (method === 'GET' && !workflowRoute[2]) return workflow ? reply(200, workflow) : reply(404, { code: 404, error: `no workflow found with id: ${id}` });
      if (method === 'POST' && workflowRoute[3]) {
        if (!workflow || workflow.deactivated !== null) return reply(404, { code: 404, error: `no non-deactivated workflow found with workflow_id='${id}'` });
        workflow.deactivated = workflowRoute[3] === 'abort' ? 'ABORTED' : 'FINISHED';
        workflow.deactivated_ts = Date.now() / 1000;
        const stopping = wms.taskforces.filter((tf) => tf.workflow_id === id && !['condor-complete', 'condor-rm', 'pending-stopper'].includes(tf.phase));
        for (const tf of stopping) stopTaskforce(tf);
        return reply(200, { workflow_id: id, n_taskforces: stopping.length });
      }
    }
    return reply(404, { code: 404, error: `no route ${method} ${path}` });
  }

  const directives: Array<Record<string, unknown>> = [];

  async function createWorkflow(request: { tasks: Array<Record<string, unknown>>; public_queue_aliases: string[]; priority?: number }) {
    const workflowId = `WF-${randomUUID().replace(/-/g, '').slice(0, 16)}`;
    const workflow = { workflow_id: workflowId, timestamp: Date.now() / 1000, priority: request.priority ?? 50, deactivated: null as string | null, deactivated_ts: null as number | null };
    // The MQS reserves one queue per alias of every task.
    const aliases = [...new Set(request.tasks.flatMap((t) => [...(t.input_queue_aliases as string[]), ...(t.output_queue_aliases as string[])]))];
    const profiles: Profile[] = [];
    for (const alias of aliases) {
      const mqid = `${alias.replace(/[^A-Za-z0-9]/g, '')}${randomBytes(6).toString('hex')}`;
      const token = `mq-${randomBytes(18).toString('base64url')}`;
      if (options.broker) await makeQueueUser(options.broker, mqid, token);
      profiles.push({
        mqid,
        alias,
        workflow_id: workflowId,
        is_public: request.public_queue_aliases.includes(alias),
        is_activated: false,
        broker_type: 'rabbitmq',
        // The per-queue user rides in the address (MQClient's `user@host:port` form); the token is its password.
        broker_address: options.broker ? `${mqid}@127.0.0.1:${options.broker.port}` : 'broker.invalid:5672',
        auth_token: token,
      });
    }
    const createdDirectives: Array<Record<string, unknown>> = [];
    const createdTaskforces: Taskforce[] = [];
    for (const task of request.tasks) {
      const taskId = `TD-${randomUUID().replace(/-/g, '').slice(0, 16)}`;
      const directive = {
        task_id: taskId,
        workflow_id: workflowId,
        timestamp: Date.now() / 1000,
        cluster_locations: task.cluster_locations,
        task_image: task.task_image,
        task_args: task.task_args,
        task_env: task.task_env ?? {},
        init_image: task.init_image ?? '',
        init_args: task.init_args ?? '',
        init_env: task.init_env ?? {},
        input_queues: profiles.filter((p) => (task.input_queue_aliases as string[]).includes(p.alias)).map((p) => p.mqid),
        output_queues: profiles.filter((p) => (task.output_queue_aliases as string[]).includes(p.alias)).map((p) => p.mqid),
      };
      createdDirectives.push(directive);
      const pilotConfig = (task.pilot_config ?? {}) as Taskforce['pilot_config'];
      for (const location of task.cluster_locations as string[]) {
        createdTaskforces.push({
          taskforce_uuid: `TF-${randomUUID().replace(/-/g, '').slice(0, 16)}`,
          task_id: taskId,
          workflow_id: workflowId,
          timestamp: Date.now() / 1000,
          priority: workflow.priority,
          collector: `collector.${location}.invalid`,
          schedd: `schedd.${location}.invalid`,
          n_workers: (task.n_workers as number | null) ?? null,
          pilot_config: { tag: pilotConfig.tag ?? 'latest', image_source: pilotConfig.image_source ?? 'auto', environment: { ...(pilotConfig.environment ?? {}) }, input_files: [...(pilotConfig.input_files ?? [])] },
          worker_config: task.worker_config as Record<string, unknown>,
          cluster_id: null,
          phase: 'pre-mq-activator',
          compound_statuses: {},
          top_task_errors: {},
        });
      }
    }
    // All at once, as the WMS inserts in one transaction.
    wms.workflows.set(workflowId, workflow);
    wms.profiles.push(...profiles);
    directives.push(...createdDirectives);
    wms.taskforces.push(...createdTaskforces);
    return { workflow, task_directives: createdDirectives, taskforces: createdTaskforces };
  }

  /** The MQS activates the workflow's queues; the WMS hands its taskforces to the TMS. */
  function activate(workflowId: string): void {
    for (const p of wms.profiles) if (p.workflow_id === workflowId) p.is_activated = true;
    for (const tf of wms.taskforces.filter((t) => t.workflow_id === workflowId && t.phase === 'pre-mq-activator')) {
      tf.phase = 'pending-starter';
      if (options.tms) startTaskforce(tf, options.tms);
    }
  }

  function startTaskforce(tf: Taskforce, tms: TmsOptions): void {
    const directive = directives.find((d) => d.task_id === tf.task_id)!;
    const env: Record<string, unknown> = { ...tf.pilot_config.environment };
    const envJson = (o: unknown) => (o && Object.keys(o).length > 0 ? JSON.stringify(o) : '');
    // The TMS's get_next_to_start: the task and init from the task directive...
    Object.assign(env, {
      EWMS_PILOT_TASK_IMAGE: directive.task_image,
      EWMS_PILOT_TASK_ARGS: directive.task_args,
      EWMS_PILOT_TASK_ENV_JSON: envJson(directive.task_env),
      EWMS_PILOT_INIT_IMAGE: directive.init_image,
      EWMS_PILOT_INIT_ARGS: directive.init_args,
      EWMS_PILOT_INIT_ENV_JSON: envJson(directive.init_env),
    });
    // ...the queues, ';'-joined when there are several...
    const append = (key: string, value: string) => (env[key] = env[key] ? `${String(env[key])};${value}` : value);
    for (const p of wms.profiles.filter((q) => q.workflow_id === tf.workflow_id)) {
      for (const [side, list] of [['INCOMING', directive.input_queues], ['OUTGOING', directive.output_queues]] as const) {
        if (!(list as string[]).includes(p.mqid)) continue;
        append(`EWMS_PILOT_QUEUE_${side}`, p.mqid);
        append(`EWMS_PILOT_QUEUE_${side}_AUTH_TOKEN`, p.auth_token);
        append(`EWMS_PILOT_QUEUE_${side}_BROKER_TYPE`, p.broker_type);
        append(`EWMS_PILOT_QUEUE_${side}_BROKER_ADDRESS`, p.broker_address);
      }
    }
    // ...then the starter's defaults, which never override.
    for (const [k, v] of Object.entries({ EWMS_PILOT_HTCHIRP: 'True', EWMS_PILOT_HTCHIRP_DEST: 'JOB_EVENT_LOG', ...Object.fromEntries(Object.entries(tms.addToPilot ?? {}).filter(([key]) => key.startsWith('EWMS_PILOT_'))) })) {
      if (!(k in env)) env[k] = v;
    }
    const dir = join(tms.workDir, `ewms-taskforce-${tf.taskforce_uuid}`);
    mkdirSync(dir, { recursive: true });
    const envFile = join(dir, 'ewms_htcondor_envfile.sh');
    writeFileSync(envFile, tmsEnvFile(env));
    chmodSync(envFile, 0o755);
    wms.envFiles.push(envFile);
    tf.cluster_id = clusterIds++;
    tf.phase = 'condor-submit';
    const n = tf.n_workers ?? 1;
    tf.compound_statuses = { RUNNING: { 'processing events': n } };
    const command = tms.pilotCommand ?? [process.execPath, PILOT_CLI];
    for (let proc = 0; proc < n; proc++) {
      const jobDir = join(dir, `cluster-${tf.cluster_id}`, String(proc));
      mkdirSync(jobDir, { recursive: true });
      // The job sources the env file the TMS transferred into its directory, then runs the pilot.
      writeFileSync(join(jobDir, 'ewms_htcondor_envfile.sh'), tmsEnvFile(env));
      const script = `. ./ewms_htcondor_envfile.sh 2>/dev/null && exec ${command.map(shlexQuote).join(' ')}`;
      const child = spawn('bash', ['-c', script], { cwd: jobDir, env: tms.jobEnv, stdio: ['ignore', 'pipe', 'pipe'] });
      let output = '';
      child.stdout.on('data', (b: Buffer) => (output += b.toString()));
      child.stderr.on('data', (b: Buffer) => (output += b.toString()));
      const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
      const pilot: StandInPilot = { taskforce: tf.taskforce_uuid, process: child, jobDir, exited, output: () => output };
      wms.pilots.push(pilot);
      void exited.then(() => taskforceExited(tf));
    }
  }

  function taskforceExited(tf: Taskforce): void {
    const mine = wms.pilots.filter((p) => p.taskforce === tf.taskforce_uuid);
    const running = mine.filter((p) => p.process.exitCode === null && p.process.signalCode === null).length;
    tf.compound_statuses = running > 0 ? { RUNNING: { 'processing events': running }, COMPLETED: { Done: mine.length - running } } : { COMPLETED: { Done: mine.length } };
    if (running === 0 && tf.phase !== 'condor-rm') tf.phase = 'condor-complete';
  }

  function stopTaskforce(tf: Taskforce): void {
    tf.phase = 'pending-stopper';
    for (const p of wms.pilots.filter((q) => q.taskforce === tf.taskforce_uuid)) {
      if (p.process.exitCode === null && p.process.signalCode === null) p.process.kill('SIGTERM');
    }
    tf.phase = 'condor-rm';
  }

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  wms.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  wms.issuerUrl = `${wms.url}${REALM}`;
  wms.close = async () => {
    for (const p of wms.pilots) if (p.process.exitCode === null && p.process.signalCode === null) p.process.kill('SIGKILL');
    await Promise.all(wms.pilots.map((p) => p.exited));
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  };
  return wms;
}

/** A RabbitMQ user whose permissions are exactly one queue (configure, read) plus write on it and the default exchange. */
async function makeQueueUser(broker: PrivateBroker, queue: string, password: string): Promise<void> {
  const base = broker.managementUrl;
  if (!base) throw new Error('the private broker has no management API');
  const auth = `Basic ${Buffer.from('guest:guest').toString('base64')}`;
  const put = async (path: string, body: unknown) => {
    const res = await fetch(`${base}${path}`, { method: 'PUT', headers: { authorization: auth, 'content-type': 'application/json' }, body: JSON.stringify(body) });
    if (!res.ok) throw new Error(`management API ${path}: HTTP ${res.status} ${await res.text()}`);
  };
  const exact = queue.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  await put(`/api/users/${encodeURIComponent(queue)}`, { password, tags: '' });
  await put(`/api/permissions/%2F/${encodeURIComponent(queue)}`, { configure: `^${exact}$`, write: `^(${exact}|amq\\.default)$`, read: `^${exact}$` });
}

/** The env file as the TMS's `write_envfile` writes it. */
export function tmsEnvFile(env: Record<string, unknown>): string {
  const lines = ['#!/bin/bash', '', '# Environment setup for HTCondor worker', '# This file is auto-generated and sets necessary environment variables.', '# Sourced automatically by the EWMS Pilot\'s container entrypoint.', '', 'set -x'];
  for (const key of Object.keys(env).sort()) lines.push(`export ${key}=${shlexQuote(pythonStr(env[key]).replace(/\n/g, ' '))}`);
  lines.push('set +x', '', '# End of environment file', '');
  return lines.join('\n');
}

/** Python's `str()` of a JSON value, as the TMS applies it before quoting. */
function pythonStr(value: unknown): string {
  if (typeof value === 'string') return value;
  if (typeof value === 'boolean') return value ? 'True' : 'False';
  if (value === null || value === undefined) return 'None';
  if (Array.isArray(value)) return `[${value.map((v) => (typeof v === 'string' ? `'${v}'` : pythonStr(v))).join(', ')}]`;
  return String(value);
}

/** Python's `shlex.quote`. */
export function shlexQuote(s: string): string {
  if (s === '') return "''";
  if (/^[\w@%+=:,./-]+$/.test(s)) return s;
  return `'${s.replace(/'/g, `'"'"'`)}'`;
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    let s = '';
    req.on('data', (c: Buffer) => (s += c.toString()));
    req.on('end', () => resolve(s));
    req.on('error', reject);
  });
}

function send(res: ServerResponse, status: number, payload: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(payload));
}

/** The subset of MongoDB filters the coordinator sends: equality on (dotted) paths. */
function matches(object: Record<string, unknown>, query: Record<string, unknown>): boolean {
  return Object.entries(query).every(([path, want]) => {
    let value: unknown = object;
    for (const part of path.split('.')) value = value && typeof value === 'object' ? (value as Record<string, unknown>)[part] : undefined;
    return JSON.stringify(value) === JSON.stringify(want);
  });
}

function project(object: Record<string, unknown>, projection: string[] | undefined): Record<string, unknown> {
  if (!projection || projection.length === 0) return { ...object };
  return Object.fromEntries(projection.filter((k) => k in object).map((k) => [k, object[k]]));
}
