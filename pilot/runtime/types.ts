/**
 * The contract between the pilot's task processor and the container runtimes
 * (`EWMS_PILOT_CONTAINER_RUNTIME`: `none` | `apptainer` | `docker` | `podman`).
 *
 * The processor owns files, process lifetime (timeouts, tree kill) and outcomes; a runtime only turns
 * "run these task args with this env against these host paths" into one exact command line, prepares its
 * image once per pilot, and can stop a container it started. Placeholders are substituted by the runtime
 * because only it knows where the host paths appear inside the container.
 */
import { EwmsError } from '../../common/errors.js';

/** The runtimes a pilot can run tasks with. */
export type RuntimeName = 'none' | 'apptainer' | 'docker' | 'podman';
export const RUNTIME_NAMES: readonly RuntimeName[] = ['none', 'apptainer', 'docker', 'podman'];

/** Host paths of one run (a task, or the init command which has no infile/outfile). */
export interface RunPaths {
  /** The run's own directory on the host; the infile and outfile live in it. */
  taskIoDir: string;
  /** Host path of the infile (tasks only). */
  infile?: string;
  /** Host path of the outfile the task is expected to write (tasks only). */
  outfile?: string;
  /** The pilot's data hub on the host, shared by init and every task. */
  dataHub: string;
}

/** What to run. */
export interface LaunchRequest {
  /** The task's argument vector, split, with `{{INFILE}}`-style placeholders not yet substituted. */
  args: readonly string[];
  /** The user's task env (`*_ENV_JSON`); the runtime adds the `EWMS_TASK_*` variables. */
  env: Readonly<Record<string, string>>;
  paths: RunPaths;
  /** Unique among this pilot's runs and safe as a container name (`[a-zA-Z0-9][a-zA-Z0-9_.-]*`). */
  runId: string;
}

/** An image made ready once per pilot by `prepare()`. */
export interface PreparedImage {
  /** What the user configured (image reference or path); undefined for the host runtime. */
  reference: string | undefined;
  /** What to hand to the runtime's run command (e.g. the sandbox directory apptainer built). */
  runnable: string | undefined;
  /**
   * The image's content digest (`sha256:…`) when the runtime reports one (docker/podman: the registry digest,
   * else the local image id); recorded in every result's provenance.
   */
  digest?: string;
}

/** A private file a launch command reads; see `LaunchCommand.files`. */
export interface LaunchFile {
  /** Absolute host path, outside every directory bound into the container. */
  path: string;
  content: string;
}

/**
 * The exact process to start for one run. The processor spawns it without a shell. Task env values
 * never appear in `args` (any local user can read a process's command line): they travel in `env` or
 * in `files`.
 */
export interface LaunchCommand {
  /** Executable (looked up on PATH when not absolute). */
  file: string;
  args: string[];
  /** The complete environment of the spawned process (not merged with anything else). */
  env: Record<string, string>;
  /** Set when the run is a named container that must be stopped explicitly (docker/podman). */
  containerName?: string;
  /** Working directory of the spawned process; absent: the run's task-io directory. */
  cwd?: string;
  /**
   * Files the command reads, which `command()` only describes (it does no I/O): the processor writes
   * them with mode 0600 right before spawning (`writeLaunchFiles`) and removes them when the run ends
   * (`removeLaunchFiles`), kept task files or not, since they hold the task env.
   */
  files?: LaunchFile[];
}

/** One container runtime. */
export interface ContainerRuntime {
  readonly name: RuntimeName;
  /**
   * Make `image` runnable (pull it, or build an apptainer sandbox) once, before any event. Throws a
   * `RuntimeSetupError` that says what is missing, so a bad image stops the pilot at start.
   */
  prepare(image: string | undefined): Promise<PreparedImage>;
  /** The command line for one run. Pure: no I/O. */
  command(request: LaunchRequest, image: PreparedImage): LaunchCommand;
  /**
   * Stop what `command` started, beyond the client process the processor kills itself (e.g.
   * `docker stop <name>`), so a timeout or SIGTERM leaves no orphaned container. Never throws.
   */
  stop(command: LaunchCommand): Promise<void>;
}

/** The runtime or its image cannot be used; raised at pilot start. */
export class RuntimeSetupError extends EwmsError {}

/** Settings every container runtime takes (from the pilot's configuration). */
export interface RuntimeOptions {
  /** `EWMS_PILOT_EXTERNAL_DIRECTORIES`: host directories bound into the container at the same path. */
  externalDirectories: readonly string[];
  /** `EWMS_PILOT_CONTAINER_DEBUG`: run the runtime verbosely (`apptainer --debug`). */
  debug: boolean;
  /** `EWMS_PILOT_CONTAINER_GPUS`: pass the node's GPUs through (`--nv` / `--gpus all`). */
  gpus: boolean;
  /** A directory the runtime may use for prepared images (e.g. apptainer sandboxes); created as needed. */
  workDir: string;
  /** Apptainer: convert an image that is not a sandbox directory (default true); false refuses it at start. */
  convertImages?: boolean;
  /** Docker/Podman: `--shm-size` of task containers. */
  shmSize?: string;
  /**
   * `EWMS_PILOT_TASK_KILL_GRACE`: seconds between SIGTERM and SIGKILL when a run is stopped. Container
   * runtimes give the container itself the same grace in `stop()` (default 10, Docker's own).
   */
  killGraceSeconds?: number;
  /** The pilot's environment, the base of every spawned client process's env. */
  baseEnv: Readonly<Record<string, string>>;
  logger: { debug(obj: object, msg?: string): void; info(obj: object, msg?: string): void; warn(obj: object, msg?: string): void };
}
