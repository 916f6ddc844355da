/**
 * Draining a workflow: results from the outgoing queue and dead letters from the dead-letter queue, merged
 * into one stream in which every published event appears exactly once.
 *
 * - Dedup by the input's event id (`x-ewms-input-event-id` on results; a dead letter keeps the original
 *   event's id): at-least-once on the wire, exactly once in the caller's hands. Duplicates are acked and
 *   dropped, and counted.
 * - Ack-after-take: an outcome is acked only when the caller asks for the next one, so a caller that
 *   crashes while handling it gets it again next time. One that stops early (`break`) has its last outcome
 *   released, not acked.
 * - Done when results + dead letters = expected.
 * - With `keepDeadLetters`, dead letters are yielded but left in their queue (released when collection
 *   ends) for `DeadLetters.list` / `requeue`.
 * - Where there is no dead-letter queue (EWMS: one token per queue), dead letters arrive on the results queue,
 *   marked by their reason header; they are yielded as dead letters and acked once taken.
 */
import { describeError } from '../common/redact.js';
import type { WireFormat } from '../common/wire.js';
import { AsyncQueue } from '../mq-adapters/shared/async-queue.js';
import { HEADERS, type AdapterLogger, type Broker, type Delivery, type Subscription } from '../mq-adapters/types.js';
import { decodeEvent, eventBytes } from './codec.js';
import { CollectStoppedError, CollectTimeoutError, CoordinatorConfigError } from './errors.js';
import type { CollectOptions, CollectStats, WorkflowOutcome, WorkflowQueues } from './types.js';

const DEFAULT_PREFETCH = 500;
const DEAD_LETTER_PREFETCH = 50;
const KEPT_DEAD_LETTER_PREFETCH = 10_000;

/** Where a delivery came from. */
type Source = 'result' | 'dead-letter';

interface Received {
  source: Source;
  delivery: Delivery;
}

/** The outcome a dead-letter delivery stands for. */
export function deadLetterOutcome(delivery: Delivery, wireFormat: WireFormat): WorkflowOutcome & { kind: 'dead-letter' } {
  const details: Record<string, string> = {};
  for (const [key, value] of Object.entries(delivery.headers)) {
    if (key.startsWith(HEADERS.deadLetterDetailPrefix) && key !== HEADERS.deadLetterReason) {
      details[key.slice(HEADERS.deadLetterDetailPrefix.length)] = value;
    }
  }
  return {
    kind: 'dead-letter',
    inputEventId: delivery.eventId,
    // No reason header: the broker's own delivery limit moved it (the event crashed its consumers).
    reason: delivery.headers[HEADERS.deadLetterReason] ?? 'delivery limit reached (dead-lettered by the broker)',
    details,
    data: decodeOrDescribe(delivery.body, wireFormat),
    ...rawBytes(delivery, wireFormat),
  };
}

/** The body's bytes (a copy the caller may keep), for the raw wire format. */
function rawBytes(delivery: Delivery, wireFormat: WireFormat): { bytes?: Buffer } {
  return wireFormat === 'raw' ? { bytes: Buffer.from(eventBytes(delivery.body)) } : {};
}

/** A dead letter that came on the results queue (no dead-letter queue of its own): it carries the reason header. */
function isDeadLetter(delivery: Delivery): boolean {
  return delivery.headers[HEADERS.deadLetterReason] !== undefined;
}

function decodeOrDescribe(body: Uint8Array, wireFormat: WireFormat) {
  try {
    return decodeEvent(body, wireFormat);
  } catch {
    // Keep the bytes: an undecodable body is still the user's data.
    return { undecodableBodyBase64: Buffer.from(body).toString('base64') };
  }
}

function resultOutcome(delivery: Delivery, wireFormat: WireFormat): WorkflowOutcome {
  if (isDeadLetter(delivery)) return deadLetterOutcome(delivery, wireFormat);
  const inputEventId = delivery.headers[HEADERS.inputEventId] ?? '';
  const headers = { ...delivery.headers };
  try {
    return { kind: 'result', inputEventId, data: decodeEvent(delivery.body, wireFormat), ...rawBytes(delivery, wireFormat), headers };
  } catch (err) {
    return {
      kind: 'dead-letter',
      inputEventId,
      reason: `the result could not be decoded: ${describeError(err)}`,
      details: { 'result-event-id': delivery.eventId },
      data: { undecodableBodyBase64: Buffer.from(delivery.body).toString('base64') },
    };
  }
}

/**
 * Yield each expected event's outcome once. `stats` is updated as it goes (for progress displays).
 * Throws `CollectTimeoutError` after `idleTimeoutMs` of silence, and the signal's reason on abort.
 */
export async function* collectOutcomes(
  brokers: { results: Broker; deadLetters: Broker | undefined },
  queues: WorkflowQueues,
  wireFormat: WireFormat,
  options: CollectOptions,
  stats: CollectStats,
  logger?: AdapterLogger,
): AsyncGenerator<WorkflowOutcome, void, undefined> {
  const expectedIds = typeof options.expected === 'number' ? undefined : new Set(options.expected);
  const expected = expectedIds ? expectedIds.size : (options.expected as number);
  if (!Number.isInteger(expected) || expected < 0) throw new RangeError(`expected must be a whole number >= 0, got ${String(options.expected)}`);
  if (expected === 0) return;
  options.signal?.throwIfAborted();

  const prefetch = Math.max(1, options.prefetch ?? DEFAULT_PREFETCH);
  const merged = new AsyncQueue<Received>();
  const subscriptions: Subscription[] = [];
  const seen = new Set<string>();
  const acks = new Set<Promise<void>>();
  let missingInputIdWarned = false;
  let keptFullWarned = false;
  /** Each consumer's window, and how much of it outcomes for other runs take up. */
  const window: Record<Source, number> = {
    result: prefetch,
    'dead-letter': options.keepDeadLetters ? KEPT_DEAD_LETTER_PREFETCH : Math.min(prefetch, DEAD_LETTER_PREFETCH),
  };
  const unexpectedHeld: Record<Source, number> = { result: 0, 'dead-letter': 0 };
  let held: Delivery | undefined;
  const kept: Delivery[] = [];
  // One pull at a time, kept across a timeout so an item arriving late is released, never lost.
  let pending: Promise<IteratorResult<Received>> | undefined;

  const settle = (delivery: Delivery, how: 'ack' | 'release') => {
    const p: Promise<void> = (how === 'ack' ? delivery.ack() : delivery.release())
      .catch((err: unknown) => logger?.warn({ err: describeError(err), eventId: delivery.eventId }, `could not ${how} an outcome; the broker will redeliver it`))
      .finally(() => acks.delete(p));
    acks.add(p);
  };

  let closing = false;
  const pump = async (subscription: Subscription, source: Source) => {
    for await (const delivery of subscription) {
      // Collection ended while this one was on its way: give it back rather than drop it unsettled.
      if (merged.isEnded) settle(delivery, 'release');
      else merged.push({ source, delivery });
    }
    // A subscription that ends before we close it (queue deleted, connection gone) will never deliver
    // the missing outcomes: waiting on would hang.
    if (!closing) throw new CollectStoppedError(source === 'result' ? queues.outgoing : queues.deadLetter);
  };

  try {
    // Every collection that ends with results unread returns them, and brokers count that as a delivery:
    // a delivery limit here would dead-letter a result after a few rounds, to a queue nobody reads.
    const results = await brokers.results.consume(queues.outgoing, { prefetch, deadLetter: false });
    subscriptions.push(results);
    const pumped: Array<readonly [Subscription, Source]> = [[results, 'result']];
    if (brokers.deadLetters) {
      const deadLetters = await brokers.deadLetters.consume(queues.deadLetter, {
        // Kept dead letters stay unacked until the end, so they need room of their own.
        prefetch: window['dead-letter'],
        // Reading a dead-letter queue must never dead-letter its messages again, however often they are given back.
        deadLetter: false,
      });
      subscriptions.push(deadLetters);
      pumped.push([deadLetters, 'dead-letter']);
    }
    for (const [sub, source] of pumped) {
      pump(sub, source).catch((err: unknown) => {
        for (const item of merged.fail(err)) settle(item.delivery, 'release');
      });
    }

    const iterator = merged[Symbol.asyncIterator]();
    while (stats.results + stats.deadLetters < expected) {
      pending ??= iterator.next();
      const next = await within(pending, options.idleTimeoutMs, options.signal);
      if (next === 'idle') throw new CollectTimeoutError(stats.results + stats.deadLetters, expected, options.idleTimeoutMs ?? 0);
      pending = undefined;
      if (next.done) break;
      const { source, delivery } = next.value;
      const outcome = source === 'result' ? resultOutcome(delivery, wireFormat) : deadLetterOutcome(delivery, wireFormat);
      const id = outcome.inputEventId;

      if (id === '') {
        // A result without the input's id (e.g. from an older pilot) cannot be deduplicated: pass it on.
        if (!missingInputIdWarned) logger?.warn({ queue: queues.outgoing }, `a result has no ${HEADERS.inputEventId} header; results cannot be deduplicated`);
        missingInputIdWarned = true;
      } else if (seen.has(id)) {
        stats.duplicates += 1;
        settle(delivery, 'ack');
        continue;
      } else if (expectedIds && !expectedIds.has(id)) {
        // Another run's outcome (a dead letter kept for requeue, a result an interrupted run never took):
        // not ours to delete. Hold it and give it back when collection ends.
        stats.unexpected += 1;
        logger?.warn({ inputEventId: id, source }, 'an outcome for an event this collection does not expect: left in its queue');
        kept.push(delivery);
        unexpectedHeld[source] += 1;
        if (unexpectedHeld[source] >= window[source]) {
          throw new CoordinatorConfigError(
            `${unexpectedHeld[source]} outcomes in '${source === 'result' ? queues.outgoing : queues.deadLetter}' belong to events this collection does not expect`,
            'collect them first (ewms collect --expected N, ewms dlq list), or use a new workflow id',
          );
        }
        continue;
      }
      if (id !== '') seen.add(id);
      if (outcome.kind === 'result') stats.results += 1;
      else stats.deadLetters += 1;

      held = delivery;
      yield outcome;
      // The caller asked for the next one: it has taken this outcome.
      held = undefined;
      if (outcome.kind === 'dead-letter' && source === 'dead-letter' && options.keepDeadLetters && kept.length < KEPT_DEAD_LETTER_PREFETCH - 1) {
        kept.push(delivery);
      } else {
        if (source === 'dead-letter' && options.keepDeadLetters && !keptFullWarned) {
          // Held dead letters fill the consumer's window: keeping more would stall collection for good.
          keptFullWarned = true;
          logger?.warn({ kept: kept.length, queue: queues.deadLetter }, 'too many dead letters to keep in their queue: further ones are acked once taken');
        }
        settle(delivery, 'ack');
      }
    }
  } finally {
    closing = true;
    if (held) settle(held, 'release');
    await Promise.all(subscriptions.map((s) => s.close().catch(() => undefined)));
    // Released only now that nothing consumes the dead-letter queue, so they stay there for inspection.
    for (const delivery of kept) settle(delivery, 'release');
    for (const item of merged.end()) settle(item.delivery, 'release');
    if (pending) {
      const late = await pending.catch(() => undefined);
      if (late && !late.done) settle(late.value.delivery, 'release');
    }
    await Promise.all(acks);
  }
}

/** `next`'s value, `'idle'` after `idleMs` without one, or the abort reason thrown. */
async function within<T>(next: Promise<T>, idleMs: number | undefined, signal: AbortSignal | undefined): Promise<T | 'idle'> {
  if (idleMs === undefined && signal === undefined) return next;
  let timer: NodeJS.Timeout | undefined;
  let onAbort: (() => void) | undefined;
  const racers: Array<Promise<T | 'idle'>> = [next];
  if (idleMs !== undefined) racers.push(new Promise((resolve) => (timer = setTimeout(() => resolve('idle'), idleMs))));
  if (signal) {
    racers.push(
      new Promise((_, reject) => {
        onAbort = () => reject(signal.reason);
        if (signal.aborted) onAbort();
        else signal.addEventListener('abort', onAbort, { once: true });
      }),
    );
  }
  try {
    return await Promise.race(racers);
  } finally {
    if (timer) clearTimeout(timer);
    if (signal && onAbort) signal.removeEventListener('abort', onAbort);
  }
}
