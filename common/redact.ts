/**
 * Keeps secrets out of logs and errors. Broker libraries put URLs (with passwords) into their own error
 * messages; everything that crosses our boundary goes through `redact` with the secrets we know of.
 */

const URL_CREDENTIALS = /([a-z][a-z0-9+.-]*:\/\/)([^/@\s:]*)(:[^/@\s]*)?@/gi;

/** Schemes whose `scheme://name@host` form carries a token, not a user name (`nats://<token>@host`). */
const TOKEN_USERINFO_SCHEMES = /^(nats|tls):\/\/$/i;

/**
 * Remove credentials from a text: `scheme://user:pass@` becomes `scheme://user:***@`, a NATS
 * `nats://token@` becomes `nats://***@`, and every literal occurrence of a known secret becomes `***`.
 */
export function redact(text: string, secrets: Iterable<string | undefined> = []): string {
  let out = text.replace(URL_CREDENTIALS, (_m, scheme: string, user: string, password: string | undefined) => {
    if (!user || (password === undefined && TOKEN_USERINFO_SCHEMES.test(scheme))) return `${scheme}***@`;
    return password === undefined ? `${scheme}${user}@` : `${scheme}${user}:***@`;
  });
  for (const secret of secrets) {
    // Very short "secrets" (e.g. an empty password) would shred the text without protecting anything.
    if (secret && secret.length >= 3) out = out.split(secret).join('***');
  }
  return out;
}

/** The message of any thrown value, redacted. */
export function describeError(err: unknown, secrets: Iterable<string | undefined> = []): string {
  const text = err instanceof Error ? err.message : String(err);
  return redact(text, secrets);
}
