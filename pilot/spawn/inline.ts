/**
 * Starting tasks with `child_process.spawn` in the pilot itself: the fallback when the spawn helper
 * cannot run (no Python 3.8+ on the node). Each start forks the pilot, whose page tables grow with its
 * memory, so it blocks the pilot's only thread longer than the helper does (see README, "Task processes").
 */
import { spawn } from 'node:child_process';
import { open } from 'node:fs/promises';
import { SpawnFailure, type SpawnExit, type SpawnRequest, type SpawnedProcess, type Spawner } from './types.js';

/** The in-process spawner; it holds no state, so one serves every caller. */
export const inlineSpawner: Spawner = {
  kind: 'inline',
  async spawn(request: SpawnRequest): Promise<SpawnedProcess> {
    const opened = await Promise.allSettled([open(request.stdoutPath, 'w'), open(request.stderrPath, 'w')]);
    if (opened[0].status === 'rejected' || opened[1].status === 'rejected') {
      for (const o of opened) if (o.status === 'fulfilled') await o.value.close();
      const reason = opened.find((o): o is PromiseRejectedResult => o.status === 'rejected')?.reason as Error;
      throw new SpawnFailure(`cannot create the output files: ${reason.message}`);
    }
    const [stdout, stderr] = [opened[0].value, opened[1].value];
    try {
      // detached: the child leads a new process group (setsid), so the whole tree can be signalled at once.
      const child = spawn(request.file, request.args, {
        cwd: request.cwd,
        env: request.env,
        stdio: ['ignore', stdout.fd, stderr.fd],
        detached: true,
      });
      const exit = new Promise<SpawnExit>((resolve) => child.once('exit', (exitCode, signal) => resolve({ exitCode, signal })));
      return await new Promise<SpawnedProcess>((resolve, reject) => {
        child.once('error', (err) => reject(new SpawnFailure(err.message)));
        child.once('spawn', () => resolve({ pid: child.pid!, exit }));
      });
    } finally {
      // The child has its own copies of the descriptors once spawn() returned.
      await Promise.all([stdout.close(), stderr.close()]);
    }
  },
  async close(): Promise<void> {},
};
