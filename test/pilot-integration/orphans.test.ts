/**
 * Nothing outlives its pilot: a pilot SIGKILLed mid-task (an OOM kill, a crash) leaves no task process
 * behind for longer than its kill grace — neither the task nor what the task started, even when both
 * ignore SIGTERM. Real command line, real broker; the pilot's spawn helper sees the pilot go and stops
 * the task groups.
 */
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, test } from 'vitest';
import { alive, pilotEnv, publishEvents, startPilot, TestQueues, waitFor } from './run-pilot.js';

const testQueues = new TestQueues();
afterEach(() => testQueues.cleanup());

const lines = (file: string) => (existsSync(file) ? readFileSync(file, 'utf8').trim().split('\n').filter(Boolean) : []);

describe('a SIGKILLed pilot', () => {
  test("its tasks (and their children), even ignoring TERM, are gone within the kill grace", async () => {
    const { broker, queues } = await testQueues.create('rabbitmq');
    const dir = mkdtempSync(join(tmpdir(), 'ewms-orphans-'));
    const pids = join(dir, 'pids');
    const script = join(dir, 'task.sh');
    // The task and its child both ignore TERM: only the KILL after the grace ends them.
    writeFileSync(script, `trap '' TERM\necho $$ >> ${pids}\nsh -c 'trap "" TERM; echo $$ >> ${pids}; sleep 120' &\nwait\n`, { mode: 0o755 });
    await publishEvents(broker, queues.incoming, ['a', 'b', 'c']);
    const pilot = startPilot(pilotEnv('rabbitmq', queues, { EWMS_PILOT_TASK_ARGS: `sh ${script}`, EWMS_PILOT_MAX_CONCURRENT_TASKS: '2', EWMS_PILOT_TASK_KILL_GRACE: '1.5' }));
    await waitFor(() => lines(pids).length >= 4, 20_000, 'two tasks and their children to start');
    expect(pilot.stderr() + pilot.stdout()).toMatch(/spawn helper/);
    pilot.child.kill('SIGKILL');
    const killed = Date.now();
    expect((await pilot.exited).signal).toBe('SIGKILL');
    const tasks = lines(pids).map(Number);
    // Within the grace they may live (they ignore TERM); past it, none may.
    await waitFor(() => tasks.every((pid) => !alive(pid)), 6_000, 'the tasks to be gone');
    const took = Date.now() - killed;
    expect(took, 'gone only after the grace: the KILL came from the grace, not by chance').toBeGreaterThanOrEqual(1200);
    expect(took).toBeLessThan(1500 + 2000);
  }, 60_000);
});
