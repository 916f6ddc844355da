/**
 * The event loop's rules (ack-last, bounded concurrency, retries then dead letter, fail-fast, stop and
 * release) checked against an in-memory subscription and processor. Broker behaviour itself is covered
 * by the conformance suite against real brokers; here only the loop's decisions are under test.
 */
import { describe, expect, test } from 'vitest';
import { pino } from 'pino';
import type { DeadLetterReason, Delivery, OutgoingMessage, Subscription } from '../../mq-adapters/types.js';
import { MessageTooLargeError } from '../../mq-adapters/errors.js';
import { EventLoop, type EventProcessor, type TaskOutcome } from '../../pilot/event-loop.js';
import { PilotStats } from '../../pilot/stats.js';

type Settle = 'ack' | 'nack' | 'release' | 'dead-letter';

class FakeDelivery implements Delivery {
  readonly body: Uint8Array;
  readonly headers = {};
  settled: Settle | undefined;
  deadLetterReason: DeadLetterReason | undefined;
  leaseRenewals = 0;
  constructor(
    readonly eventId: string,
    readonly deliveryCount = 1,
    private readonly log: string[] = [],
  ) {
    this.body = new TextEncoder().encode(eventId);
  }
  private mark(how: Settle): void {
    if (this.settled) throw new Error(`${this.eventId} settled twice (${this.settled}, then ${how})`);
    this.settled = how;
    this.log.push(`${how}:${this.eventId}`);
  }
  async ack(): Promise<void> {
    this.mark('ack');
  }
  async nack(): Promise<void> {
    this.mark('nack');
  }
  async release(): Promise<void> {
    this.mark('release');
  }
  async deadLetter(reason: DeadLetterReason): Promise<void> {
    this.deadLetterReason = reason;
    this.mark('dead-letter');
  }
  async extendLease(): Promise<void> {
    this.leaseRenewals += 1;
  }
}

/** A subscription fed by the test; honours close() like a real one (ends iteration). */
class FakeSubscription implements Subscription {
  private readonly queue: Delivery[] = [];
  private waiter: (() => void) | undefined;
  closed = false;
  push(...deliveries: Delivery[]): void {
    this.queue.push(...deliveries);
    this.waiter?.();
  }
  async close(): Promise<void> {
    this.closed = true;
    this.waiter?.();
  }
  async *[Symbol.asyncIterator](): AsyncIterator<Delivery> {
    for (;;) {
      if (this.closed) return;
      const next = this.queue.shift();
      if (next) {
        yield next;
        continue;
      }
      await new Promise<void>((resolve) => (this.waiter = resolve));
      this.waiter = undefined;
    }
  }
}

const silent = pino({ level: 'silent' });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const failure = (reason: string, okay = false): TaskOutcome => ({
  kind: 'failure',
  reason: { reason },
  durationMs: 1,
  permanent: false,
  okay,
});

function makeLoop(
  subscription: FakeSubscription,
  processor: EventProcessor,
  opts: Partial<ConstructorParameters<typeof EventLoop>[0]> = {},
  log: string[] = [],
) {
  const stats = new PilotStats();
  const loop = new EventLoop({
    subscription,
    publishOutput: async (m: OutgoingMessage) => {
      log.push(`publish:${m.eventId}`);
    },
    processor,
    maxConcurrentTasks: 1,
    maxDeliveries: 3,
    stopOnTaskError: false,
    firstMessageTimeoutMs: 200,
    idleTimeoutMs: 100,
    leaseRenewMs: 20,
    logger: silent,
    stats,
    ...opts,
  });
  return { loop, stats };
}

describe('event loop', () => {
  test('publishes the output before acking the input (ack-last)', async () => {
    const log: string[] = [];
    const sub = new FakeSubscription();
    const processor: EventProcessor = {
      process: async (d) => ({ kind: 'success', durationMs: 1, outputs: [{ body: d.body, eventId: `out-${d.eventId}` }] }),
    };
    const { loop, stats } = makeLoop(sub, processor, {}, log);
    sub.push(new FakeDelivery('a', 1, log), new FakeDelivery('b', 1, log));
    const result = await loop.run();
    expect(log).toEqual(['publish:out-a', 'ack:a', 'publish:out-b', 'ack:b']);
    expect(result.stopReason).toBe('idle-timeout');
    expect(stats.snapshot().succeeded).toBe(2);
  });

  test('several outputs: every one confirmed before the ack; one not confirmed releases the event, unacked', async () => {
    const log: string[] = [];
    const sub = new FakeSubscription();
    const processor: EventProcessor = {
      process: async (d) => ({ kind: 'success', durationMs: 1, outputs: [0, 1, 2].map((i) => ({ body: d.body, eventId: `${d.eventId}-${i}` })) }),
    };
    // Confirms come back in reverse order, the first output's last.
    const publishOutput = async (m: OutgoingMessage) => {
      const i = Number(m.eventId?.slice(-1));
      await sleep(30 - 10 * i);
      if (m.eventId === 'b-1') throw new Error('connection lost');
      log.push(`confirmed:${m.eventId}`);
    };
    const { loop, stats } = makeLoop(sub, processor, { publishOutput }, log);
    const a = new FakeDelivery('a', 1, log);
    const b = new FakeDelivery('b', 1, log);
    sub.push(a, b);
    const result = await loop.run();
    expect(log.slice(0, 4)).toEqual(['confirmed:a-2', 'confirmed:a-1', 'confirmed:a-0', 'ack:a']);
    expect(b.settled).toBe('release');
    expect(result.stopReason).toBe('broker-error');
    expect(stats.snapshot().succeeded).toBe(1);
  });

  test('a task that writes no outfile is a success with nothing published, counted and logged as such', async () => {
    const log: string[] = [];
    const lines: string[] = [];
    const sub = new FakeSubscription();
    const processor: EventProcessor = {
      process: async (d) =>
        d.eventId === 'quiet' ? { kind: 'success', durationMs: 1, outputs: [] } : { kind: 'success', durationMs: 1, outputs: [{ body: d.body, eventId: `out-${d.eventId}` }] },
    };
    const logger = pino({ level: 'info' }, { write: (line: string) => lines.push(line) });
    const { loop, stats } = makeLoop(sub, processor, { logger }, log);
    sub.push(new FakeDelivery('quiet', 1, log), new FakeDelivery('loud', 1, log));
    await loop.run();
    expect(log).toEqual(['ack:quiet', 'publish:out-loud', 'ack:loud']);
    expect(stats.snapshot()).toMatchObject({ succeeded: 2, withoutOutput: 1 });
    const quiet = lines.map((l) => JSON.parse(l) as { eventId?: string; msg: string }).filter((l) => l.eventId === 'quiet');
    expect(quiet.map((l) => l.msg)).toContain('task succeeded without writing an outfile: nothing published for this event');
  });

  test('a failed publish leaves the input unacked (nacked) and stops intake', async () => {
    const sub = new FakeSubscription();
    const d = new FakeDelivery('a');
    const loop = new EventLoop({
      subscription: sub,
      publishOutput: async () => {
        throw new Error('connection lost');
      },
      processor: { process: async () => ({ kind: 'success', durationMs: 1, outputs: [{ body: new Uint8Array(1) }] }) },
      maxConcurrentTasks: 1,
      maxDeliveries: 3,
      stopOnTaskError: false,
      firstMessageTimeoutMs: undefined,
      idleTimeoutMs: undefined,
      leaseRenewMs: 1000,
      logger: silent,
      stats: new PilotStats(),
    });
    sub.push(d);
    const result = await loop.run();
    expect(d.settled).toBe('release');
    expect(result.stopReason).toBe('broker-error');
    // The exit summary says why ("broker failure: connection lost"), not "broker failure: undefined".
    expect(String(result.brokerError)).toMatch(/connection lost/);
  });

  test('an output the broker refuses as too large dead-letters its event at once, and the pilot carries on', async () => {
    // Released instead, the event would come back to every pilot and stop each one with a "broker failure".
    const sub = new FakeSubscription();
    const big = new FakeDelivery('big');
    const next = new FakeDelivery('next');
    const log: string[] = [];
    const { loop, stats } = makeLoop(
      sub,
      { process: async (d) => ({ kind: 'success', durationMs: 1, outputs: [{ body: d.body, eventId: `out-${d.eventId}` }] }) },
      {
        stopOnTaskError: true,
        version: '9.9.9',
        publishOutput: async (m: OutgoingMessage) => {
          if (m.eventId === 'out-big') throw new MessageTooLargeError('nats', 2_000_000, 1_048_576);
          log.push(`publish:${m.eventId}`);
        },
      },
      log,
    );
    sub.push(big, next);
    const result = await loop.run();
    expect(big.settled).toBe('dead-letter');
    expect(big.deadLetterReason?.reason).toMatch(/output is too large for the broker: message of 2000000 bytes exceeds the nats limit of 1048576 bytes/);
    expect(big.deadLetterReason?.details).toMatchObject({ 'error-type': 'InvalidDataFromOutfileException', attempt: '1', 'pilot-version': '9.9.9' });
    expect(next.settled).toBe('ack');
    // Not the node's fault: no fail-fast, no broker failure.
    expect(result.stopReason).toBe('idle-timeout');
    expect(stats.snapshot()).toMatchObject({ succeeded: 1, failed: 1, deadLettered: 1 });
  });

  test('never runs more than maxConcurrentTasks at once', async () => {
    const sub = new FakeSubscription();
    let running = 0;
    let peak = 0;
    const processor: EventProcessor = {
      process: async () => {
        running += 1;
        peak = Math.max(peak, running);
        await sleep(15);
        running -= 1;
        return { kind: 'success', durationMs: 15, outputs: [] };
      },
    };
    const { loop, stats } = makeLoop(sub, processor, { maxConcurrentTasks: 3 });
    sub.push(...Array.from({ length: 12 }, (_, i) => new FakeDelivery(`e${i}`)));
    await loop.run();
    expect(peak).toBe(3);
    expect(stats.snapshot().succeeded).toBe(12);
  });

  test('nacks failed attempts and dead-letters the last one with its reason', async () => {
    const sub = new FakeSubscription();
    const { loop, stats } = makeLoop(sub, { process: async () => failure('task exited with code 3') });
    const attempts = [1, 2, 3].map((n) => new FakeDelivery('poison', n));
    sub.push(...attempts);
    await loop.run();
    expect(attempts.map((d) => d.settled)).toEqual(['nack', 'nack', 'dead-letter']);
    expect(attempts[2]!.deadLetterReason?.reason).toBe('task exited with code 3');
    expect(stats.snapshot()).toMatchObject({ failed: 3, deadLettered: 1 });
  });

  test('a permanent failure (malformed event) is dead-lettered on its first attempt', async () => {
    const sub = new FakeSubscription();
    const d = new FakeDelivery('bad');
    const { loop } = makeLoop(sub, {
      process: async () => ({ kind: 'failure', reason: { reason: 'malformed event' }, durationMs: undefined, permanent: true, okay: false }),
    });
    sub.push(d);
    await loop.run();
    expect(d.settled).toBe('dead-letter');
  });

  test('fail-fast: a task error stops intake; in-flight work still finishes', async () => {
    const sub = new FakeSubscription();
    const processor: EventProcessor = {
      process: async (d) => {
        if (d.eventId === 'bad') return failure('boom');
        await sleep(50);
        return { kind: 'success', durationMs: 50, outputs: [] };
      },
    };
    const { loop } = makeLoop(sub, processor, { stopOnTaskError: true, maxConcurrentTasks: 2 });
    const slow = new FakeDelivery('slow');
    const bad = new FakeDelivery('bad');
    const never = new FakeDelivery('never');
    sub.push(slow, bad);
    setTimeout(() => sub.push(never), 5);
    const result = await loop.run();
    expect(result.stopReason).toBe('task-error');
    expect(result.fatalTaskError).toBe('boom');
    expect(slow.settled).toBe('ack');
    expect(bad.settled).toBe('nack');
    expect(never.settled).toBeUndefined();
    expect(sub.closed).toBe(true);
  });

  test('OKAY_ERRORS failures do not stop intake', async () => {
    const sub = new FakeSubscription();
    const { loop, stats } = makeLoop(
      sub,
      { process: async (d) => (d.eventId === 'x' ? failure('known flake', true) : { kind: 'success', durationMs: 1, outputs: [] }) },
      { stopOnTaskError: true },
    );
    sub.push(new FakeDelivery('x'), new FakeDelivery('y'));
    const result = await loop.run();
    expect(result.stopReason).toBe('idle-timeout');
    expect(stats.snapshot()).toMatchObject({ succeeded: 1, failed: 1 });
  });

  test('stop with a grace aborts in-flight tasks and releases their events', async () => {
    const sub = new FakeSubscription();
    const processor: EventProcessor = {
      process: (_d, signal) =>
        new Promise((resolve) => signal.addEventListener('abort', () => resolve({ kind: 'aborted', durationMs: 1 }))),
    };
    const { loop } = makeLoop(sub, processor, { idleTimeoutMs: undefined });
    const d = new FakeDelivery('long');
    sub.push(d);
    setTimeout(() => loop.stop('signal', 30), 20);
    const result = await loop.run();
    expect(result.stopReason).toBe('signal');
    expect(d.settled).toBe('release');
  });

  test('renews the lease while a task runs', async () => {
    const sub = new FakeSubscription();
    const d = new FakeDelivery('long');
    const { loop } = makeLoop(sub, {
      // Ends once renewed three times; a loop that never renews leaves the task running until the test times out.
      process: async () => {
        while (d.leaseRenewals < 3) await sleep(10);
        return { kind: 'success', durationMs: 110, outputs: [] };
      },
    });
    sub.push(d);
    await loop.run();
    expect(d.leaseRenewals).toBeGreaterThanOrEqual(3);
    expect(d.settled).toBe('ack');
  });

  test('ends with first-message-timeout when nothing ever arrives', async () => {
    const sub = new FakeSubscription();
    const { loop } = makeLoop(sub, { process: async () => failure('unused') });
    const started = Date.now();
    const result = await loop.run();
    expect(result.stopReason).toBe('first-message-timeout');
    expect(Date.now() - started).toBeGreaterThanOrEqual(190);
  });
});

describe('event loop with a slot-aware processor (slot held around the task process only)', () => {
  /** Prepares (5 ms), runs its "process" in a slot (20 ms), reports (5 ms); logs each step. */
  function slotAware(log: string[], track: { running: number; peak: number }): EventProcessor {
    return {
      slotAware: true,
      process: async (d, signal, slots) => {
        await sleep(5);
        log.push(`prepared:${d.eventId}`);
        if (slots && !(await slots.acquire(signal))) return { kind: 'aborted', durationMs: undefined };
        track.running += 1;
        track.peak = Math.max(track.peak, track.running);
        log.push(`run:${d.eventId}`);
        await sleep(20);
        track.running -= 1;
        slots?.release();
        await sleep(5);
        return { kind: 'success', durationMs: 20, outputs: [{ body: d.body, eventId: `out-${d.eventId}` }] };
      },
    };
  }

  test('at most maxConcurrentTasks processes; the next event is prepared, and the last acked, while a task runs', async () => {
    const log: string[] = [];
    const track = { running: 0, peak: 0 };
    const sub = new FakeSubscription();
    const { loop, stats } = makeLoop(sub, slotAware(log, track), { maxConcurrentTasks: 1, lookahead: 2 }, log);
    sub.push(...['a', 'b', 'c', 'd'].map((id) => new FakeDelivery(id, 1, log)));
    await loop.run();
    expect(track.peak).toBe(1);
    expect(stats.snapshot().succeeded).toBe(4);
    // b was prepared while a ran; a was acked while b ran.
    expect(log.indexOf('prepared:b')).toBeLessThan(log.indexOf('run:b'));
    expect(log.indexOf('prepared:b')).toBeLessThan(log.indexOf('ack:a'));
    expect(log.indexOf('ack:a')).toBeLessThan(log.indexOf('ack:b'));
    expect(log.indexOf('run:b')).toBeLessThan(log.indexOf('ack:a'));
    // ack-last per event.
    for (const id of ['a', 'b', 'c', 'd']) expect(log.indexOf(`publish:out-${id}`)).toBeLessThan(log.indexOf(`ack:${id}`));
  });

  test('peak concurrency holds at 2 slots too, with more events in hand', async () => {
    const track = { running: 0, peak: 0 };
    const sub = new FakeSubscription();
    const { loop, stats } = makeLoop(sub, slotAware([], track), { maxConcurrentTasks: 2, lookahead: 3 });
    sub.push(...Array.from({ length: 12 }, (_, i) => new FakeDelivery(`e${i}`)));
    await loop.run();
    expect(track.peak).toBe(2);
    expect(stats.snapshot().succeeded).toBe(12);
  });

  test('events being published and acked do not hold up the next: a slow confirm overlaps several tasks', async () => {
    const log: string[] = [];
    const sub = new FakeSubscription();
    const { loop, stats } = makeLoop(sub, slotAware(log, { running: 0, peak: 0 }), {
      maxConcurrentTasks: 1,
      lookahead: 1,
      publishOutput: async (m: OutgoingMessage) => {
        await sleep(80); // a confirm far slower than a task
        log.push(`publish:${m.eventId}`);
      },
    }, log);
    sub.push(...['a', 'b', 'c', 'd'].map((id) => new FakeDelivery(id, 1, log)));
    await loop.run();
    expect(stats.snapshot().succeeded).toBe(4);
    expect(log.indexOf('run:c')).toBeLessThan(log.indexOf('ack:a'));
    for (const id of ['a', 'b', 'c', 'd']) expect(log.indexOf(`publish:out-${id}`)).toBeLessThan(log.indexOf(`ack:${id}`));
  });

  test('events waiting for a slot when intake stops are released, not run', async () => {
    const log: string[] = [];
    const sub = new FakeSubscription();
    const { loop } = makeLoop(sub, slotAware(log, { running: 0, peak: 0 }), { maxConcurrentTasks: 1, lookahead: 2, idleTimeoutMs: undefined }, log);
    const events = ['a', 'b', 'c'].map((id) => new FakeDelivery(id, 1, log));
    sub.push(...events);
    setTimeout(() => loop.stop('signal'), 12); // a runs, b and c wait for the slot
    await loop.run();
    expect(events.map((e) => e.settled)).toEqual(['ack', 'release', 'release']);
    expect(log).not.toContain('run:b');
  });
});

describe('a processor that throws (its contract says it never does)', () => {
  test('the event is released and logged, and the loop goes on', async () => {
    const lines: string[] = [];
    const sub = new FakeSubscription();
    const processor: EventProcessor = {
      process: async (d) => {
        if (d.eventId === 'bad') throw new Error('disk on fire');
        return { kind: 'success', durationMs: 1, outputs: [] };
      },
    };
    const logger = pino({ level: 'error' }, { write: (line: string) => lines.push(line) });
    const { loop, stats } = makeLoop(sub, processor, { logger });
    const bad = new FakeDelivery('bad');
    const good = new FakeDelivery('good');
    sub.push(bad, good);
    const result = await loop.run();
    expect(bad.settled).toBe('release');
    expect(good.settled).toBe('ack');
    expect(result.stopReason).toBe('idle-timeout');
    expect(stats.snapshot().succeeded).toBe(1);
    expect(lines.join('')).toMatch(/processor failed unexpectedly.*disk on fire|disk on fire.*processor failed unexpectedly/);
  });
});
