/**
 * Where a run's host directories appear inside a task container, and what the task therefore sees:
 * the binds, its argument vector with placeholders rewritten to container paths, and its environment.
 * Shared by every container runtime so apptainer, docker and podman tasks find their files at the same
 * places.
 *
 * The container paths are the Python ewms-pilot's (`/ewms-pilot-data/task-io`, `/ewms-pilot-data/data-hub`),
 * so task images written for it run unchanged. External directories appear at their host paths.
 */
import { posix } from 'node:path';
import { validateBindMounts, validateTaskEnv, type BindMount } from './mounts.js';
import { substitutePlaceholders, taskEnvVars, type VisiblePaths } from './placeholders.js';
import { RuntimeSetupError, type LaunchRequest } from './types.js';

/** The parent of the pilot's directories inside a task container. */
export const CONTAINER_DATA_DIR = '/ewms-pilot-data';
/** The run's task-io directory (infile, outfile) inside the container. */
export const CONTAINER_TASK_IO_DIR = `${CONTAINER_DATA_DIR}/task-io`;
/** The pilot's data hub inside the container. */
export const CONTAINER_DATA_HUB_DIR = `${CONTAINER_DATA_DIR}/data-hub`;

/** One run as the container sees it. */
export interface ContainerView {
  /** Validated binds: data hub, external directories (read-only), task-io. */
  binds: BindMount[];
  /** Task args with placeholders rewritten to container paths. */
  args: string[];
  /** The task env plus the `EWMS_TASK_*` variables (these win on a name clash), sorted by name. */
  env: Array<[string, string]>;
  /** The paths the task sees. */
  visible: VisiblePaths;
}

/** The container path of a file that lives in the run's task-io directory on the host. */
function inTaskIo(hostFile: string | undefined, taskIoDir: string, what: string): string | undefined {
  if (hostFile === undefined) return undefined;
  const relative = posix.relative(posix.normalize(taskIoDir), posix.normalize(hostFile));
  if (relative === '' || relative.startsWith('..') || posix.isAbsolute(relative)) {
    throw new RuntimeSetupError(
      `the ${what} ${hostFile} is not inside the run's task-io directory ${taskIoDir}`,
      'Only the task-io directory is bound into the container; the pilot writes the infile and expects the outfile there.',
    );
  }
  return posix.join(CONTAINER_TASK_IO_DIR, relative);
}

/**
 * Compute the container's view of one run. `externalDirectories` are bound read-only at their own path
 * (they were resolved and checked at `prepare()`). Pure; throws `RuntimeSetupError` on a refused bind or
 * env name.
 */
export function containerView(request: LaunchRequest, externalDirectories: readonly string[]): ContainerView {
  const binds = validateBindMounts([
    { source: request.paths.dataHub, target: CONTAINER_DATA_HUB_DIR, readOnly: false },
    ...externalDirectories.map((dir) => ({ source: dir, target: dir, readOnly: true })),
    { source: request.paths.taskIoDir, target: CONTAINER_TASK_IO_DIR, readOnly: false },
  ]);
  const visible: VisiblePaths = { dataHub: CONTAINER_DATA_HUB_DIR };
  const infile = inTaskIo(request.paths.infile, request.paths.taskIoDir, 'infile');
  const outfile = inTaskIo(request.paths.outfile, request.paths.taskIoDir, 'outfile');
  if (infile !== undefined) visible.infile = infile;
  if (outfile !== undefined) visible.outfile = outfile;
  const env = { ...validateTaskEnv(request.env), ...taskEnvVars(visible) };
  return {
    binds,
    args: substitutePlaceholders(request.args, visible),
    env: Object.entries(env).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
    visible,
  };
}

/** Raise if `image` was not prepared: a runtime cannot run without one. */
export function requireRunnable(runnable: string | undefined, runtime: string): string {
  if (runnable === undefined) {
    throw new RuntimeSetupError(
      `the ${runtime} runtime was asked to run without a prepared image`,
      'Set EWMS_PILOT_TASK_IMAGE (and EWMS_PILOT_INIT_IMAGE for an init command), or use EWMS_PILOT_CONTAINER_RUNTIME=none.',
    );
  }
  return runnable;
}
