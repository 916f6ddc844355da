import { describe, expect, it } from 'vitest';
import { pino } from 'pino';
import {
  addDurations,
  decodeHeartbeat,
  DURATION_BUCKETS,
  DurationHistogram,
  encodeHeartbeat,
  HEARTBEAT_LIMITS,
  HeartbeatFormatError,
  OTHER_REASON,
  type Heartbeat,
} from '../../common/heartbeat.js';
import { RateMeter } from '../../common/rate.js';
import { heartbeatFixture } from './fixtures.js';
import { formatTraceParent, newTraceParent, parseTraceParent, requireTraceParent, TraceParentError } from '../../common/trace-context.js';
import type { DeadLetterReason, Delivery, OutgoingMessage, Subscription } from '../../mq-adapters/types.js';
import type { TaskOutcome } from '../../pilot/event-loop.js';
import { condorJobId, HeartbeatPublisher, underCondor } from '../../pilot/heartbeat.js';
import { TaskProbe } from '../../pilot/heartbeat-probe.js';

const silent = pino({ level: 'silent' });

function sample(overrides: Partial<Heartbeat> = {}): Heartbeat {
  const h = new DurationHistogram();
  h.observe(0.2);
  h.observe(3);
  return heartbeatFixture({ seq: 3, sentAt: 1_700_000_000_000, startedAt: 1_699_999_990_000, queue: 'ewms-x-in', durations: h.counts(), ...overrides });
}

function deliveryOf(eventId: string, attempt = 1, headers: Record<string, string> = {}): Delivery {
  return {
    body: new Uint8Array(),
    headers,
    eventId,
    deliveryCount: attempt,
    ack: async () => undefined,
    nack: async () => undefined,
    release: async () => undefined,
    deadLetter: async () => undefined,
    extendLease: async () => undefined,
  };
}

describe('heartbeat wire format', () => {
  it('round-trips every field', () => {
    const hb = sample({ condorJobId: '1234.0', stopReason: 'idle-timeout', exitCode: 0, lastError: { message: 'x', at: 5 } });
    expect(decodeHeartbeat(encodeHeartbeat(hb))).toEqual(hb);
  });

  it('refuses what is not a heartbeat, saying what is wrong', () => {
    const enc = (v: unknown) => Buffer.from(JSON.stringify(v));
    expect(() => decodeHeartbeat(Buffer.from('nope'))).toThrow(/not JSON/);
    expect(() => decodeHeartbeat(enc({ ...sample(), kind: 'other' }))).toThrow(HeartbeatFormatError);
    expect(() => decodeHeartbeat(enc({ ...sample(), version: 2 }))).toThrow(/version 2/);
    expect(() => decodeHeartbeat(enc({ ...sample(), state: 'dancing' }))).toThrow(/state 'dancing'/);
    expect(() => decodeHeartbeat(enc({ ...sample(), counts: { succeeded: -1, failed: 0, deadLettered: 0 } }))).toThrow(/counts.succeeded/);
    expect(() => decodeHeartbeat(enc({ ...sample(), intervalSeconds: 0 }))).toThrow(/intervalSeconds/);
    const durations = { buckets: DURATION_BUCKETS.map((_, i) => (i === 0 ? 2 : 1)), sum: 1, count: 2 };
    expect(() => decodeHeartbeat(enc({ ...sample(), durations }))).toThrow(/not cumulative/);
    expect(() => decodeHeartbeat(new Uint8Array(HEARTBEAT_LIMITS.maxBytes + 1))).toThrow(/limit/);
  });

  it('clips over-long text instead of refusing a newer pilot', () => {
    const long = 'x'.repeat(5000);
    const hb = decodeHeartbeat(encodeHeartbeat(sample({ lastError: { message: long, at: 1 } })));
    expect(hb.lastError!.message.length).toBe(HEARTBEAT_LIMITS.errorChars);
  });

  it('buckets durations cumulatively and adds pilots', () => {
    const h = new DurationHistogram();
    for (const s of [0.001, 0.3, 0.3, 9999999]) h.observe(s);
    const c = h.counts();
    expect(c.count).toBe(4);
    expect(c.buckets[0]).toBe(1);
    expect(c.buckets[DURATION_BUCKETS.indexOf(0.5)]).toBe(3);
    expect(c.buckets[c.buckets.length - 1]).toBe(3); // the 9999999 s run is only in +Inf (count)
    expect(addDurations(c, c).count).toBe(8);
  });
});

describe('trace context', () => {
  it('parses and formats W3C traceparent', () => {
    const v = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    expect(parseTraceParent(v)).toEqual({ traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7', flags: 1 });
    expect(formatTraceParent(parseTraceParent(v)!)).toBe(v);
    expect(parseTraceParent(newTraceParent())).toBeDefined();
  });

  it('ignores invalid received headers and refuses invalid given ones', () => {
    for (const bad of ['', 'garbage', '00-00000000000000000000000000000000-00f067aa0ba902b7-01', 'ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', '00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01']) {
      expect(parseTraceParent(bad)).toBeUndefined();
    }
    expect(() => requireTraceParent('nope')).toThrow(TraceParentError);
  });
});

describe('rate meter', () => {
  it('follows the window, not the whole run', () => {
    const r = new RateMeter(10_000);
    r.sample(0, 0);
    r.sample(100, 10_000); // 10/s
    r.sample(100, 20_000);
    expect(r.sample(100, 30_000)).toBe(0);
    expect(r.sample(130, 31_000)).toBeGreaterThan(2);
  });
});

describe('HTCondor identity', () => {
  it('reads ClusterId.ProcId from the job ad', () => {
    const ad = 'Cmd = "/usr/bin/ewms-pilot"\nClusterId = 4711\nProcId = 3\nGlobalJobId = "submit#4711.3#1700000000"\n';
    expect(condorJobId({ _CONDOR_JOB_AD: '/scratch/.job.ad' }, () => ad)).toBe('4711.3');
    expect(condorJobId({}, () => ad)).toBeUndefined();
    expect(condorJobId({ _CONDOR_JOB_AD: '/missing' }, () => { throw new Error('ENOENT'); })).toBeUndefined();
    expect(underCondor({ _CONDOR_SCRATCH_DIR: '/scratch' })).toBe(true);
    expect(underCondor({})).toBe(false);
  });
});

describe('task probe', () => {
  it('shows running tasks with start times, times them, and keeps the last error redacted', async () => {
    const probe = new TaskProbe(['s3cret-token']);
    let finish!: (o: TaskOutcome) => void;
    const processor = probe.wrapProcessor({ process: () => new Promise<TaskOutcome>((resolve) => (finish = resolve)) });
    const running = processor.process(deliveryOf('ev-1', 2), new AbortController().signal);
    expect(probe.inFlight()).toMatchObject({ count: 1, events: [{ eventId: 'ev-1', attempt: 2 }] });
    finish({ kind: 'failure', reason: { reason: 'task exited with code 1 (token s3cret-token)' }, durationMs: 1500, permanent: false, okay: false });
    await running;
    expect(probe.inFlight().count).toBe(0);
    expect(probe.durations().count).toBe(1);
    expect(probe.lastError?.message).toBe('task exited with code 1 (token ***)');
  });

  it('counts dead letters by reason once the broker took them, with a capped number of reasons', async () => {
    const probe = new TaskProbe();
    const deliveries = Array.from({ length: 20 }, (_, i) => deliveryOf(`e${i}`));
    const sub: Subscription = {
      close: async () => undefined,
      async *[Symbol.asyncIterator]() {
        yield* deliveries;
      },
    };
    let i = 0;
    for await (const d of probe.wrapSubscription(sub)) {
      const reason: DeadLetterReason = { reason: i < 3 ? 'task exited with code 3' : `odd failure ${i}`, details: { 'error-type': 'TaskExitError', 'stderr-tail': 'line 1\\nline 2' } };
      await d.deadLetter(reason);
      i++;
    }
    const groups = probe.deadLetters();
    expect(groups.length).toBe(HEARTBEAT_LIMITS.deadLetterReasons + 1);
    expect(groups.find((g) => g.reason === 'task exited with code 3')).toMatchObject({ count: 3, errorType: 'TaskExitError', sampleStderrTail: 'line 1\nline 2' });
    expect(groups.find((g) => g.reason === OTHER_REASON)!.count).toBe(20 - 3 - (HEARTBEAT_LIMITS.deadLetterReasons - 1));
  });
});

describe('heartbeat publisher', () => {
  it('never has more than one heartbeat in flight and sends the newest state when the broker answers', async () => {
    const sent: Heartbeat[] = [];
    const confirms: Array<() => void> = [];
    const probe = new TaskProbe();
    const publisher = new HeartbeatPublisher({
      settings: { queue: 'mon', intervalSeconds: 3600, taskName: 'task-0' },
      publish: (m: OutgoingMessage) => {
        sent.push(decodeHeartbeat(m.body));
        return new Promise<void>((resolve) => confirms.push(resolve));
      },
      sources: { counts: () => ({ succeeded: 0, failed: 0, deadLettered: 0 }), probe },
      incomingQueue: 'in',
      pilotVersion: 't',
      logger: silent,
      env: {},
    });
    publisher.start();
    publisher.setState('init');
    publisher.setState('tasking');
    expect(sent.map((h) => h.state)).toEqual(['starting']);
    confirms.shift()!();
    await new Promise((r) => setImmediate(r));
    expect(sent.map((h) => h.state)).toEqual(['starting', 'tasking']);
    const stopped = publisher.stop(0, 'idle-timeout');
    confirms.shift()!();
    await new Promise((r) => setImmediate(r));
    confirms.shift()?.();
    await stopped;
    expect(sent.map((h) => h.state)).toEqual(['starting', 'tasking', 'done']);
    expect(sent.map((h) => h.seq)).toEqual([0, 1, 2]);
    expect(sent[2]).toMatchObject({ exitCode: 0, stopReason: 'idle-timeout' });
  });

  it('drops a heartbeat the broker refuses and goes on', async () => {
    let calls = 0;
    const publisher = new HeartbeatPublisher({
      settings: { queue: 'mon', intervalSeconds: 3600, taskName: 'task-0' },
      publish: async () => {
        calls += 1;
        throw new Error('broker down');
      },
      sources: { counts: () => ({ succeeded: 0, failed: 0, deadLettered: 0 }), probe: new TaskProbe() },
      incomingQueue: 'in',
      pilotVersion: 't',
      logger: silent,
      env: {},
    });
    publisher.start();
    await new Promise((r) => setImmediate(r));
    await publisher.stop(1, 'task-error');
    expect(calls).toBe(2);
    expect(publisher.currentState).toBe('fatal');
  });
});
