/**
 * The local backend's remove() leaves nothing running: not the pilots, not their tasks, not what the tasks
 * started — even processes that ignore SIGTERM, even when the backend has to cut a pilot's own shutdown short,
 * even a process that left the pilot's session. Its default grace follows the pilot's kill grace.
 */
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, test } from 'vitest';
import { pilotShutdownMs } from '../../coordinator/backends/local.js';
import { buildPilotEnv, LocalPilotCluster, Workflow, type PilotCluster, type WorkflowTarget } from '../../coordinator/index.js';
import { alive } from '../helpers/processes.js';
import { brokerOptions, freshId } from './helpers.js';

const cleanup: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f().catch(() => undefined);
});

const lines = (file: string) => (existsSync(file) ? readFileSync(file, 'utf8').trim().split('\n').filter(Boolean).map(Number) : []);

async function waitFor(predicate: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A task that ignores SIGTERM and starts a child that ignores it too; both write their pids. */
function stubbornTask(dir: string): { script: string; pids: string } {
  const pids = join(dir, 'pids');
  const script = join(dir, 'task.sh');
  writeFileSync(script, `trap '' TERM\necho $$ >> ${pids}\nsh -c 'trap "" TERM; echo $$ >> ${pids}; sleep 120' &\nwait\n`, { mode: 0o755 });
  return { script, pids };
}

const target: WorkflowTarget = {
  id: 'lr1',
  queues: { incoming: 'ewms-lr1-in', outgoing: 'ewms-lr1-out', deadLetter: 'ewms-lr1-in.dlq' },
  broker: { address: 'amqp://127.0.0.1:5672' },
  maxDeliveries: 3,
  wireFormat: 'mqclient',
  depth: async () => 0,
};

describe('local backend remove()', () => {
  test("the default grace follows the pilot's: twice its task kill grace, plus 5 s", () => {
    expect(pilotShutdownMs(undefined)).toBe(25_000);
    expect(pilotShutdownMs('1')).toBe(7_000);
    expect(pilotShutdownMs('nonsense')).toBe(25_000);
    const cluster = new LocalPilotCluster(buildPilotEnv(target, { backend: 'local', count: 1, task: { args: 'x' }, pilotEnv: { EWMS_PILOT_TASK_KILL_GRACE: '2' } }));
    expect((cluster as unknown as { killGraceMs: number }).killGraceMs).toBe(9_000);
  });

  test('a process the pilot started in a session of its own, ignoring SIGTERM, is gone when remove() returns', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ewms-local-rm-'));
    const pids = join(dir, 'pids');
    // A "pilot" that ignores SIGTERM and leaves a TERM-ignoring process in a new session (out of its group).
    const script = `trap '' TERM; setsid sh -c 'trap "" TERM; echo $$ >> ${pids}; sleep 120' & while :; do sleep 0.1; done`;
    const cluster = new LocalPilotCluster(buildPilotEnv(target, { backend: 'local', count: 1, task: { args: 'x' } }), { workDir: dir, pilotCommand: ['sh', '-c', script], killGraceMs: 300 });
    await cluster.scale(1);
    await waitFor(() => lines(pids).length === 1, 10_000, 'the stray process to start');
    await cluster.remove();
    expect(alive(lines(pids)[0]!)).toBe(false);
  });

  for (const cut of [false, true]) {
    test(
      cut
        ? 'real pilot cut short by a backend grace shorter than its own: its TERM-ignoring tasks are gone when remove() returns'
        : 'real pilot, default grace: the pilot stops its TERM-ignoring tasks itself (exit 143), and none is left when remove() returns',
      async () => {
        const dir = mkdtempSync(join(tmpdir(), 'ewms-local-rm-'));
        const { script, pids } = stubbornTask(dir);
        const wf = await Workflow.create({ broker: brokerOptions('rabbitmq'), id: freshId('lrm') });
        cleanup.push(() => wf.close({ deleteQueues: true }));
        await wf.publish(['a', 'b', 'c']);
        const pilots: PilotCluster = await wf.startPilots({
          backend: 'local',
          count: 1,
          task: { args: `sh ${script}` },
          pilotEnv: { EWMS_PILOT_MAX_CONCURRENT_TASKS: '2', EWMS_PILOT_TASK_KILL_GRACE: '1', EWMS_PILOT_TIMEOUT_QUEUE_INCOMING: '120' },
          local: { workDir: join(dir, 'pilots'), ...(cut ? { killGraceMs: 500 } : {}) },
        });
        cleanup.push(() => pilots.remove());
        await waitFor(() => lines(pids).length >= 4, 30_000, 'two tasks and their children to start');
        const started = Date.now();
        await pilots.remove();
        const took = Date.now() - started;
        for (const pid of lines(pids)) expect(alive(pid), `pid ${pid} outlived remove()`).toBe(false);
        const status = await pilots.status();
        if (cut) {
          expect(status.byPilotStatus).toEqual({ 'signal SIGKILL': 1 });
        } else {
          // 1 s for the tasks to finish, 1 s between their TERM and KILL: well inside the backend's 7 s.
          expect(status.byPilotStatus).toEqual({ 'exit 143': 1 });
          expect(took).toBeLessThan(7_000);
        }
      },
      60_000,
    );
  }
});
