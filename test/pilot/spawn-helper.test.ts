/**
 * The spawn helper's own guarantees, beyond what `task-process.test.ts` checks for every spawner: tasks
 * do not outlive the pilot (its end of the helper's stdin closing is how the helper learns the pilot is
 * gone, however it died), and a helper that dies under running tasks fails them rather than hanging.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { HelperSpawner } from '../../pilot/spawn/index.js';
import { runProcess } from '../../pilot/task-process.js';
import { alive } from '../helpers/processes.js';

const PATH = process.env.PATH ?? '/usr/bin:/bin';
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Start a task tree (a shell and a child) that writes its pids to a file; resolves once both are written. */
async function startTree(helper: HelperSpawner, script: (pids: string) => string) {
  const dir = mkdtempSync(join(tmpdir(), 'ewms-helper-'));
  const pids = join(dir, 'pids');
  const run = runProcess({ file: 'sh', args: ['-c', script(pids)], env: { PATH } }, { cwd: dir, stdoutPath: join(dir, 'out'), stderrPath: join(dir, 'err'), timeoutMs: undefined, killGraceMs: 30_000, spawner: helper });
  for (let i = 0; i < 100; i++) {
    await sleep(50);
    try {
      const list = readFileSync(pids, 'utf8').trim().split('\n').filter(Boolean).map(Number);
      if (list.length === 2) return { run, pids: list };
    } catch {
      // not written yet
    }
  }
  throw new Error('the task tree did not start');
}

describe('spawn helper', () => {
  test('the pilot gone: a task tree that honours TERM is stopped at once', async () => {
    const helper = await HelperSpawner.start({ killGraceMs: 5000 });
    const { pids } = await startTree(helper, (p) => `echo $$ > ${p}; sleep 60 & echo $! >> ${p}; wait`);
    const started = Date.now();
    await helper.close(); // what the pilot's death looks like to the helper: its stdin closes
    expect(Date.now() - started).toBeLessThan(2500);
    for (const pid of pids) expect(alive(pid), `pid ${pid}`).toBe(false);
  });

  test('the pilot gone: a task tree that ignores TERM is killed after the grace, and no later', async () => {
    const helper = await HelperSpawner.start({ killGraceMs: 800 });
    const { pids } = await startTree(helper, (p) => `trap '' TERM; echo $$ > ${p}; sh -c 'trap "" TERM; sleep 60' & echo $! >> ${p}; wait`);
    const started = Date.now();
    await helper.close();
    const took = Date.now() - started;
    expect(took).toBeGreaterThanOrEqual(700);
    expect(took).toBeLessThan(3000);
    await sleep(100); // reaped by init
    for (const pid of pids) expect(alive(pid), `pid ${pid}`).toBe(false);
  });

  test('a helper killed under a running task: the run fails with a start error and its tree is killed', async () => {
    const helper = await HelperSpawner.start({ killGraceMs: 500 });
    const { run, pids } = await startTree(helper, (p) => `echo $$ > ${p}; sleep 60 & echo $! >> ${p}; wait`);
    process.kill(helper.pid!, 'SIGKILL');
    const result = await run;
    expect(result.spawnError).toMatch(/spawner process ended/);
    await sleep(200);
    for (const pid of pids) expect(alive(pid), `pid ${pid}`).toBe(false);
    // Later starts fail the same way instead of hanging.
    const dir = mkdtempSync(join(tmpdir(), 'ewms-helper-'));
    const next = await runProcess({ file: 'true', args: [], env: { PATH } }, { cwd: dir, stdoutPath: join(dir, 'o'), stderrPath: join(dir, 'e'), timeoutMs: undefined, killGraceMs: 100, spawner: helper });
    expect(next.spawnError).toMatch(/spawner process ended/);
  });

  test('each task gets its own environment, also past the number of environments the helper keeps', async () => {
    const helper = await HelperSpawner.start({ killGraceMs: 500 });
    const dir = mkdtempSync(join(tmpdir(), 'ewms-helper-'));
    try {
      for (let i = 0; i < 70; i++) {
        const value = String(i % 67); // some environments come back after the helper started over
        const out = join(dir, `out-${i}`);
        const r = await runProcess({ file: 'sh', args: ['-c', 'printf %s "$V"'], env: { PATH, V: value } }, { cwd: dir, stdoutPath: out, stderrPath: join(dir, 'err'), timeoutMs: undefined, killGraceMs: 100, spawner: helper });
        expect(r.exitCode).toBe(0);
        expect(readFileSync(out, 'utf8')).toBe(value);
      }
    } finally {
      await helper.close();
    }
  });

  test('the working directory is the one given each time: a directory made again under the same name, or none', async () => {
    const helper = await HelperSpawner.start({ killGraceMs: 500 });
    const base = mkdtempSync(join(tmpdir(), 'ewms-helper-'));
    const cwd = join(base, 'run');
    const run = (out: string) => runProcess({ file: 'sh', args: ['-c', 'ls'], env: { PATH } }, { cwd, stdoutPath: join(base, out), stderrPath: join(base, 'err'), timeoutMs: undefined, killGraceMs: 100, spawner: helper });
    try {
      mkdirSync(cwd);
      writeFileSync(join(cwd, 'first'), '');
      expect((await run('out1')).exitCode).toBe(0);
      rmSync(cwd, { recursive: true });
      mkdirSync(cwd);
      writeFileSync(join(cwd, 'second'), '');
      expect((await run('out2')).exitCode).toBe(0);
      expect(readFileSync(join(base, 'out2'), 'utf8')).toBe('second\n');
      rmSync(cwd, { recursive: true });
      expect((await run('out3')).spawnError).toMatch(/ENOENT/);
    } finally {
      await helper.close();
    }
  });

  test('a python that cannot run the helper is reported as unavailable', async () => {
    await expect(HelperSpawner.start({ killGraceMs: 100, python: '/nonexistent/python3' })).rejects.toThrow(/cannot run/);
  });
});
