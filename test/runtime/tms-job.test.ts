/**
 * A pilot started the way the EWMS Task Management Service starts one: the image's entrypoint
 * (apptainer/ewms-pilot-entrypoint.sh, run for real) in a job directory holding the
 * `ewms_htcondor_envfile.sh` the TMS writes (tms/scalar/starter.py `write_envfile`: a bash header,
 * `set -x`, one `export NAME=<shlex.quote(value)>` per setting, sorted, `set +x`, mode 0755), with the
 * settings the TMS adds (HTChirp to the job event log) and those SkyDriver sends through the WMS; no
 * EWMS_PILOT_* variable in the process environment. The pilot must take events from the real RabbitMQ,
 * run the task, chirp to the job's starter, keep its data in the job directory, and print no setting.
 */
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, test } from 'vitest';
import { drainOutputs, PILOT_CLI, publishEvents, TestQueues } from '../pilot-integration/run-pilot.js';
// @ts-expect-error -- a plain .mjs test stand-in without types
import { startChirpStarter } from '../pilot/stand-ins/chirp-starter.mjs';
import { pathWithStandIns } from './helpers.js';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const ENTRYPOINT = join(REPO, 'apptainer/ewms-pilot-entrypoint.sh');
/** In a task's environment only: never to be printed by the entrypoint or the pilot. */
const MARKER = 'tok-7Q2m-never-printed';

const skipReason = !existsSync(PILOT_CLI)
  ? `${PILOT_CLI} is missing (build first)`
  : spawnSync('bwrap', ['--version']).status !== 0
    ? 'bubblewrap (bwrap) is not installed'
    : undefined;
if (skipReason) console.warn(`SKIPPED TMS-job entrypoint tests: ${skipReason}`);

const testQueues = new TestQueues();
afterEach(() => testQueues.cleanup());

/** Python's `shlex.quote`, as the TMS quotes every value. */
function shlexQuote(value: string): string {
  if (value === '') return "''";
  if (!/[^\w@%+=:,./-]/.test(value)) return value;
  return `'${value.replace(/'/g, `'"'"'`)}'`;
}

/** The env file exactly as the TMS writes it. */
function writeTmsEnvFile(jobDir: string, env: Record<string, string>): void {
  const lines = [
    '#!/bin/bash',
    '',
    '# Environment setup for HTCondor worker',
    '# This file is auto-generated and sets necessary environment variables.',
    "# Sourced automatically by the EWMS Pilot's container entrypoint.",
    '',
    'set -x',
    ...Object.keys(env)
      .sort()
      .map((key) => `export ${key}=${shlexQuote(env[key]!.replace(/\n/g, ' '))}`),
    'set +x',
    '',
    '# End of environment file',
  ];
  const path = join(jobDir, 'ewms_htcondor_envfile.sh');
  writeFileSync(path, `${lines.join('\n')}\n`);
  chmodSync(path, 0o755);
}

/** What the TMS and the WMS (with SkyDriver's pilot environment) put into the env file. */
function tmsEnvironment(queues: { incoming: string; outgoing: string }, extra: Record<string, string>): Record<string, string> {
  return {
    // the TMS's constants
    EWMS_PILOT_HTCHIRP: 'True',
    EWMS_PILOT_HTCHIRP_DEST: 'JOB_EVENT_LOG',
    // the WMS's queues and the MQS's tokens
    EWMS_PILOT_QUEUE_INCOMING: queues.incoming,
    EWMS_PILOT_QUEUE_OUTGOING: queues.outgoing,
    EWMS_PILOT_QUEUE_INCOMING_BROKER_TYPE: 'rabbitmq',
    EWMS_PILOT_QUEUE_OUTGOING_BROKER_TYPE: 'rabbitmq',
    EWMS_PILOT_QUEUE_INCOMING_BROKER_ADDRESS: 'guest@127.0.0.1:5672',
    EWMS_PILOT_QUEUE_OUTGOING_BROKER_ADDRESS: 'guest@127.0.0.1:5672',
    EWMS_PILOT_QUEUE_INCOMING_AUTH_TOKEN: 'guest',
    EWMS_PILOT_QUEUE_OUTGOING_AUTH_TOKEN: 'guest',
    // SkyDriver's pilot environment
    EWMS_PILOT_TIMEOUT_QUEUE_WAIT_FOR_FIRST_MESSAGE: '30',
    EWMS_PILOT_TIMEOUT_QUEUE_INCOMING: '2',
    EWMS_PILOT_INFILE_EXT: '.json',
    EWMS_PILOT_OUTFILE_EXT: '.json',
    EWMS_PILOT_TASK_TIMEOUT: '60',
    ...extra,
  };
}

function run(command: string, args: string[], options: { cwd: string; env: Record<string, string> }) {
  const child = spawn(command, args, { cwd: options.cwd, env: options.env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr.on('data', (b: Buffer) => (out += b.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { exited, output: () => out };
}

describe.skipIf(skipReason !== undefined)('a TMS-submitted job: the image entrypoint, the TMS env file, a real pilot', () => {
  test('tasks in an Apptainer image (the platform the image declares), chirps to the job event log, data in the job dir', async () => {
    const { broker, queues } = await testQueues.create('rabbitmq');
    const jobDir = mkdtempSync(join(tmpdir(), 'ewms-tms-job-'));
    const starter = await startChirpStarter(jobDir);
    try {
      writeTmsEnvFile(
        jobDir,
        tmsEnvironment(queues, {
          EWMS_PILOT_TASK_IMAGE: 'docker://icecube/skymap_scanner:4',
          EWMS_PILOT_OUTFILE_EXT: '.txt',
          EWMS_PILOT_TASK_ARGS: `sh -c 'printf "%s|%s" "$(cat {{INFILE}})" "$NOTE" > {{OUTFILE}}'`,
          EWMS_PILOT_TASK_ENV_JSON: JSON.stringify({ NOTE: `it's $HOME & "quoted"`, API_TOKEN: MARKER }),
          EWMS_PILOT_CONTAINER_DEBUG: 'True',
          _EWMS_PILOT_APPTAINER_BUILD_WORKDIR: join(jobDir, 'var_tmp'),
        }),
      );
      await publishEvents(broker, queues.incoming, [1, 2, 3]);
      const job = run('/bin/sh', [ENTRYPOINT, process.execPath, PILOT_CLI], {
        cwd: jobDir,
        // What HTCondor and the image give the job; the pilot's settings come from the env file alone.
        env: { PATH: pathWithStandIns(), HOME: jobDir, _CONDOR_SCRATCH_DIR: jobDir, _EWMS_PILOT_CONTAINER_PLATFORM: 'apptainer' },
      });
      expect(await job.exited, job.output().slice(-3000)).toBe(0);

      const outputs = await drainOutputs(broker, queues.outgoing, 3);
      expect(outputs.map((o) => o.data).sort()).toEqual([1, 2, 3].map((pixel) => `${pixel}|it's $HOME & "quoted"`));
      expect(existsSync(join(jobDir, 'ewms-pilot-data', 'data-hub'))).toBe(true);
      expect(readdirSync(join(jobDir, 'var_tmp', 'apptainer-images')).length).toBe(1);
      expect(starter.events as string[]).toContain('HTChirpEWMSPilotStatus: "Done"');
      expect(starter.events as string[]).toContain('HTChirpEWMSPilotTasksSuccess: "3"');
      // `set -x` in the env file traces nothing, and the pilot never prints a task's env.
      expect(job.output()).not.toContain(MARKER);
      expect(job.output()).not.toMatch(/^\+ export/m);
      expect(job.output()).toContain('ewms-pilot-entrypoint: loaded the pilot\'s settings from');
    } finally {
      await starter.close();
    }
  }, 120_000);

  test('in the container universe layout: the job dir bound at /srv is found through $_CONDOR_SCRATCH_DIR', async () => {
    const { broker, queues } = await testQueues.create('rabbitmq');
    const jobDir = mkdtempSync(join(tmpdir(), 'ewms-tms-srv-'));
    writeTmsEnvFile(
      jobDir,
      tmsEnvironment(queues, {
        EWMS_PILOT_HTCHIRP: 'False', // no starter in this sandbox
        EWMS_PILOT_CONTAINER_RUNTIME: 'none',
        EWMS_PILOT_TASK_ARGS: `sh -c 'pwd > /srv/task-cwd; cp {{INFILE}} {{OUTFILE}}'`,
        EWMS_PILOT_KEEP_ALL_TASK_FILES: 'True',
      }),
    );
    await publishEvents(broker, queues.incoming, [{ a: 1 }]);
    const node = process.execPath;
    const bwrap = [
      '--ro-bind', '/usr', '/usr', '--ro-bind', '/etc', '/etc',
      '--symlink', 'usr/bin', '/bin', '--symlink', 'usr/sbin', '/sbin', '--symlink', 'usr/lib', '/lib', '--symlink', 'usr/lib64', '/lib64',
      '--proc', '/proc', '--dev', '/dev', '--tmpfs', '/tmp',
      '--ro-bind', REPO, REPO, ...(node.startsWith('/usr/') ? [] : ['--ro-bind', dirname(node), dirname(node)]),
      '--bind', jobDir, '/srv', '--chdir', '/srv', '--unshare-pid', '--die-with-parent',
      '/bin/sh', ENTRYPOINT, node, PILOT_CLI,
    ];
    const job = run('bwrap', bwrap, { cwd: jobDir, env: { PATH: '/usr/bin:/bin', HOME: '/srv', _CONDOR_SCRATCH_DIR: '/srv' } });
    expect(await job.exited, job.output().slice(-3000)).toBe(0);
    expect((await drainOutputs(broker, queues.outgoing, 1)).map((o) => o.data)).toEqual([{ a: 1 }]);
    // The pilot's data went to the job directory (the host side of /srv), as the Python pilot's image does.
    const events = readdirSync(join(jobDir, 'ewms-pilot-data')).filter((d) => d !== 'data-hub');
    expect(events).toHaveLength(1);
    expect(job.output()).toContain('job directory /srv');
  }, 120_000);

  test('an env file that is not valid shell stops the job with exit 2, showing none of its content', async () => {
    const jobDir = mkdtempSync(join(tmpdir(), 'ewms-tms-bad-'));
    writeFileSync(join(jobDir, 'ewms_htcondor_envfile.sh'), `export EWMS_PILOT_QUEUE_INCOMING_AUTH_TOKEN='${MARKER}\nexport X=(\n`);
    const job = run('/bin/sh', [ENTRYPOINT, process.execPath, PILOT_CLI], { cwd: jobDir, env: { PATH: '/usr/bin:/bin', _CONDOR_SCRATCH_DIR: jobDir } });
    expect(await job.exited).toBe(2);
    expect(job.output()).toMatch(/ewms_htcondor_envfile\.sh is not a valid shell file/);
    expect(job.output()).not.toContain(MARKER);
  });

  test('without an env file the settings come from the environment; missing ones are named by the pilot (exit 2)', async () => {
    const jobDir = mkdtempSync(join(tmpdir(), 'ewms-tms-none-'));
    const job = run('/bin/sh', [ENTRYPOINT, process.execPath, PILOT_CLI], { cwd: jobDir, env: { PATH: '/usr/bin:/bin', _CONDOR_SCRATCH_DIR: jobDir } });
    expect(await job.exited).toBe(2);
    expect(job.output()).toMatch(/no .*ewms_htcondor_envfile\.sh; the pilot takes its settings from the environment/);
    expect(job.output()).toMatch(/EWMS_PILOT_QUEUE_INCOMING: is required but not set/);
  });
});
