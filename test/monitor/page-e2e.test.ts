/**
 * The whole thing as a user meets it: `ewms run --monitor` runs a real workflow (local pilots, real RabbitMQ)
 * while Debian's chromium, driven by playwright-core, watches the page: progress reaches 100 %, the dead
 * letter's reason is listed, no console errors, and the layout holds on a phone. A real Prometheus scrapes
 * /metrics during the same run and must hold the run's counts.
 *
 * The screenshot goes to a temporary directory, or to docs/monitor.png with EWMS_UPDATE_SCREENSHOT=1.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { chromium, type Browser } from 'playwright-core';
import { freePort } from '../helpers/brokers.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CHROMIUM = '/usr/bin/chromium';
const PROMETHEUS = '/usr/bin/prometheus';
/** The launch flags that keep chromium off the (closed) network here. */
const CHROMIUM_FLAGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const EVENTS = 30;

describe.skipIf(!existsSync(CHROMIUM))('the monitor page during a real run (chromium)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ewms-monitor-page-'));
  let run: ChildProcess | undefined;
  let prometheus: ChildProcess | undefined;
  let browser: Browser | undefined;
  afterAll(async () => {
    await browser?.close();
    for (const child of [run, prometheus]) if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  it('reaches 100 %, lists the dead letter\'s reason, logs no console error; Prometheus scrapes the counts', async () => {
    const events = [...Array.from({ length: EVENTS }, (_, i) => JSON.stringify(`pixel-${i}`)), JSON.stringify('FAIL')];
    writeFileSync(join(dir, 'events.jsonl'), `${events.join('\n')}\n`);
    const workflow = `page-${process.pid}-${Date.now().toString(36)}`;
    const task = `sh -c 'sleep 0.3; grep -q FAIL "$0" && { echo "Traceback (most recent call last):" >&2; echo "ValueError: pixel FAIL is outside the sky map" >&2; exit 3; }; cp "$0" "$1"' {{INFILE}} {{OUTFILE}}`;
    run = spawn(
      process.execPath,
      [join(ROOT, 'dist/coordinator/cli.js'), 'run', '--broker', 'amqp://guest@127.0.0.1:5672', '--workflow', workflow, '--events', join(dir, 'events.jsonl'),
        '--output', join(dir, 'results.jsonl'), '--dead-letters', join(dir, 'dead.jsonl'), '--pilots', '2', '--max-deliveries', '1', '--task-args', task,
        '--pilot-env', 'EWMS_PILOT_STOP_LISTENING_ON_TASK_ERROR=false', '--pilot-env', 'EWMS_PILOT_HEARTBEAT_INTERVAL=0.5', '--pilot-env', 'EWMS_PILOT_TIMEOUT_QUEUE_INCOMING=3',
        '--monitor', '0', '--monitor-linger', '120', '--no-progress'],
      { env: { ...process.env, EWMS_BROKER_TOKEN: 'guest' }, stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let stderr = '';
    run.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
    const exited = new Promise<number | null>((resolve) => run!.once('exit', (code) => resolve(code)));
    const url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no monitor URL on stderr: ${stderr}`)), 30_000);
      run!.stderr!.on('data', () => {
        const m = /monitor: (http:\/\/127\.0\.0\.1:\d+\/)/.exec(stderr);
        if (m) {
          clearTimeout(timer);
          resolve(m[1]!);
        }
      });
    });

    // A real Prometheus scraping /metrics every second for the whole run.
    if (!existsSync(PROMETHEUS)) throw new Error(`${PROMETHEUS} is missing: apt-get install prometheus (.ci/run does)`);
    const promPort = await freePort();
    {
      const target = new URL(url).host;
      writeFileSync(join(dir, 'prometheus.yml'), `global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: ewms\n    static_configs:\n      - targets: ['${target}']\n`);
      prometheus = spawn(PROMETHEUS, [`--config.file=${join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir, 'tsdb')}`, `--web.listen-address=127.0.0.1:${promPort}`], { stdio: 'ignore' });
    }

    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_FLAGS });
    const page = await browser.newPage({ viewport: { width: 1360, height: 1000 } });
    const problems: string[] = [];
    page.on('console', (m) => {
      if (m.type() === 'error' || m.type() === 'warning') problems.push(`${m.type()}: ${m.text()}`);
    });
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    page.on('requestfailed', (r) => {
      // The live stream is cut when the server closes at the end; anything else failing is a defect.
      if (!r.url().endsWith('/api/events')) problems.push(`request failed: ${r.url()}`);
    });
    await page.goto(url);
    await page.locator('#workflow', { hasText: workflow }).waitFor({ timeout: 15_000 });

    // While it runs: something in flight or done, pilots listed.
    await page.locator('#pilots tbody tr').first().waitFor({ timeout: 60_000 });

    await page.locator('#run-pct', { hasText: '100 %' }).waitFor({ timeout: 120_000 });
    await page.locator('.task[data-task="task-0"] .pct', { hasText: '100 %' }).waitFor({ timeout: 30_000 });
    const reason = page.locator('#dead-letters .reason');
    await reason.first().waitFor({ timeout: 30_000 });
    expect(await reason.allTextContents()).toEqual(['task exited with code 3']);
    await page.locator('#dead-letters summary').click();
    await expect.poll(() => page.locator('#dead-letters pre').textContent()).toContain('ValueError: pixel FAIL is outside the sky map');
    const numbers = await page.locator('.task[data-task="task-0"] .numbers').textContent();
    expect(numbers).toContain(`done ${EVENTS}`);
    expect(numbers).toContain('failed 1');
    // Both pilots appear; once the queue is empty they end on their own and say so.
    await expect.poll(async () => (await page.locator('#pilots tbody .badge.done').count()), { timeout: 30_000 }).toBe(2);
    // The chart drew a line.
    expect(await page.locator('#chart svg path').count()).toBeGreaterThan(0);

    const shot = process.env.EWMS_UPDATE_SCREENSHOT === '1' ? join(ROOT, 'docs/monitor.png') : join(dir, 'monitor.png');
    await page.screenshot({ path: shot, fullPage: true });

    // A phone: nothing wider than the screen (tables scroll inside their card).
    await page.setViewportSize({ width: 390, height: 844 });
    // (Run in the page, where `document` exists; passed as text so this file needs no DOM types.)
    const overflow = await page.evaluate<number>('document.documentElement.scrollWidth - window.innerWidth');
    expect(overflow).toBeLessThanOrEqual(0);
    expect(problems).toEqual([]);

    // The page's own data agrees with /metrics, which a Prometheus text parser reads as the run's counts.
    {
      const query = async (q: string) => {
        const res = await fetch(`http://127.0.0.1:${promPort}/api/v1/query?query=${encodeURIComponent(q)}`).catch(() => undefined);
        if (!res?.ok) return undefined;
        const body = (await res.json()) as { data: { result: Array<{ metric: Record<string, string>; value: [number, string] }> } };
        return body.data.result;
      };
      const value = async (q: string) => Number((await query(q))?.[0]?.value[1] ?? NaN);
      await expect.poll(() => value(`ewms_events_total{workflow="${workflow}",task="task-0",outcome="result"}`), { timeout: 30_000, interval: 500 }).toBe(EVENTS);
      expect(await value(`ewms_events_total{workflow="${workflow}",outcome="dead_letter"}`)).toBe(1);
      expect(await value(`ewms_dead_letters_total{workflow="${workflow}",task="task-0",reason="task exited with code 3"}`)).toBe(1);
      expect(await value(`ewms_task_duration_seconds_count{workflow="${workflow}",task="task-0"}`)).toBe(EVENTS + 1);
      expect(await value(`ewms_pilots{workflow="${workflow}",state="done"}`)).toBe(2);
      // Every task took at least the 0.3 s sleep: nothing in the buckets below it.
      expect(await value(`ewms_task_duration_seconds_bucket{workflow="${workflow}",le="0.25"}`)).toBe(0);
      const up = await query('up{job="ewms"}');
      expect(up?.[0]?.value[1]).toBe('1');
    }

    run.kill('SIGINT'); // leave the linger
    expect(await exited).toBe(3); // finished with a dead letter
    const results = readFileSync(join(dir, 'results.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { traceparent?: string });
    expect(results).toHaveLength(EVENTS);
    expect(results.every((r) => /^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/.test(r.traceparent ?? ''))).toBe(true);
  }, 240_000);
});
