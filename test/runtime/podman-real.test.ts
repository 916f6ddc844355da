/**
 * The Podman runtime's exact command lines, run for real: Podman 4.3 works on this kind of machine with
 * runc and lowered ulimits (CONTAINERS_CONF below) and an image imported from a static busybox rootfs.
 * Where Podman cannot run, every test is skipped with the reason printed.
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import { drainOutputs, PILOT_CLI, pilotEnv, publishEvents, startPilot, TestQueues } from '../pilot-integration/run-pilot.js';
import { PROVENANCE_HEADERS, readProvenance } from '../../common/provenance.js';
import { createOciRuntime } from '../../pilot/runtime/oci.js';
import { RuntimeSetupError, type LaunchRequest, type PreparedImage } from '../../pilot/runtime/types.js';
import { launch, testOptions } from './helpers.js';

const root = mkdtempSync(join(tmpdir(), 'ewms-podman-'));
const containersConf = join(root, 'containers.conf');
writeFileSync(
  containersConf,
  // crun fails on this kind of machine and the default ulimits exceed what it allows; tasks here need
  // no network, which also spares the test a CNI set-up.
  '[containers]\ndefault_ulimits=["nofile=1024:1024","nproc=1024:1024"]\nnetns="none"\n[engine]\nruntime="runc"\n',
);
const engineEnv = { PATH: process.env.PATH ?? '/usr/bin:/bin', CONTAINERS_CONF: containersConf, HOME: root };
const imageTag = `localhost/ewms-test-busybox:${process.pid}`;

function podman(...args: string[]) {
  return spawnSync('podman', args, { env: engineEnv, encoding: 'utf8', timeout: 60_000 });
}

/** Why Podman cannot run here, or undefined when it can (tries a real container). */
function podmanUnavailable(): string | undefined {
  if (spawnSync('podman', ['--version']).status !== 0) return 'podman is not installed (apt-get install -y podman runc catatonit busybox-static)';
  if (spawnSync('runc', ['--version']).status !== 0) return 'runc is not installed (apt-get install -y runc)';
  const busybox = ['/bin/busybox', '/usr/bin/busybox'].find((p) => spawnSync('file', ['-L', p], { encoding: 'utf8' }).stdout?.includes('statically linked'));
  if (!busybox) return 'no statically linked busybox for the test image (apt-get install -y busybox-static)';
  const rootfs = join(root, 'rootfs');
  for (const dir of ['bin', 'dev', 'proc', 'sys', 'tmp', 'etc']) mkdirSync(join(rootfs, dir), { recursive: true });
  copyFileSync(busybox, join(rootfs, 'bin', 'busybox'));
  for (const applet of ['sh', 'cat', 'tr', 'sleep', 'echo', 'touch', 'id', 'ls']) symlinkSync('busybox', join(rootfs, 'bin', applet));
  const tar = spawnSync('tar', ['-C', rootfs, '-cf', join(root, 'rootfs.tar'), '.']);
  if (tar.status !== 0) return `could not pack the rootfs: ${tar.stderr.toString()}`;
  const imported = podman('import', join(root, 'rootfs.tar'), imageTag);
  if (imported.status !== 0) return `podman import failed: ${imported.stderr.trim()}`;
  const probe = podman('run', '--rm', '--pull=never', imageTag, '/bin/sh', '-c', 'echo ok');
  if (probe.stdout.trim() !== 'ok') return `podman cannot run a container here: ${(probe.stderr || probe.stdout).trim().split('\n').pop()}`;
  const withInit = podman('run', '--rm', '--init', '--pull=never', imageTag, '/bin/sh', '-c', 'echo ok');
  if (withInit.stdout.trim() !== 'ok') return `podman run --init fails (apt-get install -y catatonit): ${withInit.stderr.trim().split('\n').pop()}`;
  return undefined;
}

const unavailable = podmanUnavailable();
if (unavailable) console.warn(`SKIPPED real Podman runs: ${unavailable}`);

function runDirs() {
  const data = mkdtempSync(join(root, 'ewms-pilot-data-'));
  const taskIoDir = join(data, 'ev1', 'task-io');
  const dataHub = join(data, 'data-hub');
  mkdirSync(taskIoDir, { recursive: true });
  mkdirSync(dataHub, { recursive: true });
  return { taskIoDir, dataHub };
}

describe.skipIf(unavailable !== undefined)('podman runtime, real containers', () => {
  const options = testOptions({ baseEnv: engineEnv, workDir: join(root, 'work'), killGraceSeconds: 1 });
  const runtime = createOciRuntime('podman', options);
  let image: PreparedImage;

  beforeAll(async () => {
    image = await runtime.prepare(imageTag);
  });

  test('the image is found locally, not pulled; an unknown image is a start-up error', async () => {
    // The manifest digest podman gives the image (what `<name>@sha256:…` names).
    const digest = podman('image', 'inspect', '--format', '{{.Digest}}', imageTag).stdout.trim();
    expect(digest).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(image).toEqual({ reference: imageTag, runnable: imageTag, digest });
    expect(options.logs.some((l) => l.msg === 'image present')).toBe(true);
    const err = await runtime.prepare('localhost:1/ewms/does-not-exist:1').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RuntimeSetupError);
    expect((err as Error).message).toMatch(/could not pull localhost:1\/ewms\/does-not-exist:1 with podman/);
  });

  test('a task reads its infile and writes its outfile through the binds, at the container paths', async () => {
    const dirs = runDirs();
    const infile = join(dirs.taskIoDir, 'in-ev1.in');
    writeFileSync(infile, 'hello podman\n');
    const request: LaunchRequest = {
      args: ['/bin/sh', '-c', 'tr a-z A-Z < "$EWMS_TASK_INFILE" > "$1"; printf %s "$TRICKY" > "$EWMS_TASK_DATA_HUB_DIR/tricky"', 'task', '{{OUTFILE}}'],
      env: { TRICKY: ' a,b "c" $HOME #not-a-comment k=v ' },
      paths: { taskIoDir: dirs.taskIoDir, infile, outfile: join(dirs.taskIoDir, 'out-ev1.out'), dataHub: dirs.dataHub },
      runId: `ewms-test-${process.pid}-ok`,
    };
    const command = runtime.command(request, image);
    expect(command.args.join(' ')).not.toContain('not-a-comment');
    const outcome = await launch(command);
    expect(outcome.stderr).toBe('');
    expect(outcome.code).toBe(0);
    expect(readFileSync(request.paths.outfile!, 'utf8')).toBe('HELLO PODMAN\n');
    expect(readFileSync(join(dirs.dataHub, 'tricky'), 'utf8')).toBe(' a,b "c" $HOME #not-a-comment k=v ');
    expect(podman('ps', '-a', '--filter', `name=^${request.runId}$`, '--format', '{{.Names}}').stdout.trim()).toBe('');
  });

  test('a task killed on timeout leaves no container once stop() ran', async () => {
    const dirs = runDirs();
    const request: LaunchRequest = {
      // Ignores SIGTERM, as a stuck task might: only the container's removal ends it.
      args: ['/bin/sh', '-c', "trap '' TERM; sleep 300"],
      env: {},
      paths: { taskIoDir: dirs.taskIoDir, dataHub: dirs.dataHub },
      runId: `ewms-test-${process.pid}-timeout`,
    };
    const command = runtime.command(request, image);
    const outcome = await launch(command, { killGroupAfterMs: 1500, graceMs: 500 });
    expect(outcome.signal ?? outcome.code).toBeTruthy();
    const orphan = podman('ps', '-a', '--filter', `name=^${request.runId}$`, '--format', '{{.Names}}').stdout.trim();
    console.info(`after killing the client's process group, podman ps -a shows: ${orphan || '(nothing)'}`);
    const started = Date.now();
    await runtime.stop(command);
    console.info(`stop() took ${Date.now() - started} ms`);
    expect(podman('ps', '-a', '--filter', `name=^${request.runId}$`, '--format', '{{.Names}}').stdout.trim()).toBe('');
  });
});

const testQueues = new TestQueues();
afterEach(() => testQueues.cleanup());
// After every describe block: the pilot run below uses the same image.
afterAll(() => {
  if (!unavailable) podman('rmi', '-f', imageTag);
});
const pilotMissing = existsSync(PILOT_CLI) ? undefined : `${PILOT_CLI} is missing (build first: npx tsc -p tsconfig.json)`;
if (!unavailable && pilotMissing) console.warn(`SKIPPED the pilot run with Podman: ${pilotMissing}`);

describe.skipIf(unavailable !== undefined || pilotMissing !== undefined)('the pilot with EWMS_PILOT_CONTAINER_RUNTIME=podman', () => {
  test('the task env reaches each task through the env file, which is gone after the run; no value on a command line', async () => {
    const { broker, queues } = await testQueues.create('rabbitmq');
    const dataParent = mkdtempSync(join(root, 'pilot-'));
    const token = `tok-${process.pid}-secret`;
    const ids = await publishEvents(broker, queues.incoming, ['event zero', 'event one']);
    const pilot = startPilot(
      pilotEnv('rabbitmq', queues, {
        ...engineEnv,
        EWMS_PILOT_CONTAINER_RUNTIME: 'podman',
        EWMS_PILOT_TASK_IMAGE: imageTag,
        EWMS_PILOT_DATA_DIR_PARENT_PATH_ON_HOST: dataParent,
        EWMS_PILOT_KEEP_ALL_TASK_FILES: 'true',
        EWMS_PILOT_TASK_ARGS: `/bin/sh -c 'printf "%s|%s|%s" "$(cat {{INFILE}})" "$TOKEN" "$EWMS_TASK_INFILE" > {{OUTFILE}}'`,
        EWMS_PILOT_TASK_ENV_JSON: JSON.stringify({ TOKEN: token }),
      }),
    );
    const { code } = await pilot.exited;
    expect(code, pilot.stderr().slice(-3000)).toBe(0);
    const outputs = await drainOutputs(broker, queues.outgoing, 2);
    const byInput = new Map(outputs.map((o) => [o.inputEventId, String(o.data)]));
    // Every result's provenance names the image and its digest as podman reports it.
    const digest = podman('image', 'inspect', '--format', '{{.Digest}}', imageTag).stdout.trim();
    for (const output of outputs) {
      const [step] = readProvenance(output.delivery.headers[PROVENANCE_HEADERS.provenance]);
      expect(step).toMatchObject({ image: imageTag, image_digest: digest });
    }
    ['event zero', 'event one'].forEach((text, i) => {
      const [infileText, received, infilePath] = byInput.get(ids[i]!)!.split('|');
      expect(infileText).toBe(text);
      expect(received).toBe(token);
      expect(infilePath).toMatch(/^\/ewms-pilot-data\/task-io\/[^/]+$/);
    });
    // The run directories were kept, the env files holding the token were not.
    const dataDir = join(dataParent, 'ewms-pilot-data');
    const runDirs = readdirSync(dataDir).filter((name) => name !== 'data-hub');
    expect(runDirs.length).toBeGreaterThanOrEqual(2);
    for (const dir of runDirs) expect(readdirSync(join(dataDir, dir))).not.toContain('container.env');
    expect(pilot.stdout() + pilot.stderr()).not.toContain(token);
  }, 120_000);
});
