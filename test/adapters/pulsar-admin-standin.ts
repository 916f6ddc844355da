/**
 * A stand-in for a Pulsar broker's admin REST API (its web service), answering as the broker's
 * `admin/v2/PersistentTopics` resource does, over the state of the in-memory Pulsar fake:
 * - `GET /admin/v2/persistent/{tenant}/{namespace}/{topic}/stats` → TopicStats with
 *   `subscriptions.<name>.msgBacklog` (every message the subscription has not acknowledged: waiting,
 *   in a consumer's receiver queue, or delivered and unacked) and `unackedMessages`;
 * - `DELETE /admin/v2/persistent/{tenant}/{namespace}/{topic}` → 204; 412 while consumers are attached
 *   unless `force=true`;
 * - 401 without a known token, 403 for a token without admin rights, 404 for an unknown namespace or topic,
 *   412 for an invalid topic name, 307 to another broker when asked to; error bodies are `{"reason": …}`
 *   (Pulsar's ErrorData).
 * Short topic names live in `public/default`, as the client resolves them.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { FakeConsumer, FakePulsar } from './pulsar-fake.js';

export interface AdminRequest {
  method: string;
  path: string;
  query: Record<string, string>;
  authorization: string | undefined;
}

export interface PulsarAdminStandIn {
  url: string;
  requests: AdminRequest[];
  /** Answer the next request with a 307 to the same path on another broker's admin API (`to`, a base URL). */
  redirectNext(to: string): void;
  close(): Promise<void>;
}

export async function startPulsarAdmin(fake: FakePulsar, tokens: { admin: string; user?: string }): Promise<PulsarAdminStandIn> {
  const requests: AdminRequest[] = [];
  let redirect: string | undefined;

  const send = (res: ServerResponse, status: number, body?: unknown, headers: Record<string, string> = {}) => {
    res.writeHead(status, { ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers });
    res.end(body === undefined ? undefined : JSON.stringify(body));
  };
  const fail = (res: ServerResponse, status: number, reason: string) => send(res, status, { reason });

  const handle = (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://standin');
    const query = Object.fromEntries(url.searchParams);
    requests.push({ method: req.method ?? '', path: url.pathname, query, authorization: req.headers.authorization });
    if (redirect) {
      const to = redirect;
      redirect = undefined;
      return send(res, 307, undefined, { location: `${to}${req.url}` });
    }
    const auth = req.headers.authorization;
    if (auth !== `Bearer ${tokens.admin}`) {
      if (tokens.user && auth === `Bearer ${tokens.user}`) return fail(res, 403, "Don't have admin permission");
      return fail(res, 401, 'Authentication required');
    }
    const m = /^\/admin\/v2\/persistent\/([^/]+)\/([^/]+)\/([^/]+?)(\/stats)?$/.exec(url.pathname);
    if (!m) return fail(res, 404, 'Not found');
    const [tenant, namespace, topic] = [m[1]!, m[2]!, m[3]!].map(decodeURIComponent);
    if (tenant !== 'public' || namespace !== 'default') return fail(res, 404, 'Namespace does not exist');
    if (!topic || /[/\s]/.test(topic)) return fail(res, 412, 'Topic name is not valid');
    const stored = fake.topics.get(topic!);

    if (req.method === 'GET' && m[4]) {
      for (const flag of ['getPreciseBacklog', 'subscriptionBacklogSize', 'getEarliestTimeInBacklog', 'authoritative']) {
        if (query[flag] !== undefined && !/^(true|false)$/.test(query[flag]!)) return fail(res, 400, `${flag} must be a boolean`);
      }
      if (!stored) return fail(res, 404, `Topic ${topic} not found`);
      const subscriptions: Record<string, unknown> = {};
      for (const [name, sub] of stored.subscriptions) {
        const consumers = [...sub.consumers] as FakeConsumer[];
        const inConsumers = consumers.reduce((n, c) => n + c.receiverQueue.length + c.unacked.size, 0);
        subscriptions[name] = {
          msgBacklog: sub.backlog.length + inConsumers,
          msgBacklogNoDelayed: sub.backlog.length + inConsumers,
          unackedMessages: consumers.reduce((n, c) => n + c.unacked.size, 0),
          type: 'Shared',
          isDurable: true,
          consumers: consumers.map((c, i) => ({ consumerName: `consumer-${i}`, unackedMessages: c.unacked.size, availablePermits: c.receiverQueue.length })),
          msgRateOut: 0,
          msgThroughputOut: 0,
        };
      }
      return send(res, 200, { msgRateIn: 0, msgRateOut: 0, msgThroughputIn: 0, msgThroughputOut: 0, averageMsgSize: 0, storageSize: 0, publishers: [], subscriptions, replication: {}, deduplicationStatus: 'Disabled' });
    }
    if (req.method === 'DELETE' && !m[4]) {
      if (!stored) return fail(res, 404, `Topic ${topic} not found`);
      const attached = [...stored.subscriptions.values()].some((s) => s.consumers.size > 0);
      if (attached && query.force !== 'true') return fail(res, 412, 'Topic has active producers/subscriptions');
      for (const sub of stored.subscriptions.values()) for (const c of [...sub.consumers]) void (c as FakeConsumer).close();
      fake.topics.delete(topic!);
      return send(res, 204);
    }
    return fail(res, 405, 'Method not allowed');
  };

  const server = createServer(handle);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    redirectNext: (to: string) => {
      redirect = to;
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
