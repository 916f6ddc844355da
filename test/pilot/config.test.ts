/**
 * The configuration table and its parser: every variable is read with its type, defaults match the
 * Python ewms-pilot, flags win over the environment, and bad input names the variable without echoing
 * a secret.
 */
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { parseBrokerAddress } from '../../mq-adapters/address.js';
import { ConfigError, loadConfig, type PilotConfig } from '../../pilot/config.js';
import { closestVariable, flagOf, renderConfigurationMarkdown, VARIABLES } from '../../pilot/config-table.js';

const BASE = {
  EWMS_PILOT_TASK_ARGS: 'cp {{INFILE}} {{OUTFILE}}',
  EWMS_PILOT_QUEUE_INCOMING: 'in-q',
  EWMS_PILOT_QUEUE_OUTGOING: 'out-q',
  EWMS_PILOT_QUEUE_INCOMING_BROKER_TYPE: 'rabbitmq',
  EWMS_PILOT_QUEUE_INCOMING_BROKER_ADDRESS: 'guest@127.0.0.1:5672',
};
const load = (extra: Record<string, string> = {}, flags: Record<string, string | boolean> = {}) => loadConfig({ ...BASE, ...extra }, flags, '/work');

function configError(extra: Record<string, string>): ConfigError {
  try {
    load(extra);
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error('expected a ConfigError');
}

/** For every variable: a value to set, and where it must show up. */
const EVERY_VARIABLE: Record<string, [string, (c: PilotConfig) => unknown, unknown]> = {
  EWMS_PILOT_TASK_ARGS: [`python3 -c 'print(1)' "{{INFILE}}" a\\ b`, (c) => c.task.args, ['python3', '-c', 'print(1)', '{{INFILE}}', 'a b']],
  EWMS_PILOT_TASK_IMAGE: ['docker.io/library/alpine:3', (c) => [c.task.image, c.runtime], ['docker.io/library/alpine:3', 'apptainer']],
  EWMS_PILOT_TASK_ENV_JSON: ['{"A": "x", "N": 4}', (c) => c.task.env, { A: 'x', N: '4' }],
  EWMS_PILOT_TASK_TIMEOUT: ['90', (c) => [c.task.timeoutSeconds, c.settings.taskTimeoutSeconds], [90, 90]],
  EWMS_PILOT_TASK_KILL_GRACE: ['2.5', (c) => c.settings.killGraceSeconds, 2.5],
  EWMS_PILOT_INIT_ARGS: ['sh -c "echo hi"', (c) => c.init?.args, ['sh', '-c', 'echo hi']],
  EWMS_PILOT_INIT_IMAGE: ['/cvmfs/images/init', (c) => [c.runtime, c.init?.image, c.task.image], ['apptainer', '/cvmfs/images/init', 'img:1']],
  EWMS_PILOT_INIT_ENV_JSON: ['{"B": "y"}', (c) => c.init, undefined],
  EWMS_PILOT_INIT_TIMEOUT: ['30', (c) => c.init, undefined],
  EWMS_PILOT_QUEUE_INCOMING: ['events-1', (c) => [c.settings.incoming.queue, c.settings.deadLetterQueue], ['events-1', 'events-1.dlq']],
  EWMS_PILOT_QUEUE_INCOMING_AUTH_TOKEN: ['s3cret-token', (c) => [c.settings.incoming.broker.authToken, c.settings.outgoing.broker.authToken], ['s3cret-token', 's3cret-token']],
  EWMS_PILOT_QUEUE_INCOMING_BROKER_TYPE: ['NATS', (c) => c.settings.incoming.broker.type, 'nats'],
  EWMS_PILOT_QUEUE_INCOMING_BROKER_ADDRESS: ['amqps://broker.example:5671/vh', (c) => c.settings.outgoing.broker.address, parseBrokerAddress('amqps://broker.example:5671/vh')],
  EWMS_PILOT_QUEUE_OUTGOING: ['results-1', (c) => c.settings.outgoing.queue, 'results-1'],
  EWMS_PILOT_QUEUE_OUTGOING_AUTH_TOKEN: ['other-token', (c) => [c.settings.incoming.broker.authToken, c.settings.outgoing.broker.authToken], [undefined, 'other-token']],
  EWMS_PILOT_QUEUE_OUTGOING_BROKER_TYPE: ['nats', (c) => c.settings.outgoing.broker.type, 'nats'],
  EWMS_PILOT_QUEUE_OUTGOING_BROKER_ADDRESS: ['127.0.0.1:4222', (c) => c.settings.outgoing.broker.address, parseBrokerAddress('127.0.0.1:4222', 'rabbitmq')],
  EWMS_PILOT_QUEUE_INCOMING_BROKER_MANAGEMENT_URL: ['https://mq.example.org:15671/', (c) => [c.settings.incoming.broker.managementUrl, c.settings.outgoing.broker.managementUrl], ['https://mq.example.org:15671', 'https://mq.example.org:15671']],
  EWMS_PILOT_QUEUE_OUTGOING_BROKER_MANAGEMENT_URL: ['none', (c) => [c.settings.incoming.broker.managementUrl, c.settings.outgoing.broker.managementUrl], [undefined, false]],
  EWMS_PILOT_QUEUE_DEAD_LETTER: ['poison', (c) => c.settings.deadLetterQueue, 'poison'],
  EWMS_PILOT_DEAD_LETTER: ['Outgoing', (c) => [c.settings.deadLetterRoute, c.settings.deadLetterQueue], ['outgoing', 'out-q']],
  EWMS_PILOT_MAX_DELIVERIES: ['5', (c) => c.settings.maxDeliveries, 5],
  EWMS_PILOT_WIRE_FORMAT: ['RAW', (c) => c.wireFormat, 'raw'],
  EWMS_PILOT_PREFETCH: ['8', (c) => c.settings.prefetch, 8],
  EWMS_PILOT_LEASE_TIMEOUT: ['120', (c) => c.settings.leaseSeconds, 120],
  EWMS_PILOT_TIMEOUT_QUEUE_WAIT_FOR_FIRST_MESSAGE: ['300', (c) => [c.settings.firstMessageTimeoutSeconds, c.settings.idleTimeoutSeconds], [300, 1]],
  EWMS_PILOT_TIMEOUT_QUEUE_INCOMING: ['45', (c) => [c.settings.firstMessageTimeoutSeconds, c.settings.idleTimeoutSeconds], [45, 45]],
  EWMS_PILOT_DATA_DIR_PARENT_PATH_ON_HOST: ['scratch/', (c) => c.dataDir, '/work/scratch/ewms-pilot-data'],
  EWMS_PILOT_INFILE_EXT: ['json', (c) => c.infileExt, '.json'],
  EWMS_PILOT_OUTFILE_EXT: ['.txt', (c) => c.outfileExt, '.txt'],
  EWMS_PILOT_OUTFILE_EVENTS: ['JSONL', (c) => c.outfileEvents, 'jsonl'],
  EWMS_PILOT_EXTERNAL_DIRECTORIES: ['/cvmfs, /data/sim,', (c) => c.externalDirectories, ['/cvmfs', '/data/sim']],
  EWMS_PILOT_KEEP_ALL_TASK_FILES: ['yes', (c) => c.keepAllTaskFiles, true],
  EWMS_PILOT_DUMP_TASK_OUTPUT: ['True', (c) => c.dumpTaskOutput, true],
  EWMS_PILOT_STOP_LISTENING_ON_TASK_ERROR: ['false', (c) => c.settings.stopOnTaskError, false],
  EWMS_PILOT_OKAY_ERRORS: ['TimeoutError ContainerRunError,exit:3', (c) => c.okayErrors, ['TimeoutError', 'ContainerRunError', 'exit:3']],
  EWMS_PILOT_QUARANTINE_TIME: ['600', (c) => c.settings.quarantineSeconds, 600],
  EWMS_PILOT_MAX_CONCURRENT_TASKS: ['4', (c) => c.settings.maxConcurrentTasks, 4],
  EWMS_PILOT_MAX_WORKER_RUNTIME: ['3600', (c) => c.settings.maxWorkerRuntimeSeconds, 3600],
  EWMS_PILOT_CONTAINER_RUNTIME: ['none', (c) => c.runtime, 'none'],
  EWMS_PILOT_CONTAINER_GPUS: ['1', (c) => c.containerGpus, true],
  EWMS_PILOT_CONTAINER_DEBUG: ['on', (c) => c.containerDebug, true],
  EWMS_PILOT_HTCHIRP: ['true', (c) => c.settings.chirp.enabled, true],
  EWMS_PILOT_HTCHIRP_DEST: ['job_event_log', (c) => c.settings.chirp.destination, 'JOB_EVENT_LOG'],
  EWMS_PILOT_HTCHIRP_RATELIMIT_INTERVAL: ['0.5', (c) => c.settings.chirp.rateLimitSeconds, 0.5],
  EWMS_PILOT_LOG_LEVEL: ['debug', (c) => c.logLevel, 'debug'],
  EWMS_PILOT_CL_LOG: ['WARNING', (c) => c.logLevel, 'warn'],
  EWMS_PILOT_CL_LOG_THIRD_PARTY: ['DEBUG', (c) => c.warnings, []],
  _EWMS_PILOT_CONTAINER_PLATFORM: ['DOCKER', (c) => c.runtime, 'docker'],
  _EWMS_PILOT_APPTAINER_BUILD_WORKDIR: ['var_tmp', (c) => c.imageWorkDir, '/work/var_tmp'],
  _EWMS_PILOT_APPTAINER_IMAGE_DIRECTORY_MUST_BE_PRESENT: ['True', (c) => c.convertImages, false],
  _EWMS_PILOT_DOCKER_SHM_SIZE: ['6gb', (c) => c.shmSize, '6gb'],
  EWMS_PILOT_QUEUE_MONITOR: ['wf-monitor', (c) => c.settings.monitor?.queue, 'wf-monitor'],
  EWMS_PILOT_HEARTBEAT_INTERVAL: ['5', (c) => c.settings.monitor?.intervalSeconds, 5],
  EWMS_PILOT_TASK_NAME: ['reco', (c) => c.settings.taskName, 'reco'],
  EWMS_PILOT_QUEUE_INCOMING_URGENT: ['in-q.urgent', (c) => c.settings.incoming.urgent, 'in-q.urgent'],
  EWMS_PILOT_QUEUE_OUTGOING_URGENT: ['out-q.urgent', (c) => c.settings.outgoing.urgent, 'out-q.urgent'],
  EWMS_PILOT_FILTER_MARKERS: ['true', (c) => c.settings.filterMarkers, true],
};

/** What a variable needs beside it to matter: the init variables an init command, an init image a task image. */
function contextFor(name: string): Record<string, string> {
  if (name === '_EWMS_PILOT_CONTAINER_PLATFORM') return { EWMS_PILOT_TASK_IMAGE: 'img:1' };
  if (name === '_EWMS_PILOT_DOCKER_SHM_SIZE') return { EWMS_PILOT_TASK_IMAGE: 'img:1', EWMS_PILOT_CONTAINER_RUNTIME: 'docker' };
  if (name === 'EWMS_PILOT_HEARTBEAT_INTERVAL') return { EWMS_PILOT_QUEUE_MONITOR: 'wf-monitor' };
  if (name === 'EWMS_PILOT_INIT_IMAGE') return { EWMS_PILOT_INIT_ARGS: 'true', EWMS_PILOT_TASK_IMAGE: 'img:1' };
  if (name.startsWith('EWMS_PILOT_INIT_') && name !== 'EWMS_PILOT_INIT_ARGS') return { EWMS_PILOT_INIT_ARGS: 'true' };
  return {};
}

describe('every variable', () => {
  test('the table and this test cover the same variables', () => {
    expect(Object.keys(EVERY_VARIABLE).sort()).toEqual(VARIABLES.map((v) => v.name).sort());
  });

  test.each(Object.entries(EVERY_VARIABLE))('%s is read', (name, [value, observe, expected]) => {
    // The init variables only matter with an init command.
    const config = load({ ...contextFor(name), [name]: value });
    if (name === 'EWMS_PILOT_INIT_ENV_JSON') expect(config.init?.env).toEqual({ B: 'y' });
    else if (name === 'EWMS_PILOT_INIT_TIMEOUT') expect(config.init?.timeoutSeconds).toBe(30);
    else expect(observe(config)).toEqual(expected);
  });

  test.each(VARIABLES.filter((v) => v.type !== 'secret').map((v) => [v.name, flagOf(v.name)]))('%s is also the flag --%s, which wins over the environment', (name, flag) => {
    const [value, observe] = EVERY_VARIABLE[name]!;
    const extra = contextFor(name);
    expect(observe(load(extra, { [flag]: value }))).toEqual(observe(load({ ...extra, [name]: value })));
  });
});

describe('defaults (those of the Python ewms-pilot 1.x where it has the variable)', () => {
  test('a minimal environment', () => {
    const c = load();
    expect(c.task).toEqual({ args: ['cp', '{{INFILE}}', '{{OUTFILE}}'], image: undefined, env: {}, timeoutSeconds: undefined });
    expect(c.init).toBeUndefined();
    expect(c.runtime).toBe('none');
    expect(c.infileExt).toBe('.in');
    expect(c.outfileExt).toBe('.out');
    expect(c.dataDir).toBe('/work/ewms-pilot-data');
    expect(c.wireFormat).toBe('mqclient');
    expect(c.logLevel).toBe('info');
    expect(c.okayErrors).toEqual([]);
    expect(c.keepAllTaskFiles).toBe(false);
    expect(c.dumpTaskOutput).toBe(false);
    expect(c.settings).toMatchObject({
      deadLetterQueue: 'in-q.dlq',
      maxDeliveries: 3,
      prefetch: 'auto',
      maxConcurrentTasks: 1,
      stopOnTaskError: true,
      quarantineSeconds: 0,
      idleTimeoutSeconds: 1,
      firstMessageTimeoutSeconds: 1,
      maxWorkerRuntimeSeconds: undefined,
      taskTimeoutSeconds: undefined,
      killGraceSeconds: 10,
      leaseSeconds: 60,
      chirp: { enabled: false, destination: 'JOB_ATTR', rateLimitSeconds: 60 },
    });
    // The outgoing queue uses the incoming broker when it names none of its own.
    expect(c.settings.outgoing.broker).toEqual({ type: 'rabbitmq', address: parseBrokerAddress('guest@127.0.0.1:5672', 'rabbitmq') });
  });

  test('an empty variable counts as unset, as in the Python pilot', () => {
    expect(load({ EWMS_PILOT_PREFETCH: '', EWMS_PILOT_INFILE_EXT: '' }).settings.prefetch).toBe('auto');
    expect(load({ EWMS_PILOT_PREFETCH: ' Auto ' }).settings.prefetch).toBe('auto');
    expect(load({ EWMS_PILOT_PREFETCH: '1' }).settings.prefetch).toBe(1);
  });

  test('the old EWMS_PILOT_SUBPROC_TIMEOUT is read when TASK_TIMEOUT is not set', () => {
    expect(load({ EWMS_PILOT_SUBPROC_TIMEOUT: '12' }).task.timeoutSeconds).toBe(12);
    expect(load({ EWMS_PILOT_SUBPROC_TIMEOUT: '12', EWMS_PILOT_TASK_TIMEOUT: '5' }).task.timeoutSeconds).toBe(5);
  });

  test('an unknown EWMS_PILOT_ variable is a warning (a typo must not go unnoticed) that names the likely meant one', () => {
    expect(load({ EWMS_PILOT_TASK_TIMEOUTT: '5' }).warnings).toEqual([expect.stringMatching(/^EWMS_PILOT_TASK_TIMEOUTT is not a variable this pilot knows; did you mean EWMS_PILOT_TASK_TIMEOUT\?/)]);
    expect(load({ EWMS_PILOT_NO_SUCH_THING: '5' }).warnings).toEqual([expect.stringMatching(/^EWMS_PILOT_NO_SUCH_THING is not a variable this pilot knows; check its spelling/)]);
  });

  test.each([
    ['EWMS_PILOT_TASK_TIMEOUTT', 'EWMS_PILOT_TASK_TIMEOUT'],
    ['EWMS_PILOT_INFILE_EXTENSION', 'EWMS_PILOT_INFILE_EXT'],
    ['EWMS_PILOT_MAX_CONCURENT_TASKS', 'EWMS_PILOT_MAX_CONCURRENT_TASKS'],
    ['ewms_pilot_prefetch', 'EWMS_PILOT_PREFETCH'],
    ['EWMS_PILOT_QUEUE_INCOMMING', 'EWMS_PILOT_QUEUE_INCOMING'],
    ['EWMS_PILOT_SOMETHING_ELSE', undefined],
  ])('did you mean: %s -> %s', (typed, meant) => {
    expect(closestVariable(typed)).toBe(meant);
  });

  test('an init image without init args runs its own default command, as in the Python pilot', () => {
    const c = load({ EWMS_PILOT_TASK_IMAGE: 'img:1', EWMS_PILOT_INIT_IMAGE: 'init:1' });
    expect(c.init).toMatchObject({ args: [], image: 'init:1' });
  });

  test('a timeout longer than a Node timer can hold is capped with a warning, not fired at once', () => {
    const c = load({ EWMS_PILOT_TASK_TIMEOUT: '99999999', EWMS_PILOT_TIMEOUT_QUEUE_WAIT_FOR_FIRST_MESSAGE: '99999999' });
    expect(c.task.timeoutSeconds).toBe(2147483);
    expect(c.settings.firstMessageTimeoutSeconds).toBe(2147483);
    expect(c.warnings.join('\n')).toMatch(/EWMS_PILOT_TASK_TIMEOUT=99999999 is longer than the longest timer/);
  });

  test('the init image defaults to the task image', () => {
    const c = load({ EWMS_PILOT_TASK_IMAGE: 'img:1', EWMS_PILOT_INIT_ARGS: 'prep' });
    expect(c.init?.image).toBe('img:1');
  });
});

describe('errors name the variable and the fix, and never a secret', () => {
  test.each([
    ['missing task args', { EWMS_PILOT_TASK_ARGS: '' }, /EWMS_PILOT_TASK_ARGS: is required/],
    ['unterminated quote', { EWMS_PILOT_TASK_ARGS: "sh -c 'echo" }, /EWMS_PILOT_TASK_ARGS: unterminated single quote/],
    ['unknown broker type', { EWMS_PILOT_QUEUE_INCOMING_BROKER_TYPE: 'kafka' }, /EWMS_PILOT_QUEUE_INCOMING_BROKER_TYPE: 'kafka' is not a broker type/],
    ['no broker type and no scheme', { EWMS_PILOT_QUEUE_INCOMING_BROKER_TYPE: '' }, /EWMS_PILOT_QUEUE_INCOMING_BROKER_ADDRESS/],
    ['missing queue', { EWMS_PILOT_QUEUE_OUTGOING: '' }, /EWMS_PILOT_QUEUE_OUTGOING: is required/],
    ['bad integer', { EWMS_PILOT_MAX_CONCURRENT_TASKS: '0' }, /EWMS_PILOT_MAX_CONCURRENT_TASKS: '0' is not a whole number >= 1/],
    ['bad seconds', { EWMS_PILOT_TASK_TIMEOUT: 'soon' }, /EWMS_PILOT_TASK_TIMEOUT: 'soon' is not a number of seconds/],
    ['bad boolean', { EWMS_PILOT_HTCHIRP: 'maybe' }, /EWMS_PILOT_HTCHIRP: 'maybe' is not a boolean/],
    ['bad choice', { EWMS_PILOT_WIRE_FORMAT: 'protobuf' }, /EWMS_PILOT_WIRE_FORMAT: 'protobuf' is not one of mqclient, raw/],
    ['env JSON not an object', { EWMS_PILOT_TASK_ENV_JSON: '[1]' }, /EWMS_PILOT_TASK_ENV_JSON: is JSON but not an object/],
    ['env JSON bad name', { EWMS_PILOT_TASK_ENV_JSON: '{"1X": "a"}' }, /'1X' is not a valid environment variable name/],
    ['env JSON bad value', { EWMS_PILOT_TASK_ENV_JSON: '{"X": {"a": 1}}' }, /the value of 'X' is not a string or a number/],
    ['quarantine without fail-fast', { EWMS_PILOT_QUARANTINE_TIME: '60', EWMS_PILOT_STOP_LISTENING_ON_TASK_ERROR: 'false' }, /EWMS_PILOT_QUARANTINE_TIME/],
    ['runtime none with an image', { EWMS_PILOT_CONTAINER_RUNTIME: 'none', EWMS_PILOT_TASK_IMAGE: 'img' }, /EWMS_PILOT_CONTAINER_RUNTIME: is 'none'/],
    ['an init image for host tasks', { EWMS_PILOT_INIT_IMAGE: 'img' }, /EWMS_PILOT_INIT_IMAGE: names an image but tasks run on the host/],
    ['container runtime without an image', { EWMS_PILOT_CONTAINER_RUNTIME: 'podman' }, /EWMS_PILOT_TASK_IMAGE: is required with EWMS_PILOT_CONTAINER_RUNTIME=podman/],
    ['wall time shorter than a task', { EWMS_PILOT_MAX_WORKER_RUNTIME: '60', EWMS_PILOT_TASK_TIMEOUT: '120' }, /EWMS_PILOT_MAX_WORKER_RUNTIME/],
    ['relative external directory', { EWMS_PILOT_EXTERNAL_DIRECTORIES: 'data' }, /EWMS_PILOT_EXTERNAL_DIRECTORIES: 'data' is not an absolute path/],
    ['a task timeout of 0 (not "no limit")', { EWMS_PILOT_TASK_TIMEOUT: '0' }, /EWMS_PILOT_TASK_TIMEOUT: 0 s would stop every task before it could start \(0 is not "no limit"\)/],
    ['a task timeout too short to start anything', { EWMS_PILOT_TASK_TIMEOUT: '0.2' }, /EWMS_PILOT_TASK_TIMEOUT: 0.2 s would stop every task/],
    ['an init timeout of 0', { EWMS_PILOT_INIT_ARGS: 'true', EWMS_PILOT_INIT_TIMEOUT: '0' }, /EWMS_PILOT_INIT_TIMEOUT: 0 s would stop every init command/],
    ['no wall time at all', { EWMS_PILOT_MAX_WORKER_RUNTIME: '0' }, /EWMS_PILOT_MAX_WORKER_RUNTIME: is 0, which leaves no time for any task/],
  ])('%s', (_label, extra, pattern) => {
    const err = configError(extra as Record<string, string>);
    expect(err.message).toMatch(pattern);
    expect(err.message).toMatch(/fix: /);
  });

  test('every problem is reported at once', () => {
    const err = configError({ EWMS_PILOT_TASK_ARGS: '', EWMS_PILOT_PREFETCH: 'x', EWMS_PILOT_HTCHIRP_DEST: 'nowhere' });
    expect(err.message).toMatch(/3 problems/);
  });

  test('malformed env JSON does not echo its content (it often carries tokens)', () => {
    const err = configError({ EWMS_PILOT_TASK_ENV_JSON: '{"TOKEN": "hunter2-secret", oops}' });
    expect(err.message).toMatch(/EWMS_PILOT_TASK_ENV_JSON: is not valid JSON \(at character \d+\)/);
    expect(err.toString()).not.toContain('hunter2');
  });

  test('docker/podman: a multi-line task env value is refused at start (their env file cannot carry it), without echoing it', () => {
    const err = configError({
      EWMS_PILOT_CONTAINER_RUNTIME: 'podman',
      EWMS_PILOT_TASK_IMAGE: 'localhost/task:1',
      EWMS_PILOT_TASK_ENV_JSON: JSON.stringify({ KEY: '-----BEGIN KEY-----\nsecret-body\n-----END KEY-----' }),
    });
    expect(err.message).toMatch(/EWMS_PILOT_TASK_ENV_JSON: the value of KEY has a line break/);
    expect(err.toString()).not.toContain('secret-body');
    expect(load({ EWMS_PILOT_CONTAINER_RUNTIME: 'apptainer', EWMS_PILOT_TASK_IMAGE: '/img', EWMS_PILOT_TASK_ENV_JSON: JSON.stringify({ KEY: 'a\nb' }) }).task.env.KEY).toBe('a\nb');
  });

  test('a password in a broker address or an auth token is never printed', () => {
    const err = configError({
      EWMS_PILOT_QUEUE_INCOMING_BROKER_ADDRESS: 'amqp://user:pa55word-xyz@host:5672',
      EWMS_PILOT_QUEUE_INCOMING_BROKER_TYPE: 'nats',
      EWMS_PILOT_QUEUE_OUTGOING_AUTH_TOKEN: 'tok-123456',
      EWMS_PILOT_PREFETCH: 'tok-123456',
    });
    expect(err.toString()).not.toContain('pa55word-xyz');
    expect(err.toString()).not.toContain('tok-123456');
  });
});

describe('the Markdown reference', () => {
  test('one row per variable, with its flag and default', () => {
    const md = renderConfigurationMarkdown();
    const rows = md.trim().split('\n').slice(2);
    expect(rows).toHaveLength(VARIABLES.length);
    expect(md).toContain('| `EWMS_PILOT_INFILE_EXT` | `--infile-ext` | string | `.in` |');
    expect(md).toContain('| `EWMS_PILOT_WIRE_FORMAT` | `--wire-format` | mqclient \\| raw | `mqclient` |');
    for (const row of rows) expect(row.split(/(?<!\\)\|/)).toHaveLength(7);
  });
});

describe('the settings the Python pilot images and the TMS set, and the differences that remain', () => {
  test('an image that declares its container platform decides the runtime, unless EWMS_PILOT_CONTAINER_RUNTIME is set', () => {
    expect(load({ EWMS_PILOT_TASK_IMAGE: 'img:1', _EWMS_PILOT_CONTAINER_PLATFORM: 'apptainer' }).runtime).toBe('apptainer');
    expect(load({ EWMS_PILOT_TASK_IMAGE: 'img:1', _EWMS_PILOT_CONTAINER_PLATFORM: 'docker', EWMS_PILOT_CONTAINER_RUNTIME: 'docker' }).runtime).toBe('docker');
    // No task image: the platform has nothing to run, tasks run on the host.
    expect(load({ _EWMS_PILOT_CONTAINER_PLATFORM: 'apptainer' }).runtime).toBe('none');
    const conflict = configError({ EWMS_PILOT_TASK_IMAGE: 'img:1', _EWMS_PILOT_CONTAINER_PLATFORM: 'apptainer', EWMS_PILOT_CONTAINER_RUNTIME: 'podman' });
    expect(conflict.message).toMatch(/EWMS_PILOT_CONTAINER_RUNTIME: is 'podman' but _EWMS_PILOT_CONTAINER_PLATFORM .* says 'apptainer'/);
    expect(configError({ EWMS_PILOT_TASK_IMAGE: 'img:1', _EWMS_PILOT_CONTAINER_PLATFORM: 'singularity' }).message).toMatch(/_EWMS_PILOT_CONTAINER_PLATFORM: 'singularity' is not one of docker, apptainer/);
  });

  test('a _EWMS_PILOT_* setting this pilot does not have is named in a warning, never silently dropped', () => {
    const c = load({ _EWMS_PILOT_SOMETHING_NEW: 'x', _EWMS_PILOT_EMPTY: '' });
    expect(c.warnings).toEqual([expect.stringMatching(/^_EWMS_PILOT_SOMETHING_NEW is a Python pilot setting this pilot does not have; it is not applied/)]);
  });

  test('the shared-memory size applies to docker and podman; with apptainer a warning says it has no effect', () => {
    expect(load({ EWMS_PILOT_TASK_IMAGE: 'img:1', EWMS_PILOT_CONTAINER_RUNTIME: 'podman', _EWMS_PILOT_DOCKER_SHM_SIZE: '512m' }).shmSize).toBe('512m');
    const c = load({ EWMS_PILOT_TASK_IMAGE: 'img:1', _EWMS_PILOT_DOCKER_SHM_SIZE: '6gb' });
    expect(c.shmSize).toBeUndefined();
    expect(c.warnings).toEqual([expect.stringMatching(/_EWMS_PILOT_DOCKER_SHM_SIZE=6gb has no effect: tasks run with apptainer/)]);
    expect(configError({ EWMS_PILOT_TASK_IMAGE: 'img:1', EWMS_PILOT_CONTAINER_RUNTIME: 'docker', _EWMS_PILOT_DOCKER_SHM_SIZE: 'lots' }).message).toMatch(/'lots' is not a size/);
  });

  test('image conversion: by default allowed and done under the data dir; the build workdir and the must-be-present switch are honoured', () => {
    const c = load({ EWMS_PILOT_TASK_IMAGE: 'img:1' });
    expect([c.convertImages, c.imageWorkDir]).toEqual([true, '/work/ewms-pilot-data/images']);
    const strict = load({ EWMS_PILOT_TASK_IMAGE: 'img:1', _EWMS_PILOT_APPTAINER_IMAGE_DIRECTORY_MUST_BE_PRESENT: 'False', _EWMS_PILOT_APPTAINER_BUILD_WORKDIR: '/srv/var_tmp/' });
    expect([strict.convertImages, strict.imageWorkDir]).toEqual([true, '/srv/var_tmp']);
  });

  test('an empty or unset task command runs a task image\'s own default command, as in the Python pilot; on the host it is required', () => {
    for (const args of [undefined, '']) {
      const env: Record<string, string> = { EWMS_PILOT_TASK_IMAGE: '/cvmfs/img' };
      if (args !== undefined) env.EWMS_PILOT_TASK_ARGS = args;
      const c = loadConfig({ ...BASE, EWMS_PILOT_TASK_ARGS: undefined as unknown as string, ...env }, {}, '/work');
      expect(c.task.args).toEqual([]);
      expect(c.task.image).toBe('/cvmfs/img');
    }
    expect(() => loadConfig({ ...BASE, EWMS_PILOT_TASK_ARGS: '' }, {}, '/work')).toThrow(/EWMS_PILOT_TASK_ARGS: is required but not set/);
  });
});

describe('the broker management API URL', () => {
  test('checked: http(s) only, no credentials in it, no query; NONE in any case turns it off', () => {
    expect(load({ EWMS_PILOT_QUEUE_INCOMING_BROKER_MANAGEMENT_URL: 'NONE' }).settings.incoming.broker.managementUrl).toBe(false);
    expect(configError({ EWMS_PILOT_QUEUE_INCOMING_BROKER_MANAGEMENT_URL: 'https://guest:s3cret@mq:15671' }).message).toMatch(/must not contain a user or password/);
    expect(configError({ EWMS_PILOT_QUEUE_INCOMING_BROKER_MANAGEMENT_URL: 'https://guest:s3cret@mq:15671' }).message).not.toContain('s3cret');
    expect(configError({ EWMS_PILOT_QUEUE_INCOMING_BROKER_MANAGEMENT_URL: 'ftp://mq' }).message).toMatch(/must be http:\/\/ or https:\/\//);
    expect(configError({ EWMS_PILOT_QUEUE_INCOMING_BROKER_MANAGEMENT_URL: 'mq:15672?x=1' }).message).toMatch(/EWMS_PILOT_QUEUE_INCOMING_BROKER_MANAGEMENT_URL/);
  });

  test('the outgoing queue takes the incoming one\'s only when it is on the same broker', () => {
    const other = load({ EWMS_PILOT_QUEUE_INCOMING_BROKER_MANAGEMENT_URL: 'http://a:15672', EWMS_PILOT_QUEUE_OUTGOING_BROKER_ADDRESS: 'guest@b:5672' });
    expect([other.settings.incoming.broker.managementUrl, other.settings.outgoing.broker.managementUrl]).toEqual(['http://a:15672', undefined]);
  });
});

describe('one problem, one message', () => {
  const problems = (extra: Record<string, string>) => configError(extra).message.split('\n').filter((l) => /^  \S/.test(l)).map((l) => l.trim());

  test.each([
    ['a malformed incoming address', { EWMS_PILOT_QUEUE_INCOMING_BROKER_TYPE: '', EWMS_PILOT_QUEUE_INCOMING_BROKER_ADDRESS: 'no-scheme-host:5672' }, /^EWMS_PILOT_QUEUE_INCOMING_BROKER_ADDRESS: /],
    ['an unknown incoming broker type', { EWMS_PILOT_QUEUE_INCOMING_BROKER_TYPE: 'kafka' }, /^EWMS_PILOT_QUEUE_INCOMING_BROKER_TYPE: 'kafka'/],
    ['a missing incoming address', { EWMS_PILOT_QUEUE_INCOMING_BROKER_ADDRESS: '' }, /^EWMS_PILOT_QUEUE_INCOMING_BROKER_ADDRESS: is required/],
    ['a missing incoming queue', { EWMS_PILOT_QUEUE_INCOMING: '' }, /^EWMS_PILOT_QUEUE_INCOMING: is required/],
  ])('%s is reported on the incoming side only: the outgoing side, which takes the incoming broker, is not blamed', (_label, extra, pattern) => {
    const lines = problems(extra);
    expect(lines).toEqual([expect.stringMatching(pattern)]);
  });

  test('an outgoing address of its own that is malformed is still reported', () => {
    expect(problems({ EWMS_PILOT_QUEUE_OUTGOING_BROKER_ADDRESS: 'amqp://[bad' })).toEqual([expect.stringMatching(/^EWMS_PILOT_QUEUE_OUTGOING_BROKER_ADDRESS: /)]);
  });
});

describe('secrets are never taken from the command line', () => {
  test.each(VARIABLES.filter((v) => v.type === 'secret').map((v) => [v.name, flagOf(v.name)]))('%s as --%s is refused, without echoing it', (name, flag) => {
    let err: unknown;
    try {
      load({}, { [flag]: 'hunter2-token' });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect(String(err)).toMatch(new RegExp(`${name}: was given as the flag --${flag}, where any user of this machine can read it`));
    expect(String(err)).toMatch(new RegExp(`fix: set the environment variable ${name} instead`));
    expect(String(err)).not.toContain('hunter2');
  });

  test('a password inside a broker address given as a flag is refused too; without one the flag is fine', () => {
    expect(() => load({}, { 'queue-incoming-broker-address': 'amqp://guest:pw-in-flag@127.0.0.1:5672' })).toThrow(/EWMS_PILOT_QUEUE_INCOMING_BROKER_ADDRESS: was given as the flag .*\n.*fix: give the address without its password, and the password in EWMS_PILOT_QUEUE_INCOMING_AUTH_TOKEN/);
    expect(load({}, { 'queue-incoming-broker-address': 'amqp://guest@127.0.0.1:5672' }).settings.incoming.broker.address).toEqual(parseBrokerAddress('amqp://guest@127.0.0.1:5672'));
  });
});

describe('the task command, checked at start', () => {
  test('a command that names neither {{INFILE}} nor {{OUTFILE}} is a warning each (a program may read $EWMS_TASK_INFILE itself)', () => {
    expect(load({ EWMS_PILOT_TASK_ARGS: 'python3 pixel.py' }).warnings).toEqual([
      expect.stringMatching(/^EWMS_PILOT_TASK_ARGS has no \{\{INFILE\}\}: the task finds its event only if it reads \$EWMS_TASK_INFILE itself/),
      expect.stringMatching(/^EWMS_PILOT_TASK_ARGS has no \{\{OUTFILE\}\}: unless the task writes \$EWMS_TASK_OUTFILE itself, every event succeeds without a result/),
    ]);
    expect(load({ EWMS_PILOT_TASK_ARGS: 'python3 pixel.py {{INFILE}}', EWMS_PILOT_OUTFILE_EXT: '.json' }).warnings).toEqual([
      expect.stringMatching(/has no \{\{OUTFILE\}\} although EWMS_PILOT_OUTFILE_EXT=.json expects one/),
    ]);
    expect(load({ EWMS_PILOT_TASK_ARGS: `sh -c 'tr a-z A-Z < "$EWMS_TASK_INFILE" > {{OUT_FILE}}'` }).warnings).toEqual([]);
    expect(load({ EWMS_PILOT_TASK_IMAGE: '/cvmfs/img', EWMS_PILOT_TASK_ARGS: '' }).warnings).toEqual([]);
  });

  const dir = mkdtempSync(join(tmpdir(), 'ewms-config-host-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  mkdirSync(join(dir, 'bin'));
  writeFileSync(join(dir, 'bin', 'scan'), '#!/bin/sh\n');
  chmodSync(join(dir, 'bin', 'scan'), 0o755);
  writeFileSync(join(dir, 'notes.txt'), 'not a program');
  const host = (args: string, extra: Record<string, string> = {}) => loadConfig({ ...BASE, EWMS_PILOT_TASK_ARGS: args, ...extra }, {}, dir, { hostCommands: { path: `${join(dir, 'bin')}:/usr/bin:/bin` } });

  test('a program found on PATH, by absolute path or relative to the working directory starts', () => {
    expect(host('scan {{INFILE}} {{OUTFILE}}').task.args[0]).toBe('scan');
    expect(host(`${join(dir, 'bin', 'scan')} {{INFILE}} {{OUTFILE}}`).task.args[0]).toBe(join(dir, 'bin', 'scan'));
    expect(host('./bin/scan {{INFILE}} {{OUTFILE}}').task.args[0]).toBe('./bin/scan');
    expect(host('{{DATA_HUB}}/tool {{INFILE}} {{OUTFILE}}').task.args[0]).toBe('{{DATA_HUB}}/tool');
  });

  test.each([
    ['pyhton3 pixel.py {{INFILE}} {{OUTFILE}}', /EWMS_PILOT_TASK_ARGS: runs 'pyhton3', which is not a program on this host's PATH\n\s+fix: check the spelling/],
    ['./missing.sh {{INFILE}} {{OUTFILE}}', /runs '\.\/missing\.sh', which does not exist \(relative to the pilot's working directory .*\)/],
    ['./notes.txt {{INFILE}} {{OUTFILE}}', /runs '\.\/notes\.txt', which is not executable .*\n\s+fix: make it executable \(chmod \+x\), or run it through its interpreter/],
    ['./bin {{INFILE}} {{OUTFILE}}', /runs '\.\/bin', which is a directory/],
  ])('%s is a configuration error at start', (args, pattern) => {
    expect(() => host(args)).toThrow(pattern);
  });

  test('the init command is checked too; commands in containers and unchecked loads are not', () => {
    expect(() => host('scan {{INFILE}} {{OUTFILE}}', { EWMS_PILOT_INIT_ARGS: 'no-such-init' })).toThrow(/EWMS_PILOT_INIT_ARGS: runs 'no-such-init'/);
    expect(host('pyhton3 {{INFILE}} {{OUTFILE}}', { EWMS_PILOT_TASK_IMAGE: '/cvmfs/img' }).runtime).toBe('apptainer');
    expect(load({ EWMS_PILOT_TASK_ARGS: 'pyhton3 {{INFILE}} {{OUTFILE}}' }).task.args[0]).toBe('pyhton3');
  });
});

describe('several queues (`;`-separated, as the EWMS TMS writes them)', () => {
  test('two input and two output queues, one broker for all: each read, defaults per queue', () => {
    const c = load({ EWMS_PILOT_QUEUE_INCOMING: 'a;b', EWMS_PILOT_QUEUE_OUTGOING: 'x;y' });
    expect([c.settings.incoming.queue, ...(c.settings.moreIncoming ?? []).map((e) => e.queue)]).toEqual(['a', 'b']);
    expect([c.settings.outgoing.queue, ...(c.settings.moreOutgoing ?? []).map((e) => e.queue)]).toEqual(['x', 'y']);
    expect(c.settings.deadLetterQueue).toBe('a.dlq');
    expect(c.settings.moreIncoming?.[0]?.deadLetterQueue).toBe('b.dlq');
    expect(c.settings.moreIncoming?.[0]?.broker).toEqual(c.settings.incoming.broker);
    expect(c.settings.moreOutgoing?.[0]?.broker).toEqual(c.settings.incoming.broker);
  });

  test('one token and address per queue, in order; each token is a secret of its own', () => {
    const c = load({
      EWMS_PILOT_QUEUE_INCOMING: 'a;b',
      EWMS_PILOT_QUEUE_INCOMING_AUTH_TOKEN: 'tok-a;tok-b',
      EWMS_PILOT_QUEUE_INCOMING_BROKER_ADDRESS: 'h1:5672;h2:5672',
    });
    expect(c.settings.incoming.broker.authToken).toBe('tok-a');
    expect(c.settings.moreIncoming?.[0]?.broker.authToken).toBe('tok-b');
    expect(c.settings.moreIncoming?.[0]?.broker.address).toEqual(parseBrokerAddress('h2:5672', 'rabbitmq'));
    expect(c.secrets).toEqual(expect.arrayContaining(['tok-a', 'tok-b']));
  });

  test('a per-queue list of the wrong length is refused, naming the variable and both counts', () => {
    const err = configError({ EWMS_PILOT_QUEUE_INCOMING: 'a;b;c', EWMS_PILOT_QUEUE_INCOMING_AUTH_TOKEN: 'tok-a;tok-b' });
    expect(err.problems.map((p) => p.name)).toContain('EWMS_PILOT_QUEUE_INCOMING_AUTH_TOKEN');
    expect(err.message).toMatch(/2 `;`-separated entries for 3 queues/);
    expect(err.message).not.toContain('tok-a');
  });

  test('urgent twins are positional, an empty entry meaning none', () => {
    const c = load({ EWMS_PILOT_QUEUE_INCOMING: 'a;b', EWMS_PILOT_QUEUE_INCOMING_URGENT: ';b.urgent' });
    expect(c.settings.incoming.urgent).toBeUndefined();
    expect(c.settings.moreIncoming?.[0]?.urgent).toBe('b.urgent');
    expect(configError({ EWMS_PILOT_QUEUE_INCOMING: 'a;b', EWMS_PILOT_QUEUE_INCOMING_URGENT: 'a.urgent' }).problems.map((p) => p.name)).toEqual(['EWMS_PILOT_QUEUE_INCOMING_URGENT']);
  });

  test('an empty queue name in the list is refused', () => {
    expect(configError({ EWMS_PILOT_QUEUE_INCOMING: 'a;;b' }).problems.map((p) => p.name)).toContain('EWMS_PILOT_QUEUE_INCOMING');
  });
});
