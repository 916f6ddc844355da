/**
 * Bearer tokens for the EWMS WMS: OAuth2 client credentials (as the WMS's own clients — SkyDriver, the TMS —
 * get theirs), or a static token for simple setups.
 *
 * Client credentials: `EWMS_WMS_TOKEN_URL` is the issuer (a Keycloak realm URL such as
 * `https://keycloak.example.org/auth/realms/IceCube`); its token endpoint is found by OpenID discovery
 * (`<issuer>/.well-known/openid-configuration`), once. A token is fetched on first use, reused until shortly
 * before it expires (`expires_in`), and fetched again then, or at once when the WMS answers 401. They win over
 * a static `EWMS_WMS_TOKEN` when both are set.
 *
 * Secrets (client secret, tokens) are never logged and never placed in an error: every message that could
 * carry one passes through `redact` with the secrets this source knows.
 */
import { request } from 'undici';
import { describeError, redact } from '../common/redact.js';
import type { AdapterLogger } from '../mq-adapters/types.js';
import { CoordinatorConfigError, WmsAuthError } from './errors.js';

/** Where a WMS client gets the bearer token for each request. */
export interface WmsTokenSource {
  /** The token to send now (undefined: send no Authorization header). */
  token(): Promise<string | undefined>;
  /** The WMS refused the last token (401): forget it, so the next `token()` fetches a fresh one. Returns false when nothing fresher can be had. */
  invalidate(): boolean;
  /** Values to keep out of every log line and error message. */
  secrets(): string[];
}

/** OAuth2 client-credentials settings. */
export interface ClientCredentials {
  /** The issuer (Keycloak realm URL); the token endpoint is discovered from it. */
  issuerUrl: string;
  clientId: string;
  /** Secret: never logged. */
  clientSecret: string;
}

/** Settings for `wmsTokenSource`. */
export interface WmsAuthOptions {
  /** A static bearer token (`EWMS_WMS_TOKEN`). */
  token?: string;
  /** OAuth2 client credentials; win over `token`. */
  clientCredentials?: ClientCredentials;
  /** Fetch a new token this long before the current one expires (default 30 s, at most half its lifetime). */
  refreshMarginMs?: number;
  logger?: AdapterLogger;
  /** For tests: the clock. */
  now?: () => number;
}

/** The settings the environment gives: client credentials when all three are set, else `EWMS_WMS_TOKEN`. */
export function wmsAuthFromEnv(env: NodeJS.ProcessEnv = process.env): Pick<WmsAuthOptions, 'token' | 'clientCredentials'> {
  const issuerUrl = env.EWMS_WMS_TOKEN_URL?.trim();
  const clientId = env.EWMS_WMS_CLIENT_ID?.trim();
  const clientSecret = env.EWMS_WMS_CLIENT_SECRET;
  const set = [issuerUrl, clientId, clientSecret].filter((v) => v).length;
  if (set > 0 && set < 3) {
    throw new CoordinatorConfigError(
      'OAuth2 client credentials for the WMS are incomplete',
      'set all three of EWMS_WMS_TOKEN_URL (the issuer, e.g. a Keycloak realm URL), EWMS_WMS_CLIENT_ID and EWMS_WMS_CLIENT_SECRET, or none',
    );
  }
  return {
    ...(env.EWMS_WMS_TOKEN ? { token: env.EWMS_WMS_TOKEN } : {}),
    ...(issuerUrl && clientId && clientSecret ? { clientCredentials: { issuerUrl, clientId, clientSecret } } : {}),
  };
}

/** The token source the settings call for: client credentials, else the static token, else none. */
export function wmsTokenSource(options: WmsAuthOptions): WmsTokenSource {
  if (options.clientCredentials) return new ClientCredentialsSource(options.clientCredentials, options);
  const token = options.token;
  return {
    token: async () => token,
    invalidate: () => false,
    secrets: () => (token ? [token] : []),
  };
}

const DISCOVERY_PATH = '/.well-known/openid-configuration';
const HTTP_TIMEOUT_MS = 30_000;

/** Client-credentials tokens, fetched on demand and renewed before they expire. */
class ClientCredentialsSource implements WmsTokenSource {
  private tokenEndpoint: string | undefined;
  private current: { value: string; renewAt: number } | undefined;
  /** One fetch at a time: concurrent requests share it. */
  private pending: Promise<string> | undefined;
  private readonly known: string[];
  private readonly now: () => number;

  constructor(
    private readonly credentials: ClientCredentials,
    private readonly options: WmsAuthOptions,
  ) {
    this.known = [credentials.clientSecret];
    this.now = options.now ?? Date.now;
  }

  secrets(): string[] {
    return this.known;
  }

  invalidate(): boolean {
    this.current = undefined;
    return true;
  }

  async token(): Promise<string> {
    if (this.current && this.now() < this.current.renewAt) return this.current.value;
    this.pending ??= this.fetchToken().finally(() => (this.pending = undefined));
    return this.pending;
  }

  private async fetchToken(): Promise<string> {
    const endpoint = (this.tokenEndpoint ??= await this.discover());
    const form = new URLSearchParams({
      grant_type: 'client_credentials',
      client_id: this.credentials.clientId,
      client_secret: this.credentials.clientSecret,
    });
    const res = await this.http('POST', endpoint, form.toString(), 'application/x-www-form-urlencoded');
    if (res.status !== 200) {
      throw new WmsAuthError(
        `the token endpoint ${endpoint} refused client '${this.credentials.clientId}': HTTP ${res.status}${oauthError(res.text, this.known)}`,
        'check EWMS_WMS_CLIENT_ID and EWMS_WMS_CLIENT_SECRET (and that the client may use the client-credentials grant)',
      );
    }
    const body = parseJson(res.text) as { access_token?: unknown; expires_in?: unknown } | undefined;
    const value = body?.access_token;
    if (typeof value !== 'string' || value === '') {
      throw new WmsAuthError(`the token endpoint ${endpoint} answered without an access_token`, 'is EWMS_WMS_TOKEN_URL the issuer (the Keycloak realm URL)?');
    }
    this.known.push(value);
    // Without expires_in, keep it for a minute; with it, renew ahead of expiry (at most halfway through).
    const lifetimeMs = typeof body?.expires_in === 'number' && body.expires_in > 0 ? body.expires_in * 1000 : 60_000;
    const margin = Math.min(this.options.refreshMarginMs ?? 30_000, lifetimeMs / 2);
    this.current = { value, renewAt: this.now() + lifetimeMs - margin };
    this.options.logger?.debug({ expiresInSeconds: lifetimeMs / 1000 }, 'WMS access token obtained');
    return value;
  }

  /** The token endpoint, from the issuer's OpenID configuration. */
  private async discover(): Promise<string> {
    const issuer = this.credentials.issuerUrl.replace(/\/+$/, '');
    const url = `${issuer}${DISCOVERY_PATH}`;
    const res = await this.http('GET', url);
    const config = res.status === 200 ? (parseJson(res.text) as { token_endpoint?: unknown } | undefined) : undefined;
    if (typeof config?.token_endpoint !== 'string') {
      throw new WmsAuthError(
        `OpenID discovery at ${url} gave no token endpoint (HTTP ${res.status})`,
        'set EWMS_WMS_TOKEN_URL to the issuer, e.g. https://keycloak.example.org/auth/realms/IceCube (not the token endpoint itself)',
      );
    }
    return config.token_endpoint;
  }

  private async http(method: 'GET' | 'POST', url: string, body?: string, contentType?: string): Promise<{ status: number; text: string }> {
    try {
      const res = await request(url, {
        method,
        headers: { accept: 'application/json', ...(contentType ? { 'content-type': contentType } : {}) },
        ...(body !== undefined ? { body } : {}),
        headersTimeout: HTTP_TIMEOUT_MS,
        bodyTimeout: HTTP_TIMEOUT_MS,
      });
      return { status: res.statusCode, text: await res.body.text() };
    } catch (err) {
      throw new WmsAuthError(`cannot reach the token issuer at ${url}: ${describeError(err, this.known)}`, 'check EWMS_WMS_TOKEN_URL and the network', { cause: err });
    }
  }
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** The OAuth2 error fields of a refusal (`error`, `error_description`), redacted. */
function oauthError(text: string, secrets: string[]): string {
  const body = parseJson(text) as { error?: unknown; error_description?: unknown } | undefined;
  const parts = [body?.error, body?.error_description].filter((p) => typeof p === 'string');
  return parts.length > 0 ? ` — ${redact(parts.join(': '), secrets).slice(0, 300)}` : '';
}
