/**
 * The broker-side backstop on NATS: when JetStream gives up on a message (the consumer's `max_deliver`
 * reached — every consumer holding it died), it leaves the message in the stream and sends an advisory.
 * The mover answers the advisory: copy the message to the dead-letter stream with a reason (the last real
 * failure it carried, when it had one), then delete it from the work stream. It runs inside every consuming process; the first one to act wins (a second copy
 * is possible if two movers race, and is deduplicated by event id downstream).
 */
import type { JetStreamClient, JetStreamManager } from '@nats-io/jetstream';
import { headers as natsHeaders, type NatsConnection, type Subscription as NatsSub } from '@nats-io/transport-node';
import { describeError } from '../../common/redact.js';
import { contentEventId, deadLetterHeaders, overLimitReason, readAttempts } from '../shared/delivery.js';
import { readNatsHeaders } from './headers.js';
import { HEADERS, type AdapterLogger } from '../types.js';

interface MaxDeliveriesAdvisory {
  stream: string;
  consumer: string;
  stream_seq: number;
  deliveries: number;
}

export function startDeadLetterMover(opts: {
  nc: NatsConnection;
  jsm: JetStreamManager;
  js: JetStreamClient;
  queue: string;
  stream: string;
  consumer: string;
  deadLetterSubject: string;
  logger: AdapterLogger | undefined;
}): NatsSub {
  const subject = `$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.${opts.stream}.${opts.consumer}`;
  const sub = opts.nc.subscribe(subject, {
    callback: (err, msg) => {
      if (err) return;
      let advisory: MaxDeliveriesAdvisory;
      try {
        advisory = msg.json<MaxDeliveriesAdvisory>();
      } catch {
        return;
      }
      void move(opts, advisory).catch((e: unknown) =>
        opts.logger?.error({ seq: advisory.stream_seq, err: describeError(e) }, 'moving a message to the dead-letter queue failed'),
      );
    },
  });
  return sub;
}

async function move(
  opts: Parameters<typeof startDeadLetterMover>[0],
  advisory: MaxDeliveriesAdvisory,
): Promise<void> {
  const stored = await opts.jsm.streams.getMessage(opts.stream, { seq: advisory.stream_seq });
  if (!stored) return; // another mover got there first
  const { eventId, headers: original } = readNatsHeaders(stored.header);
  // The reason is the last real failure the event carried, if it had one; the limit says why it moved now.
  const { attemptsBefore, lastFailure, headers: app } = readAttempts(original);
  const limit = `exceeded: the broker gave up after ${advisory.deliveries} deliveries of this copy (every consumer holding it died)`;
  const h = natsHeaders();
  const dl = deadLetterHeaders(app, overLimitReason(lastFailure, limit, `delivery limit ${limit}`), opts.queue, attemptsBefore + advisory.deliveries);
  for (const [key, value] of Object.entries(dl)) h.set(key, value);
  h.set(HEADERS.eventId, eventId ?? contentEventId(stored.data));
  await opts.js.publish(opts.deadLetterSubject, stored.data, { headers: h });
  await opts.jsm.streams.deleteMessage(opts.stream, advisory.stream_seq);
  opts.logger?.warn({ seq: advisory.stream_seq, queue: opts.queue }, 'moved a message the broker gave up on to the dead-letter queue');
}
