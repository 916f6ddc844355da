import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { createApptainerRuntime } from '../../pilot/runtime/apptainer.js';
import { RuntimeSetupError, type LaunchRequest, type PreparedImage } from '../../pilot/runtime/types.js';
import { GOLDEN_TASK_ARGS, GOLDEN_TASK_ENV, launch, pathWithStandIns, processesWith, taskRequest, testOptions } from './helpers.js';

const SANDBOX: PreparedImage = { reference: 'docker://example/task:1', runnable: '/work/apptainer-images/task-1' };

const HUB_MOUNT = 'type=bind,src=/scratch/ewms-pilot-data/data-hub,dst=/ewms-pilot-data/data-hub';
const IO_MOUNT = 'type=bind,src=/scratch/ewms-pilot-data/ev1/task-io,dst=/ewms-pilot-data/task-io';
/** The task env as the client's `APPTAINERENV_*` variables. */
const TASK_ENV = Object.fromEntries(GOLDEN_TASK_ENV.map(([name, value]) => [`APPTAINERENV_${name}`, value]));
const TASK_ARGS = GOLDEN_TASK_ARGS;

describe('apptainer command line (golden)', () => {
  test('a task: containall, no-eval, binds at the container paths, env, placeholders rewritten', () => {
    const runtime = createApptainerRuntime(testOptions());
    expect(runtime.command(taskRequest(), SANDBOX)).toEqual({
      file: 'apptainer',
      args: ['run', '--containall', '--no-eval', '--mount', HUB_MOUNT, '--mount', IO_MOUNT, SANDBOX.runnable, ...TASK_ARGS],
      env: { PATH: '/usr/bin:/bin', HOME: '/home/pilot', ...TASK_ENV },
    });
  });

  test('debug is a global flag before run; GPUs add --nv; external dirs are bound read-only at their own path', () => {
    const runtime = createApptainerRuntime(
      testOptions({ debug: true, gpus: true, externalDirectories: ['/cvmfs/icecube.opensciencegrid.org', '/data/ana/'] }),
    );
    expect(runtime.command(taskRequest(), SANDBOX).args).toEqual([
      '--debug', 'run', '--containall', '--no-eval', '--nv',
      '--mount', HUB_MOUNT,
      '--mount', 'type=bind,src=/cvmfs/icecube.opensciencegrid.org,dst=/cvmfs/icecube.opensciencegrid.org,ro',
      '--mount', 'type=bind,src=/data/ana,dst=/data/ana,ro',
      '--mount', IO_MOUNT,
      SANDBOX.runnable, ...TASK_ARGS,
    ]);
  });

  test('init (no infile/outfile): only the data hub placeholder and variable are set', () => {
    const runtime = createApptainerRuntime(testOptions());
    const request = taskRequest({
      args: ['/opt/init.sh', '{{DATAHUB}}', '{{INFILE}}'],
      env: {},
      paths: { taskIoDir: '/scratch/ewms-pilot-data/init/task-io', dataHub: '/scratch/ewms-pilot-data/data-hub' },
    });
    expect(runtime.command(request, SANDBOX).args).toEqual([
      'run', '--containall', '--no-eval',
      '--mount', HUB_MOUNT,
      '--mount', 'type=bind,src=/scratch/ewms-pilot-data/init/task-io,dst=/ewms-pilot-data/task-io',
      SANDBOX.runnable, '/opt/init.sh', '/ewms-pilot-data/data-hub', '{{INFILE}}',
    ]);
    expect(runtime.command(request, SANDBOX).env).toEqual({
      PATH: '/usr/bin:/bin',
      HOME: '/home/pilot',
      APPTAINERENV_EWMS_TASK_DATA_HUB_DIR: '/ewms-pilot-data/data-hub',
    });
  });

  test('every value travels as APPTAINERENV_*, verbatim; the node\'s own APPTAINERENV_ and bind variables are dropped', () => {
    const runtime = createApptainerRuntime(
      testOptions({
        baseEnv: {
          PATH: '/usr/bin',
          APPTAINERENV_FROM_NODE: 'x',
          SINGULARITYENV_OLD: 'y',
          APPTAINER_BINDPATH: '/etc',
          SINGULARITY_BIND: '/var',
          APPTAINER_CACHEDIR: '/scratch/cache',
        },
      }),
    );
    const request = taskRequest({
      env: { LIST: 'a,b', QUOTED: 'say "hi"', LINES: 'one\ntwo', PADDED: ' x ', EQUALS: 'k=v', DOLLAR: '$HOME', EWMS_TASK_INFILE: '/mine' },
    });
    const command = runtime.command(request, SANDBOX);
    expect(command.env).toEqual({
      PATH: '/usr/bin',
      APPTAINER_CACHEDIR: '/scratch/cache',
      APPTAINERENV_LIST: 'a,b',
      APPTAINERENV_QUOTED: 'say "hi"',
      APPTAINERENV_LINES: 'one\ntwo',
      APPTAINERENV_PADDED: ' x ',
      APPTAINERENV_EQUALS: 'k=v',
      APPTAINERENV_DOLLAR: '$HOME',
      // The pilot's own variables win over a task env entry of the same name.
      APPTAINERENV_EWMS_TASK_DATA_HUB_DIR: '/ewms-pilot-data/data-hub',
      APPTAINERENV_EWMS_TASK_INFILE: '/ewms-pilot-data/task-io/in-ev1.in',
      APPTAINERENV_EWMS_TASK_OUTFILE: '/ewms-pilot-data/task-io/out-ev1.out',
    });
    expect(command.args).not.toContain('--env');
  });

  test('refusals: a forbidden external dir, a bad env name, an infile outside task-io, no image', () => {
    expect(() => createApptainerRuntime(testOptions({ externalDirectories: ['/proc'] })).command(taskRequest(), SANDBOX)).toThrow(
      RuntimeSetupError,
    );
    expect(() => createApptainerRuntime(testOptions()).command(taskRequest({ env: { 'BAD-NAME': '1' } }), SANDBOX)).toThrow(
      /invalid environment variable name/,
    );
    const outside = taskRequest();
    outside.paths.infile = '/scratch/elsewhere/in.in';
    expect(() => createApptainerRuntime(testOptions()).command(outside, SANDBOX)).toThrow(/not inside the run's task-io/);
    expect(() => createApptainerRuntime(testOptions()).command(taskRequest(), { reference: undefined, runnable: undefined })).toThrow(
      /without a prepared image/,
    );
  });
});

/** A work dir, a stand-in log, and options whose PATH finds the stand-in first. */
function standInSetup(overrides: Parameters<typeof testOptions>[0] = {}) {
  const root = mkdtempSync(join(tmpdir(), 'ewms-apptainer-'));
  const log = join(root, 'apptainer-calls.jsonl');
  const options = testOptions({
    workDir: join(root, 'work'),
    baseEnv: { PATH: pathWithStandIns(), HOME: root, APPTAINER_STANDIN_LOG: log },
    ...overrides,
  });
  const calls = (): string[][] =>
    existsSync(log) ? readFileSync(log, 'utf8').trim().split('\n').map((line) => (JSON.parse(line) as { argv: string[] }).argv) : [];
  return { root, options, calls };
}

function makeSandbox(dir: string): string {
  mkdirSync(join(dir, '.singularity.d'), { recursive: true });
  writeFileSync(join(dir, '.singularity.d', 'runscript'), '#!/bin/sh\nexec "$@"\n', { mode: 0o755 });
  return dir;
}

describe('apptainer prepare() with the stand-in on PATH', () => {
  test('a sandbox directory is used as it is, without a build', async () => {
    const { root, options, calls } = standInSetup();
    const sandbox = makeSandbox(join(root, 'my-sandbox'));
    const runtime = createApptainerRuntime(options);
    expect(await runtime.prepare(sandbox)).toEqual({ reference: sandbox, runnable: sandbox });
    expect(calls()).toEqual([['--version']]);
  });

  test('an image file is built into a sandbox once per pilot, and a later pilot on the same work dir reuses it', async () => {
    const { root, options, calls } = standInSetup();
    const sif = join(root, 'task.sif');
    writeFileSync(sif, 'SIF image bytes');
    const runtime = createApptainerRuntime(options);
    const [first, second] = await Promise.all([runtime.prepare(sif), runtime.prepare(sif)]);
    expect(second).toEqual(first);
    expect(first.runnable).toMatch(new RegExp(`^${options.workDir}/apptainer-images/.*task.sif-[0-9a-f]{12}$`));
    expect(existsSync(join(first.runnable!, '.singularity.d'))).toBe(true);
    const builds = calls().filter((argv) => argv.includes('build'));
    expect(builds).toEqual([['build', '--fix-perms', '--sandbox', `${first.runnable}.partial-${process.pid}`, sif]]);

    const again = await createApptainerRuntime(options).prepare(sif);
    expect(again.runnable).toBe(first.runnable);
    expect(calls().filter((argv) => argv.includes('build'))).toHaveLength(1);
    expect(readdirSync(join(options.workDir, 'apptainer-images'))).toEqual([first.runnable!.split('/').pop()]);
  });

  test('docker:// and oras:// references are built (debug passes --debug to the build)', async () => {
    const { options, calls } = standInSetup({ debug: true });
    const runtime = createApptainerRuntime(options);
    const docker = await runtime.prepare('docker://icecube/skymap_scanner:3.1');
    const oras = await runtime.prepare('oras://ghcr.io/example/task:1');
    expect(docker.runnable).toMatch(/icecube_skymap_scanner_3.1-[0-9a-f]{12}$/);
    expect(oras.runnable).not.toBe(docker.runnable);
    expect(calls().filter((argv) => argv.includes('build'))).toEqual([
      ['--debug', 'build', '--fix-perms', '--sandbox', `${docker.runnable}.partial-${process.pid}`, 'docker://icecube/skymap_scanner:3.1'],
      ['--debug', 'build', '--fix-perms', '--sandbox', `${oras.runnable}.partial-${process.pid}`, 'oras://ghcr.io/example/task:1'],
    ]);
  });

  test('an unreachable registry fails at start with the build\'s error and leaves no partial sandbox', async () => {
    const { options } = standInSetup();
    const err = await createApptainerRuntime(options).prepare('docker://unreachable.invalid/task:1').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RuntimeSetupError);
    expect((err as Error).message).toMatch(/could not build .* no such host/);
    expect(readdirSync(join(options.workDir, 'apptainer-images'))).toEqual([]);
  });

  test('a missing image, no image, a missing external dir and a missing apptainer fail at start', async () => {
    const { root, options, calls } = standInSetup();
    await expect(createApptainerRuntime(options).prepare(join(root, 'nope.sif'))).rejects.toThrow(/image not found/);
    const bare = await createApptainerRuntime(options).prepare('python:3.12').catch((e: unknown) => e);
    expect((bare as RuntimeSetupError).hint).toMatch(/prefix a registry image with docker:\/\/ \(e.g. docker:\/\/python:3.12\)/);
    await expect(createApptainerRuntime(options).prepare(undefined)).rejects.toThrow(/needs an image/);
    expect(calls().some((argv) => argv.includes('build'))).toBe(false);
    const missingDir = standInSetup({ externalDirectories: [join(root, 'absent')] });
    await expect(createApptainerRuntime(missingDir.options).prepare('docker://x/y:1')).rejects.toThrow(/does not exist/);
    const noApptainer = standInSetup();
    noApptainer.options.baseEnv = { PATH: '/nonexistent' };
    const err = await createApptainerRuntime(noApptainer.options).prepare('docker://x/y:1').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RuntimeSetupError);
    expect((err as Error).message).toMatch(/apptainer is not installed or not on PATH/);
  });
});

const bwrapMissing = spawnSync('bwrap', ['--version']).status === 0 ? undefined : 'bubblewrap (bwrap) is not installed';
if (bwrapMissing) console.warn(`SKIPPED real apptainer-style runs: ${bwrapMissing} (apt-get install bubblewrap)`);

describe.skipIf(bwrapMissing !== undefined)('a real containall run through the stand-in (bubblewrap)', () => {
  function runDirs() {
    const setup = standInSetup();
    const data = join(setup.root, 'ewms-pilot-data');
    const taskIoDir = join(data, 'ev1', 'task-io');
    const dataHub = join(data, 'data-hub');
    const external = join(setup.root, 'external');
    for (const dir of [taskIoDir, dataHub, external]) mkdirSync(dir, { recursive: true });
    writeFileSync(join(external, 'calibration.txt'), 'gain=2\n');
    return { ...setup, taskIoDir, dataHub, external };
  }

  test('the task reads its infile and writes its outfile through the binds; env arrives exactly', async () => {
    const dirs = runDirs();
    dirs.options.externalDirectories = [dirs.external];
    const runtime = createApptainerRuntime(dirs.options);
    const image = await runtime.prepare('docker://example/task:1');
    const infile = join(dirs.taskIoDir, 'in-ev1.in');
    writeFileSync(infile, 'hello event\n');
    const tricky = 'a,b "quoted" $HOME\nsecond line';
    const request: LaunchRequest = {
      args: [
        'sh', '-c',
        'tr a-z A-Z < "$1" > "$2"; cat "$3/calibration.txt" >> "$2"; printf %s "$TRICKY" > "$EWMS_TASK_DATA_HUB_DIR/tricky";' +
          ' if touch "$3/x" 2>/dev/null; then echo external-writable; else echo external-read-only; fi; ls /',
        'task', '{{INFILE}}', '{{OUTFILE}}', dirs.external,
      ],
      env: { TRICKY: tricky, PLAIN: 'p' },
      paths: { taskIoDir: dirs.taskIoDir, infile, outfile: join(dirs.taskIoDir, 'out-ev1.out'), dataHub: dirs.dataHub },
      runId: 'ev1-a1',
    };
    const command = runtime.command(request, image);
    const outcome = await launch(command);
    expect(outcome.stderr).toBe('');
    expect(outcome.code).toBe(0);
    expect(readFileSync(join(dirs.taskIoDir, 'out-ev1.out'), 'utf8')).toBe('HELLO EVENT\ngain=2\n');
    expect(readFileSync(join(dirs.dataHub, 'tricky'), 'utf8')).toBe(tricky);
    expect(outcome.stdout).toMatch(/^external-read-only\n/);
    // A fresh root: the host's home, /work or /srv are not there, the pilot's directory is.
    expect(outcome.stdout).toContain('ewms-pilot-data');
    expect(outcome.stdout).not.toMatch(/^(work|srv|home)$/m);
  });

  test('killing the process group on a timeout leaves no process behind', async () => {
    const dirs = runDirs();
    const runtime = createApptainerRuntime(dirs.options);
    const image = await runtime.prepare('docker://example/task:1');
    const marker = `ewms-timeout-marker-${process.pid}-${Date.now()}`;
    const request: LaunchRequest = {
      args: ['sh', '-c', `trap '' TERM; sleep 300; echo ${marker}`],
      env: {},
      paths: { taskIoDir: dirs.taskIoDir, dataHub: dirs.dataHub },
      runId: 'ev1-a1',
    };
    const command = runtime.command(request, image);
    const outcome = await launch(command, { killGroupAfterMs: 800, graceMs: 500 });
    await runtime.stop(command);
    expect(outcome.signal ?? outcome.code).toBeTruthy();
    await new Promise((r) => setTimeout(r, 200));
    expect(processesWith(marker)).toEqual([]);
  });
});
