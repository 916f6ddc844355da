/**
 * The one broker API every pilot and coordinator speaks. Three implementations live beside this file
 * (`rabbitmq/`, `nats/`, `pulsar/`); `connect()` in `index.ts` picks one by URL scheme or broker type.
 *
 * The contract is at-least-once with explicit acknowledgement: a message leaves its queue only when a
 * consumer acks it (or it is moved to the dead-letter queue). Everything here is wire-format agnostic:
 * bodies are bytes; encoding lives in `common/wire.ts`.
 */

import type { BrokerAddress } from './address.js';

/** Which broker an adapter talks to. */
export type BrokerType = 'rabbitmq' | 'nats' | 'pulsar';

/** A minimal structured logger (pino's shape), so adapters never depend on a logging library. */
export interface AdapterLogger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

/** How to reach a broker. Either a full `url`, or a `type` plus a Python-MQClient-style `address`. */
export interface ConnectOptions {
  /**
   * `amqp://` / `amqps://` (RabbitMQ), `nats://` / `tls://` (NATS), `pulsar://` / `pulsar+ssl://` (Pulsar),
   * or a bare `[user@]host[:port][/vhost]` when `type` is given (the `EWMS_PILOT_QUEUE_*_BROKER_ADDRESS` form).
   * Several nodes of one broker (a cluster) as a comma-separated list — `amqp://user@rabbit1,rabbit2,rabbit3`
   * or `nats://n1:4222,nats://n2:4222` — are tried in order on connect and on every reconnect (see
   * `address.ts`). Or an address already parsed with `parseBrokerAddress`, passed on as it is.
   */
  address: string | BrokerAddress;
  /** Required when `address` has no scheme; must agree with the scheme when it has one. */
  type?: BrokerType;
  /**
   * Secret: RabbitMQ password or OAuth2 JWT, NATS token, Pulsar token. Overrides a password in `address`.
   * Never logged, never placed in an error message.
   */
  authToken?: string;
  /** Give up connecting after this long, with a `BrokerUnreachableError` (default 10,000 ms). */
  connectTimeoutMs?: number;
  /** Keep retrying a lost connection for this long before failing pending work (default 60,000 ms). */
  reconnectWindowMs?: number;
  /** Most unconfirmed publishes in flight per connection; further `publish` calls wait (default 1,000). */
  maxInFlightPublishes?: number;
  /**
   * The broker's HTTP API. RabbitMQ: the management API, used to install the dead-letter/delivery-limit
   * policy without touching the queue's declare arguments (when it is not reachable or we lack the rights,
   * the client-side delivery limit still holds; a warning says so). Pulsar: the admin REST API (the
   * broker's web service), for `depth()` and `deleteQueue()`. Unset: the broker's own host on the API's
   * default port, over TLS when the broker connection is (RabbitMQ `http://<host>:15672` /
   * `https://<host>:15671`, Pulsar `http://<host>:8080` / `https://<host>:8443`), so the credentials go
   * to no other host and over no weaker transport than the broker connection; redirects are not followed
   * (Pulsar: a 307 to the broker that serves the topic is). `false`: never contact it.
   */
  managementUrl?: string | false;
  /**
   * NATS: replicas of each stream this connection creates (`num_replicas`, 1–5). Default: 3 when the
   * address lists three or more servers (a cluster), else 1. A stream that exists already keeps its own,
   * and one with more replicas than the cluster has JetStream servers cannot be created.
   * RabbitMQ: not used — a quorum queue gets a member on every node of the cluster by itself (3 of 3
   * measured on 3.10), and setting `x-quorum-initial-group-size` would make the Python MQClient's later
   * declare of the same queue fail (406 inequivalent arg, measured on 3.10.8). Pulsar: the namespace's
   * replication settings apply.
   */
  replicas?: number;
  /** Structured logger; silent when absent. */
  logger?: AdapterLogger;
}

/** A queue together with the dead-letter queue and delivery limit that protect it. */
export interface QueueSpec {
  /** The user's queue name (EWMS queue id or alias); mapped to broker names by each adapter. */
  name: string;
  /** Where events go after `maxDeliveries` failed attempts. Default: `<name>.dlq`. */
  deadLetterQueue?: string;
  /**
   * Attempts before an event is dead-lettered (default 3). Also installed broker-side as a backstop for
   * events that crash a consumer outright, where the broker lets us do so without breaking interop.
   */
  maxDeliveries?: number;
  /**
   * `false` for a queue whose messages must never be dead-lettered, however often they are returned: an
   * outgoing (results) queue, whose readers give back what they do not take (end of a collection, a
   * timeout) and would otherwise lose results to a dead-letter queue nobody reads. No dead-letter queue is
   * created, no delivery limit is installed on the broker, and `deadLetterQueue` / `maxDeliveries` are
   * ignored. Consumers of the queue must pass the same to `consume`. Default `true`.
   */
  deadLetter?: boolean;
  /**
   * Keep at most `maxMessages` (and, with `maxAgeSeconds`, none older): the oldest are dropped to make room,
   * publishing never blocks. For disposable messages whose reader may be absent, such as pilots' heartbeats;
   * such a queue should also have `deadLetter: false`. Applied when the queue is created (RabbitMQ: a classic
   * queue, its messages being disposable, with `x-max-length`, `x-overflow: drop-head` and `x-message-ttl`;
   * NATS `max_msgs`/`max_age` with `discard: old`); an existing queue is used as it is. Not applied on Pulsar (a backlog quota is an admin
   * setting there). Default: unbounded.
   */
  bound?: QueueBound;
}

/** Limits of a bounded queue (see `QueueSpec.bound`). */
export interface QueueBound {
  maxMessages: number;
  maxAgeSeconds?: number;
}

/** A message to publish. */
export interface OutgoingMessage {
  /** The encoded body (see `common/wire.ts`). */
  body: Uint8Array;
  /** Application headers; string values only so every broker carries them natively. */
  headers?: Record<string, string>;
  /** Stable id across redeliveries; a random UUID when absent. */
  eventId?: string;
}

/** Why an event was dead-lettered; carried as headers on the dead-letter message. */
export interface DeadLetterReason {
  /** One line a human can act on, e.g. `task exited with code 3`. */
  reason: string;
  /** More context (stderr tail, host, attempt, pilot version, …); keys become `x-ewms-dlq-<key>` headers. */
  details?: Record<string, string>;
}

/**
 * One delivery of one message to one consumer. Settle it exactly once: ack, nack, release or deadLetter.
 *
 * Attempts: `nack` uses one up (a real failure), `release` does not (the consumer is stopping, or never
 * worked on it), and a consumer that dies holding the message uses one up too. Brokers count every return
 * as a delivery, so on a queue that dead-letters, `nack` and `release` give the message back as a copy that
 * carries the attempt count and the last failure in headers (`x-ewms-attempts`, `x-ewms-last-failure*`),
 * published with the broker's confirm before the original is acked. Should the consumer die between the two,
 * the event is in the queue twice with one event id; consumers downstream deduplicate by that id. A queue
 * that never dead-letters (`deadLetter: false`) gets plain broker returns instead.
 */
export interface Delivery {
  /** The body as published. */
  readonly body: Uint8Array;
  /** Application headers as published (broker-internal and attempt bookkeeping headers removed). */
  readonly headers: Readonly<Record<string, string>>;
  /**
   * The publisher's event id, stable across redeliveries. For messages published without one (e.g. by the
   * Python MQClient) a content hash of the body, which is stable too.
   */
  readonly eventId: string;
  /**
   * The attempt this delivery is: 1 on the first, 2 after one failure (a `nack`, or a consumer that died
   * holding it), … — whatever the broker's own delivery counter says. Releases do not count.
   */
  readonly deliveryCount: number;
  /** The failure the previous attempt was nacked with, when there was one. */
  readonly lastFailure?: DeadLetterReason;
  /** Remove the message from the queue. Resolves when the broker has been told. */
  ack(): Promise<void>;
  /**
   * This attempt failed: return the message for another attempt (by any consumer), carrying `failure` with
   * it so a later dead letter names it. On its final allowed attempt the adapter moves it to the dead-letter
   * queue instead, with `failure` (or the last failure carried) as the reason, so a nack never loses a
   * message and never loops forever.
   */
  nack(failure?: DeadLetterReason): Promise<void>;
  /**
   * Give the message back without using up an attempt (shutdown, eviction, or it was never worked on). It
   * is never turned into a dead letter here.
   */
  release(): Promise<void>;
  /** Publish the message to the dead-letter queue with the reason (broker-confirmed), then ack it. */
  deadLetter(reason: DeadLetterReason): Promise<void>;
  /** Tell the broker a long task is still working on this message, so its lease is not given away. */
  extendLease(): Promise<void>;
}

/** Options for `Broker.consume`. */
export interface ConsumeOptions {
  /** Most unacked messages this consumer holds at once (>= 1). */
  prefetch: number;
  /** Dead-letter settings; must match the queue's `declareQueue` spec (defaults are the same). */
  deadLetterQueue?: string;
  maxDeliveries?: number;
  /**
   * `false`: never dead-letter from this queue, whatever its delivery count (see `QueueSpec.deadLetter`);
   * `nack` then always returns the message to the queue. Default `true`.
   */
  deadLetter?: boolean;
  /**
   * How long the broker waits for an ack before redelivering to someone else, where the broker has such a
   * lease (NATS AckWait, Pulsar ack timeout). `Delivery.extendLease` renews it. Default 60,000 ms.
   */
  leaseMs?: number;
}

/**
 * An open subscription: iterate it to receive deliveries. Iteration waits (without polling) until a message
 * arrives or `close()` is called; it never holds more than `prefetch` unacked deliveries.
 */
export interface Subscription extends AsyncIterable<Delivery> {
  /**
   * Stop intake. Messages received but not yet yielded are returned to the queue (released: no attempt
   * used); deliveries already yielded stay settle-able until the broker connection closes. Ends the
   * iteration. Leaving a `for await` loop early (break, return, throw) does the same.
   */
  close(): Promise<void>;
}

/** A connection to one broker. */
export interface Broker {
  readonly type: BrokerType;
  /** Host and port only, for logs and errors; never credentials. */
  readonly displayAddress: string;
  /**
   * The largest message (body and headers) the broker takes, where it announces one (NATS: the server's
   * `max_payload`); undefined where it does not, so a caller can check events before publishing any.
   */
  readonly maxPayload?: number;
  /**
   * Make sure the queue and its dead-letter queue exist. Idempotent, safe when several processes race, and
   * binds to queues another client (e.g. the Python MQClient) created without failing on their settings.
   */
  declareQueue(spec: QueueSpec): Promise<void>;
  /**
   * Publish one message; resolves with its event id once the broker has confirmed it is stored. Calls
   * beyond `maxInFlightPublishes` wait their turn (backpressure), so a tight loop cannot exhaust memory.
   */
  publish(queue: string, message: OutgoingMessage): Promise<string>;
  /** Start consuming from a declared queue. */
  consume(queue: string, options: ConsumeOptions): Promise<Subscription>;
  /**
   * Messages in the queue not yet acknowledged, for progress and scaling. NATS and Pulsar count those
   * delivered and not yet acked too; RabbitMQ's AMQP answer counts only those ready for delivery.
   */
  depth(queue: string): Promise<number>;
  /**
   * Delete the queue and every message in it (tests and workflow clean-up only), and its dead-letter
   * queue (`<queue>.dlq` unless another is named; `false` keeps it).
   */
  deleteQueue(queue: string, options?: { deadLetterQueue?: string | false }): Promise<void>;
  /** Wait for unconfirmed publishes, then close. Unacked deliveries return to their queue. */
  close(): Promise<void>;
}

/** Header names this project sets on messages, the same on every broker. */
export const HEADERS = {
  /** Event id, when the broker has no native message-id field we can use. */
  eventId: 'x-ewms-event-id',
  /** On outputs: the event id of the input this answers. */
  inputEventId: 'x-ewms-input-event-id',
  /** On dead letters: one-line reason. */
  deadLetterReason: 'x-ewms-dlq-reason',
  /** On dead letters: the queue the event came from. */
  deadLetterSource: 'x-ewms-dlq-source-queue',
  /** On dead letters: how many deliveries it had. */
  deadLetterDeliveries: 'x-ewms-dlq-deliveries',
  /** Prefix of the free-form dead-letter details. */
  deadLetterDetailPrefix: 'x-ewms-dlq-',
  /** On an event given back for another attempt: how many attempts it has used up (absent: none). */
  attempts: 'x-ewms-attempts',
  /** On an event given back for another attempt: the last failure's one-line reason. */
  lastFailure: 'x-ewms-last-failure',
  /** Prefix of the last failure's details (`x-ewms-last-failure-<key>`). */
  lastFailureDetailPrefix: 'x-ewms-last-failure-',
} as const;

/** Defaults shared by every adapter. */
export const DEFAULTS = {
  maxDeliveries: 3,
  connectTimeoutMs: 10_000,
  reconnectWindowMs: 60_000,
  maxInFlightPublishes: 1_000,
  leaseMs: 60_000,
  deadLetterSuffix: '.dlq',
} as const;

/** The default dead-letter queue name for a queue. */
export function defaultDeadLetterQueue(queue: string): string {
  return `${queue}${DEFAULTS.deadLetterSuffix}`;
}
