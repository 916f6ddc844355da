/**
 * Whether the NATS connection is up right now, and a way to wait until it is.
 *
 * The client reconnects by itself, but a request sent while it is away is lost: nats.js buffers the
 * bytes, yet the reply never arrives after the reconnect and the request only times out (measured with
 * nats.js 3.4 against nats-server 2.9.10). So every JetStream request we make waits for the link first, and
 * one that was caught by a loss is sent again (see `NatsBroker.publish`).
 *
 * The client itself never gives up (it reconnects forever), so the link is what declares the connection
 * lost: when it has been down for the whole reconnect window, or is closed for good, it tells every
 * listener (`onLost`), so a consumer waiting on a subscription fails instead of waiting forever.
 */
import type { NatsConnection } from '@nats-io/transport-node';
import { BrokerConnectionLostError } from '../errors.js';
import type { AdapterLogger } from '../types.js';

export class NatsLink {
  private up = true;
  /** Counts connections: it changes whenever the link went down, so a request can tell it was caught by a loss. */
  private generation = 0;
  private waiters: Array<() => void> = [];
  private readonly lostListeners = new Set<(error: BrokerConnectionLostError) => void>();
  /** Runs while the connection is down: fires when the reconnect window is over. */
  private windowTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly nc: NatsConnection,
    private readonly display: string,
    private readonly reconnectWindowMs: number,
    private readonly logger: AdapterLogger | undefined,
  ) {
    void this.watch().catch(() => undefined);
  }

  /** Is the connection up right now? */
  get isUp(): boolean {
    return this.up && !this.nc.isClosed();
  }

  /** Changes every time the connection is lost. */
  get epoch(): number {
    return this.generation;
  }

  /**
   * Resolve once the connection is up; `BrokerConnectionLostError` when it is closed for good or is still
   * down at `deadline` (epoch ms).
   */
  async waitUntilUp(deadline: number): Promise<void> {
    for (;;) {
      if (this.nc.isClosed()) throw new BrokerConnectionLostError('nats', this.display, 'the connection is closed');
      if (this.up) return;
      const remaining = deadline - Date.now();
      if (remaining <= 0) throw new BrokerConnectionLostError('nats', this.display, 'no reconnect within the reconnect window');
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, remaining);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /**
   * Call `listener` once the connection is lost for good: down for longer than the reconnect window, or
   * closed. A connection that comes back within the window never calls it. Returns the unsubscribe.
   */
  onLost(listener: (error: BrokerConnectionLostError) => void): () => void {
    this.lostListeners.add(listener);
    return () => this.lostListeners.delete(listener);
  }

  private async watch(): Promise<void> {
    for await (const status of this.nc.status()) {
      if (status.type === 'disconnect') {
        this.up = false;
        this.generation += 1;
        this.logger?.warn({ broker: this.display }, 'nats connection lost; reconnecting');
        this.windowTimer ??= setTimeout(() => {
          this.windowTimer = undefined;
          if (this.up || this.nc.isClosed()) return;
          this.logger?.error({ broker: this.display, reconnectWindowMs: this.reconnectWindowMs }, 'nats connection down beyond the reconnect window; failing open subscriptions');
          this.announceLost(`no reconnect within the reconnect window (${this.reconnectWindowMs} ms)`);
        }, this.reconnectWindowMs);
      } else if (status.type === 'reconnect') {
        this.up = true;
        this.stopWindow();
        this.logger?.info({ broker: this.display }, 'nats connection re-established');
        this.wake();
      } else if (status.type === 'close') {
        break;
      }
    }
    this.up = false;
    this.stopWindow();
    this.wake();
    this.announceLost('the connection is closed');
  }

  private stopWindow(): void {
    clearTimeout(this.windowTimer);
    this.windowTimer = undefined;
  }

  private announceLost(detail: string): void {
    const error = new BrokerConnectionLostError('nats', this.display, detail);
    for (const listener of [...this.lostListeners]) listener(error);
  }

  private wake(): void {
    for (const waiter of this.waiters.splice(0)) waiter();
  }
}
