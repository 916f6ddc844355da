/**
 * One AMQP connection that heals itself: on a lost connection it reconnects with backoff for up to
 * `reconnectWindowMs`, announcing each new connection so channels (publisher, consumers) are re-created.
 */
import { EventEmitter } from 'node:events';
import amqplib, { type ChannelModel } from 'amqplib';
import { describeError } from '../../common/redact.js';
import type { ResolvedAddress } from '../address.js';
import { BrokerAuthError, BrokerConnectionLostError, BrokerUnreachableError } from '../errors.js';
import { DEFAULTS, type ConnectOptions } from '../types.js';

/** Heartbeat in seconds: our tasks run in child processes, so the event loop is free to answer it. */
const HEARTBEAT_S = 30;

export interface RabbitConnectionEvents {
  /** A new connection is up (after a loss); re-create channels on it. */
  reconnected: [model: ChannelModel];
  /** The connection is gone for good. */
  lost: [error: BrokerConnectionLostError];
}

export class RabbitConnection extends EventEmitter<RabbitConnectionEvents> {
  private model: ChannelModel | undefined;
  private closing = false;
  private reconnecting: Promise<ChannelModel> | undefined;
  /** Bumped on every new connection; a channel remembers the generation it was made in. */
  generation = 0;
  private lostError: BrokerConnectionLostError | undefined;

  private constructor(
    readonly address: ResolvedAddress,
    private readonly options: ConnectOptions,
  ) {
    super();
  }

  static async open(address: ResolvedAddress, options: ConnectOptions): Promise<RabbitConnection> {
    const conn = new RabbitConnection(address, options);
    conn.attach(await conn.connectWithin(options.connectTimeoutMs ?? DEFAULTS.connectTimeoutMs, true));
    return conn;
  }

  /** The live connection, waiting for a reconnect in progress. */
  async current(): Promise<ChannelModel> {
    if (this.lostError) throw this.lostError;
    if (this.model) return this.model;
    if (this.reconnecting) return this.reconnecting;
    throw new BrokerConnectionLostError('rabbitmq', this.address.display, 'the connection is closed');
  }

  get isUp(): boolean {
    return this.model !== undefined;
  }

  async close(): Promise<void> {
    this.closing = true;
    const model = this.model;
    this.model = undefined;
    if (model) await model.close().catch(() => undefined);
  }

  private secrets(): Array<string | undefined> {
    return [this.address.password, this.options.authToken];
  }

  private attach(model: ChannelModel): void {
    this.model = model;
    this.generation += 1;
    // Errors are followed by 'close'; listening keeps them from crashing the process.
    model.on('error', (err: Error) => {
      this.options.logger?.warn({ err: describeError(err, this.secrets()) }, 'rabbitmq connection error');
    });
    model.on('close', (err?: Error) => {
      if (this.model !== model) return;
      this.model = undefined;
      if (this.closing) return;
      this.options.logger?.warn(
        { broker: this.address.display, err: err ? describeError(err, this.secrets()) : undefined },
        'rabbitmq connection lost; reconnecting',
      );
      this.reconnecting = this.connectWithin(this.options.reconnectWindowMs ?? DEFAULTS.reconnectWindowMs, false);
      this.reconnecting.then(
        (fresh) => {
          this.reconnecting = undefined;
          if (this.closing) {
            void fresh.close().catch(() => undefined);
            return;
          }
          this.attach(fresh);
          this.options.logger?.info({ broker: this.address.display }, 'rabbitmq connection re-established');
          this.emit('reconnected', fresh);
        },
        (error: unknown) => {
          this.reconnecting = undefined;
          this.lostError =
            error instanceof BrokerConnectionLostError
              ? error
              : new BrokerConnectionLostError('rabbitmq', this.address.display, describeError(error, this.secrets()));
          this.emit('lost', this.lostError);
        },
      );
      // Nobody may be awaiting it right now; the rejection is delivered through 'lost' and current().
      this.reconnecting.catch(() => undefined);
    });
  }

  /** Connect, retrying refused/reset attempts with backoff until `windowMs` runs out. */
  private async connectWithin(windowMs: number, initial: boolean): Promise<ChannelModel> {
    const deadline = Date.now() + windowMs;
    let delay = 100;
    for (;;) {
      const remaining = deadline - Date.now();
      try {
        return await this.connectOnce(Math.max(remaining, 250));
      } catch (err) {
        if (err instanceof BrokerAuthError) throw err;
        if (this.closing) throw new BrokerConnectionLostError('rabbitmq', this.address.display, 'closed by us');
        if (Date.now() + delay >= deadline) {
          const detail = describeError(err, this.secrets());
          if (initial) throw new BrokerUnreachableError('rabbitmq', this.address.display, `${detail} (gave up after ${windowMs} ms)`);
          throw new BrokerConnectionLostError('rabbitmq', this.address.display, `${detail} (no reconnect within ${windowMs} ms)`);
        }
        await new Promise((r) => setTimeout(r, delay));
        delay = Math.min(delay * 2, 2_000);
      }
    }
  }

  private async connectOnce(timeoutMs: number): Promise<ChannelModel> {
    const a = this.address;
    const username = a.username ?? (this.options.authToken ? '' : 'guest');
    const password = a.password ?? 'guest';
    let timer: NodeJS.Timeout | undefined;
    const attempt = amqplib.connect(
      {
        protocol: a.tls ? 'amqps' : 'amqp',
        hostname: a.host,
        port: a.port,
        username,
        password,
        vhost: a.vhost,
        heartbeat: HEARTBEAT_S,
      },
      { timeout: timeoutMs, servername: a.tls ? a.host : undefined },
    );
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
    });
    try {
      return await Promise.race([attempt, timeout]);
    } catch (err) {
      // A late success after our timeout must not leak a connection.
      attempt.then((m) => m.close()).catch(() => undefined);
      const text = err instanceof Error ? err.message : String(err);
      if (/ACCESS_REFUSED|403|authentication|PLAIN login refused/i.test(text)) {
        throw new BrokerAuthError('rabbitmq', a.display, { user: username, cause: undefined });
      }
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }
}
