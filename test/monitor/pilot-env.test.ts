/** The coordinator tells local and condor pilots where to send heartbeats; the WMS sets its own pilots' environment. */
import { describe, expect, it } from 'vitest';
import { buildPilotEnv, type WorkflowTarget } from '../../coordinator/index.js';
import { monitorQueueName } from '../../coordinator/monitor/index.js';
import { loadConfig } from '../../pilot/config.js';

const target: WorkflowTarget = {
  id: 'm1',
  queues: { incoming: 'ewms-m1-in', outgoing: 'ewms-m1-out', deadLetter: 'ewms-m1-in.dlq' },
  broker: { address: 'amqp://guest@127.0.0.1:5672', authToken: 'guest' },
  maxDeliveries: 3,
  wireFormat: 'mqclient',
  depth: async () => 0,
};

describe('pilot environment: the monitoring queue', () => {
  it.each(['local', 'condor'] as const)('%s pilots get EWMS_PILOT_QUEUE_MONITOR, which the pilot reads', (backend) => {
    const { env } = buildPilotEnv(target, { backend, count: 1, task: { args: 'true' } });
    expect(env.EWMS_PILOT_QUEUE_MONITOR).toBe(monitorQueueName('m1'));
    expect(monitorQueueName('m1')).toBe('ewms-m1-monitor');
    const config = loadConfig({ ...env, EWMS_PILOT_QUEUE_INCOMING_AUTH_TOKEN: 'guest' }, {}, '/tmp');
    expect(config.settings.monitor).toMatchObject({ queue: 'ewms-m1-monitor', intervalSeconds: undefined, taskName: 'task-0' });
    // The broker password is among the secrets a heartbeat is redacted with.
    expect(config.settings.monitor!.secrets).toContain('guest');
  });

  it('EWMS pilots get none from us', () => {
    const { env } = buildPilotEnv(target, { backend: 'ewms', count: 1, task: { args: 'true' } });
    expect(env.EWMS_PILOT_QUEUE_MONITOR).toBeUndefined();
  });
});
