/**
 * Choosing the pilot's spawner: the posix_spawn helper when Python 3.8+ can run it, else the pilot's own
 * `child_process.spawn` (slower per task, and tasks of a pilot killed by SIGKILL are then not stopped).
 */
import { HelperSpawner } from './helper.js';
import { inlineSpawner } from './inline.js';
import type { Spawner } from './types.js';

export { HelperSpawner, HelperUnavailableError } from './helper.js';
export { inlineSpawner } from './inline.js';
export { SpawnFailure, signalGroup, type SpawnExit, type SpawnRequest, type SpawnedProcess, type Spawner } from './types.js';

/** What to start tasks with: `auto` (the helper if it runs, else inline), `helper` (required) or `inline`. */
export type SpawnerChoice = 'auto' | 'helper' | 'inline';

/** Make the spawner for one pilot; `auto` says in the log why it fell back. */
export async function createSpawner(
  choice: SpawnerChoice,
  options: { killGraceMs: number; logger: { info(obj: object, msg?: string): void; warn(obj: object, msg?: string): void } },
): Promise<Spawner> {
  if (choice === 'inline') return inlineSpawner;
  try {
    const helper = await HelperSpawner.start({ killGraceMs: options.killGraceMs });
    options.logger.info({ helperPid: helper.pid }, 'task processes start through the spawn helper (posix_spawn)');
    return helper;
  } catch (err) {
    if (choice === 'helper') throw err;
    options.logger.warn(
      { err: (err as Error).message },
      'tasks start from the pilot itself (slower per task, and not stopped should the pilot be SIGKILLed): install python3 (3.8+) on the node for the spawn helper',
    );
    return inlineSpawner;
  }
}
