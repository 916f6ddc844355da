/**
 * Trace context end to end on a real broker with the real pilot command line: a traceparent given at publish
 * reaches the result, through one exported span per task run (received by a stand-in OTLP/HTTP receiver), and
 * without the OpenTelemetry variables the pilot still carries the header and loads none of the SDK.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { parseTraceParent, TRACEPARENT_HEADER } from '../../common/trace-context.js';
import { publishEvents } from '../../coordinator/publish.js';
import { drainDeliveries, pilotEnv, startPilot, TestQueues, waitFor } from '../pilot-integration/run-pilot.js';
import { startOtlpReceiver, type OtlpReceiver } from './otlp-receiver.js';

const GIVEN = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';

describe('trace context through a pilot (rabbitmq)', () => {
  const queues = new TestQueues();
  let receiver: OtlpReceiver | undefined;
  afterEach(async () => {
    await queues.cleanup();
    await receiver?.close();
  });

  it('exports one span per task run, child of the published traceparent, and the result names that span', async () => {
    receiver = await startOtlpReceiver();
    const { broker, queues: q } = await queues.create('rabbitmq');
    const ids = await publishEvents(broker, q.incoming, ['a', 'b', 'FAIL'], { wireFormat: 'mqclient', traceparent: GIVEN });
    const pilot = startPilot(
      pilotEnv('rabbitmq', q, {
        EWMS_PILOT_TASK_ARGS: `sh -c 'grep -q FAIL "$0" && exit 3; cp "$0" "$1"' {{INFILE}} {{OUTFILE}}`,
        EWMS_PILOT_MAX_DELIVERIES: '1',
        EWMS_PILOT_STOP_LISTENING_ON_TASK_ERROR: 'false',
        EWMS_PILOT_TASK_NAME: 'copy',
        OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint,
        OTEL_BSP_SCHEDULE_DELAY: '200',
      }),
    );
    const results = await drainDeliveries(broker, q.outgoing, 2, 20_000);
    expect((await pilot.exited).code).toBe(0);
    await waitFor(() => receiver!.spans.length >= 3, 10_000, 'three spans');
    expect(receiver.refused).toEqual([]);

    const given = parseTraceParent(GIVEN)!;
    expect(receiver.spans).toHaveLength(3);
    for (const span of receiver.spans) {
      expect(span).toMatchObject({ traceId: given.traceId, parentSpanId: given.spanId, name: 'task copy', kind: 5 /* CONSUMER */ });
      expect(ids).toContain(span.attributes['ewms.event.id']);
      expect(span.resource['service.name']).toBe('ewms-pilot');
      expect(BigInt(span.endTimeUnixNano)).toBeGreaterThan(BigInt(span.startTimeUnixNano));
    }
    const failed = receiver.spans.find((s) => s.attributes['ewms.task.outcome'] === 'failure')!;
    expect(failed.status).toMatchObject({ code: 2, message: 'task exited with code 3' });
    expect(failed.attributes['process.exit.code']).toBe(3);

    expect(results).toHaveLength(2);
    for (const result of results) {
      const tp = parseTraceParent(result.headers[TRACEPARENT_HEADER])!;
      expect(tp.traceId).toBe(given.traceId);
      const span = receiver.spans.find((s) => s.spanId === tp.spanId);
      expect(span, 'the result names its task-run span').toBeDefined();
    }
  });

  it('without the variables: the traceparent still reaches the result unchanged', async () => {
    const { broker, queues: q } = await queues.create('rabbitmq');
    await publishEvents(broker, q.incoming, ['x'], { wireFormat: 'mqclient', traceparent: GIVEN });
    const pilot = startPilot(pilotEnv('rabbitmq', q, { EWMS_PILOT_TASK_ARGS: 'cp {{INFILE}} {{OUTFILE}}' }));
    const [result] = await drainDeliveries(broker, q.outgoing, 1, 20_000);
    expect((await pilot.exited).code).toBe(0);
    expect(result!.headers[TRACEPARENT_HEADER]).toBe(GIVEN);
    expect(pilot.stderr()).not.toContain('OpenTelemetry');
  });

  it('no pilot module but the lazily loaded one imports OpenTelemetry', () => {
    const dir = fileURLToPath(new URL('../../dist/pilot/', import.meta.url));
    const importers = readdirSync(dir, { recursive: true, encoding: 'utf8' })
      .filter((f) => f.endsWith('.js'))
      .filter((f) => /from ['"]@opentelemetry\//.test(readFileSync(join(dir, f), 'utf8')));
    expect(importers).toEqual(['tracing-otel.js']);
    expect(readFileSync(join(dir, 'tracing.js'), 'utf8')).toMatch(/await import\(['"]\.\/tracing-otel\.js['"]\)/);
  });
});
