/**
 * Events checked against the broker they go to, before the first is published: a broker that announces its
 * largest message (NATS `max_payload`) is asked once, and only events that could be that large are encoded.
 */
import type { Broker } from '../../mq-adapters/types.js';
import { encodeEvent } from '../codec.js';
import { oversizeEvents, type EventsSummary } from '../event-files.js';
import type { WireFormat } from '../types.js';
import type { InputProblems } from './input.js';

/** Room for the headers a published event carries besides its body (NATS counts them against max_payload). */
const HEADER_ALLOWANCE_BYTES = 1024;
/** Events listed one by one when too large; the rest are counted. */
const LISTED = 5;

/** Add a problem for each event of `path` too large for `broker`. */
export async function checkEventsFit(p: InputProblems, broker: Broker, path: string, summary: EventsSummary, wireFormat: WireFormat): Promise<void> {
  const max = broker.maxPayload;
  // The encoded body outgrows the text by at most zstd's bound (about 1/128) plus a frame header.
  if (max === undefined || !summary.largest || summary.largest.bytes * 1.01 + 2 * HEADER_ALLOWANCE_BYTES < max) return;
  const tooLarge = await oversizeEvents(path, (data) => encodeEvent(data, wireFormat), max - HEADER_ALLOWANCE_BYTES);
  const fix =
    broker.type === 'nats'
      ? 'raise max_payload in the nats-server configuration, or keep large data on shared storage and send its path in the event'
      : 'keep large data on shared storage and send its path in the event';
  for (const event of tooLarge.slice(0, LISTED)) {
    p.add(event.where, `this event is ${event.bytes} bytes on the wire, more than the ${broker.type} broker takes (max_payload ${max} bytes, headers included)`, fix);
  }
  if (tooLarge.length > LISTED) p.add(path, `${tooLarge.length - LISTED} more events are too large`, fix);
}
