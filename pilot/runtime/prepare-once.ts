/**
 * The `prepare()` every container runtime shares: an image must be configured, and each reference is
 * made ready once per pilot however often (or however concurrently) it is asked for — the task and the
 * init command often name the same image.
 */
import { RuntimeSetupError, type PreparedImage } from './types.js';

/** Wrap a runtime's image preparation so it refuses a missing image and runs once per reference. */
export function prepareOnce(
  runtime: string,
  prepareImage: (reference: string) => Promise<PreparedImage>,
): (image: string | undefined) => Promise<PreparedImage> {
  const prepared = new Map<string, Promise<PreparedImage>>();
  return (image) => {
    if (image === undefined || image === '') {
      return Promise.reject(
        new RuntimeSetupError(
          `the ${runtime} runtime needs an image and none is configured`,
          'Set EWMS_PILOT_TASK_IMAGE (and EWMS_PILOT_INIT_IMAGE for an init command), or use EWMS_PILOT_CONTAINER_RUNTIME=none.',
        ),
      );
    }
    let pending = prepared.get(image);
    if (pending === undefined) {
      pending = prepareImage(image);
      prepared.set(image, pending);
    }
    return pending;
  };
}
