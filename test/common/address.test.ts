/** `resolveAddress`: URLs and the Python MQClient's bare addresses, defaults, and errors without secrets. */
import { describe, expect, test } from 'vitest';
import { BROKER_TYPES, BrokerConfigError, isBrokerType, resolveAddress } from '../../mq-adapters/index.js';

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
    expect(a).toMatchObject({ type, scheme, tls, host: 'host', port, display: `${scheme}://host:${port}` });
  });

  test('user, password, port and vhost are taken apart (and percent-decoded)', () => {
    const a = resolveAddress({ address: 'amqp://us%40er:p%2Fw@rabbit.example:5679/my%2Fvhost' });
    expect(a).toMatchObject({ username: 'us@er', password: 'p/w', host: 'rabbit.example', port: 5679, vhost: 'my/vhost' });
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

  test('NATS: nats://<token>@host is a token (as nats.js reads it), never a user name', () => {
    expect(resolveAddress({ address: 'nats://s3cr3t-token@h' })).toMatchObject({ username: undefined, password: 's3cr3t-token' });
    expect(resolveAddress({ address: 'nats://user:pw@h' })).toMatchObject({ username: 'user', password: 'pw' });
    expect(resolveAddress({ address: 'amqp://guest@h' })).toMatchObject({ username: 'guest', password: undefined });
  });

  test('the scheme is case-insensitive and surrounding blanks are ignored', () => {
    expect(resolveAddress({ address: '  AMQP://Host:1234 ' })).toMatchObject({ type: 'rabbitmq', scheme: 'amqp', port: 1234 });
  });

  test('IPv6 hosts keep their brackets in the display form', () => {
    expect(resolveAddress({ address: 'nats://[::1]:4223' }).display).toBe('nats://[::1]:4223');
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
