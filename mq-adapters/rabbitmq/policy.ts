/**
 * The broker-side backstop for RabbitMQ, installed as a policy through the management API.
 *
 * Why a policy: the Python MQClient declares its queues with only `x-queue-type: quorum`, and RabbitMQ
 * refuses a second declaration with different arguments ("inequivalent arg"). A policy adds dead-lettering
 * and a delivery limit to a queue without touching its declare arguments, so either side may declare first.
 *
 * Numbers: the adapter lets consumer code see an event at most N times and dead-letters it itself on the
 * Nth nack. If a consumer dies holding delivery N, delivery N+1 is caught by the adapter's guard. Only if
 * that consumer dies too does the broker act: `delivery-limit: N` means RabbitMQ delivers N+1 times and
 * dead-letters on the (N+1)th return.
 */
import { request } from 'undici';
import { describeError } from '../../common/redact.js';
import type { ResolvedAddress } from '../address.js';
import type { AdapterLogger } from '../types.js';

export interface PolicyTarget {
  queue: string;
  deadLetterQueue: string;
  maxDeliveries: number;
}

/** Escape a queue name for a policy's regular-expression pattern. */
export function exactPattern(queue: string): string {
  return `^${queue.replace(/[.*+?^${}()|[\]\\/-]/g, '\\$&')}$`;
}

export function policyName(queue: string): string {
  return `ewms-${queue}`;
}

export function policyDefinition(target: PolicyTarget): Record<string, unknown> {
  return {
    pattern: exactPattern(target.queue),
    'apply-to': 'queues',
    priority: 10,
    definition: {
      'dead-letter-exchange': '',
      'dead-letter-routing-key': target.deadLetterQueue,
      'delivery-limit': target.maxDeliveries,
      // at-least-once dead-lettering: a dead letter leaves the queue only once the DLQ confirmed it.
      'dead-letter-strategy': 'at-least-once',
      overflow: 'reject-publish',
    },
  };
}

/** Talks to the management API with the connection's own credentials. */
export class PolicyClient {
  private warned = false;
  private readonly baseUrl: string;

  constructor(
    private readonly address: ResolvedAddress,
    private readonly authToken: string | undefined,
    managementUrl: string | undefined,
    private readonly logger: AdapterLogger | undefined,
  ) {
    this.baseUrl = (managementUrl ?? `${address.tls ? 'https' : 'http'}://${address.host}:${address.tls ? 15671 : 15672}`).replace(/\/$/, '');
  }

  /** Install the policy; returns false (after one warning) when the API is unreachable or refuses. */
  async install(target: PolicyTarget): Promise<boolean> {
    const path = `/api/policies/${encodeURIComponent(this.address.vhost)}/${encodeURIComponent(policyName(target.queue))}`;
    return this.call('PUT', path, policyDefinition(target));
  }

  async remove(queue: string): Promise<boolean> {
    const path = `/api/policies/${encodeURIComponent(this.address.vhost)}/${encodeURIComponent(policyName(queue))}`;
    return this.call('DELETE', path, undefined);
  }

  private authorization(): string {
    const user = this.address.username ?? (this.authToken ? '' : 'guest');
    const password = this.address.password ?? 'guest';
    // An OAuth2 JWT (token and no user) is a bearer token for the management API.
    if (this.authToken && !this.address.username) return `Bearer ${this.authToken}`;
    return `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
  }

  private async call(method: 'PUT' | 'DELETE', path: string, body: unknown): Promise<boolean> {
    try {
      const res = await request(`${this.baseUrl}${path}`, {
        method,
        headers: { authorization: this.authorization(), 'content-type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
        headersTimeout: 5_000,
        bodyTimeout: 5_000,
      });
      await res.body.dump();
      if (res.statusCode < 300 || (method === 'DELETE' && res.statusCode === 404)) return true;
      this.warnOnce(`the management API answered ${res.statusCode}`);
      return false;
    } catch (err) {
      this.warnOnce(describeError(err, [this.address.password, this.authToken]));
      return false;
    }
  }

  private warnOnce(detail: string): void {
    if (this.warned) return;
    this.warned = true;
    this.logger?.warn(
      { managementApi: this.baseUrl, detail },
      'could not install the dead-letter policy through the RabbitMQ management API; ' +
        'the client-side delivery limit still applies, but events that crash every consumer are not ' +
        'dead-lettered by the broker (enable rabbitmq_management or give the user the policymaker tag)',
    );
  }
}
