/**
 * The ewms backend against a local stand-in of the EWMS Workflow Management Service (node:http) that
 * checks the bearer token and validates each request body against the WMS's documented schema
 * (POST /v1/workflows: required and allowed fields of the workflow and its tasks).
 */
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, test } from 'vitest';
import { CoordinatorConfigError, runWorkflow, Workflow, WmsError, type WorkflowOutcome } from '../../coordinator/index.js';
import { freshId, startEchoPilot } from './helpers.js';
import { attachEwmsWorkflow, requestEwmsWorkflow, workflowRequestBody, WmsClient } from '../../coordinator/backends/ewms.js';
import type { PilotRequest } from '../../coordinator/types.js';

const TOKEN = 'wms-Bearer-Secret-9';
const TASK_REQUIRED = ['cluster_locations', 'task_image', 'task_args', 'input_queue_aliases', 'output_queue_aliases', 'worker_config'];
const TASK_ALLOWED = new Set([...TASK_REQUIRED, 'task_env', 'init_image', 'init_args', 'init_env', 'n_workers', 'pilot_config']);

/** Schema errors in a POST /v1/workflows body (empty: valid). */
function validateWorkflowBody(body: unknown): string[] {
  const errors: string[] = [];
  if (typeof body !== 'object' || body === null) return ['body is not an object'];
  const b = body as Record<string, unknown>;
  for (const key of Object.keys(b)) if (!['tasks', 'public_queue_aliases'].includes(key)) errors.push(`unexpected field ${key}`);
  if (!Array.isArray(b.public_queue_aliases) || !b.public_queue_aliases.every((a) => typeof a === 'string')) errors.push('public_queue_aliases must be a list of strings');
  if (!Array.isArray(b.tasks) || b.tasks.length < 1) return [...errors, 'tasks must be a non-empty list'];
  for (const [i, t] of (b.tasks as Array<Record<string, unknown>>).entries()) {
    for (const k of TASK_REQUIRED) if (!(k in t)) errors.push(`tasks[${i}].${k} is required`);
    for (const k of Object.keys(t)) if (!TASK_ALLOWED.has(k)) errors.push(`tasks[${i}].${k} is not allowed`);
    for (const k of ['cluster_locations', 'input_queue_aliases', 'output_queue_aliases']) if (!Array.isArray(t[k])) errors.push(`tasks[${i}].${k} must be a list`);
    for (const k of ['task_image', 'task_args']) if (typeof t[k] !== 'string') errors.push(`tasks[${i}].${k} must be a string`);
    for (const k of ['task_env', 'init_env', 'worker_config', 'pilot_config']) if (k in t && (typeof t[k] !== 'object' || Array.isArray(t[k]))) errors.push(`tasks[${i}].${k} must be an object`);
    if ('n_workers' in t && !Number.isInteger(t.n_workers)) errors.push(`tasks[${i}].n_workers must be an integer`);
  }
  return errors;
}

interface Wms {
  url: string;
  requests: Array<{ method: string; path: string; body: unknown }>;
  server: Server;
  /** Answer the next N requests with 503. */
  failNext: number;
}

async function startWms(queues = { in: 'mq-in-1', out: 'mq-out-1', brokerType: 'rabbitmq', address: 'broker.example.org', token: 'queue-token' }): Promise<Wms> {
  const wms: Wms = { url: '', requests: [], server: undefined as unknown as Server, failNext: 0 };
  let profilePolls = 0;
  const read = (req: IncomingMessage) => new Promise<string>((resolve) => {
    let s = '';
    req.on('data', (c: Buffer) => (s += c.toString()));
    req.on('end', () => resolve(s));
  });
  wms.server = createServer(async (req, res) => {
    const text = await read(req);
    const body = text ? (JSON.parse(text) as unknown) : undefined;
    const path = req.url ?? '';
    wms.requests.push({ method: req.method ?? '', path, body });
    const send = (status: number, payload: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(payload));
    };
    if (req.headers.authorization !== `Bearer ${TOKEN}`) return send(401, { code: 401, error: 'invalid token' });
    if (wms.failNext > 0) {
      wms.failNext -= 1;
      return send(503, { code: 503, error: 'busy' });
    }
    if (req.method === 'POST' && path === '/v1/workflows') {
      const errors = validateWorkflowBody(body);
      if (errors.length > 0) return send(400, { code: 400, error: errors.join('; ') });
      return send(200, { workflow: { workflow_id: 'wf-abc' }, task_directives: [{ task_id: 't1', input_queues: [queues.in], output_queues: [queues.out] }], taskforces: [] });
    }
    if (req.method === 'GET' && path === '/v1/mqs/workflows/wf-abc/mq-profiles/public') {
      profilePolls += 1;
      const activated = profilePolls > 1;
      const profile = (mqid: string, alias: string) => ({ mqid, alias, is_activated: activated, broker_type: queues.brokerType, broker_address: queues.address, auth_token: queues.token });
      return send(200, { mqprofiles: [profile(queues.in, 'input-queue'), profile(queues.out, 'output-queue')] });
    }
    if (req.method === 'POST' && path === '/v1/query/taskforces') {
      return send(200, {
        taskforces: [
          { taskforce_uuid: 'tf1', phase: 'condor-submit', n_workers: 3, compound_statuses: { RUNNING: { 'processing events': 2 }, IDLE: { null: 1 } } },
          { taskforce_uuid: 'tf2', phase: 'pending-starter', n_workers: 2, compound_statuses: {} },
        ],
      });
    }
    if (req.method === 'POST' && path === '/v1/workflows/wf-abc/actions/finished') return send(200, { workflow_id: 'wf-abc' });
    return send(404, { code: 404, error: `no route ${req.method} ${path}` });
  });
  await new Promise<void>((r) => wms.server.listen(0, '127.0.0.1', () => r()));
  wms.url = `http://127.0.0.1:${(wms.server.address() as AddressInfo).port}`;
  return wms;
}

let wms: Wms | undefined;
afterEach(async () => {
  const server = wms?.server;
  wms = undefined;
  if (!server) return;
  server.closeAllConnections(); // the client's keep-alive sockets would hold close() open
  await new Promise((r) => server.close(r));
});

function request(url: string, extra: Partial<PilotRequest> = {}): PilotRequest {
  return {
    backend: 'ewms',
    count: 5,
    task: { args: 'python -m scan {{INFILE}} {{OUTFILE}}', image: '/cvmfs/img/scan:1', env: { NSIDE: '8' }, timeoutSeconds: 600 },
    init: { args: 'fetch {{DATA_HUB}}/startup.json' },
    ewms: { url, token: TOKEN, locations: { 'sub-2': { collector: 'cm.example.org', schedd: 'sub-2.example.org' } }, pollSeconds: 0.01, maxAttempts: 4 },
    ...extra,
  };
}

describe('ewms backend against a WMS stand-in', () => {
  test('requests the workflow (valid per the schema), waits for activated queues, reads status, deactivates', async () => {
    wms = await startWms();
    const cluster = await requestEwmsWorkflow(request(wms.url));
    expect(cluster.id).toBe('wf-abc');
    expect(cluster.queues.incoming).toMatchObject({ mqid: 'mq-in-1', auth_token: 'queue-token', is_activated: true });
    expect(cluster.queues.outgoing?.mqid).toBe('mq-out-1');
    const post = wms.requests[0]!;
    expect(validateWorkflowBody(post.body)).toEqual([]);
    expect(post.body).toMatchObject({
      public_queue_aliases: ['input-queue', 'output-queue'],
      tasks: [{ cluster_locations: ['sub-2'], task_image: '/cvmfs/img/scan:1', init_image: '/cvmfs/img/scan:1', n_workers: 5, task_env: { NSIDE: '8' }, pilot_config: { environment: { EWMS_PILOT_TASK_TIMEOUT: 600 } } }],
    });
    expect(wms.requests.filter((r) => r.path.includes('mq-profiles'))).toHaveLength(2);

    expect(await cluster.status()).toEqual({
      backend: 'ewms',
      id: 'wf-abc',
      total: 5,
      byState: { 'condor-submit': 3, 'pending-starter': 2 },
      byPilotStatus: { 'processing events': 2, null: 1 },
    });
    await expect(cluster.scale(9)).rejects.toThrow(/cannot rescale/);
    await cluster.remove();
    expect(wms.requests.at(-1)).toMatchObject({ method: 'POST', path: '/v1/workflows/wf-abc/actions/finished' });
    // attach by id works for status and rm from another process
    await attachEwmsWorkflow('wf-abc', { url: wms.url, token: TOKEN, locations: {} }).remove();
  });

  test('5xx is retried with backoff; 4xx fails at once with the WMS message and never the token', async () => {
    wms = await startWms();
    wms.failNext = 2;
    const client = new WmsClient({ url: wms.url, token: TOKEN, locations: {}, maxAttempts: 4 }, undefined, async () => undefined);
    expect((await client.taskforces('wf-abc')).length).toBe(2);
    expect(wms.requests).toHaveLength(3);

    wms.failNext = 10;
    const exhausted = await client.taskforces('wf-abc').catch((e: unknown) => e);
    expect(exhausted).toBeInstanceOf(WmsError);
    expect((exhausted as WmsError).status).toBe(503);

    const bad = await new WmsClient({ url: wms.url, token: 'wrong', locations: {} }).taskforces('x').catch((e: unknown) => e);
    expect(bad).toBeInstanceOf(WmsError);
    expect(String(bad)).toMatch(/HTTP 401 — invalid token/);
    expect(String(bad)).toMatch(/EWMS_WMS_TOKEN/);

    wms.failNext = 0;
    const invalid = await client.call('POST', '/v1/workflows', { tasks: [] }).catch((e: unknown) => e);
    expect((invalid as WmsError).status).toBe(400);
    expect(String(invalid)).toMatch(/tasks must be a non-empty list/);
    expect(String(invalid)).not.toContain(TOKEN);
  });

  test('network errors are retried, then reported clearly', async () => {
    const client = new WmsClient({ url: 'http://127.0.0.1:1', token: TOKEN, locations: {}, maxAttempts: 2 }, undefined, async () => undefined);
    const err = await client.taskforces('x').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WmsError);
    expect(String(err)).toMatch(/cannot reach the WMS/);
  });

  test('the request body needs a location and a task image', () => {
    const r = request('http://x');
    expect(() => workflowRequestBody({ ...r, task: { args: 'x' } }, r.ewms!)).toThrow(/needs an image/);
    expect(() => workflowRequestBody(r, { ...r.ewms!, locations: {} })).toThrow(/cluster location/);
  });

  test('runWorkflow with backend ewms publishes to and collects from the queues the WMS made, then deactivates it', async () => {
    const id = freshId('wmsq');
    const queues = { in: `${id}-in`, out: `${id}-out`, brokerType: 'nats', address: '127.0.0.1:4222', token: '' };
    wms = await startWms(queues);
    // Stands in for the pilots the WMS would start: a real consumer on the WMS's queues.
    const wmsQueues = { incoming: queues.in, outgoing: queues.out, deadLetter: `${queues.in}.dlq` };
    const setup = await Workflow.create({ broker: { address: 'nats://127.0.0.1:4222' }, queues: wmsQueues });
    const pilot = await startEchoPilot('nats', wmsQueues);
    try {
      const got: WorkflowOutcome[] = [];
      const report = await runWorkflow({
        broker: { address: 'unused://ignored' },
        events: ['x', 'y', 'z'],
        pilots: request(wms.url),
        onOutcome: (o) => {
          got.push(o);
        },
        progress: false,
        idleTimeoutMs: 20_000,
        deleteQueues: false,
      });
      expect(report).toMatchObject({ results: 3, queues: { incoming: queues.in, outgoing: queues.out } });
      expect(got.map((o) => o.data).sort()).toEqual(['x', 'y', 'z']);
      expect(wms.requests.at(-1)).toMatchObject({ path: '/v1/workflows/wf-abc/actions/finished' });
    } finally {
      await pilot.stop();
      await setup.close({ deleteQueues: true });
    }
    // Workflow.startPilots cannot serve the ewms backend: its queues are not the WMS's.
    const other = await Workflow.create({ broker: { address: 'nats://127.0.0.1:4222' }, id: freshId('wmsx') });
    await expect(other.startPilots(request('http://127.0.0.1:1'))).rejects.toThrow(CoordinatorConfigError);
    await other.close({ deleteQueues: true });
  });
});
