/**
 * Whole workflows through the EWMS stand-in, for real: the WMS stand-in's MQS makes each queue a broker user of
 * its own on a private RabbitMQ node (configure/read on that queue only, write on it and the default
 * exchange); its TMS writes the env file as the TMS does and starts `node dist/pilot/cli.js` from it; tasks
 * run under the `apptainer` stand-in (bubblewrap) — the runtime the pilot picks for a task image, as on
 * HTCondor. OAuth2 tokens expire during the runs. The private node's log must show no refused operation.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import { runWorkflow, type WorkflowOutcome } from '../../coordinator/index.js';
import { Workflow } from '../../coordinator/workflow.js';
import { connect } from '../../mq-adapters/index.js';
import { BrokerPermissionError } from '../../mq-adapters/errors.js';
import { startPrivateRabbitMQ, type PrivateBroker } from '../helpers/brokers.js';
import { pathWithStandIns } from '../runtime/helpers.js';
import { startWmsStandIn, type WmsStandIn } from './stand-ins/wms.js';

const COORDINATOR_CLI = new URL('../../dist/coordinator/cli.js', import.meta.url).pathname;
const PILOT_CLI = new URL('../../dist/pilot/cli.js', import.meta.url).pathname;
const skipReason = !existsSync(PILOT_CLI) ? `${PILOT_CLI} is missing (build first)` : spawnSync('bwrap', ['--version']).status !== 0 ? 'bubblewrap (bwrap) is not installed' : undefined;
if (skipReason) console.warn(`SKIPPED EWMS end-to-end tests: ${skipReason}`);

/** Upper-cases the event; fails (exit 3) on one that says "poison". */
const TASK_ARGS = `sh -c 'if grep -q poison {{INFILE}}; then echo "bad pixel" >&2; exit 3; fi; tr a-z A-Z < {{INFILE}} > {{OUTFILE}}'`;
const TASK_IMAGE = 'docker://icecube/ewms-example-task:1';
const PILOT_SETTINGS = {
  EWMS_PILOT_TIMEOUT_QUEUE_WAIT_FOR_FIRST_MESSAGE: '120',
  EWMS_PILOT_TIMEOUT_QUEUE_INCOMING: '20',
  // A failing event must not stop a pilot here: the run needs its pilots for the other events.
  EWMS_PILOT_STOP_LISTENING_ON_TASK_ERROR: 'false',
};

let broker: PrivateBroker;
let root: string;
beforeAll(async () => {
  if (skipReason) return;
  broker = await startPrivateRabbitMQ();
  root = mkdtempSync(join(tmpdir(), 'ewms-e2e-'));
}, 90_000);
afterAll(async () => {
  await broker?.dispose();
  if (root) rmSync(root, { recursive: true, force: true });
});

let wms: WmsStandIn | undefined;
afterEach(async () => {
  await wms?.close();
  wms = undefined;
});

async function standIn(tokenLifetimeSeconds = 2): Promise<WmsStandIn> {
  const workDir = mkdtempSync(join(root, 'tms-'));
  return startWmsStandIn({ broker, tokenLifetimeSeconds, tms: { workDir, jobEnv: { PATH: pathWithStandIns(), HOME: workDir } } });
}

/** Lines of the private node's log where the broker refused something (one per refused operation). */
function refusals(): string[] {
  return readLog()
    .split('\n')
    .filter((line) => /access_refused|not_allowed/i.test(line));
}

function readLog(): string {
  const dir = join(broker.dataDir, 'log');
  return readdirSync(dir)
    .filter((f) => f.endsWith('.log'))
    .map((f) => readFileSync(join(dir, f), 'utf8'))
    .join('\n');
}

/** The refusals once the node has written what it had to say: its log unchanged for a second (at most 15 s). */
async function settledRefusals(): Promise<string[]> {
  const deadline = Date.now() + 15_000;
  let last = readLog().length;
  let stableSince = Date.now();
  while (Date.now() - stableSince < 1_000 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100));
    const now = readLog().length;
    if (now !== last) [last, stableSince] = [now, Date.now()];
  }
  return refusals();
}

describe.skipIf(skipReason !== undefined)('EWMS end to end (stand-in WMS, per-queue broker users, TMS-started pilots)', () => {
  test('runWorkflow: results, a dead letter on the outgoing queue, tokens renewed as they expire, nothing refused, workflow finished', async () => {
    wms = await standIn();
    const before = (await settledRefusals()).length;
    const events = Array.from({ length: 20 }, (_, i) => (i === 7 ? 'poison pixel' : `pixel ${i}`));
    const outcomes: WorkflowOutcome[] = [];
    const revoke = setTimeout(() => wms?.revokeTokens(), 1_500); // the issuer forgets them: a 401 mid-run
    const report = await runWorkflow({
      events,
      maxDeliveries: 2,
      pilots: {
        backend: 'ewms',
        count: 2,
        task: { args: TASK_ARGS, image: TASK_IMAGE },
        pilotEnv: PILOT_SETTINGS,
        ewms: { url: wms.url, locations: ['sub-2'], clientCredentials: { issuerUrl: wms.issuerUrl, clientId: wms.clientId, clientSecret: wms.clientSecret }, pollSeconds: 0.2 },
      },
      onOutcome: (o) => void outcomes.push(o),
      progress: false,
      idleTimeoutMs: 90_000,
    }).finally(() => clearTimeout(revoke));

    expect(report).toMatchObject({ results: 19, deadLetters: 1, deadLetterRoute: 'outgoing', queuesDeleted: false });
    const results = outcomes.filter((o) => o.kind === 'result').map((o) => String(o.data).trim());
    expect(results.sort()).toEqual(events.filter((e) => !e.includes('poison')).map((e) => e.toUpperCase()).sort());
    const dead = outcomes.find((o) => o.kind === 'dead-letter');
    expect(dead).toMatchObject({ kind: 'dead-letter', data: 'poison pixel' });
    expect(dead?.kind === 'dead-letter' && dead.reason).toMatch(/exit/);

    const [workflowId] = [...wms.workflows.keys()];
    expect(report.workflowId).toBe(workflowId);
    expect(wms.workflows.get(workflowId!)).toMatchObject({ deactivated: 'FINISHED' });
    expect(wms.tokensIssued()).toBeGreaterThanOrEqual(2);
    // The pilots ran from the TMS's env file: its queues, per-queue tokens and the dead-letter route.
    const envFile = readFileSync(wms.envFiles[0]!, 'utf8');
    const inQ = wms.profiles.find((p) => p.alias === 'input-queue')!;
    expect(envFile).toContain(`export EWMS_PILOT_QUEUE_INCOMING=${inQ.mqid}\n`);
    expect(envFile).toContain('export EWMS_PILOT_DEAD_LETTER=outgoing\n');
    expect(envFile).toContain('export EWMS_PILOT_HTCHIRP=True\n');
    expect(envFile).toContain("export EWMS_PILOT_INIT_ARGS=''\n");
    for (const pilot of wms.pilots) expect([0, 143], pilot.output().slice(-2000)).toContain(await pilot.exited);
    expect((await settledRefusals()).slice(before)).toEqual([]);
  }, 180_000);

  test('a two-task graph: sent to the WMS as it is, pilots on ;-separated per-queue tokens, provenance through both tasks, a dead letter at the first passed on', async () => {
    wms = await standIn(30);
    const before = (await settledRefusals()).length;
    const events = Array.from({ length: 12 }, (_, i) => (i === 4 ? 'poison pixel' : `pixel ${i}`));
    const outcomes: WorkflowOutcome[] = [];
    const report = await runWorkflow({
      events,
      maxDeliveries: 1,
      tasks: [
        { task_name: 'upper', task_image: TASK_IMAGE, task_args: TASK_ARGS, input_queue_aliases: ['pixels'], output_queue_aliases: ['upper'] },
        { task_name: 'copy', task_image: TASK_IMAGE, task_args: 'cp {{INFILE}} {{OUTFILE}}', input_queue_aliases: ['upper'], output_queue_aliases: ['results'] },
      ],
      publicQueues: ['pixels', 'results'],
      pilots: {
        backend: 'ewms',
        count: 1,
        pilotEnv: PILOT_SETTINGS,
        ewms: { url: wms.url, locations: ['sub-2'], clientCredentials: { issuerUrl: wms.issuerUrl, clientId: wms.clientId, clientSecret: wms.clientSecret }, pollSeconds: 0.2 },
      },
      onOutcome: (o) => void outcomes.push(o),
      progress: false,
      idleTimeoutMs: 90_000,
    });
    expect(report).toMatchObject({ settled: 12, results: 11, deadLetters: 1, deadLetterRoute: 'outgoing' });
    for (const r of outcomes.filter((o) => o.kind === 'result')) expect(r.provenance.map((step) => step.task_name)).toEqual(['upper', 'copy']);
    expect(outcomes.find((o) => o.kind === 'dead-letter')).toMatchObject({ task: 'upper', data: 'poison pixel' });
    const recorded = wms.requests.find((r) => r.method === 'POST' && r.path === '/v1/workflows');
    expect(JSON.stringify(recorded?.body)).not.toContain('task_name');
    expect((await settledRefusals()).slice(before)).toEqual([]);
  }, 180_000);

  test('a queue the token does not cover is refused with the permission named: the coordinator and a pilot that would declare <queue>.dlq', async () => {
    wms = await startWmsStandIn({ broker });
    const refusedBefore = (await settledRefusals()).length;
    const ewms = { url: wms.url, locations: ['sub-2'], clientCredentials: { issuerUrl: wms.issuerUrl, clientId: wms.clientId, clientSecret: wms.clientSecret }, pollSeconds: 0.1 };
    const wf = await Workflow.create({ pilots: { backend: 'ewms', count: 1, task: { args: 'true', image: TASK_IMAGE }, ewms } });
    try {
      const inQ = wms.profiles.find((p) => p.alias === 'input-queue')!;
      const withInToken = await connect({ type: 'rabbitmq', address: inQ.broker_address, authToken: inQ.auth_token, managementUrl: false });
      const err = await withInToken.declareQueue({ name: inQ.mqid, deadLetterQueue: `${inQ.mqid}.dlq` }).catch((e: unknown) => e);
      await withInToken.close();
      expect(err).toBeInstanceOf(BrokerPermissionError);
      expect(String(err)).toMatch(new RegExp(`refused configure permission on queue '${inQ.mqid}\\.dlq'.*ACCESS_REFUSED`));

      // A pilot from the TMS environment, but told to keep a dead-letter queue: it stops at start, saying why.
      const outQ = wms.profiles.find((p) => p.alias === 'output-queue')!;
      const env = {
        PATH: process.env.PATH ?? '/usr/bin:/bin',
        EWMS_PILOT_TASK_ARGS: 'true',
        EWMS_PILOT_CONTAINER_RUNTIME: 'none',
        EWMS_PILOT_QUEUE_INCOMING: inQ.mqid,
        EWMS_PILOT_QUEUE_INCOMING_AUTH_TOKEN: inQ.auth_token,
        EWMS_PILOT_QUEUE_INCOMING_BROKER_TYPE: 'rabbitmq',
        EWMS_PILOT_QUEUE_INCOMING_BROKER_ADDRESS: inQ.broker_address,
        EWMS_PILOT_QUEUE_OUTGOING: outQ.mqid,
        EWMS_PILOT_QUEUE_OUTGOING_AUTH_TOKEN: outQ.auth_token,
        EWMS_PILOT_QUEUE_OUTGOING_BROKER_TYPE: 'rabbitmq',
        EWMS_PILOT_QUEUE_OUTGOING_BROKER_ADDRESS: outQ.broker_address,
      };
      const pilot = spawnSync(process.execPath, [PILOT_CLI], { env, encoding: 'utf8', timeout: 60_000 });
      expect(pilot.status).toBe(1);
      expect(pilot.stderr).toMatch(new RegExp(`BrokerPermissionError: .*refused configure permission on queue '${inQ.mqid}\\.dlq'`));
      expect(pilot.stderr).toMatch(/EWMS_PILOT_DEAD_LETTER=outgoing/);
      expect(pilot.stderr).not.toContain(inQ.auth_token);
      // The broker logged both refusals: the log check the other tests rely on does see them.
      expect((await settledRefusals()).length).toBeGreaterThanOrEqual(refusedBefore + 2);
    } finally {
      await wf.close();
    }
  }, 90_000);

  test('acceptance: `ewms run --backend ewms` completes 50 events; a 504 after the WMS made the workflow is not resent; tokens expire mid-run; a client error exits at once', async () => {
    wms = await standIn(2);
    wms.gatewayTimeoutAfterCreate = 1;
    const before = (await settledRefusals()).length;
    const dir = mkdtempSync(join(root, 'cli-'));
    const events = Array.from({ length: 50 }, (_, i) => `event ${i}`);
    writeFileSync(join(dir, 'events.jsonl'), events.map((e) => JSON.stringify(e)).join('\n') + '\n');
    const env = {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: dir,
      EWMS_WMS_TOKEN_URL: wms.issuerUrl,
      EWMS_WMS_CLIENT_ID: wms.clientId,
      EWMS_WMS_CLIENT_SECRET: wms.clientSecret,
    };
    const args = (location: string) => [
      COORDINATOR_CLI, 'run', '--backend', 'ewms', '--wms-url', wms!.url, '--wms-location', location, '--wms-poll-seconds', '0.2',
      '--events', join(dir, 'events.jsonl'), '--task-image', TASK_IMAGE, '--task-args', TASK_ARGS, '--pilots', '3',
      '--output', join(dir, 'results.jsonl'), '--dead-letters', join(dir, 'dead.jsonl'), '--no-progress', '--idle-timeout', '120',
      ...Object.entries(PILOT_SETTINGS).flatMap(([k, v]) => ['--pilot-env', `${k}=${v}`]),
    ];
    const run = await runCli(args('sub-2'), env);
    expect(run.code, run.stderr.slice(-3000)).toBe(0);
    const results = readFileSync(join(dir, 'results.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { data: string });
    expect(results.map((r) => r.data.trim()).sort()).toEqual(events.map((e) => e.toUpperCase()).sort());
    expect(run.stderr).toMatch(/50 results, 0 dead letters/);
    expect(wms.requests.filter((r) => r.method === 'POST' && r.path === '/v1/workflows')).toHaveLength(1);
    expect(wms.workflows.size).toBe(1);
    expect([...wms.workflows.values()][0]).toMatchObject({ deactivated: 'FINISHED' });
    expect(wms.tokensIssued()).toBeGreaterThanOrEqual(2);
    expect(wms.pilots).toHaveLength(3);
    // The tasks ran in the apptainer runtime (the pilot's choice for a task image; the stand-in runs them under bubblewrap).
    expect(wms.pilots.every((p) => /apptainer/.test(p.output())), wms.pilots[0]!.output().slice(-1500)).toBe(true);
    expect((await settledRefusals()).slice(before)).toEqual([]);
    for (const secret of [wms.clientSecret, ...wms.profiles.map((p) => p.auth_token)]) expect(run.stderr).not.toContain(secret);

    const started = Date.now();
    const refused = await runCli(args('nowhere'), env);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/WmsError: the WMS refused POST \/v1\/workflows: HTTP 400 — condor location not found: nowhere/);
    expect(Date.now() - started).toBeLessThan(30_000);
  }, 240_000);

  test('`ewms submit / status / rm --backend ewms`: the workflow is requested, watched, and aborted by hand', async () => {
    wms = await standIn(2);
    const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', EWMS_WMS_TOKEN_URL: wms.issuerUrl, EWMS_WMS_CLIENT_ID: wms.clientId, EWMS_WMS_CLIENT_SECRET: wms.clientSecret };
    const wmsArgs = ['--backend', 'ewms', '--wms-url', wms.url];
    const submit = await runCli(
      [COORDINATOR_CLI, 'submit', ...wmsArgs, '--wms-location', 'sub-2', '--wms-poll-seconds', '0.2', '--workflow', 'unused', '--pilots', '1', '--task-image', TASK_IMAGE, '--task-args', TASK_ARGS, ...Object.entries(PILOT_SETTINGS).flatMap(([k, v]) => ['--pilot-env', `${k}=${v}`])],
      env,
    );
    expect(submit.code, submit.stderr).toBe(0);
    const printed = JSON.parse(submit.stdout) as { backend: string; cluster: string; queues: { incoming: string; outgoing: string } };
    const [workflowId] = [...wms.workflows.keys()];
    expect(printed).toMatchObject({ backend: 'ewms', cluster: workflowId, queues: { incoming: wms.profiles.find((p) => p.alias === 'input-queue')!.mqid } });

    const status = await runCli([COORDINATOR_CLI, 'status', ...wmsArgs, '--cluster', workflowId!], env);
    expect(status.code, status.stderr).toBe(0);
    expect(JSON.parse(status.stdout)).toMatchObject({ backend: 'ewms', id: workflowId, total: 1 });

    const rm = await runCli([COORDINATOR_CLI, 'rm', ...wmsArgs, '--cluster', workflowId!], env);
    expect(rm.code, rm.stderr).toBe(0);
    expect(wms.workflows.get(workflowId!)).toMatchObject({ deactivated: 'ABORTED' });
    expect(await wms.pilots[0]!.exited).toBe(143);
  }, 120_000);
});

function runCli(args: string[], env: Record<string, string>): Promise<{ code: number | null; stderr: string; stdout: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    let stdout = '';
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    child.on('exit', (code) => resolve({ code, stderr, stdout }));
  });
}
