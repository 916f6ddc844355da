/**
 * The Docker and Podman runtimes: each run is `<engine> run --rm --name <runId> --init --pull=never`
 * with the run's task-io dir, the data hub and the external directories bound by `--mount`, and the task
 * env (with the `EWMS_TASK_*` paths) in a mode-0600 `--env-file` beside the task-io directory.
 *
 * Choices, and why:
 * - `--env-file`, never `--env NAME=VALUE`: any local user can read a process's command line
 *   (/proc/<pid>/cmdline) and task env values often hold tokens. Nor a bare `--env NAME`, whose value
 *   would come from the client's own environment, where names like DOCKER_HOST steer the client itself.
 *   The file format takes one line per variable, so a value with a line break is refused (env-file.ts).
 * - no `-i`/`-t`: a task reads its infile, not a terminal; with no TTY the client forwards signals it
 *   receives to the container (`--sig-proxy` is on by default), so the processor's SIGTERM reaches the task.
 * - `--init`: a tiny init as PID 1 forwards those signals and reaps zombies, so a task that is a shell
 *   script still stops on SIGTERM.
 * - `--pull=never`: the image was made present once by `prepare()`; a run never pulls behind our back.
 * - user mapping: files the task writes into the binds must be readable and removable by the pilot. Docker
 *   runs as `--user <pilot uid>:<gid>` when the pilot is not root; rootless Podman maps the container user
 *   to the pilot with `--userns=keep-id`. A root pilot can read anything and leaves the image's user alone.
 * - network: the engine's default (tasks often fetch data); restrict it in the engine's own configuration.
 * - `stop()`: `--name <runId>` lets the pilot stop the container itself (`stop -t <kill grace>`: SIGTERM,
 *   SIGKILL after the grace) and then `rm -f` it, because a SIGKILLed client cannot take its container
 *   down: the daemon (Docker) or conmon (Podman) keeps it running. Measured with Podman 4.3: after SIGTERM+SIGKILL to the client's process group the container
 *   was still up; `podman rm -f --time 0` removed it in 0.13 s (plain `rm -f` waited 10 s).
 */
import { containerView, requireRunnable } from './container-layout.js';
import { envFile } from './env-file.js';
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

/** The OCI engines the pilot drives through their CLI. */
export type OciEngine = 'docker' | 'podman';

/** The pilot's own identity, for mapping the container user (injectable for tests). */
export interface HostIdentity {
  uid: number;
  gid: number;
}

/** How long a clean-up command may take before the pilot gives up on it. */
const STOP_TIMEOUT_MS = 30_000;
/** Docker's own default stop grace, used when the pilot does not say. */
const DEFAULT_KILL_GRACE_SECONDS = 10;
/** Checks that the container is really gone after `rm -f` (it may still be being created). */
const STOP_CHECKS = 3;

function currentIdentity(): HostIdentity {
  return { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 };
}

/** The engine flags that map the container's user onto the pilot's. */
function userFlags(engine: OciEngine, host: HostIdentity): string[] {
  if (host.uid === 0) return [];
  return engine === 'docker' ? ['--user', `${host.uid}:${host.gid}`] : ['--userns=keep-id'];
}

/**
 * Remove a container now: the processor has already given the task its grace period. `docker rm -f`
 * kills at once; `podman rm -f` would first wait 10 s for SIGTERM unless told `--time 0`.
 */
function removeArgs(engine: OciEngine, name: string): string[] {
  return engine === 'docker' ? ['rm', '-f', name] : ['rm', '-f', '--time', '0', name];
}

/** GPU passthrough: Docker's NVIDIA integration, Podman's CDI device name. */
function gpuFlags(engine: OciEngine): string[] {
  return engine === 'docker' ? ['--gpus', 'all'] : ['--device', 'nvidia.com/gpu=all'];
}

/** Create the Docker or Podman runtime. */
export function createOciRuntime(engine: OciEngine, options: RuntimeOptions, host: HostIdentity = currentIdentity()): ContainerRuntime {
  let externalDirectories: Promise<string[]> | undefined;
  let resolvedExternal: string[] | undefined;
  const env = { ...options.baseEnv };

  function engineMissing(): RuntimeSetupError {
    return new RuntimeSetupError(
      `${engine} is not installed or not on PATH (PATH=${options.baseEnv.PATH ?? ''})`,
      `Install ${engine} on the execute point, or choose another EWMS_PILOT_CONTAINER_RUNTIME.`,
    );
  }

  async function prepareImage(reference: string): Promise<PreparedImage> {
    externalDirectories ??= checkHostDirectories(options.externalDirectories);
    resolvedExternal = await externalDirectories;

    const inspect = await runTool(engine, ['image', 'inspect', reference], { env, timeoutMs: 120_000 });
    if (inspect.spawnError?.code === 'ENOENT') throw engineMissing();
    if (inspect.code === 0) {
      const digest = imageDigest(inspect.stdout);
      options.logger.info({ engine, image: reference, ...(digest ? { digest } : {}) }, 'image present');
      return { reference, runnable: reference, ...(digest ? { digest } : {}) };
    }
    options.logger.info({ engine, image: reference }, 'pulling the image');
    const started = Date.now();
    const pull = await runTool(engine, ['pull', reference], { env });
    if (pull.spawnError?.code === 'ENOENT') throw engineMissing();
    if (pull.code !== 0) {
      throw new RuntimeSetupError(
        `could not pull ${reference} with ${engine}: ${outputTail(pull)}`,
        `Check the image name, the registry credentials (${engine} login) and that the ${engine} service is reachable from this node.`,
      );
    }
    const pulled = await runTool(engine, ['image', 'inspect', reference], { env, timeoutMs: 120_000 });
    const digest = pulled.code === 0 ? imageDigest(pulled.stdout) : undefined;
    options.logger.info({ engine, image: reference, seconds: (Date.now() - started) / 1000, ...(digest ? { digest } : {}) }, 'image pulled');
    return { reference, runnable: reference, ...(digest ? { digest } : {}) };
  }

  async function containerExists(name: string): Promise<boolean> {
    const result = await runTool(engine, ['container', 'inspect', name], { env, timeoutMs: STOP_TIMEOUT_MS });
    return result.code === 0;
  }

  return {
    name: engine,

    prepare: prepareOnce(engine, prepareImage),

    command(request: LaunchRequest, image: PreparedImage): LaunchCommand {
      const runnable = requireRunnable(image.runnable, engine);
      const view = containerView(request, resolvedExternal ?? options.externalDirectories);
      const args = ['run', '--rm', '--name', request.runId, '--init', '--pull=never', ...userFlags(engine, host)];
      if (options.gpus) args.push(...gpuFlags(engine));
      if (options.shmSize) args.push(`--shm-size=${options.shmSize}`);
      for (const bind of view.binds) {
        args.push('--mount', `type=bind,source=${bind.source},target=${bind.target}${bind.readOnly ? ',readonly' : ''}`);
      }
      const taskEnv = envFile(view.env, request.paths.taskIoDir, engine);
      args.push('--env-file', taskEnv.path, runnable, ...view.args);
      return { file: engine, args, env: { ...env }, containerName: request.runId, files: [taskEnv] };
    },

    async stop(command: LaunchCommand): Promise<void> {
      const name = command.containerName;
      if (name === undefined) return;
      // The processor calls this as it sends SIGTERM: give the container the same grace (SIGTERM, then
      // SIGKILL after it), then make sure nothing is left, even if the client was SIGKILLed meanwhile.
      const grace = Math.max(0, Math.ceil(options.killGraceSeconds ?? DEFAULT_KILL_GRACE_SECONDS));
      await runTool(engine, ['stop', '-t', String(grace), name], { env, timeoutMs: STOP_TIMEOUT_MS + grace * 1000 });
      for (let check = 0; check < STOP_CHECKS; check++) {
        const removed = await runTool(engine, removeArgs(engine, name), { env, timeoutMs: STOP_TIMEOUT_MS });
        // `--rm` may have removed it already; "no such container" is the good outcome, not an error.
        if (!(await containerExists(name))) {
          options.logger.debug({ engine, container: name }, 'container gone');
          return;
        }
        options.logger.warn({ engine, container: name, output: outputTail(removed) }, 'container still present after rm -f; retrying');
        await new Promise((r) => setTimeout(r, 1000));
      }
      options.logger.warn({ engine, container: name }, `could not remove the container; remove it by hand: ${engine} rm -f ${name}`);
    },
  };
}

/**
 * The digest in `<engine> image inspect` output: the registry digest of the first `RepoDigests` entry (what
 * `<name>@sha256:…` pulls again), else podman's `Digest`, else the local image id (an image built or imported
 * here has no registry digest). Undefined when the output is not what docker and podman print.
 */
export function imageDigest(inspectOutput: string): string | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(inspectOutput);
  } catch {
    return undefined;
  }
  const image = Array.isArray(parsed) ? (parsed[0] as Record<string, unknown> | undefined) : undefined;
  if (!image || typeof image !== 'object') return undefined;
  const repoDigests = Array.isArray(image.RepoDigests) ? image.RepoDigests.filter((d): d is string => typeof d === 'string') : [];
  const fromRepo = repoDigests.map((d) => d.slice(d.lastIndexOf('@') + 1)).find((d) => /^sha256:[0-9a-f]{64}$/.test(d));
  if (fromRepo) return fromRepo;
  if (typeof image.Digest === 'string' && /^sha256:[0-9a-f]{64}$/.test(image.Digest)) return image.Digest;
  if (typeof image.Id === 'string') {
    const id = image.Id.startsWith('sha256:') ? image.Id : `sha256:${image.Id}`;
    if (/^sha256:[0-9a-f]{64}$/.test(id)) return id;
  }
  return undefined;
}
