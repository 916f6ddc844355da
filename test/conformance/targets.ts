/**
 * The brokers the conformance suite runs against, and what each can do here. Every test file asks for its
 * cases to run once per target through `forEachTarget`; a target that is not available shows up in the
 * output as a skipped suite whose name says why, never as silence.
 */
import { connect as natsConnect } from '@nats-io/transport-node';
import { describe, test } from 'vitest';
import type { BrokerType, ConnectOptions } from '../../mq-adapters/types.js';
import { sharedTargets, startPrivateNats, startPrivateRabbitMQ, type PrivateBroker } from '../helpers/brokers.js';

/** How a test presents credentials the broker must refuse. */
export type CredentialForm = 'password in the URL' | 'auth token option' | 'token in the URL';

/** A broker that insists on credentials, and the connect options that present a wrong secret to it. */
export interface CredentialCheck {
  /** Connect options carrying the wrong secret. */
  options: ConnectOptions;
  /** The same with the right secret: proves the broker refuses the secret, not everyone. */
  rightOptions: ConnectOptions;
  /** The user the error message should name, when the form has one. */
  user: string | undefined;
  dispose(): Promise<void>;
}

/** One broker the suite runs against. */
export interface ConformanceTarget {
  type: BrokerType;
  /** The shared broker's URL. */
  url: string;
  /** A private broker of this type (for stop/start/kill), or why none can run here. */
  startPrivate: (() => Promise<PrivateBroker>) | { unavailable: string };
  /** The ways this broker's URL or options can carry a secret. */
  credentialForms: CredentialForm[];
  /** A broker that demands credentials, reached with `secret` as the (wrong) password or token. */
  wrongCredentials: ((form: CredentialForm, secret: string) => Promise<CredentialCheck>) | { unavailable: string };
  /** The largest body the shared broker accepts, or why we cannot tell here. */
  maxMessageBytes: (() => Promise<number>) | { unavailable: string };
  /** A broker of this type that accepts a message of `bytes`: the shared one, or a private one configured for it. */
  brokerAccepting: ((bytes: number) => Promise<ScopedBroker>) | { unavailable: string };
  /** A broker of this type whose message limit is below `bytes`, or why none is here. */
  brokerRefusing: ((bytes: number) => Promise<ScopedBroker>) | { unavailable: string };
}

/** A broker URL for one test, and how to let go of it (stops a private server; nothing for the shared one). */
export interface ScopedBroker {
  url: string;
  /** The broker's message limit, as the test expects the adapter to report it. */
  limit: number;
  dispose(): Promise<void>;
}

/** The connect options for a private broker (its management API, not the shared node's). */
export function privateConnectOptions(server: PrivateBroker, extra: Partial<ConnectOptions> = {}): ConnectOptions {
  return { address: server.url, ...(server.managementUrl ? { managementUrl: server.managementUrl } : {}), ...extra };
}

function describeTarget(type: BrokerType, url: string): ConformanceTarget {
  switch (type) {
    case 'rabbitmq':
      return {
        type,
        url,
        startPrivate: () => startPrivateRabbitMQ(),
        credentialForms: ['password in the URL', 'auth token option'],
        // The shared node refuses a wrong password for its user; nothing to start.
        wrongCredentials: async (form, secret) => {
          const u = new URL(url);
          const user = decodeURIComponent(u.username || 'guest');
          const right = decodeURIComponent(u.password || 'guest');
          const withPassword = (pw: string) => `${u.protocol}//${encodeURIComponent(user)}:${encodeURIComponent(pw)}@${u.host}${u.pathname}`;
          const withUserOnly = `${u.protocol}//${encodeURIComponent(user)}@${u.host}${u.pathname}`;
          return form === 'password in the URL'
            ? { options: { address: withPassword(secret) }, rightOptions: { address: withPassword(right) }, user, dispose: async () => undefined }
            : { options: { address: withUserOnly, authToken: secret }, rightOptions: { address: withUserOnly, authToken: right }, user, dispose: async () => undefined };
        },
        // RabbitMQ 3.10's default max_message_size (128 MiB); the shared node keeps the default.
        maxMessageBytes: async () => RABBITMQ_DEFAULT_MAX_MESSAGE_BYTES,
        brokerAccepting: async (bytes) => {
          if (bytes > RABBITMQ_DEFAULT_MAX_MESSAGE_BYTES) throw new Error(`the shared RabbitMQ accepts at most ${RABBITMQ_DEFAULT_MAX_MESSAGE_BYTES} bytes`);
          return { url, limit: RABBITMQ_DEFAULT_MAX_MESSAGE_BYTES, dispose: async () => undefined };
        },
        brokerRefusing: {
          unavailable:
            'the shared RabbitMQ accepts up to 128 MiB; a node configured lower (4 MiB) is tested in test/adapters/rabbitmq.test.ts',
        },
      };
    case 'nats':
      return {
        type,
        url,
        startPrivate: () => startPrivateNats(),
        credentialForms: ['password in the URL', 'auth token option', 'token in the URL'],
        // The shared server has no auth: start a private one that requires it (~25 ms).
        wrongCredentials: async (form, secret) => {
          if (form === 'password in the URL') {
            const password = 'the-right-password';
            const server = await startPrivateNats({ user: { name: 'ewms', password } });
            const at = (pw: string) => `nats://ewms:${encodeURIComponent(pw)}@127.0.0.1:${server.port}`;
            return { options: { address: at(secret) }, rightOptions: { address: at(password) }, user: 'ewms', dispose: () => server.dispose() };
          }
          const token = 'the-right-token';
          const server = await startPrivateNats({ token });
          if (form === 'token in the URL') {
            const at = (t: string) => `nats://${encodeURIComponent(t)}@127.0.0.1:${server.port}`;
            return { options: { address: at(secret) }, rightOptions: { address: at(token) }, user: undefined, dispose: () => server.dispose() };
          }
          return {
            options: { address: server.url, authToken: secret },
            rightOptions: { address: server.url, authToken: token },
            user: undefined,
            dispose: () => server.dispose(),
          };
        },
        // What the server says in its INFO (1 MiB unless its config raises max_payload).
        maxMessageBytes: () => natsMaxPayload(url),
        // Debian's nats-server keeps the 1 MiB default: a private server with max_payload raised (~25 ms).
        brokerAccepting: async (bytes) => {
          const limit = await natsMaxPayload(url);
          if (limit >= bytes + NATS_HEADER_ROOM) return { url, limit, dispose: async () => undefined };
          const raised = 2 ** Math.ceil(Math.log2(bytes + NATS_HEADER_ROOM));
          const server = await startPrivateNats({ maxPayloadBytes: raised });
          return { url: server.url, limit: raised, dispose: () => server.dispose() };
        },
        brokerRefusing: async (bytes) => {
          const limit = await natsMaxPayload(url);
          if (limit < bytes) return { url, limit, dispose: async () => undefined };
          const server = await startPrivateNats();
          return { url: server.url, limit: await natsMaxPayload(server.url), dispose: () => server.dispose() };
        },
      };
    case 'pulsar':
      return {
        type,
        url,
        startPrivate: { unavailable: 'no private Pulsar broker can run on this machine' },
        credentialForms: ['auth token option'],
        wrongCredentials: { unavailable: 'no Pulsar broker with token auth is configured here' },
        maxMessageBytes: { unavailable: "the Pulsar broker's maxMessageSize is not known here" },
        brokerAccepting: { unavailable: "the Pulsar broker's maxMessageSize is not known here" },
        brokerRefusing: { unavailable: "the Pulsar broker's maxMessageSize is not known here" },
      };
  }
}

/** RabbitMQ 3.10's default `max_message_size`. */
const RABBITMQ_DEFAULT_MAX_MESSAGE_BYTES = 128 * 1024 * 1024;
/** NATS counts headers against max_payload: leave them room above the body. */
const NATS_HEADER_ROOM = 64 * 1024;

/** The `max_payload` a NATS server announces in its INFO. */
async function natsMaxPayload(url: string): Promise<number> {
  const nc = await natsConnect({ servers: url, timeout: 5_000 });
  try {
    return nc.info?.max_payload ?? 1024 * 1024;
  } finally {
    await nc.close();
  }
}

/** The targets, available or not. */
export function conformanceTargets(): Array<ConformanceTarget | { type: BrokerType; unavailable: string }> {
  return sharedTargets().map((t) => (t.available ? describeTarget(t.type, t.url) : { type: t.type, unavailable: t.reason }));
}

/**
 * Declare `body`'s tests once per broker, inside `describe('<broker>: <title>')`. A broker without a URL
 * gets a skipped suite named `<broker>: no broker here (...)` so the reason shows in every run's output.
 */
export function forEachTarget(title: string, body: (target: ConformanceTarget) => void): void {
  for (const target of conformanceTargets()) {
    if ('unavailable' in target) {
      // The default reporter does not list skipped suites by name: say it out loud as well.
      console.warn(`[conformance] ${target.type}: '${title}' skipped — ${target.unavailable}`);
      describe.skip(`${target.type}: ${target.unavailable}`, () => {
        test(`${title} (skipped: ${target.unavailable})`, () => undefined);
      });
      continue;
    }
    describe(`${target.type}: ${title}`, () => body(target));
  }
}

/**
 * A test that needs a capability the target may lack here: runs when `need` is a function, else is
 * declared skipped with the reason in its name.
 */
export function testWith<T>(
  name: string,
  need: T | { unavailable: string },
  fn: (capability: T) => Promise<void>,
  timeoutMs?: number,
): void {
  if (typeof need === 'object' && need !== null && 'unavailable' in need) {
    test.skip(`${name} (skipped: ${need.unavailable})`, () => undefined);
    return;
  }
  test(name, () => fn(need as T), timeoutMs);
}
