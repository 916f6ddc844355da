/**
 * The broker's HTTP API, as users give it: the RabbitMQ management API (for the dead-letter policy) or the
 * Pulsar admin API (for queue depth and deletion). One parser for the pilot's
 * `EWMS_PILOT_QUEUE_*_BROKER_MANAGEMENT_URL`, the coordinator's `ConnectOptions.managementUrl` and the
 * `ewms --broker-management-url` flag, and one formatter for the environment the coordinator gives pilots.
 */
import { BrokerConfigError } from './errors.js';

/** The word that turns the API off: no request is ever sent to it. */
export const NO_MANAGEMENT_API = 'none';

/**
 * `none` → `false` (never contact the API), else an http(s) base URL without credentials (the broker's
 * own user and token are sent, so none may hide in the URL) and without a query or fragment.
 */
export function parseManagementUrl(text: string, what = 'the management URL'): string | false {
  const value = text.trim();
  if (value.toLowerCase() === NO_MANAGEMENT_API) return false;
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new BrokerConfigError(`${what} '${value}' is not a URL`, `give the API's base URL, e.g. https://rabbitmq.example.org:15671, or '${NO_MANAGEMENT_API}' to never contact it`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new BrokerConfigError(`${what} must be http:// or https://, not ${url.protocol}//`, `e.g. https://${url.host || 'rabbitmq.example.org'}:15671`);
  }
  if (url.username || url.password) {
    throw new BrokerConfigError(`${what} must not contain a user or password`, "the broker's own user and token are sent to it; remove them from the URL");
  }
  if (url.search || url.hash) throw new BrokerConfigError(`${what} must be a base URL, without ?query or #fragment`, 'give scheme, host, port and (optionally) a path prefix');
  return `${url.origin}${url.pathname.replace(/\/+$/, '')}`;
}

/** The value as an environment variable carries it. */
export function formatManagementUrl(value: string | false): string {
  return value === false ? NO_MANAGEMENT_API : value;
}
