/**
 * Publishing a stream of events: confirmed by the broker, in bounded flight (a generator of millions never
 * sits in memory), ids returned in input order.
 */
import { randomUUID } from 'node:crypto';
import type { WireFormat } from '../common/wire.js';
import { describeError } from '../common/redact.js';
import type { Broker } from '../mq-adapters/types.js';
import { newTraceParent, requireTraceParent, TRACEPARENT_HEADER } from '../common/trace-context.js';
import { encodeEvent } from './codec.js';
import { PublishError } from './errors.js';
import type { EventData } from './types.js';

/** Options for `publishEvents`. */
export interface PublishOptions {
  wireFormat: WireFormat;
  /** Most publishes awaiting their confirm at once (default 1,000). */
  window?: number;
  /** Told after each confirm, with the running count of this call. */
  onConfirmed?: (count: number) => void;
  /** Stop taking events from the iterable (what is in flight is still confirmed). */
  signal?: AbortSignal;
  /**
   * W3C `traceparent` every event carries (your span, as the events' parent). Default: a new trace per event.
   * Pilots pass it on to each result (as the parent of their task-run span when they export spans).
   */
  traceparent?: string;
  /** Headers every event carries besides its id and `traceparent` (e.g. `x-ewms-priority`). */
  headers?: Record<string, string>;
}

/**
 * Publish every event to `queue`; resolves with the event ids in input order once all are confirmed.
 * Each event gets its id before it is sent, so a failure can say exactly which ones made it.
 */
export async function publishEvents(
  broker: Broker,
  queue: string,
  events: Iterable<EventData> | AsyncIterable<EventData>,
  options: PublishOptions,
): Promise<string[]> {
  const window = Math.max(1, options.window ?? 1_000);
  const ids: string[] = [];
  const confirmed: boolean[] = [];
  const pending = new Set<Promise<void>>();
  let failure: unknown;
  let confirmedCount = 0;
  const given = options.traceparent === undefined ? undefined : requireTraceParent(options.traceparent, 'the publish traceparent');

  const send = (index: number, data: EventData) => {
    const eventId = randomUUID();
    ids[index] = eventId;
    const done: Promise<void> = broker
      .publish(queue, { body: encodeEvent(data, options.wireFormat), eventId, headers: { ...options.headers, [TRACEPARENT_HEADER]: given ?? newTraceParent() } })
      .then(
        () => {
          confirmed[index] = true;
          confirmedCount += 1;
          options.onConfirmed?.(confirmedCount);
        },
        (err: unknown) => {
          failure ??= err;
        },
      )
      .finally(() => pending.delete(done));
    pending.add(done);
  };

  let index = 0;
  try {
    for await (const data of events as AsyncIterable<EventData>) {
      if (failure !== undefined) break;
      options.signal?.throwIfAborted();
      send(index++, data);
      while (pending.size >= window) await Promise.race(pending);
    }
  } catch (err) {
    // The events themselves failed (a bad line in a file, an abort): what was sent still gets confirmed,
    // and the caller learns which ids made it.
    failure ??= err;
  }
  await Promise.all(pending);
  if (failure !== undefined) {
    const published = ids.filter((_, i) => confirmed[i]);
    throw new PublishError(
      `publishing to '${queue}' failed after ${published.length} of ${index} events were confirmed: ${describeError(failure)}`,
      published,
      { cause: failure },
    );
  }
  return ids;
}
