/**
 * The Pulsar admin REST API (a broker's web service), for what the binary protocol cannot do: the backlog
 * of a subscription (queue depth) and deleting topics. Paths and answers as the broker's
 * `admin/v2/PersistentTopics` resource defines them:
 * - `GET /admin/v2/persistent/{tenant}/{namespace}/{topic}/stats` → TopicStats, whose
 *   `subscriptions.<name>.msgBacklog` counts the messages the subscription has not acknowledged (delivered
 *   or not). `getPreciseBacklog=true` counts messages inside batches; `subscriptionBacklogSize=false` spares
 *   the broker the ledger locking the byte size needs.
 * - `DELETE /admin/v2/persistent/{tenant}/{namespace}/{topic}?force=true` → 204, even with consumers attached.
 * - Errors: 401/403 (the token lacks admin rights on the namespace), 404 (no such topic or namespace), 412
 *   (invalid topic name), 307 (another broker serves the topic: follow `Location`), 500/503; the body is
 *   `{"reason": "..."}`.
 *
 * Authentication is the broker token as `Authorization: Bearer <token>`, the token auth Pulsar's admin
 * clients use. It goes only to the admin URL the user gave, or to the broker's own host on the web
 * service's default port over the same transport as the broker connection (`https://<host>:8443` for
 * `pulsar+ssl://`, `http://<host>:8080` for `pulsar://`), and to the other brokers of the cluster that a
 * 307 names.
 */
import { request } from 'undici';
import { EwmsError } from '../../common/errors.js';
import { describeError } from '../../common/redact.js';
import type { BrokerAddress } from '../address.js';

/** Give up on one admin call after this long. */
const HTTP_TIMEOUT_MS = 10_000;
/** A 307 may send us to the broker that owns the topic's bundle; more than this is a loop. */
const MAX_REDIRECTS = 3;

/** A refusal or failure of the Pulsar admin API. `status` is the HTTP status, when there was an answer. */
export class PulsarAdminError extends EwmsError {
  constructor(
    message: string,
    hint: string,
    readonly status?: number,
    options?: { cause?: unknown },
  ) {
    super(message, hint, options);
  }
}

/** A topic as the admin API names it. */
export interface TopicPath {
  tenant: string;
  namespace: string;
  topic: string;
}

/**
 * The admin path of a topic the client names `name`: a short name is `persistent://public/default/<name>`
 * (Pulsar's defaults), a full `persistent://tenant/namespace/topic` is taken apart.
 */
export function topicPath(name: string): TopicPath {
  const full = /^persistent:\/\/([^/]+)\/([^/]+)\/(.+)$/.exec(name);
  if (full) return { tenant: full[1]!, namespace: full[2]!, topic: full[3]! };
  if (name.includes('://')) {
    throw new PulsarAdminError(`'${name}' is not a persistent topic`, 'the adapter uses persistent topics: give a short name or persistent://tenant/namespace/topic');
  }
  return { tenant: 'public', namespace: 'default', topic: name };
}

/**
 * The admin API's base URL: the one given, else the broker host's web service port over the broker's
 * transport; undefined when turned off (`false`).
 */
export function adminBaseUrl(address: BrokerAddress, configured: string | false | undefined): string | undefined {
  if (configured === false) return undefined;
  // Several brokers in the address: the first one's web service (any broker of the cluster answers, and
  // redirects to the one that serves the topic).
  const host = address.endpoints[0]!.host;
  const fallback = address.tls ? `https://${host}:8443` : `http://${host}:8080`;
  return (configured ?? fallback).replace(/\/+$/, '');
}

/** Calls to one cluster's admin API. */
export class PulsarAdmin {
  constructor(
    /** Undefined: the admin API was turned off (`managementUrl: false`); every call says so. */
    readonly baseUrl: string | undefined,
    private readonly token: string | undefined,
    private readonly timeoutMs = HTTP_TIMEOUT_MS,
  ) {}

  /** Messages `subscription` has not acknowledged on `topic` (0 when the subscription does not exist). */
  async backlog(topic: string, subscription: string): Promise<number> {
    const { status, body } = await this.call('GET', `${this.topicUrl(topic)}/stats?getPreciseBacklog=true&subscriptionBacklogSize=false`);
    if (status === 404) throw new PulsarAdminError(`topic ${topic} does not exist (admin API: ${reason(body)})`, 'declare the queue first (the coordinator does), or check its name', 404);
    if (status !== 200) throw this.refused('reading the backlog of', topic, status, body);
    const subscriptions = (body as { subscriptions?: Record<string, { msgBacklog?: unknown }> } | undefined)?.subscriptions;
    if (typeof subscriptions !== 'object' || subscriptions === null) {
      throw new PulsarAdminError(`the admin API's stats of ${topic} have no subscriptions map`, `is ${this.baseUrl} a Pulsar broker's web service?`, status);
    }
    const backlog = subscriptions[subscription]?.msgBacklog;
    if (backlog === undefined) return 0;
    if (typeof backlog !== 'number' || !Number.isInteger(backlog) || backlog < 0) {
      throw new PulsarAdminError(`the admin API gave ${topic}/${subscription} a backlog of ${JSON.stringify(backlog)}`, `is ${this.baseUrl} a Pulsar broker's web service?`, status);
    }
    return backlog;
  }

  /** Delete `topic` and its messages, consumers attached or not; a topic that is not there is fine. */
  async deleteTopic(topic: string): Promise<void> {
    const { status, body } = await this.call('DELETE', `${this.topicUrl(topic)}?force=true`);
    if (status === 204 || status === 200 || status === 404) return;
    throw this.refused('deleting', topic, status, body);
  }

  private topicUrl(name: string): string {
    if (this.baseUrl === undefined) {
      throw new PulsarAdminError(`queue depth and deletion on Pulsar need its admin API, which was turned off ('none')`, 'give the admin (web service) URL in managementUrl / --broker-management-url');
    }
    const { tenant, namespace, topic } = topicPath(name);
    return `${this.baseUrl}/admin/v2/persistent/${encodeURIComponent(tenant)}/${encodeURIComponent(namespace)}/${encodeURIComponent(topic)}`;
  }

  private refused(what: string, topic: string, status: number, body: unknown): PulsarAdminError {
    if (status === 401 || status === 403) {
      return new PulsarAdminError(
        `the Pulsar admin API refused ${what} ${topic} (${status}: ${reason(body)})`,
        `the token needs admin rights on the topic's tenant/namespace (${topicPath(topic).tenant}/${topicPath(topic).namespace}); give the coordinator such a token, or the admin URL (managementUrl, --broker-management-url) of a service that grants them`,
        status,
      );
    }
    return new PulsarAdminError(`the Pulsar admin API answered ${what} ${topic} with ${status}: ${reason(body)}`, 'see the broker log; a 5xx is usually passing', status);
  }

  private async call(method: 'GET' | 'DELETE', url: string): Promise<{ status: number; body: unknown }> {
    let target = url;
    for (let hop = 0; ; hop++) {
      let status: number;
      let text: string;
      let location: string | undefined;
      try {
        const res = await request(target, {
          method,
          headers: { accept: 'application/json', ...(this.token ? { authorization: `Bearer ${this.token}` } : {}) },
          signal: AbortSignal.timeout(this.timeoutMs),
        });
        status = res.statusCode;
        const header = res.headers.location;
        location = Array.isArray(header) ? header[0] : header;
        text = await res.body.text();
      } catch (err) {
        throw new PulsarAdminError(
          `cannot reach the Pulsar admin API at ${new URL(target).origin}: ${describeError(err, this.token ? [this.token] : [])}`,
          'set the admin (web service) URL with managementUrl / --broker-management-url when it is not the broker host on port 8080 (8443 over TLS)',
          undefined,
          { cause: err },
        );
      }
      if ((status === 307 || status === 308) && location) {
        if (hop >= MAX_REDIRECTS) throw new PulsarAdminError(`the Pulsar admin API redirected ${MAX_REDIRECTS} times for ${url}`, 'check the cluster: its brokers disagree on who serves the topic', status);
        // The broker that serves the topic's bundle; Pulsar's own admin clients follow with the same token.
        target = new URL(location, target).toString();
        continue;
      }
      let body: unknown;
      try {
        body = text ? JSON.parse(text) : undefined;
      } catch {
        body = text.slice(0, 200);
      }
      return { status, body };
    }
  }
}

/** The `reason` of an admin API error body. */
function reason(body: unknown): string {
  if (typeof body === 'object' && body !== null && typeof (body as { reason?: unknown }).reason === 'string') return (body as { reason: string }).reason;
  return typeof body === 'string' && body ? body : 'no reason given';
}
