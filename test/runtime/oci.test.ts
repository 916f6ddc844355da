import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { createOciRuntime, imageDigest, type OciEngine } from '../../pilot/runtime/oci.js';
import { removeLaunchFiles, writeLaunchFiles } from '../../pilot/runtime/launch-files.js';
import { RuntimeSetupError, type PreparedImage } from '../../pilot/runtime/types.js';
import { GOLDEN_TASK_ARGS, GOLDEN_TASK_ENV, pathWithStandIns, taskRequest, testOptions } from './helpers.js';

const IMAGE: PreparedImage = { reference: 'ghcr.io/example/task:1', runnable: 'ghcr.io/example/task:1' };
const ROOT = { uid: 0, gid: 0 };
const USER = { uid: 1000, gid: 1001 };

const BINDS = [
  '--mount', 'type=bind,source=/scratch/ewms-pilot-data/data-hub,target=/ewms-pilot-data/data-hub',
  '--mount', 'type=bind,source=/scratch/ewms-pilot-data/ev1/task-io,target=/ewms-pilot-data/task-io',
];
/** The run's env file: in the event's directory, beside (not inside) the bound task-io directory. */
const ENV_FILE_PATH = '/scratch/ewms-pilot-data/ev1/container.env';
const ENV_FILE = { path: ENV_FILE_PATH, content: GOLDEN_TASK_ENV.map(([name, value]) => `${name}=${value}\n`).join('') };
const ENV = ['--env-file', ENV_FILE_PATH];
const ARGS = GOLDEN_TASK_ARGS;

describe('docker/podman command lines (golden)', () => {
  test.each<OciEngine>(['docker', 'podman'])('%s as root: named, removed, init, never pulls, no user mapping', (engine) => {
    const runtime = createOciRuntime(engine, testOptions(), ROOT);
    expect(runtime.command(taskRequest(), IMAGE)).toEqual({
      file: engine,
      args: ['run', '--rm', '--name', 'ewms-ev1-a1', '--init', '--pull=never', ...BINDS, ...ENV, IMAGE.runnable, ...ARGS],
      env: { PATH: '/usr/bin:/bin', HOME: '/home/pilot' },
      containerName: 'ewms-ev1-a1',
      files: [ENV_FILE],
    });
  });

  test('docker as a user: --user uid:gid, --gpus all, external dirs read-only at their path', () => {
    const runtime = createOciRuntime('docker', testOptions({ gpus: true, debug: true, externalDirectories: ['/cvmfs/x'] }), USER);
    expect(runtime.command(taskRequest(), IMAGE).args).toEqual([
      'run', '--rm', '--name', 'ewms-ev1-a1', '--init', '--pull=never', '--user', '1000:1001', '--gpus', 'all',
      BINDS[0], BINDS[1], '--mount', 'type=bind,source=/cvmfs/x,target=/cvmfs/x,readonly', BINDS[2], BINDS[3],
      ...ENV, IMAGE.runnable, ...ARGS,
    ]);
  });

  test('podman as a user: --userns=keep-id and the CDI GPU device', () => {
    const runtime = createOciRuntime('podman', testOptions({ gpus: true }), USER);
    expect(runtime.command(taskRequest(), IMAGE).args.slice(0, 10)).toEqual([
      'run', '--rm', '--name', 'ewms-ev1-a1', '--init', '--pull=never', '--userns=keep-id', '--device', 'nvidia.com/gpu=all', '--mount',
    ]);
  });

  test('values go verbatim into the env file (its reader neither splits, unquotes nor evaluates them)', () => {
    const runtime = createOciRuntime('docker', testOptions(), ROOT);
    const env = { LIST: 'a,b', QUOTED: '"y"', DOLLAR: '$HOME', HASH: 'a #b', PADDED: ' x ', EQUALS: 'k=v' };
    const command = runtime.command(taskRequest({ env }), IMAGE);
    const lines = command.files![0]!.content.split('\n');
    for (const [name, value] of Object.entries(env)) expect(lines).toContain(`${name}=${value}`);
  });

  test.each([
    ['a line break', 'one\ntwo', /holds a line break/],
    ['a carriage return', 'one\r', /holds a line break/],
    ['a lone surrogate', 'a\ud800b', /not valid Unicode/],
    ['a value past the 64 KiB line limit', 'x'.repeat(70_000), /line limit/],
  ])('a value the env file cannot carry (%s) is refused, named but never shown', (_what, value, reason) => {
    const runtime = createOciRuntime('podman', testOptions(), ROOT);
    const err = (() => {
      try {
        runtime.command(taskRequest({ env: { SECRET_TOKEN: value } }), IMAGE);
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    expect(err).toBeInstanceOf(RuntimeSetupError);
    expect((err as Error).message).toMatch(reason);
    expect((err as Error).message).toMatch(/SECRET_TOKEN/);
    expect((err as Error).message).not.toContain(value);
  });

  test('refuses what the mount rules refuse', () => {
    expect(() => createOciRuntime('docker', testOptions({ externalDirectories: ['/run/secrets'] }), ROOT).command(taskRequest(), IMAGE)).toThrow(
      RuntimeSetupError,
    );
    const duplicate = createOciRuntime('podman', testOptions({ externalDirectories: ['/ewms-pilot-data/task-io'] }), ROOT);
    expect(() => duplicate.command(taskRequest(), IMAGE)).toThrow(/same container path/);
  });
});

function standIn(engine: OciEngine, env: Record<string, string>) {
  const root = mkdtempSync(join(tmpdir(), `ewms-${engine}-`));
  const state = join(root, 'state');
  mkdirSync(state);
  const log = join(root, 'calls.jsonl');
  const options = testOptions({
    workDir: join(root, 'work'),
    baseEnv: { PATH: pathWithStandIns(), OCI_STANDIN_LOG: log, OCI_STANDIN_STATE: state, ...env },
  });
  const calls = (): string[][] =>
    existsSync(log) ? readFileSync(log, 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as { argv: string[] }).argv) : [];
  return { options, calls, runtime: createOciRuntime(engine, options, ROOT) };
}

describe.each<OciEngine>(['docker', 'podman'])('%s prepare() and stop() with a stand-in on PATH', (engine) => {
  test('an image already present is not pulled', async () => {
    const { runtime, calls } = standIn(engine, { OCI_STANDIN_IMAGES: 'ghcr.io/example/task:1' });
    expect(await runtime.prepare('ghcr.io/example/task:1')).toEqual(IMAGE);
    expect(calls()).toEqual([['image', 'inspect', 'ghcr.io/example/task:1']]);
  });

  test('a missing image is pulled once, however often prepare() is called, then inspected for its digest', async () => {
    const { runtime, calls } = standIn(engine, { OCI_STANDIN_PULLABLE: 'ghcr.io/example/task:1' });
    await Promise.all([runtime.prepare('ghcr.io/example/task:1'), runtime.prepare('ghcr.io/example/task:1')]);
    expect(calls()).toEqual([
      ['image', 'inspect', 'ghcr.io/example/task:1'],
      ['pull', 'ghcr.io/example/task:1'],
      // Once more, for the pulled image's digest.
      ['image', 'inspect', 'ghcr.io/example/task:1'],
    ]);
  });

  test('a failed pull is a start-up error with the engine\'s reason', async () => {
    const { runtime } = standIn(engine, {});
    const err = await runtime.prepare('ghcr.io/example/private:1').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RuntimeSetupError);
    expect((err as Error).message).toMatch(new RegExp(`could not pull ghcr.io/example/private:1 with ${engine}: .*(denied)`));
  });

  test('no image configured, or the engine not on PATH, fail at start', async () => {
    const { runtime, options } = standIn(engine, {});
    await expect(runtime.prepare(undefined)).rejects.toThrow(/needs an image/);
    options.baseEnv = { PATH: '/nonexistent' };
    await expect(createOciRuntime(engine, options, ROOT).prepare('x/y:1')).rejects.toThrow(new RegExp(`${engine} is not installed`));
  });

  test('stop() stops the named container with the pilot\'s kill grace, then makes sure it is gone; never throws', async () => {
    const { calls, options } = standIn(engine, { OCI_STANDIN_CONTAINERS: 'ewms-ev1-a1,stuck-one', OCI_STANDIN_STUCK: 'stuck-one' });
    options.killGraceSeconds = 7.5;
    const runtime = createOciRuntime(engine, options, ROOT);
    const command = runtime.command(taskRequest(), IMAGE);
    await runtime.stop(command);
    const rm = (name: string) => (engine === 'docker' ? ['rm', '-f', name] : ['rm', '-f', '--time', '0', name]);
    expect(calls()).toEqual([['stop', '-t', '8', 'ewms-ev1-a1'], rm('ewms-ev1-a1'), ['container', 'inspect', 'ewms-ev1-a1']]);

    // A container that ignores stop (or a client killed before the daemon answered) is removed by rm -f.
    await runtime.stop({ ...command, containerName: 'stuck-one' });
    expect(calls().slice(3)).toEqual([['stop', '-t', '8', 'stuck-one'], rm('stuck-one'), ['container', 'inspect', 'stuck-one']]);

    await runtime.stop({ ...command, containerName: 'never-existed' });
    options.baseEnv = { PATH: '/nonexistent' };
    await expect(createOciRuntime(engine, options, ROOT).stop(command)).resolves.toBeUndefined();
    expect(options.logs.filter((l) => l.level === 'warn')).toEqual([]);
  });
});

const dockerCli = spawnSync('docker', ['--version'], { encoding: 'utf8' });
const dockerMissing = dockerCli.status === 0 ? undefined : 'the docker CLI is not installed';
if (dockerMissing) console.warn(`SKIPPED checks against the real docker CLI: ${dockerMissing}`);

/**
 * The docker CLI parses every flag and each `--mount` spec before it contacts the daemon, so pointing it
 * at a socket that does not exist checks our argument vectors against the real parser on a machine
 * without a Docker daemon.
 */
describe.skipIf(dockerMissing !== undefined)('the real docker CLI accepts the command lines (no daemon: it fails only at connecting)', () => {
  const noDaemon = { PATH: process.env.PATH ?? '/usr/bin:/bin', DOCKER_HOST: 'unix:///nonexistent/ewms-test-docker.sock', HOME: tmpdir() };

  test('run (user mapping, GPUs, binds, env file), stop and rm', async () => {
    const options = testOptions({ gpus: true, externalDirectories: ['/cvmfs/x'], baseEnv: noDaemon, killGraceSeconds: 1 });
    const runtime = createOciRuntime('docker', options, USER);
    const dir = mkdtempSync(join(tmpdir(), 'ewms-docker-cli-'));
    const request = taskRequest({ env: { LIST: 'a,b', QUOTED: '"y"' } });
    request.paths = { ...request.paths, taskIoDir: join(dir, 'task-io'), infile: join(dir, 'task-io', 'in'), outfile: join(dir, 'task-io', 'out') };
    const command = runtime.command(request, IMAGE);
    // The CLI reads the env file before it contacts the daemon: a missing file would fail earlier.
    await writeLaunchFiles(command);
    const run = spawnSync(command.file, command.args, { env: command.env, encoding: 'utf8' });
    await removeLaunchFiles(command);
    expect(run.stderr).toMatch(/Cannot connect to the Docker daemon/);
    expect(run.stderr).not.toMatch(/unknown flag|invalid argument|unknown shorthand/);
    for (const args of [['stop', '-t', '1', 'ewms-ev1-a1'], ['rm', '-f', 'ewms-ev1-a1']]) {
      const result = spawnSync('docker', args, { env: noDaemon, encoding: 'utf8' });
      expect(result.stderr).toMatch(/Cannot connect to the Docker daemon/);
    }
    // And a mount spec the parser does refuse, to show the check can fail.
    const bad = spawnSync('docker', ['run', '--mount', 'type=bind,source=/tmp,target=/x,bogus', 'img'], { env: noDaemon, encoding: 'utf8' });
    expect(bad.stderr).toMatch(/invalid argument/);
  });

  test('prepare() without a reachable daemon is a start-up error that says so', async () => {
    const runtime = createOciRuntime('docker', testOptions({ baseEnv: noDaemon }), ROOT);
    const err = await runtime.prepare('ghcr.io/example/task:1').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RuntimeSetupError);
    expect((err as Error).message).toMatch(/could not pull ghcr.io\/example\/task:1 with docker: .*Cannot connect to the Docker daemon/s);
  });
});

describe('imageDigest (what `image inspect` says the image is)', () => {
  const sha = (c: string) => `sha256:${c.repeat(64)}`;
  test('the registry digest first, then podman\'s Digest, then the local id; nothing from output it does not know', () => {
    expect(imageDigest(JSON.stringify([{ Id: sha('a'), RepoDigests: [`ghcr.io/x/task@${sha('b')}`] }]))).toBe(sha('b'));
    expect(imageDigest(JSON.stringify([{ Id: 'c'.repeat(64), Digest: sha('d'), RepoDigests: [] }]))).toBe(sha('d'));
    expect(imageDigest(JSON.stringify([{ Id: 'e'.repeat(64) }]))).toBe(sha('e'));
    expect(imageDigest(JSON.stringify([{ Id: sha('f') }]))).toBe(sha('f'));
    expect(imageDigest('Error: no such image')).toBeUndefined();
    expect(imageDigest(JSON.stringify([{ Id: 'not-a-digest' }]))).toBeUndefined();
    expect(imageDigest('[]')).toBeUndefined();
  });
});
