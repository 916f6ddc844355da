/**
 * The Apptainer runtime: each run is `apptainer run --containall --no-eval` on a sandbox directory, with
 * the run's task-io dir, the data hub and the external directories bound by `--mount`.
 *
 * - Images: a sandbox directory (one holding `.singularity.d/`) runs as it is; anything else — a SIF
 *   file, `docker://`, `oras://`, `library://` — is converted once per pilot with
 *   `apptainer build --fix-perms --sandbox` into `<workDir>/apptainer-images/`, because execute points
 *   often lack the FUSE support that running a SIF unprivileged needs.
 * - Environment: every variable the task sees — the task env and the `EWMS_TASK_*` paths — travels as
 *   `APPTAINERENV_NAME` in the client's environment, never as `--env NAME=VALUE`: a command line is
 *   readable by every local user (/proc/<pid>/cmdline) and task env values often hold tokens, while a
 *   process's environment is readable by its owner only. With `--no-eval` Apptainer passes these values
 *   literally (commas, quotes, line breaks, `$` included). The client's own `APPTAINERENV_*`/
 *   `SINGULARITYENV_*` and bind-path variables are dropped so the container gets exactly the task env
 *   and nothing from the node's defaults.
 * - Stopping: `--containall` implies a PID namespace whose first process is Apptainer's shim init; when
 *   the processor kills the client's process group, the namespace's init dies and the kernel kills every
 *   process left in it (pid_namespaces(7)), so nothing outlives the run and `stop()` has nothing to do.
 */
import { createHash } from 'node:crypto';
import { mkdir, rename, rm, stat } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { containerView, requireRunnable } from './container-layout.js';
import { checkHostDirectories } from './mounts.js';
import { prepareOnce } from './prepare-once.js';
import { outputTail, runTool } from './run-tool.js';
import {
  RuntimeSetupError,
  type ContainerRuntime,
  type LaunchCommand,
  type LaunchRequest,
  type PreparedImage,
  type RuntimeOptions,
} from './types.js';

/** The executable, looked up on PATH. */
export const APPTAINER = 'apptainer';

/** Image references Apptainer pulls itself (everything with a `scheme://`). */
const URI = /^[a-z][a-z0-9+.-]*:\/\//i;

/** Client-side variables that would add to what the container sees. */
const CLIENT_ENV_DROPPED = /^(?:APPTAINER|SINGULARITY)(?:ENV_|_BIND$|_BINDPATH$|_MOUNT$)/;

/** A sandbox directory is recognised by the metadata directory every Apptainer image has. */
async function isSandbox(path: string): Promise<boolean> {
  try {
    return (await stat(join(path, '.singularity.d'))).isDirectory();
  } catch {
    return false;
  }
}

async function isFile(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}

/** A readable, collision-free directory name for an image reference. */
function sandboxName(reference: string): string {
  const readable = reference.replace(/^[a-z][a-z0-9+.-]*:\/\//i, '').replace(/[^A-Za-z0-9._-]+/g, '_').slice(-80);
  const digest = createHash('sha256').update(reference).digest('hex').slice(0, 12);
  return `${readable}-${digest}`;
}

/** Create the Apptainer runtime. */
export function createApptainerRuntime(options: RuntimeOptions): ContainerRuntime {
  const imagesDir = join(options.workDir, 'apptainer-images');
  let externalDirectories: Promise<string[]> | undefined;
  let resolvedExternal: string[] | undefined;
  let versionChecked: Promise<void> | undefined;

  const clientBaseEnv: Record<string, string> = Object.fromEntries(
    Object.entries(options.baseEnv).filter(([name]) => !CLIENT_ENV_DROPPED.test(name)),
  );

  function globalFlags(): string[] {
    return options.debug ? ['--debug'] : [];
  }

  async function checkBinary(): Promise<void> {
    const result = await runTool(APPTAINER, ['--version'], { env: clientBaseEnv, timeoutMs: 60_000 });
    if (result.spawnError?.code === 'ENOENT') {
      throw new RuntimeSetupError(
        `${APPTAINER} is not installed or not on PATH (PATH=${options.baseEnv.PATH ?? ''})`,
        'Install Apptainer on the execute point (or run the pilot in an image that has it), or choose another EWMS_PILOT_CONTAINER_RUNTIME.',
      );
    }
    if (result.code !== 0) {
      throw new RuntimeSetupError(
        `${APPTAINER} --version failed: ${outputTail(result)}`,
        'Check the Apptainer installation on this node.',
      );
    }
    options.logger.info({ version: result.stdout.trim() }, 'apptainer found');
  }

  /** Build `source` into a sandbox under the work dir, once; reuse a complete earlier build. */
  async function buildSandbox(reference: string, source: string): Promise<string> {
    const target = join(imagesDir, sandboxName(reference));
    if (await isSandbox(target)) {
      options.logger.info({ image: reference, sandbox: target }, 'reusing the sandbox built earlier in this work dir');
      return target;
    }
    // Build next to the target and rename at the end, so an interrupted build never looks complete.
    const partial = `${target}.partial-${process.pid}`;
    const tmpDir = join(options.workDir, 'apptainer-tmp');
    const cacheDir = join(options.workDir, 'apptainer-cache');
    await mkdir(imagesDir, { recursive: true });
    await mkdir(tmpDir, { recursive: true });
    await mkdir(cacheDir, { recursive: true });
    await rm(partial, { recursive: true, force: true });
    // Layers and intermediate files go to the work dir (scratch), not a small /tmp or an unwritable $HOME.
    const env = { APPTAINER_TMPDIR: tmpDir, APPTAINER_CACHEDIR: cacheDir, ...clientBaseEnv };
    const args = [...globalFlags(), 'build', '--fix-perms', '--sandbox', partial, source];
    options.logger.info({ image: reference, sandbox: target, command: [APPTAINER, ...args] }, 'building the apptainer sandbox');
    const started = Date.now();
    const result = await runTool(APPTAINER, args, { env, cwd: options.workDir });
    if (result.code !== 0) {
      await rm(partial, { recursive: true, force: true });
      throw new RuntimeSetupError(
        `could not build an apptainer sandbox from ${reference}: ${outputTail(result)}`,
        'Check that the image reference is right and reachable from this node (registry credentials, network), and that the work dir has space.',
      );
    }
    if (!(await isSandbox(partial))) {
      throw new RuntimeSetupError(
        `apptainer build reported success but ${partial} is not a sandbox (no .singularity.d/)`,
        'Check the Apptainer installation on this node.',
      );
    }
    await rename(partial, target);
    options.logger.info({ image: reference, sandbox: target, seconds: (Date.now() - started) / 1000 }, 'apptainer sandbox ready');
    return target;
  }

  async function prepareImage(reference: string): Promise<PreparedImage> {
    versionChecked ??= checkBinary();
    await versionChecked;
    externalDirectories ??= checkHostDirectories(options.externalDirectories);
    resolvedExternal = await externalDirectories;

    const path = resolve(reference);
    if (!URI.test(reference) && (await isSandbox(path))) {
      options.logger.info({ image: reference }, 'the image is already a sandbox directory');
      return { reference, runnable: path };
    }
    if (options.convertImages === false) {
      throw new RuntimeSetupError(
        `apptainer image ${reference} is not a sandbox directory, and _EWMS_PILOT_APPTAINER_IMAGE_DIRECTORY_MUST_BE_PRESENT forbids converting it here`,
        'Publish the image unpacked (a sandbox directory, e.g. on CVMFS), or unset _EWMS_PILOT_APPTAINER_IMAGE_DIRECTORY_MUST_BE_PRESENT to let the pilot convert it once.',
      );
    }
    if (URI.test(reference)) return { reference, runnable: await buildSandbox(reference, reference) };
    if (await isFile(path)) return { reference, runnable: await buildSandbox(path, path) };
    throw new RuntimeSetupError(
      `apptainer image not found: ${reference} is neither a sandbox directory, an image file, nor a docker://, oras:// or library:// reference`,
      `Check the path (relative paths are taken from ${process.cwd()}), or prefix a registry image with docker:// (e.g. docker://${basename(reference)}).`,
    );
  }

  return {
    name: 'apptainer',

    prepare: prepareOnce('apptainer', prepareImage),

    command(request: LaunchRequest, image: PreparedImage): LaunchCommand {
      const runnable = requireRunnable(image.runnable, 'apptainer');
      const view = containerView(request, resolvedExternal ?? options.externalDirectories);
      const env: Record<string, string> = { ...clientBaseEnv };
      const args = [...globalFlags(), 'run', '--containall', '--no-eval'];
      if (options.gpus) args.push('--nv');
      for (const bind of view.binds) {
        args.push('--mount', `type=bind,src=${bind.source},dst=${bind.target}${bind.readOnly ? ',ro' : ''}`);
      }
      for (const [name, value] of view.env) env[`APPTAINERENV_${name}`] = value;
      args.push(runnable, ...view.args);
      return { file: APPTAINER, args, env };
    },

    async stop(): Promise<void> {
      // Nothing outlives the client's process group: see the module comment.
    },
  };
}
