/**
 * The demo as a newcomer runs it: the real command (`node dist/examples/skyscan/demo.js`) against the shared
 * RabbitMQ, with real local pilots running the real task — at a smaller nside so it takes seconds. Checks
 * the exit code, the files, the answer, and that nothing is left behind (queues, pilot processes), also
 * after a Ctrl-C in the middle of a round.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, test } from 'vitest';
import type { SkyMapDocument } from '../../examples/skyscan/report.js';
import { checkWellFormed } from './xml-check.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const DEMO = join(ROOT, 'dist/examples/skyscan/demo.js');
const RABBITMQ = process.env.EWMS_TEST_RABBITMQ_URL || 'amqp://guest:guest@127.0.0.1:5672';
const MANAGEMENT = 'http://127.0.0.1:15672';

const UNSHARE = '/usr/bin/unshare';
const IP = '/usr/sbin/ip';
/** A private network namespace needs root (or user namespaces) and the two tools. */
const CAN_UNSHARE = existsSync(UNSHARE) && existsSync(IP) && spawnSync(UNSHARE, ['-n', IP, 'link', 'set', 'lo', 'up']).status === 0;

const workDir = mkdtempSync(join(tmpdir(), 'ewms-demo-e2e-'));
afterAll(() => rmSync(workDir, { recursive: true, force: true }));

/** Does the shared RabbitMQ still have this queue? (management API; 404 means gone) */
async function queueExists(name: string): Promise<boolean> {
  const res = await fetch(`${MANAGEMENT}/api/queues/%2F/${encodeURIComponent(name)}`, {
    headers: { authorization: `Basic ${Buffer.from('guest:guest').toString('base64')}` },
  });
  await res.body?.cancel();
  if (res.status !== 200 && res.status !== 404) throw new Error(`management API answered ${res.status}`);
  return res.status === 200;
}

/** Processes whose working directory is under `dir` (the local pilots run in `<out>/pilots/pilot-N`). */
function processesUnder(dir: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readlinkSync(`/proc/${entry}/cwd`).startsWith(dir)) pids.push(Number(entry));
    } catch {
      // gone, or not ours to read
    }
  }
  return pids;
}

/** Processes whose command line contains `text`. */
function processesWithArgument(text: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes(text)) pids.push(Number(entry));
    } catch {
      // gone
    }
  }
  return pids;
}

/** The workflow id the demo prints (`workflow <id>: …`). */
function workflowId(stdout: string): string {
  const m = /^workflow ([A-Za-z0-9_-]+):/m.exec(stdout);
  if (!m) throw new Error(`no workflow line in:\n${stdout}`);
  return m[1] as string;
}

describe('npm run demo', () => {
  test('a small scan runs end to end, finds the simulated direction, writes the map and cleans up', async () => {
    const out = join(workDir, 'run');
    const run = spawnSync(process.execPath, [DEMO, '--nside', '4', '--refine-nside', '16', '--seed', '1', '--out', out, '--broker', RABBITMQ], {
      encoding: 'utf8',
      timeout: 120_000,
    });
    expect(run.status, `stdout:\n${run.stdout}\nstderr:\n${run.stderr}`).toBe(0);
    expect(run.stdout).toContain('round 1: the whole sky, 192 pixels at nside 4');
    expect(run.stdout).toMatch(/round 2: refinement, \d+ pixels at nside 16/);
    expect(run.stdout).toContain('INSIDE the 90% region');
    expect(run.stdout).toMatch(/exact at nside 16: every coarse pixel touching the region was refined/);
    expect(run.stdout).not.toContain('guest:guest'); // the broker line is redacted
    expect(run.stderr).toContain('[progress] settled'); // progress shows (one line every 2 s off a terminal)

    const doc = JSON.parse(readFileSync(join(out, 'skymap.json'), 'utf8')) as SkyMapDocument;
    expect(doc.seed).toBe(1);
    expect(doc.rounds[0]).toEqual({ nside: 4, pixels: 192, kind: 'sky' });
    expect(doc.region90).toMatchObject({ exact: true, resolvedAtNside: 16 });
    expect(Object.keys(doc.region90.pixelsByNside)).toEqual(['16']);
    expect(doc.pixels.length).toBe(doc.rounds.reduce((n, r) => n + r.pixels, 0));
    expect(doc.truth?.insideRegion).toBe(true);
    // The best fit is within the reported error of the truth.
    expect(doc.truth!.distanceDeg).toBeLessThanOrEqual(doc.region90.enclosingRadiusDeg);
    expect(doc.region90.areaDeg2).toBeGreaterThan(0);
    // The best pixel of the JSON is the reported best fit.
    const best = doc.pixels.reduce((a, b) => (b.llh < a.llh ? b : a));
    expect({ nside: best.nside, pix: best.pix }).toEqual({ nside: doc.bestFit.nside, pix: doc.bestFit.pix });

    expect(checkWellFormed(readFileSync(join(out, 'skymap.svg'), 'utf8'))[0]).toBe('svg');

    const id = workflowId(run.stdout);
    // Two tasks, each with its own queues: the whole-sky pass and the refinement reading coarse results.
    expect(run.stdout).toContain('tasks coarse and refine');
    for (const alias of ['sky-pixels', 'coarse-results', 'refine-requests', 'refined-results']) expect(await queueExists(`ewms-${id}-${alias}`)).toBe(false);
    expect(processesUnder(join(out, 'pilots'))).toEqual([]);
  }, 150_000);

  test('Ctrl-C in the middle of a round stops the pilots, removes the queues and exits 130', async () => {
    const out = join(workDir, 'interrupted');
    const child = spawn(process.execPath, [DEMO, '--nside', '8', '--refine-nside', '8', '--out', out, '--broker', RABBITMQ], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    // Wait until the round is under way, then interrupt as a terminal would.
    const deadline = Date.now() + 60_000;
    while (!stdout.includes('round 1:') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    await new Promise((r) => setTimeout(r, 1_500));
    const id = workflowId(stdout);
    expect(await queueExists(`ewms-${id}-sky-pixels`)).toBe(true);
    expect(processesUnder(join(out, 'pilots')).length).toBeGreaterThan(0);
    child.kill('SIGINT');
    const code = await exited;
    expect(code, `stdout:\n${stdout}\nstderr:\n${stderr}`).toBe(130);
    expect(stderr).toContain('SIGINT: stopping the pilots and removing the queues');
    for (const alias of ['sky-pixels', 'coarse-results', 'refine-requests', 'refined-results']) expect(await queueExists(`ewms-${id}-${alias}`)).toBe(false);
    expect(processesUnder(join(out, 'pilots'))).toEqual([]);
    expect(existsSync(join(out, 'skymap.json'))).toBe(false);
  }, 90_000);

  // A network namespace of its own hides the shared brokers: the demo sees a fresh machine.
  test.skipIf(!CAN_UNSHARE)('with no broker running it starts a throwaway nats-server, and removes it at the end', () => {
    const out = join(workDir, 'throwaway');
    const run = spawnSync(UNSHARE, ['-n', 'sh', '-c', `${IP} link set lo up && exec "$0" "$@"`, process.execPath, DEMO, '--nside', '2', '--refine-nside', '4', '--out', out], {
      encoding: 'utf8',
      timeout: 120_000,
      env: { ...process.env, EWMS_BROKER_URL: '' },
    });
    expect(run.status, `stdout:\n${run.stdout}\nstderr:\n${run.stderr}`).toBe(0);
    const [, url, dir] = /a throwaway nats-server at (nats:\/\/127\.0\.0\.1:\d+), data in (\S+) /.exec(run.stdout) ?? [];
    expect(url).toBeDefined();
    expect(existsSync(join(out, 'skymap.json'))).toBe(true);
    // The server is gone, and its directory with it.
    expect(existsSync(dir as string)).toBe(false);
    expect(processesWithArgument(dir as string)).toEqual([]);
  }, 150_000);

  test.skipIf(!CAN_UNSHARE)('with no broker and no nats-server it stops with one message that says what to install', () => {
    const run = spawnSync(UNSHARE, ['-n', process.execPath, DEMO, '--out', join(workDir, 'nothing')], {
      encoding: 'utf8',
      timeout: 60_000,
      env: { ...process.env, EWMS_BROKER_URL: '', PATH: '/nonexistent' },
    });
    expect(run.status).toBe(1);
    expect(run.stderr).toContain('NoBrokerError');
    expect(run.stderr).toContain('apt-get install -y nats-server');
    expect(run.stderr).toContain('EWMS_BROKER_URL=');
  }, 90_000);

  test('a broker that refuses the credentials: exit 1, a hint, and the password nowhere in the output', () => {
    const run = spawnSync(process.execPath, [DEMO, '--broker', 'amqp://guest:hunter2-not-it@127.0.0.1:5672', '--out', join(workDir, 'refused')], {
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(run.status).toBe(1);
    expect(run.stderr).toContain('hint:');
    expect(`${run.stdout}${run.stderr}`).not.toContain('hunter2-not-it');
  }, 90_000);

  test('--help lists the options; a bad option value exits 2 with a hint', () => {
    const help = spawnSync(process.execPath, [DEMO, '--help'], { encoding: 'utf8' });
    expect(help.status).toBe(0);
    for (const flag of ['--seed', '--nside', '--refine-nside', '--pilots', '--out', '--broker']) expect(help.stdout).toContain(flag);
    const bad = spawnSync(process.execPath, [DEMO, '--nside', '3'], { encoding: 'utf8' });
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain('powers of two');
    expect(bad.stderr).toContain('hint:');
    // A value that is not a number is refused by name, quoting what was typed.
    const seed = spawnSync(process.execPath, [DEMO, '--seed', 'abc'], { encoding: 'utf8' });
    expect(seed.status).toBe(2);
    expect(seed.stderr).toMatch(/--seed: 'abc' is not a whole number >= 0\n\s+hint: give a whole number, e\.g\. --seed 7/);
  });
});
