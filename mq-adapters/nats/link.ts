/**
 * Whether the NATS connection is up right now, and a way to wait until it is.
 *
 * The client reconnects by itself, but a request sent while it is away is lost: nats.js buffers the
 * bytes, yet the reply never arrives after the reconnect and the request only times out (measured with
 * nats.js 3.4 against nats-server 2.9.10). So every JetStream request we make waits for the link first, and
 * one that was caught by a loss is sent again (see `NatsBroker.publish`).
 */
import type { NatsConnection } from '@nats-io/transport-node';
import { BrokerConnectionLostError } from '../errors.js';
import type { AdapterLogger } from '../types.js';

export class NatsLink {
  private up = true;
  /** Counts connections: it changes whenever the link went down, so a request can tell it was caught by a loss. */
  private generation = 0;
  private waiters: Array<() => void> = [];

  constructor(
    private readonly nc: NatsConnection,
    private readonly display: string,
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

  private async watch(): Promise<void> {
    for await (const status of this.nc.status()) {
      if (status.type === 'disconnect') {
        this.up = false;
        this.generation += 1;
        this.logger?.warn({ broker: this.display }, 'nats connection lost; reconnecting');
      } else if (status.type === 'reconnect') {
        this.up = true;
        this.logger?.info({ broker: this.display }, 'nats connection re-established');
        this.wake();
      } else if (status.type === 'close') {
        this.up = false;
        this.wake();
      }
    }
    this.up = false;
    this.wake();
  }

  private wake(): void {
    for (const waiter of this.waiters.splice(0)) waiter();
  }
}
