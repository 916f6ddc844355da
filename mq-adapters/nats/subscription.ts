/**
 * A pull subscription that never holds more than `prefetch` unacked messages: it asks the server only for
 * as many messages as there are free slots, and asks again the moment a slot frees (no polling tick: a
 * pull request waits server-side until messages arrive or it expires).
 *
 * Closing has to get rid of a pull request the server still holds, and JetStream has no way to cancel one:
 * the server forgets it only when it notices nobody listens on its reply subject any more. Until then,
 * (a) whatever it sends there is lost until AckWait, and (b) nats-server 2.9 mishandles a redelivery that
 * becomes due: it finds no listener, drops the message from its redelivery queue and steps its stream
 * cursor back, so that message returns only after AckWait while another one is delivered a second time
 * (and counted twice by `depth`). Measured here with nats-server 2.9.10: fetch 3, stop the fetch, nak the
 * 3 → one came back twice, one not at all. So `close()`:
 *   1. waits for naks already sent to be confirmed (a nak is a request the server answers once the
 *      message is queued for redelivery), so their redeliveries go to our request while it is listened to;
 *   2. stops listening by draining the inbox (UNSUB then a round trip): every message the server sent
 *      before it saw the UNSUB still arrives, and is kept aside;
 *   3. asks for the consumer's info, which makes the server drop requests nobody listens to;
 *   4. only then naks what was kept aside or never yielded. A delivery already yielded and released while
 *      this runs waits for step 3 as well.
 * What is left: a redelivery that falls due by AckWait in the instant between steps 2 and 3.
 */
import type { Consumer, ConsumerMessages, JsMsg } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { describeError } from '../../common/redact.js';
import { BrokerConnectionLostError } from '../errors.js';
import type { NatsLink } from './link.js';
import { contentEventId, type DeliveryContext } from '../shared/delivery.js';
import { Intake } from '../shared/intake.js';
import type { Delivery, Subscription } from '../types.js';
import { readNatsHeaders } from './headers.js';

/** How long one pull request waits server-side for messages before it is renewed. */
const PULL_EXPIRES_MS = 10_000;
/** How long a nak (or the ack of an original given back as a copy) waits for the server to confirm it. */
const NAK_CONFIRM_TIMEOUT_MS = 5_000;
const NAK = new TextEncoder().encode('-NAK');

export class NatsSubscription implements Subscription {
  private readonly intake: Intake;
  /** The iteration failed (connection lost for good): nothing more is pulled. */
  private failed = false;
  private stopWatchingLink: (() => void) | undefined;
  private disconnectedSince: number | undefined;
  /** The pull request the server may still hold: ended on close (see the file comment). */
  private batch: ConsumerMessages | undefined;
  private pulling: Promise<void> = Promise.resolve();
  private readonly naksInFlight = new Set<Promise<void>>();

  constructor(
    private readonly nc: NatsConnection,
    private readonly link: NatsLink,
    private readonly consumer: Consumer,
    prefetch: number,
    private readonly reconnectWindowMs: number,
    private readonly display: string,
    private readonly ctx: DeliveryContext,
  ) {
    this.intake = new Intake(ctx, prefetch, { stop: () => this.stopPulling() });
  }

  start(): void {
    // A pull request caught by a lost connection just waits (nats.js keeps it through the reconnects), so
    // the link, not the pull loop, tells when the connection is gone for good.
    this.stopWatchingLink = this.link.onLost((error) => this.fail(error));
    this.pulling = this.pullLoop().catch((err: unknown) => {
      this.ctx.logger?.error({ queue: this.ctx.queue, err: describeError(err) }, 'nats pull loop failed');
    });
  }

  [Symbol.asyncIterator](): AsyncIterator<Delivery> {
    return this.intake[Symbol.asyncIterator]();
  }

  close(): Promise<void> {
    return this.intake.close();
  }

  /**
   * End the iteration with `error`; what was received but not yet yielded is given back on close(). The
   * pending pull request is stopped here, so close() does not wait on a server that is gone.
   */
  private fail(error: BrokerConnectionLostError): void {
    if (this.intake.stopped) return;
    this.failed = true;
    this.stopWatchingLink?.();
    this.intake.fail(error);
    this.batch?.stop();
  }

  /** Steps 1–3 of the file comment; the intake then gives back what it holds (step 4). */
  private async stopPulling(): Promise<void> {
    this.stopWatchingLink?.();
    await Promise.all(this.naksInFlight);
    const open = this.batch;
    if (open) this.abandon(open);
    // The pull loop ends once the abandoned batch has handed over everything that reached us.
    await this.pulling;
    if (open) await this.makeServerForgetAbandonedRequest();
  }

  /**
   * Stop listening for `batch` without losing what the server already sent: drain its inbox subscription
   * (UNSUB, then a round trip; what arrives before the round trip completes is still delivered to the
   * batch's iterator, which then ends). nats.js does not expose the subscription in its types; when it is
   * not there, `stop()` is the fallback (it unsubscribes at once and drops what is still on its way).
   */
  private abandon(batch: ConsumerMessages): void {
    const inbox = (batch as { sub?: { drain?: () => Promise<void>; isClosed?: () => boolean } }).sub;
    if (typeof inbox?.drain !== 'function' || inbox.isClosed?.() === true) {
      batch.stop();
      return;
    }
    inbox.drain().catch(() => batch.stop());
  }

  /**
   * Consumer info makes the server drop waiting pull requests whose reply subject has no listener (it
   * checks them before answering), so after it nothing we nak can meet the abandoned request. The UNSUB
   * went out on this connection before this request, so the server has already applied it.
   */
  private async makeServerForgetAbandonedRequest(): Promise<void> {
    if (this.nc.isClosed()) return;
    await this.consumer.info(false).catch((err: unknown) => {
      this.ctx.logger?.warn({ queue: this.ctx.queue, err: describeError(err) }, 'nats consumer info failed while closing a subscription');
    });
  }

  private async pullLoop(): Promise<void> {
    while (!this.intake.stopped) {
      if (this.intake.room === 0) {
        await this.intake.waitForRoom();
        continue;
      }
      try {
        const batch = await this.consumer.fetch({ max_messages: this.intake.room, expires: PULL_EXPIRES_MS });
        if (this.intake.stopped) {
          // nats.js sends the pull request when the batch is first iterated: stopped now, none was sent.
          batch.stop();
          return;
        }
        // Set in the same tick as the iteration below starts, which sends the pull request.
        this.batch = batch;
        try {
          // After close() this still runs until the drained batch ends: late arrivals are released.
          for await (const msg of batch) {
            this.disconnectedSince = undefined;
            this.receive(msg);
          }
        } finally {
          this.batch = undefined;
        }
        this.disconnectedSince = undefined;
      } catch (err) {
        if (this.intake.stopped || this.failed) return;
        if (this.nc.isClosed()) {
          this.fail(new BrokerConnectionLostError('nats', this.display, 'the connection is closed'));
          return;
        }
        // The server is away (restart, network, a cluster electing a new leader): the client reconnects by
        // itself; keep asking until the reconnect window runs out.
        this.disconnectedSince ??= Date.now();
        if (Date.now() - this.disconnectedSince > this.reconnectWindowMs) {
          this.fail(
            new BrokerConnectionLostError('nats', this.display, `no messages could be pulled for ${this.reconnectWindowMs} ms: ${describeError(err)}`),
          );
          return;
        }
        await new Promise((r) => setTimeout(r, 250));
      }
    }
  }

  /**
   * Nak and wait for the server to confirm it (see the file comment for why close() needs that). The ack
   * subject is the message's reply subject, which nats.js has at run time but not in its types; without
   * it, a plain nak.
   */
  private async nakConfirmed(msg: JsMsg): Promise<void> {
    // No await from here until the request is in `naksInFlight`: close() must see every nak sent.
    const ackSubject = (msg as JsMsg & { reply?: unknown }).reply;
    if (typeof ackSubject !== 'string' || ackSubject === '') {
      msg.nak();
      return;
    }
    const sent = this.nc
      .request(ackSubject, NAK, { timeout: NAK_CONFIRM_TIMEOUT_MS })
      .then(
        () => undefined,
        (err: unknown) => {
          this.ctx.logger?.warn({ queue: this.ctx.queue, err: describeError(err) }, 'nats nak not confirmed');
        },
      );
    this.naksInFlight.add(sent);
    try {
      await sent;
    } finally {
      this.naksInFlight.delete(sent);
    }
  }

  private receive(msg: JsMsg): void {
    const { eventId, headers } = readNatsHeaders(msg.headers);
    const body = msg.data;
    this.intake.accept({
      body,
      headers,
      eventId: eventId ?? contentEventId(body),
      brokerDeliveries: msg.info.deliveryCount,
      raw: {
        // A plain ack, not ackAck: by the time an input is acked its output is already confirmed, so a
        // lost ack costs only a deduplicated redelivery, while a round trip per ack cost 4x the rate.
        ack: async () => msg.ack(),
        ackConfirmed: () =>
          msg.ackAck({ timeout: NAK_CONFIRM_TIMEOUT_MS }).then(
            (taken) => taken,
            () => false,
          ),
        requeue: () => this.nakConfirmed(msg),
        extendLease: async () => msg.working(),
        isLive: () => !this.nc.isClosed(),
        reachable: (withinMs) =>
          this.link.isUp ||
          this.link.waitUntilUp(Date.now() + withinMs).then(
            () => true,
            () => false,
          ),
      },
    });
  }
}
