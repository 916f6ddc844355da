/**
 * The Python pilot's image settings reach the runtimes: `_EWMS_PILOT_APPTAINER_IMAGE_DIRECTORY_MUST_BE_PRESENT`
 * refuses an image that is not a sandbox (at start, before any event), `_EWMS_PILOT_APPTAINER_BUILD_WORKDIR`
 * is where conversions happen, and `_EWMS_PILOT_DOCKER_SHM_SIZE` becomes `--shm-size`.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { createApptainerRuntime } from '../../pilot/runtime/apptainer.js';
import { createOciRuntime } from '../../pilot/runtime/oci.js';
import { RuntimeSetupError } from '../../pilot/runtime/types.js';
import { pathWithStandIns, taskRequest, testOptions } from './helpers.js';

function apptainerSetup(overrides: Parameters<typeof testOptions>[0] = {}) {
  const root = mkdtempSync(join(tmpdir(), 'ewms-image-settings-'));
  const log = join(root, 'calls.jsonl');
  const options = testOptions({ workDir: join(root, 'build-workdir'), baseEnv: { PATH: pathWithStandIns(), HOME: root, APPTAINER_STANDIN_LOG: log }, ...overrides });
  const builds = () => (existsSync(log) ? readFileSync(log, 'utf8').trim().split('\n').filter((l) => l.includes('"build"')) : []);
  return { root, options, builds };
}

describe('apptainer image conversion switch', () => {
  test('must-be-present: a SIF or docker:// image stops the pilot at start with a setup error, and nothing is built', async () => {
    const { root, options, builds } = apptainerSetup({ convertImages: false });
    const sif = join(root, 'task.sif');
    writeFileSync(sif, 'SIF');
    const runtime = createApptainerRuntime(options);
    for (const image of [sif, 'docker://alpine:3']) {
      const err = await runtime.prepare(image).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(RuntimeSetupError);
      expect((err as Error).message).toMatch(/not a sandbox directory, and _EWMS_PILOT_APPTAINER_IMAGE_DIRECTORY_MUST_BE_PRESENT forbids converting it/);
    }
    expect(builds()).toEqual([]);
  });

  test('must-be-present: a sandbox directory runs as it is', async () => {
    const { root, options } = apptainerSetup({ convertImages: false });
    const sandbox = join(root, 'sandbox');
    mkdirSync(join(sandbox, '.singularity.d'), { recursive: true });
    expect(await createApptainerRuntime(options).prepare(sandbox)).toEqual({ reference: sandbox, runnable: sandbox });
  });

  test('conversion allowed: the sandbox is built under the build workdir', async () => {
    const { root, options, builds } = apptainerSetup();
    const sif = join(root, 'task.sif');
    writeFileSync(sif, 'SIF');
    const prepared = await createApptainerRuntime(options).prepare(sif);
    expect(prepared.runnable?.startsWith(join(root, 'build-workdir', 'apptainer-images'))).toBe(true);
    expect(builds()).toHaveLength(1);
  });
});

test('the shared-memory size becomes --shm-size on docker and podman command lines', () => {
  for (const engine of ['docker', 'podman'] as const) {
    const runtime = createOciRuntime(engine, testOptions({ shmSize: '6gb' }), { uid: 0, gid: 0 });
    const { args } = runtime.command(taskRequest(), { reference: 'img', runnable: 'img' });
    expect(args).toContain('--shm-size=6gb');
    expect(args.indexOf('--shm-size=6gb')).toBeLessThan(args.indexOf('img'));
  }
  const plain = createOciRuntime('docker', testOptions(), { uid: 0, gid: 0 }).command(taskRequest(), { reference: 'img', runnable: 'img' });
  expect(plain.args.some((a) => a.startsWith('--shm-size'))).toBe(false);
});
