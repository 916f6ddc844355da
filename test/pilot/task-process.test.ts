/** One task process: no shell, its own process group, killed as a tree on timeout or abort. */
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { HelperSpawner, inlineSpawner, type Spawner } from '../../pilot/spawn/index.js';
import { runProcess, type RunProcessOptions } from '../../pilot/task-process.js';
import { alive } from '../helpers/processes.js';

/** Both ways of starting tasks keep the same guarantees. */
const spawners: Record<Spawner['kind'], Spawner | undefined> = { inline: inlineSpawner, helper: undefined };
let spawner: Spawner = inlineSpawner;

beforeAll(async () => {
  spawners.helper = await HelperSpawner.start({ killGraceMs: 500 });
});
afterAll(async () => {
  await spawners.helper?.close();
});

function setup(overrides: Partial<RunProcessOptions> = {}): RunProcessOptions {
  const dir = mkdtempSync(join(tmpdir(), 'ewms-proc-'));
  return { cwd: dir, stdoutPath: join(dir, 'out'), stderrPath: join(dir, 'err'), timeoutMs: undefined, killGraceMs: 500, spawner, ...overrides };
}
const sh = (script: string, ...args: string[]) => ({ file: 'sh', args: ['-c', script, 'task', ...args], env: { PATH: process.env.PATH ?? '/usr/bin:/bin' } });

describe.each(['inline', 'helper'] as const)('runProcess (%s spawner)', (kind) => {
  beforeAll(() => {
    spawner = spawners[kind]!;
  });

  test('an abort that arrives while the output files are being opened still stops the process', async () => {
    const abort = new AbortController();
    const started = Date.now();
    const pending = runProcess(sh('sleep 5'), setup({ signal: abort.signal }));
    abort.abort(); // runProcess is awaiting open() of stdout/stderr right now
    const r = await pending;
    expect(r.aborted).toBe(true);
    expect(Date.now() - started).toBeLessThan(3000);
  });

  test('exit code, stdout and stderr to files, the env given and nothing else', async () => {
    const opts = setup();
    const r = await runProcess(sh('echo "$1 $FOO"; echo oops >&2; exit 3', 'hello'), opts);
    expect(r).toMatchObject({ exitCode: 3, signal: null, timedOut: false, aborted: false, spawnError: undefined });
    expect(readFileSync(opts.stdoutPath, 'utf8')).toBe('hello \n');
    expect(readFileSync(opts.stderrPath, 'utf8')).toBe('oops\n');
  });

  test('arguments are never interpreted by a shell', async () => {
    const opts = setup();
    const marker = join(opts.cwd, 'pwned');
    await runProcess({ file: 'echo', args: [`$(touch ${marker})`, ';', `touch ${marker}`], env: {} }, opts);
    expect(readFileSync(opts.stdoutPath, 'utf8')).toBe(`$(touch ${marker}) ; touch ${marker}\n`);
    expect(existsSync(marker)).toBe(false);
  });

  test('a timeout stops the whole tree with TERM', async () => {
    const opts = setup({ timeoutMs: 300 });
    const pids = join(opts.cwd, 'pids');
    const r = await runProcess(sh(`echo $$ > ${pids}; sleep 30 & echo $! >> ${pids}; wait`), opts);
    expect(r.timedOut).toBe(true);
    expect(r.durationMs).toBeLessThan(5000);
    for (const pid of readFileSync(pids, 'utf8').trim().split('\n').map(Number)) expect(alive(pid), `pid ${pid}`).toBe(false);
  });

  test('a tree that ignores TERM is killed after the grace', async () => {
    const opts = setup({ timeoutMs: 200, killGraceMs: 300 });
    const pids = join(opts.cwd, 'pids');
    const r = await runProcess(sh(`trap '' TERM; echo $$ > ${pids}; sh -c 'trap "" TERM; sleep 30' & echo $! >> ${pids}; wait`), opts);
    expect(r.timedOut).toBe(true);
    for (const pid of readFileSync(pids, 'utf8').trim().split('\n').map(Number)) expect(alive(pid), `pid ${pid}`).toBe(false);
  });

  test('a stop waits for onStop (a container outliving its client) before the run is reported finished', async () => {
    let containerGone = false;
    const r = await runProcess(
      sh('sleep 30'),
      setup({
        timeoutMs: 100,
        onStop: () => new Promise<void>((resolve) => setTimeout(() => ((containerGone = true), resolve()), 400)),
      }),
    );
    expect(r.timedOut).toBe(true);
    expect(containerGone).toBe(true);
  });

  test('a failing onStop does not stop the run from finishing', async () => {
    const r = await runProcess(sh('sleep 30'), setup({ timeoutMs: 100, onStop: () => Promise.reject(new Error('engine gone')) }));
    expect(r.timedOut).toBe(true);
  });

  test('an abort stops the task and says so', async () => {
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 200);
    const r = await runProcess(sh('sleep 30'), setup({ signal: controller.signal }));
    expect(r.aborted).toBe(true);
    expect(r.timedOut).toBe(false);
  });

  test('what a successful task leaves running in its group is ended with it', async () => {
    const opts = setup();
    const pids = join(opts.cwd, 'pids');
    const r = await runProcess(sh(`sleep 30 & echo $! > ${pids}`), opts);
    expect(r.exitCode).toBe(0);
    const pid = Number(readFileSync(pids, 'utf8'));
    await new Promise((res) => setTimeout(res, 100));
    expect(alive(pid)).toBe(false);
  });

  test('a task killed by a signal says which', async () => {
    const r = await runProcess(sh('kill -USR1 $$'), setup());
    expect(r).toMatchObject({ exitCode: null, signal: 'SIGUSR1', timedOut: false });
  });

  test('a missing executable is a start error, not a crash', async () => {
    const r = await runProcess({ file: '/nonexistent/task', args: [], env: {} }, setup());
    expect(r.spawnError).toMatch(/ENOENT/);
  });
});
