/**
 * The RabbitMQ management API URL, settable everywhere a user configures a broker: the pilot's
 * `EWMS_PILOT_QUEUE_*_BROKER_MANAGEMENT_URL` (the real CLI against the real RabbitMQ, the API a recording
 * stand-in), `none` to never contact it, the coordinator's `buildPilotEnv` and the `ewms` CLI flag. The
 * default (no URL given) goes to the broker's own host, over TLS when the AMQP connection is.
 */
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, test } from 'vitest';
import { brokerFromArgs } from '../../coordinator/cli.js';
import { buildPilotEnv, CoordinatorConfigError, type WorkflowTarget } from '../../coordinator/index.js';
import { resolveAddress } from '../../mq-adapters/address.js';
import { managementBaseUrl } from '../../mq-adapters/rabbitmq/policy.js';
import { pilotEnv, publishEvents, startPilot, TestQueues } from './run-pilot.js';

const testQueues = new TestQueues();
const servers: Array<{ close(cb: () => void): void }> = [];
afterEach(async () => {
  await testQueues.cleanup();
  while (servers.length > 0) await new Promise<void>((r) => servers.pop()!.close(() => r()));
});

/** A management API that records what it is asked and says "no such policy yet" / "stored". */
async function recordingApi(): Promise<{ url: string; requests: Array<{ method: string; url: string; auth: string | undefined }> }> {
  const requests: Array<{ method: string; url: string; auth: string | undefined }> = [];
  const server = createServer((req: IncomingMessage, res) => {
    requests.push({ method: req.method ?? '', url: req.url ?? '', auth: req.headers.authorization });
    req.resume();
    req.on('end', () => {
      res.writeHead(req.method === 'GET' ? 404 : 201, { 'content-type': 'application/json' });
      res.end(req.method === 'GET' ? '{"error":"Object Not Found","reason":"Not Found"}' : '');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  servers.push(server);
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, requests };
}

describe('a pilot and the management API', () => {
  test('the URL given is where the pilot installs its dead-letter policy, with the broker user', async () => {
    const api = await recordingApi();
    const { broker, queues } = await testQueues.create('rabbitmq');
    await publishEvents(broker, queues.incoming, ['a']);
    const pilot = startPilot(pilotEnv('rabbitmq', queues, { EWMS_PILOT_TASK_ARGS: 'cp {{INFILE}} {{OUTFILE}}', EWMS_PILOT_QUEUE_INCOMING_BROKER_MANAGEMENT_URL: api.url }));
    expect((await pilot.exited).code, pilot.stderr().slice(-2000)).toBe(0);
    const put = api.requests.find((r) => r.method === 'PUT');
    expect(put?.url).toBe(`/api/policies/%2F/${encodeURIComponent(`ewms-${queues.incoming}`)}`);
    expect(put?.auth).toBe(`Basic ${Buffer.from('guest:guest').toString('base64')}`);
    expect(pilot.stderr()).not.toMatch(/could not install the dead-letter policy/);
  });

  test("'none': no request, no warning; the pilot still works", async () => {
    const { broker, queues } = await testQueues.create('rabbitmq');
    await publishEvents(broker, queues.incoming, ['a']);
    const pilot = startPilot(
      pilotEnv('rabbitmq', queues, {
        EWMS_PILOT_TASK_ARGS: 'cp {{INFILE}} {{OUTFILE}}',
        EWMS_PILOT_QUEUE_INCOMING_BROKER_MANAGEMENT_URL: 'none',
        EWMS_PILOT_LOG_LEVEL: 'debug',
      }),
    );
    expect((await pilot.exited).code, pilot.stderr().slice(-2000)).toBe(0);
    expect(pilot.stderr()).not.toMatch(/dead-letter policy|managementApi/);
  });

  test('an unreachable API: one warning whose hint names the settings a pilot user can set', async () => {
    const { broker, queues } = await testQueues.create('rabbitmq');
    await publishEvents(broker, queues.incoming, ['a']);
    const pilot = startPilot(pilotEnv('rabbitmq', queues, { EWMS_PILOT_TASK_ARGS: 'cp {{INFILE}} {{OUTFILE}}', EWMS_PILOT_QUEUE_INCOMING_BROKER_MANAGEMENT_URL: 'http://127.0.0.1:9' }));
    expect((await pilot.exited).code, pilot.stderr().slice(-2000)).toBe(0);
    const warnings = pilot.stderr().split('\n').filter((l) => l.includes('could not install the dead-letter policy'));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain('EWMS_PILOT_QUEUE_INCOMING_BROKER_MANAGEMENT_URL');
    expect(warnings[0]).toContain('--broker-management-url');
  });
});

describe('the default, and the coordinator side', () => {
  test('unset: the broker host on the plugin port, https when the AMQP connection is TLS; none: nothing', () => {
    expect(managementBaseUrl(resolveAddress({ address: 'amqp://u@mq.example:5672' }), undefined)).toBe('http://mq.example:15672');
    expect(managementBaseUrl(resolveAddress({ address: 'amqps://u@mq.example:5671' }), undefined)).toBe('https://mq.example:15671');
    expect(managementBaseUrl(resolveAddress({ address: 'amqps://u@mq.example:5671' }), false)).toBeUndefined();
  });

  test('--broker-management-url (or EWMS_BROKER_MANAGEMENT_URL) reaches every pilot through buildPilotEnv', () => {
    const broker = brokerFromArgs({ broker: 'amqps://pilot@mq.example:5671', 'broker-management-url': 'https://mq.example:15671/' }, {});
    expect(broker.managementUrl).toBe('https://mq.example:15671');
    const target: WorkflowTarget = {
      id: 'wf',
      queues: { incoming: 'in', outgoing: 'out', deadLetter: 'in.dlq' },
      broker,
      maxDeliveries: 3,
      wireFormat: 'mqclient',
      depth: async () => 0,
    };
    const env = buildPilotEnv(target, { backend: 'local', count: 1, task: { args: 'true' } }).env;
    expect(env.EWMS_PILOT_QUEUE_INCOMING_BROKER_MANAGEMENT_URL).toBe('https://mq.example:15671');
    expect(env.EWMS_PILOT_QUEUE_OUTGOING_BROKER_MANAGEMENT_URL).toBe('https://mq.example:15671');
    const off = brokerFromArgs({ broker: 'amqp://pilot@mq.example' }, { EWMS_BROKER_MANAGEMENT_URL: 'none' });
    expect(buildPilotEnv({ ...target, broker: off }, { backend: 'local', count: 1, task: { args: 'true' } }).env.EWMS_PILOT_QUEUE_INCOMING_BROKER_MANAGEMENT_URL).toBe('none');
    expect(() => brokerFromArgs({ broker: 'amqp://mq', 'broker-management-url': 'https://u:p@mq:15671' }, {})).toThrow(CoordinatorConfigError);
  });
});
