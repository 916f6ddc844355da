/**
 * The monitor's HTTP server (node:http): the live page and its two assets, `/metrics` (Prometheus text),
 * `/api/status` (JSON) and `/api/events` (server-sent events: one status per second). Everything the page
 * needs is served from here; nothing is fetched from elsewhere (the page's Content-Security-Policy says so).
 *
 * Binding: loopback by default, where anyone who can reach it is already on this machine; then requests must
 * name a loopback host (a web page elsewhere cannot read it through DNS rebinding). Any other address only
 * with a bearer token (the page shows hosts and error text): `Authorization: Bearer <token>` (Prometheus'
 * `authorization` setting), or once `/?token=<token>` in a browser, which sets an HttpOnly cookie.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { isIP } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Registry } from 'prom-client';
import { describeError } from '../../common/redact.js';
import type { AdapterLogger } from '../../mq-adapters/types.js';
import { CoordinatorConfigError } from '../errors.js';
import type { MonitorState } from './state.js';

/** The page's files, at the package root (they are not compiled). */
export const PAGE_DIR = findPageDir(dirname(fileURLToPath(import.meta.url)));

function findPageDir(start: string): string {
  for (let dir = start; ; dir = dirname(dir)) {
    const candidate = join(dir, 'coordinator', 'monitor', 'page');
    if (existsSync(join(candidate, 'index.html'))) return candidate;
    if (dirname(dir) === dir) return join(start, 'page');
  }
}

const ASSETS: Record<string, { file: string; type: string }> = {
  '/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/app.js': { file: 'app.js', type: 'text/javascript; charset=utf-8' },
  '/app.css': { file: 'app.css', type: 'text/css; charset=utf-8' },
  '/favicon.svg': { file: 'favicon.svg', type: 'image/svg+xml' },
};

const SECURITY_HEADERS: Record<string, string> = {
  'content-security-policy': "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
};

const COOKIE = 'ewms_monitor_token';
/** Shortest token accepted for a non-loopback bind. */
export const MIN_TOKEN_LENGTH = 16;
/** Server-sent-event clients at once (each costs one snapshot a second). */
const MAX_EVENT_CLIENTS = 64;
const EVENT_PERIOD_MS = 1_000;

export interface MonitorServerOptions {
  state: MonitorState;
  registry: Registry;
  /** Default 127.0.0.1. */
  host?: string;
  /** Default 9464 (Prometheus' range for exporters); 0 picks a free port. */
  port?: number;
  /** Required unless `host` is a loopback address. */
  token?: string;
  logger?: AdapterLogger;
}

/** A listening monitor server. */
export interface MonitorServer {
  /** Where to point a browser (without the token). */
  readonly url: string;
  readonly port: number;
  close(): Promise<void>;
}

/** Is `host` a loopback address (or `localhost`)? */
export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  if (h === 'localhost' || h === '::1') return true;
  return isIP(h) === 4 && h.startsWith('127.');
}

/** Check the bind settings before anything starts; throws `CoordinatorConfigError`. */
export function checkBind(host: string, token: string | undefined): void {
  if (!isLoopback(host) && !token) {
    throw new CoordinatorConfigError(
      `refusing to serve the monitor on ${host} without a token: the page shows hosts and error text`,
      `set EWMS_MONITOR_TOKEN to a random string of at least ${MIN_TOKEN_LENGTH} characters (e.g. openssl rand -hex 16), or keep the default --host 127.0.0.1 and use an SSH tunnel`,
    );
  }
  if (token !== undefined && token.length < MIN_TOKEN_LENGTH) {
    throw new CoordinatorConfigError(`EWMS_MONITOR_TOKEN is shorter than ${MIN_TOKEN_LENGTH} characters`, 'use a random string, e.g. openssl rand -hex 16');
  }
}

/** Start serving; resolves once listening. */
export async function startMonitorServer(options: MonitorServerOptions): Promise<MonitorServer> {
  const host = options.host ?? '127.0.0.1';
  checkBind(host, options.token);
  const tokenDigest = options.token ? digest(options.token) : undefined;
  const clients = new Set<ServerResponse>();
  const assets = new Map<string, Buffer>();

  const authorized = (req: IncomingMessage): boolean => {
    if (!tokenDigest) return true;
    const auth = req.headers.authorization;
    const bearer = auth?.startsWith('Bearer ') ? auth.slice(7).trim() : undefined;
    const cookie = cookieValue(req.headers.cookie, COOKIE);
    return [bearer, cookie].some((t) => t !== undefined && timingSafeEqual(digest(t), tokenDigest));
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    for (const [k, v] of Object.entries(SECURITY_HEADERS)) res.setHeader(k, v);
    const url = new URL(req.url ?? '/', 'http://monitor.invalid');
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, 405, 'text/plain', 'only GET\n', { allow: 'GET, HEAD' });
    if (!tokenDigest && !isLoopback(hostName(req.headers.host))) {
      return send(res, 421, 'text/plain', 'this monitor answers only to a loopback host name (127.0.0.1, localhost, [::1])\n');
    }
    if (url.pathname === '/healthz') return send(res, 200, 'text/plain', 'ok\n');
    if (tokenDigest && url.pathname === '/' && url.searchParams.has('token')) {
      // Browsers cannot put a bearer token on EventSource requests: trade the token once for a cookie.
      const given = url.searchParams.get('token') ?? '';
      if (!timingSafeEqual(digest(given), tokenDigest)) return send(res, 401, 'text/plain', 'wrong token\n');
      res.setHeader('set-cookie', `${COOKIE}=${encodeURIComponent(given)}; HttpOnly; SameSite=Strict; Path=/`);
      res.setHeader('location', '/');
      return send(res, 303, 'text/plain', 'signed in\n');
    }
    if (!authorized(req)) {
      return send(res, 401, 'text/plain', 'a bearer token is required (Authorization: Bearer <EWMS_MONITOR_TOKEN>, or open /?token=<token> once)\n', {
        'www-authenticate': 'Bearer realm="ewms monitor"',
      });
    }
    const asset = ASSETS[url.pathname];
    if (asset) {
      let body = assets.get(asset.file);
      if (!body) assets.set(asset.file, (body = await readFile(join(PAGE_DIR, asset.file))));
      return send(res, 200, asset.type, body, { 'cache-control': 'no-cache' });
    }
    switch (url.pathname) {
      case '/metrics':
        return send(res, 200, options.registry.contentType, await options.registry.metrics(), { 'cache-control': 'no-store' });
      case '/api/status':
        return send(res, 200, 'application/json; charset=utf-8', JSON.stringify(options.state.snapshot()), { 'cache-control': 'no-store' });
      case '/api/events':
        return openEvents(req, res);
      default:
        return send(res, 404, 'text/plain', 'not found\n');
    }
  };

  const openEvents = (req: IncomingMessage, res: ServerResponse): void => {
    if (clients.size >= MAX_EVENT_CLIENTS) return send(res, 503, 'text/plain', 'too many live pages; close some\n', { 'retry-after': '10' });
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store', connection: 'keep-alive' });
    res.write('retry: 2000\n\n');
    clients.add(res);
    pushTo(res);
    req.on('close', () => clients.delete(res));
  };

  const pushTo = (res: ServerResponse) => {
    res.write(`event: status\ndata: ${JSON.stringify(options.state.snapshot())}\n\n`);
  };

  const server: Server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      options.logger?.error({ err: describeError(err), path: req.url }, 'monitor request failed');
      if (!res.headersSent) send(res, 500, 'text/plain', 'internal error\n');
      else res.end();
    });
  });
  server.keepAliveTimeout = 5_000;

  const timer = setInterval(() => {
    if (clients.size === 0) return;
    const frame = `event: status\ndata: ${JSON.stringify(options.state.snapshot())}\n\n`;
    for (const res of clients) res.write(frame);
  }, EVENT_PERIOD_MS);
  timer.unref();

  await new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) => {
      reject(
        err.code === 'EADDRINUSE'
          ? new CoordinatorConfigError(`port ${options.port ?? 9464} on ${host} is already in use`, 'choose another with --port (0 picks a free one)')
          : err.code === 'EADDRNOTAVAIL'
            ? new CoordinatorConfigError(`${host} is not an address of this machine`, 'use --host 127.0.0.1, or an address this machine has')
            : err,
      );
    };
    server.once('error', onError);
    server.listen(options.port ?? 9464, host, () => {
      server.off('error', onError);
      resolve();
    });
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : (options.port ?? 9464);
  const shownHost = host.includes(':') ? `[${host}]` : host;

  return {
    url: `http://${shownHost}:${port}/`,
    port,
    async close() {
      clearInterval(timer);
      for (const res of clients) res.end();
      clients.clear();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}

function send(res: ServerResponse, status: number, type: string, body: string | Buffer, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': type, ...headers });
  res.end(res.req.method === 'HEAD' ? undefined : body);
}

function digest(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}

/** The host name of a Host header (`[::1]:9464` → `::1`). */
function hostName(header: string | undefined): string {
  if (!header) return '';
  const bracket = /^\[([^\]]+)\](?::\d+)?$/.exec(header);
  if (bracket) return bracket[1]!;
  return header.replace(/:\d+$/, '');
}

function cookieValue(header: string | undefined, name: string): string | undefined {
  for (const part of (header ?? '').split(';')) {
    const [k, ...v] = part.trim().split('=');
    if (k === name) {
      try {
        return decodeURIComponent(v.join('='));
      } catch {
        return undefined;
      }
    }
  }
  return undefined;
}
