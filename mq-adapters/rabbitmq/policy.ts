/**
 * The broker-side backstop for RabbitMQ: a policy, installed through the management HTTP API, that gives a
 * queue a dead-letter target and a delivery limit.
 *
 * Why a policy and not declare arguments: the Python MQClient declares its queues with only
 * `x-queue-type: quorum`, and RabbitMQ refuses a second declaration with other arguments (406 "inequivalent
 * arg"). A policy adds dead-lettering and a delivery limit without touching the declare arguments, so either
 * client may declare first.
 *
 * The numbers, for `maxDeliveries` = N (default 3). On RabbitMQ 3.10 a quorum queue with `delivery-limit: L`
 * delivers a message L+1 times (no `x-delivery-count` header on the first delivery, then 1 … L) and
 * dead-letters it when the (L+1)th delivery is returned (nack or a consumer that died) — measured here, see
 * ENVIRONMENT.md. With L = N:
 * - deliveries 1 … N reach consumer code; a nack on delivery N is turned into a dead letter by the adapter,
 *   with our reason headers (so normally the broker never has to act);
 * - delivery N+1 only happens when a consumer died holding delivery N: the adapter sees `deliveryCount` > N
 *   and dead-letters it without running the task again;
 * - only if that consumer dies too (the event crashes whatever touches it) does the broker dead-letter it on
 *   the (N+1)th return, to the same DLQ, with RabbitMQ's own `x-death` headers instead of ours.
 * `dead-letter-strategy: at-least-once` (which needs `overflow: reject-publish`) keeps the message in the
 * source queue until the dead-letter queue has confirmed it, so the broker's dead-lettering cannot lose it.
 *
 * The user needs the `policymaker` (or `administrator`) tag. Without it, or without the management plugin,
 * one warning is logged and the client-side limit alone applies. Only one policy applies to a queue (the
 * highest priority); ours names exactly one queue and outranks broad operator-wide policies of lower priority.
 */
import { request } from 'undici';
import { describeError } from '../../common/redact.js';
import type { BrokerAddress } from '../address.js';
import type { AdapterLogger } from '../types.js';
import type { RabbitCredentials } from './credentials.js';

/** Give up on one management API call after this long. */
const HTTP_TIMEOUT_MS = 5_000;
/** Above the usual 0 of operator-wide policies, so ours wins for the one queue it names. */
const POLICY_PRIORITY = 10;

/** What the backstop policy protects. */
export interface PolicyTarget {
  queue: string;
  deadLetterQueue: string;
  maxDeliveries: number;
}

/** A policy's body as `PUT /api/policies/<vhost>/<name>` takes it. */
export interface PolicyBody {
  pattern: string;
  'apply-to': 'queues';
  priority: number;
  definition: Record<string, string | number>;
}

/** A regular expression (Erlang `re`, PCRE) that matches exactly this queue name and nothing else. */
export function exactPattern(queue: string): string {
  return `^${queue.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`;
}

/** The policy's name: one per queue. */
export function policyName(queue: string): string {
  return `ewms-${queue}`;
}

/** The backstop policy for one queue. */
export function policyBody(target: PolicyTarget): PolicyBody {
  return {
    pattern: exactPattern(target.queue),
    'apply-to': 'queues',
    priority: POLICY_PRIORITY,
    definition: {
      'dead-letter-exchange': '',
      'dead-letter-routing-key': target.deadLetterQueue,
      'delivery-limit': target.maxDeliveries,
      'dead-letter-strategy': 'at-least-once',
      overflow: 'reject-publish',
    },
  };
}

/**
 * The management API's base URL: the option, else the management plugin's port on `host` — the node the
 * AMQP connection is on (policies are cluster-wide, and that node is known to be up) — over TLS when the
 * AMQP connection is (the credentials go to no other host, over no weaker transport); undefined when the
 * option is `false` (never contact it).
 */
export function managementBaseUrl(
  address: BrokerAddress,
  managementUrl: string | false | undefined,
  host = address.endpoints[0]!.host,
): string | undefined {
  if (managementUrl === false) return undefined;
  const fallback = address.tls ? `https://${host}:15671` : `http://${host}:15672`;
  return (managementUrl ?? fallback).replace(/\/+$/, '');
}

/** Installs and removes backstop policies with the connection's own credentials. */
export class PolicyClient {
  /** Set after the first failure (or when the API is turned off): we warn once, and do not make every declareQueue wait on a dead API. */
  private unavailable = false;
  /** Try `Bearer <token>` when Basic is refused: an OAuth2 token may only be accepted that way. */
  private useBearer = false;

  constructor(
    private readonly address: BrokerAddress,
    private readonly credentials: RabbitCredentials,
    private readonly authToken: string | undefined,
    private readonly managementUrl: string | false | undefined,
    private readonly logger: AdapterLogger | undefined,
    /** The node the AMQP connection is on now. */
    private readonly currentHost: () => string = () => address.endpoints[0]!.host,
  ) {
    // Turned off on purpose: the client-side limit applies, and saying so on every start would be noise.
    if (managementUrl === false) this.unavailable = true;
  }

  private get baseUrl(): string {
    return managementBaseUrl(this.address, this.managementUrl, this.currentHost()) ?? '';
  }

  /**
   * Make sure the policy is in place (read first, write only when it differs, so thousands of starting
   * pilots do not rewrite it). Returns false, after one warning, when the API is unreachable or refuses.
   */
  async install(target: PolicyTarget): Promise<boolean> {
    if (this.unavailable) return false;
    const path = this.policyPath(target.queue);
    const wanted = policyBody(target);
    const existing = await this.call('GET', path);
    if (existing === undefined) return false;
    if (existing.status === 200 && samePolicy(existing.body, wanted)) return true;
    if (existing.status !== 200 && existing.status !== 404) return this.fail(`GET ${path} answered ${existing.status}`);
    const put = await this.call('PUT', path, wanted);
    if (put === undefined) return false;
    if (put.status >= 200 && put.status < 300) return true;
    return this.fail(`PUT ${path} answered ${put.status}${put.text ? `: ${put.text.slice(0, 200)}` : ''}`);
  }

  /**
   * Make sure the queue has no backstop policy of ours (a queue that must never dead-letter). Reads first,
   * so thousands of starting pilots cost the API a GET each, not a write.
   */
  async ensureAbsent(queue: string): Promise<boolean> {
    if (this.unavailable) return false;
    const existing = await this.call('GET', this.policyPath(queue));
    if (existing === undefined) return false;
    if (existing.status === 404) return true;
    return this.remove(queue);
  }

  /** Remove the queue's policy (absent is fine). */
  async remove(queue: string): Promise<boolean> {
    if (this.unavailable) return false;
    const res = await this.call('DELETE', this.policyPath(queue));
    if (res === undefined) return false;
    return (res.status >= 200 && res.status < 300) || res.status === 404 || this.fail(`DELETE answered ${res.status}`);
  }

  private policyPath(queue: string): string {
    return `/api/policies/${encodeURIComponent(this.address.vhost)}/${encodeURIComponent(policyName(queue))}`;
  }

  private authorization(): string {
    if (this.useBearer && this.authToken) return `Bearer ${this.authToken}`;
    const { username, password } = this.credentials;
    return `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`;
  }

  /** One request; undefined (after the warning) when the API could not be reached. */
  private async call(
    method: 'GET' | 'PUT' | 'DELETE',
    path: string,
    body?: PolicyBody,
  ): Promise<{ status: number; body: unknown; text: string } | undefined> {
    for (;;) {
      let status: number;
      let text: string;
      try {
        const res = await request(`${this.baseUrl}${path}`, {
          method,
          headers: { authorization: this.authorization(), 'content-type': 'application/json' },
          body: body === undefined ? undefined : JSON.stringify(body),
          signal: AbortSignal.timeout(HTTP_TIMEOUT_MS),
        });
        status = res.statusCode;
        text = await res.body.text();
      } catch (err) {
        this.fail(describeError(err, [this.credentials.password, this.authToken]));
        return undefined;
      }
      // A token without a user name may be an OAuth2 JWT that this API accepts only as a bearer token.
      if (status === 401 && !this.useBearer && this.authToken && !this.address.username) {
        this.useBearer = true;
        continue;
      }
      if (status === 401 || status === 403) {
        this.fail(`${method} ${path} answered ${status} (the user needs the policymaker or administrator tag)`);
        return undefined;
      }
      let parsed: unknown;
      try {
        parsed = text ? JSON.parse(text) : undefined;
      } catch {
        parsed = undefined;
      }
      return { status, body: parsed, text };
    }
  }

  private fail(detail: string): false {
    if (!this.unavailable) {
      this.unavailable = true;
      this.logger?.warn(
        { managementApi: this.baseUrl, detail },
        'could not install the dead-letter policy through the RabbitMQ management API; the client-side ' +
          'delivery limit still applies, but events that crash every consumer are not dead-lettered by the ' +
          'broker (enable rabbitmq_management and give the user the policymaker tag; or give the API\'s URL: ' +
          'pilots EWMS_PILOT_QUEUE_INCOMING_BROKER_MANAGEMENT_URL, the ewms CLI --broker-management-url, the ' +
          "library ConnectOptions.managementUrl; or 'none' there to not use it)",
      );
    }
    return false;
  }
}

/** Does the policy the API returned match the one we want? */
function samePolicy(existing: unknown, wanted: PolicyBody): boolean {
  if (typeof existing !== 'object' || existing === null) return false;
  const e = existing as Record<string, unknown>;
  if (e.pattern !== wanted.pattern || e['apply-to'] !== wanted['apply-to'] || e.priority !== wanted.priority) return false;
  const definition = e.definition;
  if (typeof definition !== 'object' || definition === null) return false;
  const d = definition as Record<string, unknown>;
  const keys = Object.keys(wanted.definition);
  return Object.keys(d).length === keys.length && keys.every((k) => d[k] === wanted.definition[k]);
}
