/** The monitor's bookkeeping, metrics and HTTP rules, without a broker (real brokers: monitor-e2e.test.ts). */
import { get as httpGet } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import parsePrometheusTextFormat from 'parse-prometheus-text-format';
import type { Heartbeat } from '../../common/heartbeat.js';
import { heartbeatFixture } from './fixtures.js';
import { createMetricsRegistry } from '../../coordinator/monitor/metrics.js';
import { checkBind, startMonitorServer, type MonitorServer } from '../../coordinator/monitor/server.js';
import { MonitorState } from '../../coordinator/monitor/state.js';

function hb(pilotId: string, overrides: Partial<Heartbeat> = {}): Heartbeat {
  return heartbeatFixture({ pilotId, host: `host-${pilotId}`, ...overrides });
}

describe('monitor state', () => {
  it('sums pilots per task, keeps the newest heartbeat per pilot, and turns a silent pilot stale', () => {
    let now = 1_000_000;
    const state = new MonitorState({ workflowId: 'wf', tasks: [{ name: 'task-0', queue: 'wf-in' }], now: () => now });
    state.ingest(hb('a', { seq: 5 }));
    state.ingest(hb('a', { seq: 4, counts: { succeeded: 99, failed: 0, deadLettered: 0 } })); // older: ignored
    state.ingest(hb('b', { state: 'quarantine', counts: { succeeded: 3, failed: 1, deadLettered: 1 } }));
    state.ingest(hb('c', { state: 'done', inFlight: { count: 0, events: [] }, counts: { succeeded: 7, failed: 0, deadLettered: 0 }, deadLetters: [] }));
    state.setQueueDepth('wf-in', 20);
    let s = state.snapshot();
    expect(s.tasks).toHaveLength(1);
    expect(s.tasks[0]).toMatchObject({ name: 'task-0', done: 20, failed: 2, attemptsFailed: 3, inFlight: 2, queued: 20, total: 44 });
    expect(s.tasks[0]!.pilots).toEqual({ tasking: 1, quarantine: 1, done: 1 });
    expect(s.pilots[0]!.status).toBe('quarantine'); // trouble first
    expect(s.deadLetters).toEqual([{ task: 'task-0', reason: 'task exited with code 3', count: 2, errorType: 'TaskExitError', sampleStderrTail: 'Traceback: boom' }]);

    now += 12_000; // 3 missed 2-s heartbeats + margin
    s = state.snapshot();
    expect(s.pilots.filter((p) => p.status === 'stale').map((p) => p.id).sort()).toEqual(['a', 'b']);
    expect(s.pilots.find((p) => p.id === 'c')!.status).toBe('done'); // a finished pilot never turns stale
    expect(s.tasks[0]!.inFlight).toBe(0); // a stale pilot's tasks are not counted as running
    expect(s.tasks[0]!.done).toBe(20); // a dead pilot's last counts stay
  });

  it('does not count in-flight events twice where the broker counts them as waiting (NATS)', () => {
    const state = new MonitorState({ workflowId: 'wf', tasks: [{ name: 'task-0', queue: 'wf-in' }], depthIncludesInFlight: true, now: () => 0 });
    state.ingest(hb('a', { inFlight: { count: 3, events: [] } }));
    state.setQueueDepth('wf-in', 5);
    expect(state.snapshot().tasks[0]!.queued).toBe(2);
  });

  it('uses the run\'s expected count and rates for the ETA', () => {
    let now = 0;
    const state = new MonitorState({ workflowId: 'wf', tasks: [{ name: 'task-0', queue: 'wf-in' }], now: () => now });
    state.attachRun(() => ({ published: 100, expected: 100, results: 40, deadLetters: 0 }));
    state.ingest(hb('a', { counts: { succeeded: 0, failed: 0, deadLettered: 0 }, deadLetters: [] }));
    state.tick();
    now = 10_000;
    state.ingest(hb('a', { seq: 2, counts: { succeeded: 40, failed: 0, deadLettered: 0 }, deadLetters: [] }));
    state.tick();
    const s = state.snapshot();
    expect(s.run).toMatchObject({ progress: 0.4 });
    expect(s.tasks[0]).toMatchObject({ total: 100, progress: 0.4, ratePerSecond: 4, etaSeconds: 15 });
    expect(s.throughput.at(-1)!.perTask['task-0']).toBe(4);
  });

  it('keeps secrets off the page even when a pilot leaked one', () => {
    const state = new MonitorState({ workflowId: 'wf', secrets: ['hunter2-secret'], now: () => 0 });
    state.ingest(hb('a', { lastError: { message: 'auth failed for hunter2-secret', at: 0 } }));
    expect(JSON.stringify(state.snapshot())).not.toContain('hunter2-secret');
  });
});

describe('/metrics', () => {
  it('is valid Prometheus text with the issue\'s names and labels', async () => {
    const state = new MonitorState({ workflowId: 'wf', tasks: [{ name: 'task-0', queue: 'wf-in' }], now: () => 0 });
    state.ingest(hb('a'));
    state.ingest(hb('b', { counts: { succeeded: 5, failed: 0, deadLettered: 0 }, deadLetters: [] }));
    state.setQueueDepth('wf-in', 7);
    const text = await createMetricsRegistry(state).metrics();
    const families = new Map(parsePrometheusTextFormat(text).map((f) => [f.name, f]));
    const value = (name: string, labels: Record<string, string>) =>
      Number(families.get(name)!.metrics.find((m) => Object.entries(labels).every(([k, v]) => m.labels?.[k] === v))?.value);
    expect(value('ewms_events_total', { workflow: 'wf', task: 'task-0', outcome: 'result' })).toBe(15);
    expect(value('ewms_events_total', { outcome: 'dead_letter' })).toBe(1);
    expect(value('ewms_events_in_flight', { task: 'task-0' })).toBe(2);
    expect(value('ewms_queue_depth', { queue: 'wf-in' })).toBe(7);
    expect(value('ewms_pilots', { state: 'tasking' })).toBe(2);
    expect(value('ewms_dead_letters_total', { reason: 'task exited with code 3' })).toBe(1);
    const hist = families.get('ewms_task_duration_seconds')!;
    expect(hist.type).toBe('HISTOGRAM');
    // (This parser keeps only a histogram's buckets, not its labels, sum and count; the test against a real
    // Prometheus in monitor-e2e.test.ts checks those.)
    const series = hist.metrics[0] as unknown as { buckets: Record<string, string> };
    expect(Number(series.buckets['+Inf'])).toBe(2);
    expect(Number(series.buckets['0.25'])).toBe(0);
    expect(Number(series.buckets['0.5'])).toBe(2);
  });
});

describe('monitor HTTP rules', () => {
  let server: MonitorServer | undefined;
  afterEach(async () => server?.close());

  it('refuses a non-loopback bind without a long enough token', () => {
    expect(() => checkBind('0.0.0.0', undefined)).toThrow(/without a token/);
    expect(() => checkBind('0.0.0.0', 'short')).toThrow(/shorter/);
    expect(() => checkBind('127.0.0.1', undefined)).not.toThrow();
    expect(() => checkBind('::1', undefined)).not.toThrow();
  });

  it('on loopback answers only to loopback host names (no DNS rebinding)', async () => {
    const state = new MonitorState({ workflowId: 'wf', now: () => 0 });
    server = await startMonitorServer({ state, registry: createMetricsRegistry(state), port: 0 });
    expect((await fetch(`${server.url}api/status`)).status).toBe(200);
    // fetch() will not send another Host header: node:http will.
    const rebound = await new Promise<number>((resolve, reject) =>
      httpGet(`${server!.url}api/status`, { headers: { host: 'evil.example:9464' } }, (res) => resolve(res.statusCode ?? 0)).on('error', reject),
    );
    expect(rebound).toBe(421);
    const page = await fetch(server.url);
    expect(page.headers.get('content-security-policy')).toContain("default-src 'none'");
    expect(await page.text()).toContain('<script type="module" src="/app.js">');
  });

  it('with a token: bearer for scrapers, a one-time ?token= for browsers (then an HttpOnly cookie)', async () => {
    const token = 'a-long-enough-test-token';
    const state = new MonitorState({ workflowId: 'wf', now: () => 0 });
    server = await startMonitorServer({ state, registry: createMetricsRegistry(state), port: 0, token });
    expect((await fetch(`${server.url}metrics`)).status).toBe(401);
    expect((await fetch(`${server.url}metrics`, { headers: { authorization: 'Bearer wrong-token-wrong-token' } })).status).toBe(401);
    expect((await fetch(`${server.url}metrics`, { headers: { authorization: `Bearer ${token}` } })).status).toBe(200);
    const signIn = await fetch(`${server.url}?token=${token}`, { redirect: 'manual' });
    expect(signIn.status).toBe(303);
    const cookie = signIn.headers.get('set-cookie')!;
    expect(cookie).toMatch(/HttpOnly/);
    expect((await fetch(`${server.url}api/status`, { headers: { cookie: cookie.split(';')[0]! } })).status).toBe(200);
  });
});
