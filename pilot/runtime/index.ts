/**
 * Picks the container runtime a pilot runs its tasks with. The container runtimes are loaded only when
 * chosen, so a host-only pilot never loads their code.
 */
import { createHostRuntime } from './none.js';
import type { ContainerRuntime, RuntimeName, RuntimeOptions } from './types.js';

export * from './types.js';
export { substitutePlaceholders, taskEnvVars } from './placeholders.js';

/** The runtime called `name`, configured by `options`. */
export async function createRuntime(name: RuntimeName, options: RuntimeOptions): Promise<ContainerRuntime> {
  switch (name) {
    case 'none':
      return createHostRuntime(options);
    case 'apptainer': {
      const { createApptainerRuntime } = await import('./apptainer.js');
      return createApptainerRuntime(options);
    }
    case 'docker':
    case 'podman': {
      const { createOciRuntime } = await import('./oci.js');
      return createOciRuntime(name, options);
    }
  }
}
