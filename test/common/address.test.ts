/**
 * Broker addresses: URLs and the Python MQClient's bare addresses, lists of cluster nodes, defaults, the
 * one formatter (what the coordinator writes for its pilots), and errors without secrets.
 */
import { describe, expect, test } from 'vitest';
import {
  BROKER_TYPES,
  BrokerConfigError,
  formatBrokerAddress,
  isBrokerType,
  parseBrokerAddress,
  resolveAddress,
  sameBroker,
} from '../../mq-adapters/index.js';

describe('resolveAddress: URLs', () => {
  test.each([
    ['amqp://host', 'rabbitmq', 'amqp', false, 5672],
    ['amqps://host', 'rabbitmq', 'amqps', true, 5671],
    ['nats://host', 'nats', 'nats', false, 4222],
    ['tls://host', 'nats', 'tls', true, 4222],
    ['pulsar://host', 'pulsar', 'pulsar', false, 6650],
    ['pulsar+ssl://host', 'pulsar', 'pulsar+ssl', true, 6651],
  ] as const)('%s → %s, default port', (address, type, scheme, tls, port) => {
    const a = resolveAddress({ address });
    expect(a).toMatchObject({ type, scheme, tls, endpoints: [{ host: 'host', port }], display: `${scheme}://host:${port}` });
  });

  test('user, password, port and vhost are taken apart (and percent-decoded)', () => {
    const a = resolveAddress({ address: 'amqp://us%40er:p%2Fw@rabbit.example:5679/my%2Fvhost' });
    expect(a).toMatchObject({ username: 'us@er', password: 'p/w', endpoints: [{ host: 'rabbit.example', port: 5679 }], vhost: 'my/vhost' });
    expect(a.display).toBe('amqp://rabbit.example:5679');
  });

  test("RabbitMQ's vhost is / by default; other brokers have none", () => {
    expect(resolveAddress({ address: 'amqp://h' }).vhost).toBe('/');
    expect(resolveAddress({ address: 'amqp://h/' }).vhost).toBe('/');
    expect(resolveAddress({ address: 'nats://h/whatever' }).vhost).toBe('');
  });

  test('the auth token overrides the password of the URL; no user stays undefined', () => {
    expect(resolveAddress({ address: 'amqp://u:old@h', authToken: 'tok' })).toMatchObject({ username: 'u', password: 'tok' });
    expect(resolveAddress({ address: 'nats://h', authToken: 'tok' })).toMatchObject({ username: undefined, password: 'tok' });
    expect(resolveAddress({ address: 'nats://h' }).password).toBeUndefined();
  });

  test('NATS: a lone name beside an auth token is the user (a user and password written for a pilot and read back)', () => {
    const written = formatBrokerAddress(parseBrokerAddress('nats://chaos:pw@127.0.0.1:4222'));
    expect(written).not.toContain('pw');
    expect(resolveAddress({ address: written, type: 'nats', authToken: 'pw' })).toMatchObject({ username: 'chaos', password: 'pw' });
    expect(resolveAddress({ address: parseBrokerAddress('nats://chaos@h'), authToken: 'pw' })).toMatchObject({ username: 'chaos', password: 'pw' });
    // Alone, the name stays a token.
    expect(resolveAddress({ address: written, type: 'nats' })).toMatchObject({ username: undefined, password: 'chaos' });
  });

  test('NATS: nats://<token>@host is a token (as nats.js reads it), never a user name', () => {
    expect(resolveAddress({ address: 'nats://s3cr3t-token@h' })).toMatchObject({ username: undefined, password: 's3cr3t-token' });
    expect(resolveAddress({ address: 'nats://user:pw@h' })).toMatchObject({ username: 'user', password: 'pw' });
    expect(resolveAddress({ address: 'amqp://guest@h' })).toMatchObject({ username: 'guest', password: undefined });
  });

  test('the scheme is case-insensitive and surrounding blanks are ignored', () => {
    expect(resolveAddress({ address: '  AMQP://Host:1234 ' })).toMatchObject({ type: 'rabbitmq', scheme: 'amqp', endpoints: [{ port: 1234 }] });
  });

  test('IPv6 hosts keep their brackets in the display form', () => {
    expect(resolveAddress({ address: 'nats://[::1]:4223' }).display).toBe('nats://[::1]:4223');
  });
});

describe('address lists: several nodes of one broker', () => {
  test('a scheme and credentials on the first entry carry over to the others; order is kept', () => {
    const a = parseBrokerAddress('amqp://u:pw@r1:5701,r2:5702,r3/vh');
    expect(a).toMatchObject({
      type: 'rabbitmq',
      scheme: 'amqp',
      username: 'u',
      password: 'pw',
      vhost: 'vh',
      endpoints: [
        { host: 'r1', port: 5701 },
        { host: 'r2', port: 5702 },
        { host: 'r3', port: 5672 },
      ],
      display: 'amqp://r1:5701,r2:5702,r3:5672',
    });
  });

  test('a full URL per node is the same address; blanks around entries are ignored', () => {
    const a = parseBrokerAddress(' nats://n1:4222 , nats://n2:4223,nats://n3 ');
    expect(a.endpoints).toEqual([
      { host: 'n1', port: 4222 },
      { host: 'n2', port: 4223 },
      { host: 'n3', port: 4222 },
    ]);
    expect(a.display).toBe('nats://n1:4222,n2:4223,n3:4222');
  });

  test('TLS carries over: amqps://h1,h2 is TLS to both', () => {
    const a = parseBrokerAddress('amqps://h1,h2');
    expect(a.tls).toBe(true);
    expect(a.endpoints.map((e) => e.port)).toEqual([5671, 5671]);
  });

  test('bare lists with a broker type (EWMS_PILOT_QUEUE_*_BROKER_ADDRESS)', () => {
    expect(parseBrokerAddress('guest@r1,r2:5673/science', 'rabbitmq')).toMatchObject({
      username: 'guest',
      vhost: 'science',
      endpoints: [
        { host: 'r1', port: 5672 },
        { host: 'r2', port: 5673 },
      ],
    });
    expect(parseBrokerAddress('n1,n2', 'nats').display).toBe('nats://n1:4222,n2:4222');
  });

  test('a NATS token in the first entry is the token for all nodes', () => {
    expect(parseBrokerAddress('nats://tok3n@n1,n2')).toMatchObject({ username: undefined, password: 'tok3n' });
  });

  test('a repeated node is listed once; IPv6 nodes keep their brackets', () => {
    expect(parseBrokerAddress('nats://h:1,h:1,[::1]:2').endpoints).toEqual([
      { host: 'h', port: 1 },
      { host: '[::1]', port: 2 },
    ]);
  });

  test.each([
    ['an empty entry', 'amqp://h1,,h2', /empty entry/],
    ['a trailing comma', 'amqp://h1,', /empty entry/],
    ['mixed schemes', 'amqp://h1,amqps://h2', /mixes 'amqp:\/\/' and 'amqps:\/\/'/],
    ['mixed brokers', 'amqp://h1,nats://h2', /mixes/],
    ['different users', 'amqp://a@h1,amqp://b@h2', /different user names/],
    ['different vhosts', 'amqp://h1/x,h2/y', /different vhosts/],
    ['different passwords', 'amqp://u:hunter22@h1,amqp://u:other-pw@h2', /different passwords/],
  ])('%s is refused with a hint', (_name, text, message) => {
    let caught: unknown;
    try {
      parseBrokerAddress(text);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(BrokerConfigError);
    expect((caught as BrokerConfigError).message).toMatch(message);
    expect((caught as BrokerConfigError).hint.length).toBeGreaterThan(10);
    expect(String(caught)).not.toContain('hunter22');
    expect(String(caught)).not.toContain('other-pw');
  });

  test('a comma in a password must be percent-encoded', () => {
    expect(parseBrokerAddress('amqp://u:a%2Cb@h1,h2')).toMatchObject({ password: 'a,b', endpoints: [{ host: 'h1' }, { host: 'h2' }] });
  });
});

describe('formatBrokerAddress: what the coordinator writes into a pilot\'s environment', () => {
  test.each([
    ['amqp://u:pw@h:5672', 'u@h:5672'],
    ['amqp://u:pw@h:5672/vh', 'u@h:5672/vh'],
    ['amqp://h', 'h:5672'],
    ['amqps://u@h/v%2Fh', 'amqps://u@h:5671/v%2Fh'],
    ['nats://tok@n1,n2:4223', 'n1:4222,n2:4223'],
    ['amqp://u:pw@r1:5701,r2:5702,r3:5703/vh', 'u@r1:5701/vh,r2:5702,r3:5703'],
    ['pulsar+ssl://p1,p2', 'pulsar+ssl://p1:6651,p2:6651'],
  ])('%s → %s (never the password)', (input, formatted) => {
    expect(formatBrokerAddress(parseBrokerAddress(input))).toBe(formatted);
  });

  test('parse(format(a)) with the type is a again, without the password', () => {
    for (const input of ['amqp://u:pw@r1:5701,r2:5702/vh', 'amqps://h1,h2', 'nats://n1:1,n2:2', 'pulsar://p', 'amqp://[::1]:5672']) {
      const a = parseBrokerAddress(input);
      expect(parseBrokerAddress(formatBrokerAddress(a), a.type)).toEqual({ ...a, password: undefined });
    }
  });
});

describe('sameBroker', () => {
  test('the same nodes, user and secret are one broker, whether given as text or parsed', () => {
    const parsed = parseBrokerAddress('amqp://u@h1:5672,h2:5672');
    expect(sameBroker({ address: 'amqp://u@h1,h2', authToken: 't' }, { address: parsed, authToken: 't' })).toBe(true);
    expect(sameBroker({ address: 'h1,h2', type: 'rabbitmq' }, { address: 'amqp://h1:5672,h2:5672' })).toBe(true);
  });

  test('other nodes, another order, another user or another secret are not', () => {
    expect(sameBroker({ address: 'amqp://h1,h2' }, { address: 'amqp://h2,h1' })).toBe(false);
    expect(sameBroker({ address: 'amqp://h1' }, { address: 'amqp://h1,h2' })).toBe(false);
    expect(sameBroker({ address: 'amqp://a@h1' }, { address: 'amqp://b@h1' })).toBe(false);
    expect(sameBroker({ address: 'amqp://h1', authToken: 'x' }, { address: 'amqp://h1', authToken: 'y' })).toBe(false);
  });
});

describe('resolveAddress: a parsed address is used as it is', () => {
  test('the auth token still overrides its password', () => {
    const parsed = parseBrokerAddress('amqp://u:old@h');
    expect(resolveAddress({ address: parsed, authToken: 'new' }).password).toBe('new');
    expect(resolveAddress({ address: parsed })).toBe(parsed);
  });

  test('a type that disagrees with it is refused', () => {
    expect(() => resolveAddress({ address: parseBrokerAddress('nats://h'), type: 'rabbitmq' })).toThrow(BrokerConfigError);
  });
});

describe('resolveAddress: bare addresses with a broker type (EWMS_PILOT_QUEUE_*_BROKER_ADDRESS)', () => {
  test.each([
    ['rabbitmq', 'localhost', 'amqp://localhost:5672'],
    ['rabbitmq', 'guest@localhost:5673/vh', 'amqp://localhost:5673'],
    ['nats', 'nats.example', 'nats://nats.example:4222'],
    ['pulsar', 'pulsar.example:7000', 'pulsar://pulsar.example:7000'],
  ] as const)('%s + %s → %s', (type, address, display) => {
    expect(resolveAddress({ address, type }).display).toBe(display);
  });

  test('a URL and a matching type are fine together', () => {
    expect(resolveAddress({ address: 'amqps://h', type: 'rabbitmq' }).tls).toBe(true);
  });
});

describe('resolveAddress: errors', () => {
  const cases: Array<[string, Parameters<typeof resolveAddress>[0], RegExp]> = [
    ['empty', { address: '   ' }, /empty/],
    ['no scheme and no type', { address: 'host:5672' }, /no scheme and no broker type/],
    ['unknown type', { address: 'h', type: 'kafka' as never }, /unknown broker type 'kafka'/],
    ['unsupported scheme', { address: 'mqtt://h' }, /unsupported broker scheme 'mqtt:\/\/'/],
    ['type and scheme disagree', { address: 'nats://h', type: 'rabbitmq' }, /does not match the address scheme/],
    ['not a URL', { address: 'amqp://[bad' }, /not a valid address/],
  ];
  test.each(cases)('%s → BrokerConfigError with a hint', (_name, options, message) => {
    let caught: unknown;
    try {
      resolveAddress(options);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(BrokerConfigError);
    expect((caught as BrokerConfigError).message).toMatch(message);
    expect((caught as BrokerConfigError).hint.length).toBeGreaterThan(10);
  });

  test('an error about the address never repeats the password in it', () => {
    for (const address of ['user:hunter22@host:5672', 'amqp://user:hunter22@[bad']) {
      let caught: unknown;
      try {
        resolveAddress({ address });
      } catch (err) {
        caught = err;
      }
      expect(caught).toBeInstanceOf(BrokerConfigError);
      expect(String(caught)).not.toContain('hunter22');
    }
  });
});

test('broker types', () => {
  expect(BROKER_TYPES).toEqual(['rabbitmq', 'nats', 'pulsar']);
  expect(isBrokerType('nats')).toBe(true);
  expect(isBrokerType('kafka')).toBe(false);
});

describe('the ewms CLI takes an address list in --broker', () => {
  test('the list is passed on as it is; the token comes from the environment', async () => {
    const { brokerFromArgs } = await import('../../coordinator/cli.js');
    const options = brokerFromArgs({ broker: 'amqp://guest@r1:5701,r2:5702' } as never, { EWMS_BROKER_TOKEN: 'tok' });
    expect(parseBrokerAddress(options.address as string).endpoints).toHaveLength(2);
    expect(resolveAddress(options).password).toBe('tok');
  });

  test('a password on any node of the list is refused (it would show in ps), and never echoed', async () => {
    const { brokerFromArgs } = await import('../../coordinator/cli.js');
    for (const broker of ['amqp://r1:5701,amqp://guest:s3cr3tpw@r2:5702', 'amqp://guest:s3cr3tpw@r1,r2']) {
      let caught: unknown;
      try {
        brokerFromArgs({ broker } as never, {});
      } catch (err) {
        caught = err;
      }
      expect(String(caught)).toMatch(/must not contain a password/);
      expect(String(caught)).not.toContain('s3cr3tpw');
    }
  });
});
