/** `redact` / `describeError`: credentials never leave through a log line or an error message. */
import { describe, expect, test } from 'vitest';
import { describeError, redact } from '../../common/redact.js';

describe('redact', () => {
  test.each([
    ['amqp://guest:s3cret@host:5672/vhost', 'amqp://guest:***@host:5672/vhost'],
    ['amqps://user:p%40ss@host', 'amqps://user:***@host'],
    ['nats://tok3n@127.0.0.1:4222', 'nats://***@127.0.0.1:4222'],
    ['pulsar+ssl://u:pw@broker:6651', 'pulsar+ssl://u:***@broker:6651'],
    ['failed: connect amqp://a:b@h1 and nats://c:d@h2 both', 'failed: connect amqp://a:***@h1 and nats://c:***@h2 both'],
    ['amqp://:token-only@host', 'amqp://***@host'],
    ['tls://tok3n@nats.example:4222', 'tls://***@nats.example:4222'],
    ['amqp://guest@host (a user name alone is not a secret)', 'amqp://guest@host (a user name alone is not a secret)'],
  ])('URL credentials: %s', (text, expected) => {
    expect(redact(text)).toBe(expected);
  });

  test('URLs without credentials and plain text are left alone', () => {
    for (const text of ['amqp://host:5672/', 'http://127.0.0.1:15672/api/policies', 'no url here: user@example.org']) {
      expect(redact(text)).toBe(text);
    }
  });

  test('every literal occurrence of a known secret becomes ***, wherever it appears', () => {
    const secret = 'eyJhbGciOi.jwt-part.sig';
    const text = `Bearer ${secret} refused; token=${secret}; "${secret}"`;
    expect(redact(text, [secret])).toBe('Bearer *** refused; token=***; "***"');
  });

  test('several secrets, undefined entries and secrets with regex characters', () => {
    expect(redact('a.b*c and (x|y) and zzz', ['a.b*c', undefined, '(x|y)'])).toBe('*** and *** and zzz');
  });

  test('secrets shorter than 3 characters are not scrubbed (they would shred the text, protecting nothing)', () => {
    expect(redact('a guest at the gate', ['', 'a', 'at'])).toBe('a guest at the gate');
  });
});

describe('describeError', () => {
  test('uses the message of an Error and redacts it', () => {
    expect(describeError(new Error('connect amqp://u:pw123@h failed with pw123'), ['pw123'])).toBe('connect amqp://u:***@h failed with ***');
  });

  test('stringifies anything else that was thrown', () => {
    expect(describeError('plain string with topsecret', ['topsecret'])).toBe('plain string with ***');
    expect(describeError(42)).toBe('42');
    expect(describeError(undefined)).toBe('undefined');
  });
});
