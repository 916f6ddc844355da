/**
 * The host runtime (`EWMS_PILOT_CONTAINER_RUNTIME=none`): the task's own argument vector runs as a host
 * process, with placeholders replaced by host paths.
 */
import { substitutePlaceholders, taskEnvVars } from './placeholders.js';
import {
  RuntimeSetupError,
  type ContainerRuntime,
  type LaunchCommand,
  type LaunchRequest,
  type PreparedImage,
  type RuntimeOptions,
} from './types.js';

/** Make the host runtime. Nothing to prepare, nothing to stop beyond the process tree the processor kills. */
export function createHostRuntime(options: Pick<RuntimeOptions, 'baseEnv'>): ContainerRuntime {
  return {
    name: 'none',
    async prepare(image: string | undefined): Promise<PreparedImage> {
      if (image) {
        throw new RuntimeSetupError(
          'an image is configured but the container runtime is none (tasks run on the host)',
          'unset EWMS_PILOT_TASK_IMAGE/EWMS_PILOT_INIT_IMAGE, or set EWMS_PILOT_CONTAINER_RUNTIME to apptainer, docker or podman',
        );
      }
      return { reference: undefined, runnable: undefined };
    },
    command(request: LaunchRequest): LaunchCommand {
      const visible = { infile: request.paths.infile, outfile: request.paths.outfile, dataHub: request.paths.dataHub };
      const [file, ...args] = substitutePlaceholders(request.args, visible);
      if (file === undefined) throw new RuntimeSetupError('the command is empty', 'set EWMS_PILOT_TASK_ARGS to the command to run');
      // The pilot's own variables win over the user's: a task must find its files where they are. It runs
      // where the pilot runs, so `python3 task.py` finds a script HTCondor transferred into the job's sandbox.
      return { file, args, env: { ...options.baseEnv, ...request.env, ...taskEnvVars(visible) }, cwd: process.cwd() };
    },
    async stop(): Promise<void> {
      // A host task is one process group, which the processor stops itself.
    },
  };
}
