/**
 * The ewms backend against the strict WMS stand-in (`stand-ins/wms.ts`): request bodies validated by ajv
 * against the WMS's own request schema, OAuth2 client-credential tokens that expire, a `POST /v1/workflows`
 * whose answer is lost, client errors, and deactivation. No broker here: the queues' endpoints are only
 * read, not used (the end-to-end runs are in `ewms-e2e.test.ts`).
 */
import { Ajv } from 'ajv';
import { afterEach, describe, expect, test } from 'vitest';
import { attachEwmsWorkflow, provisionEwmsWorkflow, REQUEST_ID_VARIABLE, WmsClient, workflowRequestBody, type WorkflowRequestBody } from '../../coordinator/backends/ewms.js';
import { singleTaskPlan } from '../../coordinator/backends/plan.js';
import { checkGraph, plannedTasks } from '../../coordinator/graph.js';
import { CoordinatorConfigError, WmsAuthError, WmsError, WmsWorkflowUnconfirmedError } from '../../coordinator/errors.js';
import type { EwmsWmsOptions, PilotRequest } from '../../coordinator/types.js';
import { wmsAuthFromEnv, wmsTokenSource } from '../../coordinator/wms-auth.js';
import { startWmsStandIn, type WmsStandIn } from './stand-ins/wms.js';
import { WMS_HANDLER_CHECKS, WORKFLOW_REQUEST_SCHEMA } from './stand-ins/wms-schema.js';

let wms: WmsStandIn | undefined;
afterEach(async () => {
  await wms?.close();
  wms = undefined;
});

const validate = new Ajv({ allErrors: true, strict: false }).compile(WORKFLOW_REQUEST_SCHEMA);

function ewmsOptions(stand: WmsStandIn, extra: Partial<EwmsWmsOptions> = {}): EwmsWmsOptions {
  return {
    url: stand.url,
    locations: ['sub-2'],
    clientCredentials: { issuerUrl: stand.issuerUrl, clientId: stand.clientId, clientSecret: stand.clientSecret },
    pollSeconds: 0.05,
    lookupSeconds: 1,
    ...extra,
  };
}

function pilotRequest(ewms: EwmsWmsOptions, extra: Partial<PilotRequest> = {}): PilotRequest {
  return {
    backend: 'ewms',
    count: 3,
    task: { args: 'python -m scan --in {{INFILE}} --out {{OUTFILE}}', image: '/cvmfs/icecube.opensciencegrid.org/containers/scan:1', env: { NSIDE: '8' }, timeoutSeconds: 600 },
    init: { args: 'curl -o {{DATA_HUB}}/startup.json https://example.org/s.json', timeoutSeconds: 61 },
    pilotEnv: { EWMS_PILOT_TIMEOUT_QUEUE_WAIT_FOR_FIRST_MESSAGE: '300' },
    condor: { cpus: 2, memory: '4GB' },
    ewms,
    ...extra,
  };
}

function body(request: PilotRequest): WorkflowRequestBody {
  return workflowRequestBody(singleTaskPlan(request, 3, 'mqclient'), request.ewms!, 'req-1');
}

describe('POST /v1/workflows body', () => {
  test('validates against the WMS request schema (ajv) and its handler checks; carries image_source, the whole worker_config, typed pilot settings', () => {
    const b = body(pilotRequest({ url: 'http://x', locations: ['sub-2'], workerConfig: { priority: 7, condor_requirements: 'HAS_CVMFS_icecube_opensciencegrid_org' } }));
    expect(validate(b), JSON.stringify(validate.errors)).toBe(true);
    expect(WMS_HANDLER_CHECKS(b as unknown as { tasks: Array<Record<string, unknown>> }, ['sub-2'])).toBeUndefined();
    expect(b.public_queue_aliases).toEqual(['input-queue', 'output-queue']);
    const task = b.tasks[0]!;
    expect(task).toMatchObject({
      cluster_locations: ['sub-2'],
      input_queue_aliases: ['input-queue'],
      output_queue_aliases: ['output-queue'],
      task_env: { NSIDE: '8' },
      init_image: task.task_image,
      n_workers: 3,
      worker_config: { n_cores: 2, worker_memory: '4GB', worker_disk: '1GB', priority: 7, max_worker_runtime: 14400, do_transfer_worker_stdouterr: true, condor_requirements: 'HAS_CVMFS_icecube_opensciencegrid_org' },
    });
    expect(task.pilot_config).toEqual({
      tag: 'latest',
      image_source: 'auto',
      input_files: [],
      environment: {
        EWMS_PILOT_TIMEOUT_QUEUE_WAIT_FOR_FIRST_MESSAGE: '300',
        EWMS_PILOT_TASK_TIMEOUT: 600,
        EWMS_PILOT_INIT_TIMEOUT: 61,
        EWMS_PILOT_MAX_DELIVERIES: 3,
        EWMS_PILOT_WIRE_FORMAT: 'mqclient',
        EWMS_PILOT_DEAD_LETTER: 'outgoing',
        [REQUEST_ID_VARIABLE]: 'req-1',
      },
    });
  });

  test('the stand-in refuses what the WMS refuses: the old body without image_source and with a partial worker_config', () => {
    const b = body(pilotRequest({ url: 'http://x', locations: ['sub-2'] })) as unknown as { tasks: Array<Record<string, Record<string, unknown>>> };
    delete b.tasks[0]!.pilot_config!.image_source;
    expect(validate(b)).toBe(false);
    const partial = body(pilotRequest({ url: 'http://x', locations: ['sub-2'] })) as unknown as { tasks: Array<Record<string, Record<string, unknown>>> };
    delete partial.tasks[0]!.worker_config!.condor_requirements;
    expect(validate(partial)).toBe(false);
    const numberEnv = body(pilotRequest({ url: 'http://x', locations: ['sub-2'] })) as unknown as { tasks: Array<Record<string, Record<string, unknown>>> };
    numberEnv.tasks[0]!.task_env = { THREADS: 4 };
    expect(validate(numberEnv)).toBe(false);
  });

  test('what the WMS would refuse is refused here first, with the field named', () => {
    const base = { url: 'http://x', locations: ['sub-2'] };
    expect(() => body(pilotRequest(base, { pilotEnv: { EWMS_PILOT_TASK_ARGS: 'x' } }))).toThrow(/EWMS_PILOT_TASK_ARGS cannot be passed to the WMS/);
    expect(() => body(pilotRequest({ ...base, locations: ['sub-2=cm.example.org,schedd.example.org'] }))).toThrow(/not a cluster location name/);
    expect(() => body(pilotRequest({ ...base, locations: [] }))).toThrow(/at least one cluster location/);
    expect(() => body(pilotRequest(base, { condor: { cpus: 1.5 } }))).toThrow(CoordinatorConfigError);
    expect(() => body(pilotRequest({ ...base, workerConfig: { n_gpus: 1 } }))).toThrow(/worker_config has no field 'n_gpus'/);
    expect(() => body(pilotRequest({ ...base, pilotTag: '1' }))).toThrow(/pilot tag '1'/);
    expect(() => body(pilotRequest(base, { task: { args: 'x' } }))).toThrow(/needs an image/);
  });
});

describe('a workflow graph sent to the WMS', () => {
  test('every task as it is, with its aliases and settings; task_name and autoscale never sent; the priority at the top', () => {
    const ewms: EwmsWmsOptions = { url: 'http://x', locations: ['sub-2'] };
    const graph = checkGraph(
      [
        { task_name: 'reco', task_image: '/cvmfs/img/reco:1', task_args: 'reco {{INFILE}} {{OUTFILE}}', input_queue_aliases: ['in'], output_queue_aliases: ['a', 'b'], n_workers: 5 },
        { task_name: 'fit-a', task_image: '/cvmfs/img/fit:1', task_args: 'fit {{INFILE}} {{OUTFILE}}', input_queue_aliases: ['a'], output_queue_aliases: ['out'], worker_config: { n_cores: 4 }, cluster_locations: ['sub-3'], autoscale: { min: 0, max: 3 } },
        { task_image: '/cvmfs/img/fit:1', task_args: 'fit {{INFILE}} {{OUTFILE}}', input_queue_aliases: ['b'], output_queue_aliases: ['out'], pilot_config: { environment: { EWMS_PILOT_MAX_CONCURRENT_TASKS: 2 } } },
      ],
      ['in', 'out'],
    );
    const b = workflowRequestBody({ tasks: plannedTasks(graph, { backend: 'ewms', ewms, count: 1 }), publicQueues: ['in', 'out'], maxDeliveries: 3, wireFormat: 'mqclient', priority: 9, graph: true }, ewms, 'req-2');
    expect(validate(b), JSON.stringify(validate.errors)).toBe(true);
    expect(WMS_HANDLER_CHECKS(b as unknown as { tasks: Array<Record<string, unknown>> }, ['sub-2', 'sub-3'])).toBeUndefined();
    expect(b.priority).toBe(9);
    expect(b.public_queue_aliases).toEqual(['in', 'out']);
    expect(b.tasks.map((t) => [t.input_queue_aliases, t.output_queue_aliases, t.n_workers])).toEqual([
      [['in'], ['a', 'b'], 5],
      [['a'], ['out'], 1],
      [['b'], ['out'], 1],
    ]);
    expect(b.tasks[1]).toMatchObject({ cluster_locations: ['sub-3'], worker_config: { n_cores: 4 } });
    expect(b.tasks[2]?.pilot_config?.environment).toMatchObject({ EWMS_PILOT_MAX_CONCURRENT_TASKS: '2', EWMS_PILOT_TASK_NAME: 'task-2' });
    // The pilots name their task for provenance through their own setting; task_name is no field of the request.
    expect(b.tasks[1]?.pilot_config?.environment).toMatchObject({ EWMS_PILOT_TASK_NAME: 'fit-a', EWMS_PILOT_FILTER_MARKERS: 'true' });
    expect(JSON.stringify(b)).not.toMatch(/task_name|autoscale/);
  });
});

describe('WMS credentials', () => {
  test('client credentials: token endpoint by OpenID discovery, renewed before it expires, fetched again once after a 401', async () => {
    wms = await startWmsStandIn({ tokenLifetimeSeconds: 1 });
    const client = new WmsClient(ewmsOptions(wms), undefined);
    await client.taskforces('none');
    expect(wms.tokensIssued()).toBe(1);
    await new Promise((r) => setTimeout(r, 1_100)); // the first token has expired by now
    await client.taskforces('none');
    expect(wms.tokensIssued()).toBe(2);
    expect(wms.expiredTokenRefusals()).toBe(0); // renewed ahead, never sent expired

    wms.revokeTokens(); // the WMS no longer takes the current token
    await client.taskforces('none');
    expect(wms.tokensIssued()).toBe(3);
    expect(wms.requests.filter((r) => r.status === 401)).toHaveLength(1);
  });

  test('a refused client secret is a WmsAuthError that never contains the secret; incomplete settings are refused', async () => {
    wms = await startWmsStandIn();
    const client = new WmsClient(ewmsOptions(wms, { clientCredentials: { issuerUrl: wms.issuerUrl, clientId: wms.clientId, clientSecret: 'Wrong-Secret-123' } }));
    const err = await client.taskforces('x').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WmsAuthError);
    expect(String(err)).toMatch(/refused client 'ewms-test-client': HTTP 401 — unauthorized_client/);
    expect(String(err)).not.toContain('Wrong-Secret-123');

    const discovery = await new WmsClient(ewmsOptions(wms, { clientCredentials: { issuerUrl: `${wms.url}/nowhere`, clientId: 'a', clientSecret: 'b' } })).taskforces('x').catch((e: unknown) => e);
    expect(String(discovery)).toMatch(/OpenID discovery .* gave no token endpoint/);

    expect(() => wmsAuthFromEnv({ EWMS_WMS_TOKEN_URL: 'https://kc/realms/x', EWMS_WMS_CLIENT_ID: 'id' })).toThrow(/incomplete/);
    const both = wmsAuthFromEnv({ EWMS_WMS_TOKEN_URL: 'https://kc/realms/x', EWMS_WMS_CLIENT_ID: 'id', EWMS_WMS_CLIENT_SECRET: 's', EWMS_WMS_TOKEN: 'static' });
    expect(both.clientCredentials).toBeDefined(); // they win over the static token
    expect(await wmsTokenSource({ token: 'static-token' }).token()).toBe('static-token');
  });
});

describe('workflow requests', () => {
  test('a POST /v1/workflows answered 504 after the WMS made the workflow is not sent again: the workflow is found by its request id', async () => {
    wms = await startWmsStandIn();
    wms.gatewayTimeoutAfterCreate = 1;
    const ewms = ewmsOptions(wms);
    const { cluster, endpoints } = await provisionEwmsWorkflow(singleTaskPlan(pilotRequest(ewms), 3, 'mqclient'), ewms);
    expect(wms.requests.filter((r) => r.method === 'POST' && r.path === '/v1/workflows')).toHaveLength(1);
    expect(wms.workflows.size).toBe(1);
    expect(cluster.id).toBe([...wms.workflows.keys()][0]);
    const [inQ, outQ] = [wms.profiles.find((p) => p.alias === 'input-queue')!, wms.profiles.find((p) => p.alias === 'output-queue')!];
    // One endpoint per queue, each with that queue's own token, kept off the management API.
    expect(endpoints.incoming).toEqual({ name: inQ.mqid, broker: { type: 'rabbitmq', address: inQ.broker_address, authToken: inQ.auth_token, managementUrl: false } });
    expect(endpoints.outgoing.broker.authToken).toBe(outQ.auth_token);
    expect(endpoints.deadLetter).toBeUndefined();
  });

  test('a POST refused before the WMS acted (503) is not resent either: after the look-up window, an error that says so', async () => {
    wms = await startWmsStandIn();
    wms.failNext = 1;
    const ewms = ewmsOptions(wms);
    const err = await provisionEwmsWorkflow(singleTaskPlan(pilotRequest(ewms), 3, 'mqclient'), ewms).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WmsWorkflowUnconfirmedError);
    expect(String(err)).toMatch(/not sent again/);
    expect(String(err)).toMatch(/hint: the WMS may still create it/);
    expect(wms.requests.filter((r) => r.path === '/v1/workflows')).toHaveLength(1);
    expect(wms.workflows.size).toBe(0);
  });

  test('a client error gets the WMS reason at once (no retries), and a workflow whose queues fail is aborted', async () => {
    wms = await startWmsStandIn();
    const ewms = ewmsOptions(wms, { locations: ['nowhere'] });
    const started = Date.now();
    const err = await provisionEwmsWorkflow(singleTaskPlan(pilotRequest(ewms), 3, 'mqclient'), ewms).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WmsError);
    expect(String(err)).toMatch(/HTTP 400 — condor location not found: nowhere/);
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(wms.requests.filter((r) => r.path === '/v1/workflows')).toHaveLength(1);

    // Queues that never activate: the request times out and the workflow is aborted, not left behind.
    const slow = ewmsOptions(wms, { activationTimeoutSeconds: 0.2 });
    await startWmsStandIn({ inactivePolls: 1_000_000 }).then(async (stuck) => {
      const e = await provisionEwmsWorkflow(singleTaskPlan(pilotRequest(slow), 3, 'mqclient'), { ...slow, url: stuck.url, clientCredentials: { issuerUrl: stuck.issuerUrl, clientId: stuck.clientId, clientSecret: stuck.clientSecret } }).catch((x: unknown) => x);
      expect(String(e)).toMatch(/did not activate the queues/);
      expect([...stuck.workflows.values()][0]).toMatchObject({ deactivated: 'ABORTED' });
      await stuck.close();
    });
  });

  test('status from the taskforces; remove() finishes once, abort from another process, a repeated deactivation is no error', async () => {
    wms = await startWmsStandIn();
    const ewms = ewmsOptions(wms);
    const { cluster } = await provisionEwmsWorkflow(singleTaskPlan(pilotRequest(ewms), 3, 'mqclient'), ewms);
    expect(await cluster.status()).toMatchObject({ backend: 'ewms', id: cluster.id, total: 3, byState: { 'pending-starter': 3 } });
    await Promise.all([cluster.remove(), cluster.remove()]);
    expect(wms.requests.filter((r) => r.path.endsWith('/actions/finished'))).toHaveLength(1);
    expect(wms.workflows.get(cluster.id)).toMatchObject({ deactivated: 'FINISHED' });
    // Deactivated already (e.g. our earlier answer was lost): done, not an error.
    await attachEwmsWorkflow(cluster.id, ewms).remove({ reason: 'aborted' });
    await expect(attachEwmsWorkflow('WF-nosuch', ewms).remove({ reason: 'aborted' })).rejects.toThrow(/HTTP 404/);

    const second = await provisionEwmsWorkflow(singleTaskPlan(pilotRequest(ewms), 3, 'mqclient'), ewms);
    await attachEwmsWorkflow(second.cluster.id, ewms).remove({ reason: 'aborted' });
    expect(wms.workflows.get(second.cluster.id)).toMatchObject({ deactivated: 'ABORTED' });
  });
});
