/**
 * One AMQP connection that heals itself: when it is lost, it reconnects with backoff for up to
 * `reconnectWindowMs` and announces the new connection (`reconnected`) so the publisher and the consumers
 * re-create their channels on it; when the window runs out it announces `lost` and every caller gets a
 * `BrokerConnectionLostError`.
 *
 * We do our own recovery rather than amqplib's `recovery` option because the adapter needs to know exactly
 * which channel a delivery came on (deliveries from a dead channel can no longer be acked) and to fail
 * pending work with our error classes once the window has passed.
 *
 * Several nodes (a cluster, `amqp://rabbit1,rabbit2,rabbit3`): amqplib opens one socket to one host, so
 * every connect tries the nodes in turn — the list in order on the first connect, and after a loss starting
 * with the node after the one that was lost (it is likely the one that went down) — and the backoff starts
 * only once every node has refused. Quorum queues live on every node, so any node serves our queues.
 */
import { EventEmitter } from 'node:events';
import { hostname } from 'node:os';
import amqplib, { type ChannelModel } from 'amqplib';
import { describeError, redact } from '../../common/redact.js';
import type { BrokerAddress, BrokerEndpoint } from '../address.js';
import { BrokerAuthError, BrokerConfigError, BrokerConnectionLostError, BrokerUnreachableError } from '../errors.js';
import { DEFAULTS, type ConnectOptions } from '../types.js';
import { rabbitCredentials, type RabbitCredentials } from './credentials.js';

/**
 * Heartbeat interval in seconds (the connection is declared dead after two missed beats). amqplib answers
 * heartbeats on the event loop; the pilot runs tasks in child processes, so a busy task cannot starve them.
 * 30 s notices a dead peer within about a minute without waking idle pilots needlessly.
 */
export const HEARTBEAT_SECONDS = 30;

/** Backoff between rounds of connection attempts: doubles from the first value up to the cap. */
const RETRY_FIRST_MS = 100;
const RETRY_MAX_MS = 2_000;
/**
 * With several nodes, one attempt gets at most this long, so a node that swallows packets (no refusal, no
 * answer) cannot hold the connect past the others.
 */
const PER_NODE_ATTEMPT_MS = 5_000;

/** How a failed connection attempt should be treated. */
export type ConnectFailure =
  /** The broker refused the credentials (403 ACCESS_REFUSED): retrying will not help. */
  | 'auth'
  /** The vhost does not exist or the user may not use it (530 NOT_ALLOWED on connection.open). */
  | 'vhost'
  /**
   * The broker closed the socket in the middle of the handshake: what a RabbitMQ does on bad credentials
   * when it cannot tell the client why, but also what a node still booting can do. Retried; if it is still
   * the answer when time runs out, reported as refused credentials.
   */
  | 'handshake-closed'
  /** The broker's TLS certificate was not accepted (untrusted, expired, another host name). */
  | 'tls'
  /** Refused, reset, timed out, DNS: worth retrying until the deadline. */
  | 'transient';

/** Sort a connect error from amqplib or the socket into what we do about it. */
export function classifyConnectError(err: unknown): ConnectFailure {
  const text = err instanceof Error ? err.message : String(err);
  if (/ACCESS.REFUSED|Login was refused|\b403\b/i.test(text)) return 'auth';
  // amqplib reports a refused connection.open only as "Expected ConnectionOpenOk; got <ConnectionClose …>".
  if (/NOT.ALLOWED|\b530\b|Expected ConnectionOpenOk; got <ConnectionClose/i.test(text)) return 'vhost';
  if (/closed abruptly during opening handshake/i.test(text)) return 'handshake-closed';
  const code = (err as { code?: unknown } | undefined)?.code;
  if (typeof code === 'string' && /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ALTNAME|ERR_SSL|ERR_TLS/.test(code)) return 'tls';
  return 'transient';
}

export interface RabbitConnectionEvents {
  /** A new connection is up after a loss: re-create channels on it. */
  reconnected: [model: ChannelModel];
  /** The connection is gone for good (reconnect window exhausted, or credentials refused on reconnect). */
  lost: [error: BrokerConnectionLostError];
}

export class RabbitConnection extends EventEmitter<RabbitConnectionEvents> {
  private model: ChannelModel | undefined;
  private closing = false;
  /** Aborted by `close()`: ends a reconnect's backoff and its attempt in flight at once. */
  private readonly closed = new AbortController();
  private reconnecting: Promise<ChannelModel> | undefined;
  private lostError: BrokerConnectionLostError | undefined;
  private readonly credentials: RabbitCredentials;
  /** Index in `address.endpoints` of the node we are (or were last) connected to. */
  private nodeIndex = 0;

  private constructor(
    readonly address: BrokerAddress,
    private readonly options: ConnectOptions,
  ) {
    super();
    this.credentials = rabbitCredentials(address, options.authToken);
  }

  /** The node of the live (or last) connection. */
  get endpoint(): BrokerEndpoint {
    return this.address.endpoints[this.nodeIndex]!;
  }

  /** Connect within `connectTimeoutMs`, or fail with `BrokerUnreachableError` / `BrokerAuthError`. */
  static async open(address: BrokerAddress, options: ConnectOptions): Promise<RabbitConnection> {
    const conn = new RabbitConnection(address, options);
    conn.attach(await conn.connectWithin(options.connectTimeoutMs ?? DEFAULTS.connectTimeoutMs, true, 0));
    return conn;
  }

  /** The secrets to scrub from any text we log or throw (the default `guest` password is none). */
  get secrets(): string[] {
    return [this.address.password ?? '', this.options.authToken ?? ''];
  }

  /** `text` without credentials. */
  redact(text: string): string {
    return redact(text, this.secrets);
  }

  /** The live connection; waits for a reconnect in progress; throws once the connection is lost for good. */
  async current(): Promise<ChannelModel> {
    if (this.lostError) throw this.lostError;
    if (this.model) return this.model;
    if (this.reconnecting) return this.reconnecting;
    throw new BrokerConnectionLostError('rabbitmq', this.address.display, 'the connection was closed by this client');
  }

  /** Is there a live connection right now? */
  get isUp(): boolean {
    return this.model !== undefined;
  }

  /** Has the connection been closed by us or lost for good? */
  get isFinished(): boolean {
    return this.closing || this.lostError !== undefined;
  }

  async close(): Promise<void> {
    this.closing = true;
    this.closed.abort();
    const model = this.model;
    this.model = undefined;
    if (model) await model.close().catch(() => undefined);
    // The reconnect ends at once (aborted); one that had just succeeded closes its connection itself.
    if (this.reconnecting) await this.reconnecting.catch(() => undefined);
  }

  private attach(model: ChannelModel): void {
    this.model = model;
    const logger = this.options.logger;
    // amqplib emits 'error' before 'close' for a connection the broker or the network broke; listening keeps
    // it from becoming an uncaught exception.
    model.on('error', (err: Error) => {
      logger?.warn({ broker: this.address.display, err: describeError(err, this.secrets) }, 'rabbitmq connection error');
    });
    // Resource alarms (memory, disk) make the broker stop reading from publishing connections.
    model.on('blocked', (reason: string) => {
      logger?.warn({ broker: this.address.display, reason }, 'rabbitmq broker blocked publishing (resource alarm); publishes wait');
    });
    model.on('unblocked', () => logger?.info({ broker: this.address.display }, 'rabbitmq broker unblocked publishing'));
    model.on('close', (err?: Error) => {
      if (this.model !== model) return;
      this.model = undefined;
      if (this.closing) return;
      logger?.warn(
        { broker: this.address.display, node: hostPort(this.endpoint), err: err ? describeError(err, this.secrets) : undefined },
        'rabbitmq connection lost; reconnecting',
      );
      this.reconnect();
    });
  }

  private reconnect(): void {
    const windowMs = this.options.reconnectWindowMs ?? DEFAULTS.reconnectWindowMs;
    // The node we lost is likely the one that went down: try the others first.
    const attempt = this.connectWithin(windowMs, false, (this.nodeIndex + 1) % this.address.endpoints.length);
    this.reconnecting = attempt;
    attempt.then(
      (fresh) => {
        this.reconnecting = undefined;
        if (this.closing) {
          void fresh.close().catch(() => undefined);
          return;
        }
        this.attach(fresh);
        this.options.logger?.info({ broker: this.address.display, node: hostPort(this.endpoint) }, 'rabbitmq connection re-established');
        this.emit('reconnected', fresh);
      },
      (error: unknown) => {
        this.reconnecting = undefined;
        // Closed by us while reconnecting (a pilot stopping while its broker is down): a clean end, no error.
        if (this.closing) {
          this.options.logger?.debug({ broker: this.address.display }, 'rabbitmq reconnect abandoned: the connection was closed');
          return;
        }
        this.lostError =
          error instanceof BrokerConnectionLostError
            ? error
            : new BrokerConnectionLostError('rabbitmq', this.address.display, describeError(error, this.secrets));
        this.options.logger?.error({ broker: this.address.display, err: this.lostError.message }, 'rabbitmq connection lost for good');
        this.emit('lost', this.lostError);
      },
    );
  }

  /**
   * Connect, retrying what may pass (refused, reset, timeout) until `windowMs` has passed: each round tries
   * every node once, starting with node `first`; rounds are separated by a backoff.
   * `initial`: this is `connect()` (fail with Unreachable/Auth/Config errors) rather than a reconnect (fail
   * with `BrokerConnectionLostError`).
   */
  private async connectWithin(windowMs: number, initial: boolean, first: number): Promise<ChannelModel> {
    const display = this.address.display;
    const nodes = this.address.endpoints.length;
    const deadline = Date.now() + windowMs;
    let delay = RETRY_FIRST_MS;
    let next = first;
    let refusedInFirstRound = 0;
    for (let tried = 1; ; tried++) {
      const index = next;
      next = (next + 1) % nodes;
      let failure: ConnectFailure;
      let error: unknown;
      try {
        const remaining = Math.max(deadline - Date.now(), 50);
        const model = await this.connectOnce(this.address.endpoints[index]!, nodes > 1 ? Math.min(remaining, PER_NODE_ATTEMPT_MS) : remaining);
        this.nodeIndex = index;
        return model;
      } catch (err) {
        error = err;
        failure = classifyConnectError(err);
      }
      const detail = describeError(error, this.secrets);
      const cause = new Error(detail);
      if (this.closing) throw new BrokerConnectionLostError('rabbitmq', display, 'closed by this client while connecting');
      if (failure === 'auth') {
        const refused = new BrokerAuthError('rabbitmq', display, { user: this.credentials.username, cause });
        if (initial) throw refused;
        throw new BrokerConnectionLostError('rabbitmq', display, `reconnecting: ${refused.message}`, { cause: refused });
      }
      if (failure === 'vhost') {
        const refused = new BrokerConfigError(
          `rabbitmq broker at ${display} refused access to vhost '${this.address.vhost}' for user '${this.credentials.username}'`,
          'check that the vhost exists (the path of the address, / by default) and that the user has permissions on it',
          { cause },
        );
        if (initial) throw refused;
        throw new BrokerConnectionLostError('rabbitmq', display, `reconnecting: ${refused.message}`, { cause: refused });
      }
      // Nothing listens at any node: the first connect says so at once, after one round over the list (a
      // reconnect keeps waiting for a restarting broker).
      if (initial && tried <= nodes && (error as { code?: unknown } | undefined)?.code === 'ECONNREFUSED') {
        refusedInFirstRound += 1;
        if (refusedInFirstRound === nodes) {
          throw new BrokerUnreachableError('rabbitmq', display, `${detail} (nothing listens there)`, { cause });
        }
      }
      if (failure === 'tls') {
        throw new BrokerConfigError(
          `the TLS certificate of the rabbitmq broker at ${display} was not accepted: ${detail}`,
          'connect with the host name the certificate names, and make its CA trusted (e.g. NODE_EXTRA_CA_CERTS=<ca.pem>)',
          { cause },
        );
      }
      const remaining = deadline - Date.now();
      if (remaining <= 0) {
        if (failure === 'handshake-closed' && initial) {
          throw new BrokerAuthError('rabbitmq', display, { user: this.credentials.username, cause });
        }
        if (initial) throw new BrokerUnreachableError('rabbitmq', display, `${detail} (gave up after ${windowMs} ms)`, { cause });
        throw new BrokerConnectionLostError('rabbitmq', display, `${detail} (no reconnect within ${windowMs} ms)`, { cause });
      }
      if (nodes > 1) {
        this.options.logger?.debug({ broker: display, node: hostPort(this.address.endpoints[index]!), err: detail }, 'rabbitmq node did not answer; trying the next');
      }
      // Another node to try in this round: at once. Every node refused: back off before the next round.
      if (tried % nodes !== 0) continue;
      // The last attempt starts at the deadline at the latest.
      await abortableSleep(Math.min(delay, remaining), this.closed.signal);
      delay = Math.min(delay * 2, RETRY_MAX_MS);
    }
  }

  /** One attempt at one node, abandoned after `timeoutMs` (socket connect and AMQP handshake) or on close. */
  private async connectOnce(node: BrokerEndpoint, timeoutMs: number): Promise<ChannelModel> {
    const a = this.address;
    const { username, password } = this.credentials;
    const attempt = amqplib.connect(
      {
        protocol: a.tls ? 'amqps' : 'amqp',
        // amqplib wants an IPv6 literal without its URL brackets.
        hostname: node.host.replace(/^\[(.*)\]$/, '$1'),
        port: node.port,
        username,
        password,
        vhost: a.vhost,
        heartbeat: HEARTBEAT_SECONDS,
      },
      {
        // amqplib sets the TLS server name (SNI) itself, and leaves it out for IP addresses as TLS requires.
        timeout: timeoutMs,
        clientProperties: { connection_name: `ewms-pilot ${hostname()} pid ${process.pid}` },
      },
    );
    let timer: NodeJS.Timeout | undefined;
    let onClose: (() => void) | undefined;
    const timeout = new Promise<never>((_, reject) => {
      // The socket timeout covers the TCP connect; this covers a handshake that never finishes.
      timer = setTimeout(() => reject(new Error(`no AMQP handshake within ${timeoutMs} ms`)), timeoutMs);
      onClose = () => reject(new Error('closed by this client while connecting'));
      this.closed.signal.addEventListener('abort', onClose, { once: true });
    });
    try {
      return await Promise.race([attempt, timeout]);
    } catch (err) {
      // A late success after our timeout (or our close) must not leak a connection.
      attempt.then((m) => m.close()).catch(() => undefined);
      throw err;
    } finally {
      clearTimeout(timer);
      if (onClose) this.closed.signal.removeEventListener('abort', onClose);
    }
  }
}

function hostPort(node: BrokerEndpoint): string {
  return `${node.host}:${node.port}`;
}

/** Resolves after `ms`, or at once when `signal` is aborted. */
function abortableSleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}
