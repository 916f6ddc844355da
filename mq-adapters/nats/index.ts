/**
 * NATS JetStream through the official client: one stream per queue laid out as the Python MQClient lays
 * it out (`<name>-stream`, subject `<name>-subject`, durable pull consumer `psub`), explicit acks, leases
 * extended with `working()`, `max_deliver` plus a dead-letter mover as the broker-side backstop.
 */
import { randomUUID } from 'node:crypto';
import { AckPolicy, DiscardPolicy, jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import { connect as natsConnect, headers as natsHeaders, type MsgHdrs, type NatsConnection, type Subscription as NatsSub } from '@nats-io/transport-node';
import { describeError } from '../../common/redact.js';
import type { BrokerAddress } from '../address.js';
import { BrokerAuthError, BrokerConfigError, BrokerConnectionLostError, BrokerUnreachableError, MessageTooLargeError, QueueNotFoundError } from '../errors.js';
import { deliveryLimit } from '../shared/delivery.js';
import { Semaphore } from '../shared/semaphore.js';
import { DEFAULTS, HEADERS, defaultDeadLetterQueue, type Broker, type ConnectOptions, type ConsumeOptions, type OutgoingMessage, type QueueBound, type QueueSpec, type Subscription } from '../types.js';
import { startDeadLetterMover } from './dlq-mover.js';
import { NatsLink } from './link.js';
import { CONSUMER_NAME, streamName, subjectName } from './names.js';
import { NatsSubscription } from './subscription.js';

export { escapeQueueName, unescapeQueueName, streamName, subjectName } from './names.js';

/**
 * One publish attempt waits this long for the stream's ack. A loaded server acks 1,000 in-flight publishes
 * in well under a second here; a longer silence means the request was lost with a connection.
 */
const PUBLISH_ATTEMPT_TIMEOUT_MS = 10_000;
/** Pause between publish attempts, so a server that is not serving yet is not hammered. */
const RETRY_PAUSE_MS = 100;

/**
 * About how many bytes the NATS header block takes (`NATS/1.0`, one `key: value` line per header, our
 * event id and the JetStream message id): enough to refuse an oversize message with the right size.
 */
function headerBytes(headers: Record<string, string> | undefined, eventId: string): number {
  let bytes = 'NATS/1.0\r\n\r\n'.length;
  for (const [key, value] of Object.entries(headers ?? {})) bytes += Buffer.byteLength(key) + Buffer.byteLength(value) + 4;
  bytes += HEADERS.eventId.length + Buffer.byteLength(eventId) + 4;
  return bytes + 'Nats-Msg-Id'.length + Buffer.byteLength(eventId) + 37 + 4;
}

/**
 * Connect to NATS. Fails with `BrokerAuthError` (credentials refused) or `BrokerUnreachableError` (nothing
 * answered within `connectTimeoutMs`).
 */
export async function connectNats(address: BrokerAddress, options: ConnectOptions): Promise<Broker> {
  const secrets = [address.password, options.authToken];
  const timeout = options.connectTimeoutMs ?? DEFAULTS.connectTimeoutMs;
  let nc: NatsConnection;
  try {
    nc = await natsConnect({
      // Every node of a cluster: the client picks one (in random order, spreading pilots over the nodes)
      // and fails over to the others by itself, learning the rest of the cluster from the server too.
      servers: address.endpoints.map(({ host, port }) => `${host}:${port}`),
      ...(address.username ? { user: address.username, pass: address.password } : address.password ? { token: address.password } : {}),
      ...(address.tls ? { tls: {} } : {}),
      timeout,
      // Keep reconnecting after a loss; our own windows decide when to give up on pending work.
      maxReconnectAttempts: -1,
      reconnectTimeWait: 250,
      name: 'ewms-pilot',
    });
  } catch (err) {
    const text = describeError(err, secrets);
    if (/authorization|authentication|auth/i.test(text)) {
      throw new BrokerAuthError('nats', address.display, address.username !== undefined ? { user: address.username } : undefined);
    }
    throw new BrokerUnreachableError('nats', address.display, text);
  }
  const link = new NatsLink(nc, address.display, options.reconnectWindowMs ?? DEFAULTS.reconnectWindowMs, options.logger);
  let jsm: JetStreamManager;
  try {
    jsm = await jetstreamManagerWithin(nc, Date.now() + timeout);
  } catch (err) {
    await nc.close().catch(() => undefined);
    throw new BrokerUnreachableError('nats', address.display, `JetStream did not answer: ${describeError(err, secrets)}`);
  }
  return new NatsBroker(nc, link, jsm, jetstream(nc), address, options);
}

/**
 * The JetStream manager, asked again until `deadline`: a cluster answers JetStream requests only once it has
 * a meta leader, and after the loss of the node that led, the election takes seconds — a pilot connecting
 * then must wait for it, not fail on the first request's timeout.
 */
async function jetstreamManagerWithin(nc: NatsConnection, deadline: number): Promise<JetStreamManager> {
  for (;;) {
    const left = deadline - Date.now();
    try {
      return await jetstreamManager(nc, { timeout: Math.max(1_000, Math.min(5_000, left)) });
    } catch (err) {
      if (!isJetStreamUnavailable(err) || Date.now() + RETRY_PAUSE_MS >= deadline) throw err;
      await new Promise((resolve) => setTimeout(resolve, RETRY_PAUSE_MS));
    }
  }
}

/** A request timeout or "no responders" (503): JetStream is between leaders or not up yet, not refused. */
function isJetStreamUnavailable(err: unknown): boolean {
  const text = err instanceof Error ? `${err.name} ${err.message} ${String((err as { code?: unknown }).code ?? '')}` : String(err);
  return /timeout|no responders|503/i.test(text);
}

/**
 * Stream replicas when `ConnectOptions.replicas` is not given: R3 when the address lists three or more
 * servers (a cluster; R3 survives the loss of one), else R1.
 */
export function defaultReplicas(address: BrokerAddress): number {
  return address.endpoints.length >= 3 ? 3 : 1;
}

class NatsBroker implements Broker {
  readonly type = 'nats' as const;
  readonly displayAddress: string;
  private readonly slots: Semaphore;
  private readonly movers = new Map<string, NatsSub>();
  private readonly subscriptions = new Set<NatsSubscription>();
  private readonly replicas: number;

  constructor(
    private readonly nc: NatsConnection,
    private readonly link: NatsLink,
    private readonly jsm: JetStreamManager,
    private readonly js: JetStreamClient,
    address: BrokerAddress,
    private readonly options: ConnectOptions,
  ) {
    this.displayAddress = address.display;
    this.slots = new Semaphore(options.maxInFlightPublishes ?? DEFAULTS.maxInFlightPublishes);
    this.replicas = options.replicas ?? defaultReplicas(address);
    if (!Number.isInteger(this.replicas) || this.replicas < 1 || this.replicas > 5) {
      throw new RangeError(`replicas must be a whole number from 1 to 5 (got ${options.replicas})`);
    }
  }

  /** The server's per-message limit (1 MiB unless raised with `max_payload` in its config). */
  get maxPayload(): number {
    return this.nc.info?.max_payload ?? 1024 * 1024;
  }

  async declareQueue(spec: QueueSpec): Promise<void> {
    await this.api(`declare '${spec.name}'`, async () => {
      await this.ensureStream(spec.name, spec.bound);
      if (spec.deadLetter !== false) await this.ensureStream(spec.deadLetterQueue ?? defaultDeadLetterQueue(spec.name));
    });
  }

  async publish(queue: string, message: OutgoingMessage): Promise<string> {
    const eventId = message.eventId ?? randomUUID();
    // The server counts headers against max_payload too: refuse here, before anything is sent.
    const bytes = message.body.byteLength + headerBytes(message.headers, eventId);
    if (bytes > this.maxPayload) throw new MessageTooLargeError('nats', bytes, this.maxPayload);
    const h = natsHeaders();
    for (const [key, value] of Object.entries(message.headers ?? {})) h.set(key, value);
    h.set(HEADERS.eventId, eventId);
    await this.slots.with(() => this.publishUntilStored(queue, eventId, message.body, h));
    return eventId;
  }

  /**
   * Send until the stream acknowledges, waiting out a lost connection for up to the reconnect window. Each
   * publish call carries one JetStream message id (`Nats-Msg-Id`) across its attempts, so the stream stores
   * a message sent twice (the first ack was lost with the connection) only once; a deliberate re-publish of
   * the same event id is a new call with a new message id, and is stored again.
   */
  private async publishUntilStored(queue: string, eventId: string, body: Uint8Array, h: MsgHdrs): Promise<void> {
    const msgID = `${eventId}/${randomUUID()}`;
    const giveUpAt = Date.now() + (this.options.reconnectWindowMs ?? DEFAULTS.reconnectWindowMs);
    for (;;) {
      await this.link.waitUntilUp(giveUpAt);
      const epoch = this.link.epoch;
      try {
        await this.js.publish(subjectName(queue), body, { headers: h, msgID, timeout: PUBLISH_ATTEMPT_TIMEOUT_MS });
        return;
      } catch (err) {
        const text = describeError(err, [this.options.authToken]);
        if (/max.payload|maximum payload/i.test(text)) throw new MessageTooLargeError('nats', body.byteLength, this.maxPayload);
        if (this.nc.isClosed()) throw new BrokerConnectionLostError('nats', this.displayAddress, `event ${eventId} could not be published: ${text}`);
        // No stream took the subject. Either there is none (a user error), or JetStream is not serving yet
        // after a server restart: only the first is final.
        // (nats.js reports it as `JetStreamNotEnabled`, a class it does not export.)
        const noResponders = (err as Error).name === 'JetStreamNotEnabled' || /no responders/i.test(text);
        if (noResponders && (await this.streamMissing(queue))) throw new QueueNotFoundError('nats', queue);
        const interrupted = (err as Error).name === 'TimeoutError' || this.link.epoch !== epoch || !this.link.isUp;
        if (!noResponders && !interrupted) throw new Error(`publishing to '${queue}' on ${this.displayAddress} failed: ${text}`);
        if (Date.now() > giveUpAt) {
          throw new BrokerConnectionLostError('nats', this.displayAddress, `event ${eventId} could not be published within the reconnect window: ${text}`);
        }
        this.options.logger?.warn({ eventId, queue, err: text }, 'nats publish not acknowledged; sending it again');
        await new Promise((resolve) => setTimeout(resolve, RETRY_PAUSE_MS));
      }
    }
  }

  /** True only when the server answered that the stream does not exist (not when it could not answer). */
  private async streamMissing(queue: string): Promise<boolean> {
    try {
      return !(await this.streamExists(streamName(queue)));
    } catch {
      return false;
    }
  }

  async consume(queue: string, options: ConsumeOptions): Promise<Subscription> {
    if (!Number.isInteger(options.prefetch) || options.prefetch < 1) {
      throw new RangeError(`prefetch must be a whole number >= 1 (got ${options.prefetch})`);
    }
    const stream = streamName(queue);
    const deadLetter = options.deadLetter !== false;
    const maxDeliveries = deliveryLimit(options);
    const deadLetterQueue = options.deadLetterQueue ?? defaultDeadLetterQueue(queue);
    await this.api(`consume '${queue}'`, async () => {
      await this.requireStream(queue);
      // -1: no limit at all, for a queue that never dead-letters.
      await this.ensureConsumer(stream, subjectName(queue), options.leaseMs ?? DEFAULTS.leaseMs, deadLetter ? maxDeliveries + 1 : -1);
    });
    // One mover per queue and connection: two subscriptions in one process must not both move a message.
    if (deadLetter && !this.movers.has(queue)) {
      this.movers.set(
        queue,
        startDeadLetterMover({
          nc: this.nc,
          jsm: this.jsm,
          js: this.js,
          queue,
          stream,
          consumer: CONSUMER_NAME,
          deadLetterSubject: subjectName(deadLetterQueue),
          logger: this.options.logger,
        }),
      );
    }
    const consumer = await this.api(`consume '${queue}'`, () => this.js.consumers.get(stream, CONSUMER_NAME));
    const sub = new NatsSubscription(
      this.nc,
      this.link,
      consumer,
      options.prefetch,
      this.options.reconnectWindowMs ?? DEFAULTS.reconnectWindowMs,
      this.displayAddress,
      { queue, deadLetterQueue, maxDeliveries, publish: (q, m) => this.publish(q, m), logger: this.options.logger },
    );
    sub.start();
    this.subscriptions.add(sub);
    return sub;
  }

  async depth(queue: string): Promise<number> {
    const stream = streamName(queue);
    return this.api(`depth of '${queue}'`, async () => {
      try {
        const info = await this.jsm.consumers.info(stream, CONSUMER_NAME);
        // Limits retention keeps acked messages in the stream; the consumer knows what is still owed.
        return info.num_pending + info.num_ack_pending;
      } catch (err) {
        if (!/consumer not found/i.test(String(err))) {
          if (/stream not found/i.test(String(err))) throw new QueueNotFoundError('nats', queue);
          throw err;
        }
        // Nobody consumed yet: everything in the stream is waiting.
        const info = await this.jsm.streams.info(stream);
        return info.state.messages;
      }
    });
  }

  async deleteQueue(queue: string, options: { deadLetterQueue?: string | false } = {}): Promise<void> {
    const dlq = options.deadLetterQueue === undefined ? defaultDeadLetterQueue(queue) : options.deadLetterQueue;
    for (const name of dlq === false ? [queue] : [queue, dlq]) {
      await this.api(`delete '${name}'`, () =>
        this.jsm.streams.delete(streamName(name)).catch((err: unknown) => {
          if (!/stream not found/i.test(String(err))) throw err;
          return true;
        }),
      );
    }
  }

  async close(): Promise<void> {
    for (const sub of this.subscriptions) await sub.close();
    for (const mover of this.movers.values()) mover.unsubscribe();
    // drain(): flushes pending publishes and acks before closing.
    await this.nc.drain().catch(() => this.nc.close());
  }

  /**
   * Run idempotent JetStream API requests once the connection is up, and again when they were caught by a
   * loss or went unanswered (a server restarting, a cluster electing a stream leader), until the reconnect
   * window has passed. A request sent while the client is reconnecting would only time out (see link.ts).
   */
  private async api<T>(what: string, op: () => Promise<T>): Promise<T> {
    const giveUpAt = Date.now() + (this.options.reconnectWindowMs ?? DEFAULTS.reconnectWindowMs);
    for (;;) {
      await this.link.waitUntilUp(giveUpAt);
      const epoch = this.link.epoch;
      try {
        return await op();
      } catch (err) {
        const text = describeError(err, [this.options.authToken]);
        const unanswered =
          (err as Error).name === 'TimeoutError' ||
          (err as Error).name === 'JetStreamNotEnabled' ||
          /timeout|no responders|jetstream (not|temporarily) (enabled|available)|leader/i.test(text);
        const interrupted = this.link.epoch !== epoch || !this.link.isUp;
        if (this.nc.isClosed() || (!unanswered && !interrupted)) throw err;
        if (Date.now() > giveUpAt) {
          throw new BrokerConnectionLostError('nats', this.displayAddress, `${what} went unanswered within the reconnect window: ${text}`);
        }
        this.options.logger?.warn({ broker: this.displayAddress, err: text }, `nats ${what} unanswered; asking again`);
        await new Promise((resolve) => setTimeout(resolve, RETRY_PAUSE_MS));
      }
    }
  }

  /**
   * Create the stream the way the Python MQClient's add_stream does (name and subject, server defaults
   * for the rest; replicas as configured, see `ConnectOptions.replicas`), so either side may create it
   * first; bind to it as it is when it exists.
   */
  private async ensureStream(queue: string, bound?: QueueBound): Promise<void> {
    const name = streamName(queue);
    if (await this.streamExists(name)) return;
    // A bounded stream drops its oldest messages (discard old) rather than refuse a publish.
    const limits = bound
      ? { max_msgs: bound.maxMessages, discard: DiscardPolicy.Old, ...(bound.maxAgeSeconds !== undefined ? { max_age: Math.round(bound.maxAgeSeconds * 1e9) } : {}) }
      : {};
    try {
      await this.jsm.streams.add({ name, subjects: [subjectName(queue)], ...(this.replicas > 1 ? { num_replicas: this.replicas } : {}), ...limits });
    } catch (err) {
      // Lost a creation race, or created meanwhile by another tool with other settings: use it.
      if (await this.streamExists(name)) return;
      const detail = describeError(err, [this.options.authToken]);
      if (/no suitable peers|insufficient resources/i.test(detail)) {
        throw new BrokerConfigError(
          `creating stream '${name}' with ${this.replicas} replicas on ${this.displayAddress} failed: ${detail}`,
          `R${this.replicas} needs ${this.replicas} JetStream servers up; start them, or set ConnectOptions.replicas lower (R3 is the default for an address list of three or more servers)`,
          { cause: err },
        );
      }
      throw new Error(`creating stream '${name}' failed: ${detail}`, { cause: err });
    }
  }

  private async requireStream(queue: string): Promise<void> {
    if (!(await this.streamExists(streamName(queue)))) throw new QueueNotFoundError('nats', queue);
  }

  private async streamExists(name: string): Promise<boolean> {
    try {
      await this.jsm.streams.info(name);
      return true;
    } catch (err) {
      if (/stream not found/i.test(String(err))) return false;
      throw err;
    }
  }

  /**
   * The shared durable consumer. Created with our lease and a `max_deliver` one above the client-side
   * limit (the client dead-letters first, with its reason; the broker only acts if every holder died), or
   * none (-1) for a queue that never dead-letters;
   * an existing one (e.g. the Python MQClient's) is used as it is.
   */
  private async ensureConsumer(stream: string, subject: string, leaseMs: number, maxDeliver: number): Promise<void> {
    try {
      await this.jsm.consumers.info(stream, CONSUMER_NAME);
      return;
    } catch (err) {
      if (!/consumer not found/i.test(String(err))) throw err;
    }
    try {
      await this.jsm.consumers.add(stream, {
        durable_name: CONSUMER_NAME,
        ack_policy: AckPolicy.Explicit,
        filter_subject: subject,
        ack_wait: leaseMs * 1_000_000,
        max_deliver: maxDeliver,
        max_ack_pending: -1,
      });
    } catch (err) {
      await this.jsm.consumers.info(stream, CONSUMER_NAME).catch(() => {
        throw new Error(`creating consumer '${CONSUMER_NAME}' on '${stream}' failed: ${describeError(err)}`);
      });
    }
  }
}
