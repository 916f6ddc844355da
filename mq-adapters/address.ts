/**
 * Broker addresses: parsed once where they enter (pilot config, `connect()`, the `ewms` CLI) into a typed
 * `BrokerAddress`, passed on typed, and formatted once where they leave a process (the environment the
 * coordinator writes for its pilots).
 *
 * The text form is one address or a comma-separated list of them, every one naming a node of the same
 * broker (a cluster); the client connects to the first that answers and fails over to the others:
 *
 *   amqp://user:pw@rabbit1:5672/vhost              one node
 *   amqp://user@rabbit1:5672,rabbit2:5672,rabbit3   three nodes of one cluster
 *   nats://n1:4222,nats://n2:4222                   a full URL per node is fine too
 *   rabbit1,rabbit2:5673/vhost                      bare, with the broker type given separately
 *
 * An entry without a scheme takes the first entry's (or, for the first, the broker type's plain one); the
 * user, password and vhost are those of the entries that name them, and entries that name different ones
 * are refused (a cluster has one set of credentials). A comma inside a password must be written `%2C`.
 */
import { BrokerConfigError } from './errors.js';
import type { BrokerType, ConnectOptions } from './types.js';

/** One node: where a client opens its socket. */
export interface BrokerEndpoint {
  readonly host: string;
  readonly port: number;
}

/** A broker address taken apart. `password` is a secret: never log it or put it in an error. */
export interface BrokerAddress {
  readonly type: BrokerType;
  /** Scheme to connect with, e.g. `amqps`, `tls`, `pulsar+ssl`. */
  readonly scheme: string;
  readonly tls: boolean;
  /** The nodes, in the order given (at least one, no repeats); clients try them in this order. */
  readonly endpoints: readonly BrokerEndpoint[];
  /** Undefined when the address names no user (a NATS `nats://<token>@host` names a token, not a user). */
  readonly username: string | undefined;
  /** The auth token when given, else the address's password, else undefined. */
  readonly password: string | undefined;
  /** RabbitMQ virtual host ('/' by default); empty for other brokers. */
  readonly vhost: string;
  /** `scheme://host:port[,host:port…]` — safe for logs. */
  readonly display: string;
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

const HAS_SCHEME = /^[a-z][a-z0-9+.-]*:\/\//i;

/**
 * Parse an address or address list (see the file comment). `type` is required when the first entry has
 * no scheme, and must agree with the scheme when it has one. Throws `BrokerConfigError` with a hint; the
 * message never repeats a password.
 */
export function parseBrokerAddress(text: string, type?: BrokerType): BrokerAddress {
  if (type !== undefined && !isBrokerType(type)) {
    throw new BrokerConfigError(`unknown broker type '${String(type)}'`, `use one of: ${BROKER_TYPES.join(', ')}`);
  }
  const raw = text.trim();
  if (!raw) {
    throw new BrokerConfigError(
      'the broker address is empty',
      'set EWMS_PILOT_QUEUE_INCOMING_BROKER_ADDRESS (or pass a URL such as amqp://host:5672)',
    );
  }
  const entries = raw.split(',').map((e) => e.trim());
  if (entries.some((e) => e === '')) {
    throw new BrokerConfigError(
      `the broker address list '${safeForMessage(raw)}' has an empty entry`,
      'separate the nodes with single commas, e.g. amqp://rabbit1:5672,rabbit2:5672',
    );
  }
  const first = entries[0]!;
  if (!HAS_SCHEME.test(first) && !type) {
    throw new BrokerConfigError(
      `the broker address '${safeForMessage(raw)}' has no scheme and no broker type was given`,
      `give a URL (amqp://, nats://, pulsar://) or set the broker type (${BROKER_TYPES.join(', ')})`,
    );
  }
  const defaultScheme = HAS_SCHEME.test(first) ? schemeOf(first) : PLAIN_SCHEME[type as BrokerType];
  const parsed = entries.map((entry) => parseEntry(entry, defaultScheme, raw));

  const head = parsed[0]!;
  const known = SCHEMES[head.scheme]!;
  if (type && type !== known.type) {
    throw new BrokerConfigError(
      `broker type '${type}' does not match the address scheme '${head.scheme}://' (${known.type})`,
      'make the broker type and the address agree, or leave the type out when giving a URL',
    );
  }
  const other = parsed.find((p) => p.scheme !== head.scheme);
  if (other) {
    throw new BrokerConfigError(
      `the broker address list mixes '${head.scheme}://' and '${other.scheme}://'`,
      'every node of one broker is reached the same way: give all entries the same scheme (or none after the first)',
    );
  }
  const username = agreed(parsed.map((p) => p.username), raw, 'user names');
  const password = agreed(parsed.map((p) => p.password), raw, 'passwords');
  const vhostNamed = known.type === 'rabbitmq' ? agreed(parsed.map((p) => p.vhost), raw, 'vhosts') : undefined;

  const endpoints: BrokerEndpoint[] = [];
  for (const p of parsed) {
    if (!endpoints.some((e) => e.host === p.host && e.port === p.port)) endpoints.push({ host: p.host, port: p.port });
  }
  return {
    type: known.type,
    scheme: head.scheme,
    tls: known.tls,
    endpoints,
    username,
    password,
    vhost: known.type === 'rabbitmq' ? (vhostNamed ?? '/') : '',
    display: displayOf(head.scheme, endpoints),
  };
}

/**
 * The address `connect()` uses: `options.address` parsed (or taken as it is when already a `BrokerAddress`),
 * with `options.authToken` in place of the password when given. NATS: a lone name in the address
 * (`nats://name@host`) is a token on its own, but beside an auth token it is the user that token is the
 * password of — the form `formatBrokerAddress` writes for a user and password (the pilot's
 * `EWMS_PILOT_QUEUE_*_BROKER_ADDRESS` beside its `_AUTH_TOKEN`).
 */
export function resolveAddress(options: ConnectOptions): BrokerAddress {
  let address: BrokerAddress;
  if (typeof options.address === 'string') {
    address = parseBrokerAddress(options.address, options.type);
  } else {
    address = options.address;
    if (options.type !== undefined && options.type !== address.type) {
      throw new BrokerConfigError(
        `broker type '${options.type}' does not match the address (${address.type} at ${address.display})`,
        'make the broker type and the address agree, or leave the type out',
      );
    }
  }
  if (!options.authToken) return address;
  if (address.type === 'nats' && address.username === undefined && address.password !== undefined) {
    return { ...address, username: address.password, password: options.authToken };
  }
  return { ...address, password: options.authToken };
}

/**
 * The address in the text form `EWMS_PILOT_QUEUE_*_BROKER_ADDRESS` takes (with the broker type beside it),
 * **without the password**: `[user@]host:port[/vhost][,host:port…]`, with the scheme spelled out only for
 * TLS. One node gives exactly the Python MQClient's form.
 */
export function formatBrokerAddress(address: BrokerAddress): string {
  const user = address.username ? `${encodeURIComponent(address.username)}@` : '';
  const vhost = address.type === 'rabbitmq' && address.vhost !== '/' ? `/${encodeURIComponent(address.vhost)}` : '';
  const [head, ...rest] = address.endpoints.map(hostPort);
  const bare = [`${user}${head}${vhost}`, ...rest].join(',');
  // The bare form implies the plain scheme; TLS needs the scheme spelled out.
  return address.tls ? `${address.scheme}://${bare}` : bare;
}

/** `scheme://host:port` of one node, for client libraries that take a URL per node (no credentials). */
export function endpointUrl(address: BrokerAddress, endpoint: BrokerEndpoint): string {
  return `${address.scheme}://${hostPort(endpoint)}`;
}

/** Do two connect options reach the same broker as the same user (one connection can serve both)? */
export function sameBroker(a: ConnectOptions, b: ConnectOptions): boolean {
  if (a === b) return true;
  const x = resolveAddress(a);
  const y = resolveAddress(b);
  return (
    x.type === y.type &&
    x.scheme === y.scheme &&
    x.username === y.username &&
    x.password === y.password &&
    x.vhost === y.vhost &&
    x.endpoints.length === y.endpoints.length &&
    x.endpoints.every((e, i) => e.host === y.endpoints[i]!.host && e.port === y.endpoints[i]!.port)
  );
}

interface Entry {
  scheme: string;
  host: string;
  port: number;
  username: string | undefined;
  password: string | undefined;
  /** Undefined when the entry has no path (it takes the vhost another entry names). */
  vhost: string | undefined;
}

function parseEntry(entry: string, defaultScheme: string, whole: string): Entry {
  const withScheme = HAS_SCHEME.test(entry) ? entry : `${defaultScheme}://${entry}`;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch {
    throw new BrokerConfigError(
      `the broker address '${safeForMessage(whole)}' is not a valid address` + (whole.includes(',') ? ` (entry '${safeForMessage(entry)}')` : ''),
      'use scheme://[user@]host[:port][/vhost], several nodes separated by commas, e.g. amqp://guest@rabbit1:5672,rabbit2:5672/',
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
  if (!url.hostname) {
    throw new BrokerConfigError(
      `the broker address '${safeForMessage(whole)}' has no host`,
      'use scheme://host[:port], e.g. nats://localhost:4222',
    );
  }
  let username = url.username ? decodeURIComponent(url.username) : undefined;
  let password = url.password ? decodeURIComponent(url.password) : undefined;
  // NATS reads `nats://<token>@host` as token auth: the lone name is a secret, not a user.
  if (known.type === 'nats' && username !== undefined && password === undefined) {
    password = username;
    username = undefined;
  }
  let vhost: string | undefined;
  if (known.type === 'rabbitmq') {
    // `amqp://h` names no vhost (amqp is not a special scheme to the URL parser: its path stays empty);
    // `amqp://h/` names the default one.
    if (url.pathname !== '') {
      const name = url.pathname.replace(/^\//, '');
      vhost = name ? decodeURIComponent(name) : '/';
    }
  }
  return { scheme, host: url.hostname, port: url.port ? Number(url.port) : known.port, username, password, vhost };
}

function schemeOf(entry: string): string {
  return entry.slice(0, entry.indexOf('://')).toLowerCase();
}

/** The one value the entries that name it agree on; entries that name none take it. */
function agreed(values: Array<string | undefined>, whole: string, what: string): string | undefined {
  const named = [...new Set(values.filter((v): v is string => v !== undefined))];
  if (named.length > 1) {
    throw new BrokerConfigError(
      `the broker address list '${safeForMessage(whole)}' names different ${what} for its nodes`,
      'a cluster has one set of credentials and one vhost: name them once, on the first entry',
    );
  }
  return named[0];
}

function hostPort(endpoint: BrokerEndpoint): string {
  return `${endpoint.host}:${endpoint.port}`;
}

function displayOf(scheme: string, endpoints: readonly BrokerEndpoint[]): string {
  return `${scheme}://${endpoints.map(hostPort).join(',')}`;
}

/** The address with any userinfo removed, for error messages about the address itself. */
function safeForMessage(raw: string): string {
  return raw
    .split(',')
    .map((entry) => entry.replace(/\/\/[^/@]*@/, '//***@').replace(/^(\s*)[^/:@]*(:[^/@]*)?@/, '$1***@'))
    .join(',');
}
