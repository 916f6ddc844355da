/**
 * Span export through the official OpenTelemetry SDK, loaded only when a pilot is asked to export
 * (see `tracing.ts`). The exporter is OTLP over HTTP; it reads the standard `OTEL_EXPORTER_OTLP_*` variables
 * (endpoint, headers, timeout) itself, and `OTEL_SERVICE_NAME` names the service (default `ewms-pilot`).
 */
import { hostname } from 'node:os';
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Context } from '@opentelemetry/api';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BasicTracerProvider, BatchSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { formatTraceParent, parseTraceParent, TRACEPARENT_HEADER } from '../common/trace-context.js';
import type { Delivery } from '../mq-adapters/types.js';
import type { TaskOutcome } from './event-loop.js';
import type { TaskRunAttributes, TaskSpan, TaskTracer } from './tracing.js';

/** Longest the pilot's exit waits for buffered spans to be exported. */
const SHUTDOWN_BUDGET_MS = 5_000;

export function startOtelTracer(serviceVersion: string): TaskTracer {
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes({
      'service.name': process.env.OTEL_SERVICE_NAME || 'ewms-pilot',
      'service.version': serviceVersion,
      'host.name': hostname(),
      'process.pid': process.pid,
    }),
    spanProcessors: [new BatchSpanProcessor(new OTLPTraceExporter())],
  });
  const tracer = provider.getTracer('ewms-pilot', serviceVersion);

  return {
    startTaskRun(delivery: Delivery, attributes: TaskRunAttributes): TaskSpan {
      const span = tracer.startSpan(
        `task ${attributes.taskName}`,
        {
          kind: SpanKind.CONSUMER,
          attributes: {
            'ewms.task.name': attributes.taskName,
            'ewms.event.id': delivery.eventId,
            'ewms.event.attempt': delivery.deliveryCount,
            ...(attributes.pilotId ? { 'ewms.pilot.id': attributes.pilotId } : {}),
          },
        },
        parentContext(delivery.headers[TRACEPARENT_HEADER]),
      );
      const context = span.spanContext();
      return {
        traceparent: formatTraceParent({ traceId: context.traceId, spanId: context.spanId, flags: context.traceFlags }),
        end(outcome: TaskOutcome) {
          span.setAttribute('ewms.task.outcome', outcome.kind);
          if (outcome.kind === 'failure') {
            span.setStatus({ code: SpanStatusCode.ERROR, message: outcome.reason.reason });
            const type = outcome.reason.details?.['error-type'];
            if (type) span.setAttribute('error.type', type);
            const exit = outcome.reason.details?.['exit-code'];
            if (exit) span.setAttribute('process.exit.code', Number(exit));
          }
          span.end();
        },
      };
    },
    async shutdown() {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([provider.shutdown().catch(() => undefined), new Promise<void>((resolve) => (timer = setTimeout(resolve, SHUTDOWN_BUDGET_MS)))]);
      clearTimeout(timer);
    },
  };
}

/** The event's `traceparent` as the span's remote parent; a new trace when it has none. */
function parentContext(header: string | undefined): Context {
  const parent = parseTraceParent(header);
  if (!parent) return ROOT_CONTEXT;
  return trace.setSpanContext(ROOT_CONTEXT, { traceId: parent.traceId, spanId: parent.spanId, traceFlags: parent.flags, isRemote: true });
}
