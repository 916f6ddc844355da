/**
 * Draining a workflow: results from its public output queues and dead letters from its dead-letter queues,
 * merged into one stream in which every published event's outcomes appear exactly once.
 *
 * - Dedup by the outcome's own id (a result's id is derived from its input's and its queue's, a dead letter
 *   keeps the failed event's id): at-least-once on the wire, exactly once in the caller's hands. Duplicates
 *   are acked and dropped, and counted.
 * - Done counting: each outcome names its root (the published event, `x-ewms-root-event-id`; for a
 *   single task the input itself) and the share of it that it stands for (`x-ewms-share`: an input published
 *   to k queues gives each copy 1/k, a task's n outputs for one input 1/n each). A root is settled when its
 *   shares add up to 1 — a plain result or a dead letter counts whole, a fan-out to two branches counts two
 *   halves, an event a task filtered out arrives as a marker carrying its share (counted, never yielded). Done
 *   when `expected` roots are settled.
 * - Ack-after-take: an outcome is acked only when the caller asks for the next one, so a caller that
 *   crashes while handling it gets it again next time. One that stops early (`break`) has its last outcome
 *   released, not acked.
 * - `follow`: no end and no expected set; the dedup memory is a bounded window of recent outcome ids.
 * - With `keepDeadLetters`, dead letters are yielded but left in their queue (released when collection
 *   ends) for `DeadLetters.list` / `requeue`.
 * - Where there is no dead-letter queue (EWMS: one token per queue), dead letters arrive on the results queue,
 *   marked by their reason header; they are yielded as dead letters and acked once taken.
 */
import { describeError } from '../common/redact.js';
import { addShares, isWhole, PROVENANCE_HEADERS as P, readProvenance, readShare, type Share } from '../common/provenance.js';
import type { WireFormat } from '../common/wire.js';
import { AsyncQueue } from '../mq-adapters/shared/async-queue.js';
import { HEADERS, type AdapterLogger, type Broker, type Delivery, type Subscription } from '../mq-adapters/types.js';
import { decodeEvent, eventBytes } from './codec.js';
import { CollectStoppedError, CollectTimeoutError, CoordinatorConfigError } from './errors.js';
import type { CollectOptions, CollectStats, WorkflowOutcome } from './types.js';

const DEFAULT_PREFETCH = 500;
const DEAD_LETTER_PREFETCH = 50;
const KEPT_DEAD_LETTER_PREFETCH = 10_000;
const DEFAULT_DEDUP_WINDOW = 100_000;
/** The dead-letter detail the pilot names the failed task by. */
const TASK_DETAIL = 'task-name';

/** Where a delivery came from. */
type Source = 'result' | 'dead-letter';

/** One queue outcomes are collected from. */
export interface OutcomeSource {
  broker: Broker;
  queue: string;
  kind: Source;
}

interface Received {
  source: OutcomeSource;
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
  const task = details[TASK_DETAIL];
  return {
    kind: 'dead-letter',
    inputEventId: delivery.headers[P.rootEventId] ?? delivery.eventId,
    // No reason header: the broker's own delivery limit moved it (the event crashed its consumers).
    reason: delivery.headers[HEADERS.deadLetterReason] ?? 'delivery limit reached (dead-lettered by the broker)',
    details,
    data: decodeOrDescribe(delivery.body, wireFormat),
    ...rawBytes(delivery, wireFormat),
    ...(task !== undefined ? { task } : {}),
    provenance: readProvenance(delivery.headers[P.provenance]),
    outcomeId: delivery.eventId,
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
  const inputEventId = delivery.headers[P.rootEventId] ?? delivery.headers[HEADERS.inputEventId] ?? '';
  const headers = { ...delivery.headers };
  const provenance = readProvenance(delivery.headers[P.provenance]);
  const task = provenance.at(-1)?.task_name;
  try {
    return { kind: 'result', inputEventId, data: decodeEvent(delivery.body, wireFormat), ...rawBytes(delivery, wireFormat), headers, ...(task !== undefined ? { task } : {}), provenance, outcomeId: delivery.eventId };
  } catch (err) {
    return {
      kind: 'dead-letter',
      inputEventId,
      reason: `the result could not be decoded: ${describeError(err)}`,
      details: { 'result-event-id': delivery.eventId },
      data: { undecodableBodyBase64: Buffer.from(delivery.body).toString('base64') },
      ...(task !== undefined ? { task } : {}),
      provenance,
      outcomeId: delivery.eventId,
    };
  }
}

/** Recently seen ids, forgetting the oldest past `limit` (unbounded when `limit` is Infinity). */
class RecentIds {
  private readonly ids = new Set<string>();
  constructor(private readonly limit: number) {}
  has(id: string): boolean {
    return this.ids.has(id);
  }
  add(id: string): void {
    this.ids.add(id);
    if (this.ids.size > this.limit) {
      const oldest = this.ids.values().next();
      if (!oldest.done) this.ids.delete(oldest.value);
    }
  }
}

/**
 * Yield each expected event's outcomes once (or, with `follow`, every outcome as it comes). `stats` is updated
 * as it goes (for progress displays). Throws `CollectTimeoutError` after `idleTimeoutMs` of silence, and the
 * signal's reason on abort (a `follow` collection ends quietly on abort).
 */
export async function* collectOutcomes(
  sources: readonly OutcomeSource[],
  wireFormat: WireFormat,
  options: CollectOptions,
  stats: CollectStats,
  logger?: AdapterLogger,
): AsyncGenerator<WorkflowOutcome, void, undefined> {
  const follow = options.follow === true;
  if (follow && options.expected !== undefined) throw new CoordinatorConfigError('collect: expected and follow exclude each other', 'follow yields outcomes with no end; give expected for a collection that ends');
  if (!follow && options.expected === undefined) throw new CoordinatorConfigError('collect: give expected (ids or a count), or follow: true', 'expected: the ids publish returned');
  const expectedIds = options.expected === undefined || typeof options.expected === 'number' ? undefined : new Set(options.expected);
  const ignored = new Set(options.ignoreIds ?? []);
  const expected = follow ? Infinity : expectedIds ? expectedIds.size : (options.expected as number);
  if (!follow && (!Number.isInteger(expected) || expected < 0)) throw new RangeError(`expected must be a whole number >= 0, got ${String(options.expected)}`);
  if (expected === 0) return;
  options.signal?.throwIfAborted();

  const prefetch = Math.max(1, options.prefetch ?? DEFAULT_PREFETCH);
  const merged = new AsyncQueue<Received>();
  const subscriptions: Subscription[] = [];
  // Outcome ids taken, and shares of roots not yet whole; roots settled. Bounded when following.
  const window = follow ? Math.max(1, options.dedupWindow ?? DEFAULT_DEDUP_WINDOW) : Infinity;
  const seen = new RecentIds(window);
  for (const id of options.alreadySeen ?? []) seen.add(id);
  const settledRoots = new RecentIds(window);
  const partial = new Map<string, Share>();
  const acks = new Set<Promise<void>>();
  let missingInputIdWarned = false;
  let keptFullWarned = false;
  /** Each consumer's window, and how much of it outcomes for other runs take up. */
  const consumerWindow: Record<Source, number> = {
    result: prefetch,
    'dead-letter': options.keepDeadLetters ? KEPT_DEAD_LETTER_PREFETCH : Math.min(prefetch, DEAD_LETTER_PREFETCH),
  };
  const unexpectedHeld = new Map<OutcomeSource, number>();
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

  /** Count `share` of `root`; true when that settles it. */
  const credit = (root: string, share: Share): boolean => {
    const sum = addShares(partial.get(root) ?? { num: 0, den: 1 }, share);
    if (!isWhole(sum)) {
      partial.set(root, sum);
      return false;
    }
    partial.delete(root);
    settledRoots.add(root);
    stats.settled += 1;
    return true;
  };

  let closing = false;
  const pump = async (subscription: Subscription, source: OutcomeSource) => {
    for await (const delivery of subscription) {
      // Collection ended while this one was on its way: give it back rather than drop it unsettled.
      if (merged.isEnded) settle(delivery, 'release');
      else merged.push({ source, delivery });
    }
    // A subscription that ends before we close it (queue deleted, connection gone) will never deliver
    // the missing outcomes: waiting on would hang.
    if (!closing) throw new CollectStoppedError(source.queue);
  };

  try {
    for (const source of sources) {
      const subscription = await source.broker.consume(source.queue, {
        // Kept dead letters stay unacked until the end, so they need room of their own.
        prefetch: consumerWindow[source.kind],
        // Every collection that ends with outcomes unread returns them, and brokers count that as a delivery:
        // a delivery limit here would dead-letter an outcome after a few rounds, to a queue nobody reads.
        deadLetter: false,
      });
      subscriptions.push(subscription);
      pump(subscription, source).catch((err: unknown) => {
        for (const item of merged.fail(err)) settle(item.delivery, 'release');
      });
    }

    const iterator = merged[Symbol.asyncIterator]();
    while (stats.settled < expected) {
      pending ??= iterator.next();
      let next: IteratorResult<Received> | 'idle';
      try {
        next = await within(pending, follow ? undefined : options.idleTimeoutMs, options.signal);
      } catch (err) {
        if (follow && options.signal?.aborted) return;
        throw err;
      }
      if (next === 'idle') throw new CollectTimeoutError(stats.settled, expected, options.idleTimeoutMs ?? 0);
      pending = undefined;
      if (next.done) break;
      const { source, delivery } = next.value;
      const outcome = source.kind === 'result' ? resultOutcome(delivery, wireFormat) : deadLetterOutcome(delivery, wireFormat);
      const root = outcome.inputEventId;

      if (root === '') {
        // A result without the input's id (e.g. from an older pilot) cannot be deduplicated: pass it on.
        if (!missingInputIdWarned) logger?.warn({ queue: source.queue }, `a result has no ${HEADERS.inputEventId} header; results cannot be deduplicated`);
        missingInputIdWarned = true;
      } else if (seen.has(outcome.outcomeId) || settledRoots.has(root)) {
        stats.duplicates += 1;
        settle(delivery, 'ack');
        continue;
      } else if ((expectedIds && !expectedIds.has(root)) || ignored.has(root)) {
        // Another run's outcome (a dead letter kept for requeue, a result an interrupted run never took):
        // not ours to delete. Hold it and give it back when collection ends. Said once, not once per outcome.
        if (!ignored.has(root)) {
          if (stats.unexpected === 0) logger?.warn({ inputEventId: root, queue: source.queue }, 'outcomes for events this collection does not expect are left in their queue (counted in stats.unexpected)');
          stats.unexpected += 1;
        }
        kept.push(delivery);
        const heldHere = (unexpectedHeld.get(source) ?? 0) + 1;
        unexpectedHeld.set(source, heldHere);
        if (heldHere >= consumerWindow[source.kind]) {
          throw new CoordinatorConfigError(
            `${heldHere} outcomes in '${source.queue}' belong to events this collection does not expect`,
            'collect them first (ewms collect --expected N, ewms dlq list), or use a new workflow id',
          );
        }
        continue;
      }
      if (root !== '') {
        seen.add(outcome.outcomeId);
        credit(root, readShare(delivery.headers[P.share]));
      } else {
        stats.settled += 1;
      }
      if (outcome.kind === 'result' && delivery.headers[P.filtered] !== undefined) {
        // Filtered out by a task: it settles its share of the event but is no outcome of its own.
        stats.filtered += 1;
        settle(delivery, 'ack');
        continue;
      }
      if (outcome.kind === 'result') stats.results += 1;
      else stats.deadLetters += 1;

      held = delivery;
      yield outcome;
      // The caller asked for the next one: it has taken this outcome.
      held = undefined;
      if (outcome.kind === 'dead-letter' && source.kind === 'dead-letter' && options.keepDeadLetters && kept.length < KEPT_DEAD_LETTER_PREFETCH - 1) {
        kept.push(delivery);
      } else {
        if (source.kind === 'dead-letter' && options.keepDeadLetters && !keptFullWarned) {
          // Held dead letters fill the consumer's window: keeping more would stall collection for good.
          keptFullWarned = true;
          logger?.warn({ kept: kept.length, queue: source.queue }, 'too many dead letters to keep in their queue: further ones are acked once taken');
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
