/**
 * Task env values often hold tokens, and every local user of a node can read a process's command line
 * (/proc/<pid>/cmdline): no runtime may put a value there. And the private files that carry the env
 * instead (docker/podman `--env-file`) are the pilot user's alone and do not outlive the run.
 */
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { createApptainerRuntime } from '../../pilot/runtime/apptainer.js';
import { removeLaunchFiles, writeLaunchFiles } from '../../pilot/runtime/launch-files.js';
import { createHostRuntime } from '../../pilot/runtime/none.js';
import { createOciRuntime } from '../../pilot/runtime/oci.js';
import { RUNTIME_NAMES, type ContainerRuntime, type PreparedImage, type RuntimeName } from '../../pilot/runtime/types.js';
import { taskRequest, testOptions } from './helpers.js';

const SECRET = 'tok-9f8e7d6c5b4a';
const SECRET_ENV = { BROKER_TOKEN: SECRET, SHORT: 'zz', SPACED: ` ${SECRET} with "quotes", commas and $HOME ` };

function runtimeFor(name: RuntimeName): { runtime: ContainerRuntime; image: PreparedImage } {
  const image: PreparedImage = { reference: 'img', runnable: name === 'apptainer' ? '/images/task-sandbox' : 'img' };
  switch (name) {
    case 'none':
      return { runtime: createHostRuntime(testOptions()), image: { reference: undefined, runnable: undefined } };
    case 'apptainer':
      return { runtime: createApptainerRuntime(testOptions()), image };
    case 'docker':
    case 'podman':
      return { runtime: createOciRuntime(name, testOptions(), { uid: 1000, gid: 1000 }), image };
  }
}

describe.each(RUNTIME_NAMES.map((name) => [name]))('%s: no task env value on the command line', (name) => {
  test('neither the task env nor the EWMS_TASK_* values appear in args, and the task still gets them', () => {
    const { runtime, image } = runtimeFor(name);
    const command = runtime.command(taskRequest({ env: SECRET_ENV }), image);
    const values = [SECRET, SECRET_ENV.SPACED, 'zz'];
    for (const arg of [command.file, ...command.args]) for (const value of values) expect(arg).not.toContain(value);
    expect(command.args).not.toContain('--env');
    // Where the values go instead: the client's environment (its owner's only) or a private file.
    const carried = [...Object.values(command.env), ...(command.files ?? []).map((f) => f.content)].join('\n');
    for (const value of Object.values(SECRET_ENV)) expect(carried).toContain(value);
    if (name !== 'none') expect(carried).toContain('/ewms-pilot-data/task-io/in-ev1.in');
  });
});

describe('docker/podman env files', () => {
  function commandIn(dir: string) {
    const runtime = createOciRuntime('podman', testOptions(), { uid: 1000, gid: 1000 });
    const request = taskRequest({ env: SECRET_ENV });
    const taskIoDir = join(dir, 'ev1', 'task-io');
    request.paths = { ...request.paths, taskIoDir, infile: join(taskIoDir, 'in'), outfile: join(taskIoDir, 'out') };
    return runtime.command(request, { reference: 'img', runnable: 'img' });
  }

  test('the file sits in the event directory, outside the bound task-io dir, mode 0600, and goes with the run', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ewms-env-file-'));
    const command = commandIn(dir);
    const file = command.files![0]!;
    expect(dirname(file.path)).toBe(join(dir, 'ev1'));
    expect(command.args).toContain(file.path);
    mkdirSync(join(dir, 'ev1'), { recursive: true });
    // An older file with a looser mode is replaced, not reused.
    writeFileSync(file.path, 'stale', { mode: 0o644 });
    chmodSync(file.path, 0o644);
    await writeLaunchFiles(command);
    expect(statSync(file.path).mode & 0o777).toBe(0o600);
    expect(readFileSync(file.path, 'utf8')).toBe(file.content);
    expect(readFileSync(file.path, 'utf8')).toContain(`BROKER_TOKEN=${SECRET}\n`);
    await removeLaunchFiles(command);
    expect(existsSync(file.path)).toBe(false);
    await expect(removeLaunchFiles(command)).resolves.toBeUndefined();
  });
});
