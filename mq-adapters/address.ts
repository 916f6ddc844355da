import { BrokerConfigError } from './errors.js';
import type { BrokerType, ConnectOptions } from './types.js';

/** A broker address taken apart. `password` is a secret: never log it or put it in an error. */
export interface ResolvedAddress {
  type: BrokerType;
  /** Scheme to connect with, e.g. `amqps`, `tls`, `pulsar+ssl`. */
  scheme: string;
  tls: boolean;
  host: string;
  port: number;
  /** Undefined when the address names no user (a NATS `nats://<token>@host` names a token, not a user). */
  username: string | undefined;
  /** The auth token when given, else the URL's password, else undefined. */
  password: string | undefined;
  /** RabbitMQ virtual host ('/' by default); empty for other brokers. */
  vhost: string;
  /** `scheme://host:port` — safe for logs. */
  display: string;
}

const SCHEMES: Record<string, { type: BrokerType; tls: boolean; port: number }> = {
  amqp: { type: 'rabbitmq', tls: false, port: 5672 },
  amqps: { type: 'rabbitmq', tls: true, port: 5671 },
  nats: { type: 'nats', tls: false, port: 4222 },
  tls: { type: 'nats', tls: true, port: 4222 },
  pulsar: { type: 'pulsar', tls: false, port: 6650 },
  'pulsar+ssl': { type: 'pulsar', tls: true, port: 6651 },
};

const PLAIN_SCHEME: Record<BrokerType, string> = { rabbitmq: 'amqp', nats: 'nats', pulsar: 'pulsar' };

/** The broker types, for validating user input. */
export const BROKER_TYPES: readonly BrokerType[] = ['rabbitmq', 'nats', 'pulsar'];

/** Is `value` a known broker type? */
export function isBrokerType(value: string): value is BrokerType {
  return (BROKER_TYPES as readonly string[]).includes(value);
}

/**
 * Resolve `ConnectOptions` into one address. Accepts a URL (`amqp://user:pw@host:5672/vhost`) or, with
 * `type`, the bare `[user[:pw]@]host[:port][/vhost]` form the Python MQClient takes.
 */
export function resolveAddress(options: ConnectOptions): ResolvedAddress {
  const raw = options.address.trim();
  if (!raw) {
    throw new BrokerConfigError(
      'the broker address is empty',
      'set EWMS_PILOT_QUEUE_INCOMING_BROKER_ADDRESS (or pass a URL such as amqp://host:5672)',
    );
  }
  if (options.type !== undefined && !isBrokerType(options.type)) {
    throw new BrokerConfigError(
      `unknown broker type '${String(options.type)}'`,
      `use one of: ${BROKER_TYPES.join(', ')}`,
    );
  }
  const hasScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(raw);
  if (!hasScheme && !options.type) {
    throw new BrokerConfigError(
      `the broker address '${safeForMessage(raw)}' has no scheme and no broker type was given`,
      `give a URL (amqp://, nats://, pulsar://) or set the broker type (${BROKER_TYPES.join(', ')})`,
    );
  }
  const withScheme = hasScheme ? raw : `${PLAIN_SCHEME[options.type as BrokerType]}://${raw}`;

  let url: URL;
  try {
    url = new URL(withScheme);
  } catch {
    throw new BrokerConfigError(
      `the broker address '${safeForMessage(raw)}' is not a valid address`,
      'use scheme://[user@]host[:port][/vhost], e.g. amqp://guest@localhost:5672/',
    );
  }
  const scheme = url.protocol.replace(/:$/, '').toLowerCase();
  const known = SCHEMES[scheme];
  if (!known) {
    throw new BrokerConfigError(
      `unsupported broker scheme '${scheme}://'`,
      `use one of: ${Object.keys(SCHEMES).map((s) => `${s}://`).join(', ')}`,
    );
  }
  if (options.type && options.type !== known.type) {
    throw new BrokerConfigError(
      `broker type '${options.type}' does not match the address scheme '${scheme}://' (${known.type})`,
      'make the broker type and the address agree, or leave the type out when giving a URL',
    );
  }
  if (!url.hostname) {
    throw new BrokerConfigError(
      `the broker address '${safeForMessage(raw)}' has no host`,
      'use scheme://host[:port], e.g. nats://localhost:4222',
    );
  }
  const port = url.port ? Number(url.port) : known.port;
  let username = url.username ? decodeURIComponent(url.username) : undefined;
  let urlPassword = url.password ? decodeURIComponent(url.password) : undefined;
  // NATS reads `nats://<token>@host` as token auth: the lone name is a secret, not a user.
  if (known.type === 'nats' && username !== undefined && urlPassword === undefined) {
    urlPassword = username;
    username = undefined;
  }
  let vhost = '';
  if (known.type === 'rabbitmq') {
    const path = url.pathname.replace(/^\//, '');
    vhost = path ? decodeURIComponent(path) : '/';
  }
  return {
    type: known.type,
    scheme,
    tls: known.tls,
    host: url.hostname,
    port,
    username,
    password: options.authToken || urlPassword,
    vhost,
    display: `${scheme}://${url.hostname}:${port}`,
  };
}

/** The address with any userinfo removed, for error messages about the address itself. */
function safeForMessage(raw: string): string {
  return raw.replace(/\/\/[^/@]*@/, '//***@').replace(/^[^/:@]*(:[^/@]*)?@/, '***@');
}
