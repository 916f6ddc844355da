/** A complete, valid heartbeat for unit tests, with fields overridden as needed. */
import { DurationHistogram, type Heartbeat } from '../../common/heartbeat.js';

export function heartbeatFixture(overrides: Partial<Heartbeat> = {}): Heartbeat {
  const h = new DurationHistogram();
  h.observe(0.3);
  return {
    kind: 'ewms-pilot-heartbeat',
    version: 1,
    pilotId: 'node1-42-abcdef',
    seq: 1,
    sentAt: 0,
    startedAt: 0,
    intervalSeconds: 2,
    host: 'node1',
    pilotVersion: '0.1.0',
    task: 'task-0',
    queue: 'wf-in',
    state: 'tasking',
    counts: { succeeded: 10, failed: 2, deadLettered: 1 },
    inFlight: { count: 1, events: [{ eventId: 'e', attempt: 1, startedAt: 0 }] },
    ratePerSecond: 1,
    durations: h.counts(),
    deadLetters: [{ reason: 'task exited with code 3', count: 1, errorType: 'TaskExitError', sampleStderrTail: 'Traceback: boom' }],
    ...overrides,
  };
}
