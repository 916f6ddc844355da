/**
 * Private files a launch command reads (e.g. the `--env-file` of docker/podman), written right before the
 * command is spawned and removed when the run ends. They keep secrets off the command line, which every
 * local user of the node can read in /proc/<pid>/cmdline; the files themselves are readable by the pilot's
 * user only.
 */
import { open, rm } from 'node:fs/promises';
import type { LaunchCommand } from './types.js';

/** Owner read/write only: the files hold the task env, which often carries tokens. */
const PRIVATE_FILE_MODE = 0o600;

/**
 * Write `command.files`, each created afresh with mode 0600 (an existing file is replaced, never reused,
 * so an older, looser mode cannot survive).
 */
export async function writeLaunchFiles(command: LaunchCommand): Promise<void> {
  for (const file of command.files ?? []) {
    await rm(file.path, { force: true });
    const handle = await open(file.path, 'wx', PRIVATE_FILE_MODE);
    try {
      await handle.writeFile(file.content, 'utf8');
    } finally {
      await handle.close();
    }
  }
}

/** Remove `command.files`; a file already gone is fine. */
export async function removeLaunchFiles(command: LaunchCommand): Promise<void> {
  await Promise.all((command.files ?? []).map((file) => rm(file.path, { force: true })));
}
