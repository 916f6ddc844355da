/**
 * Trace context through the pilot. Every event's `traceparent` header travels to its output; when
 * `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, the pilot also exports one
 * span per task run through OpenTelemetry, as a child of the event's `traceparent`, and the output carries
 * that span as its parent.
 *
 * The OpenTelemetry packages are imported only then (`tracing-otel.ts`): a pilot without the variable loads
 * none of them and pays one header copy per event.
 */
import { TRACEPARENT_HEADER } from '../common/trace-context.js';
import type { Delivery } from '../mq-adapters/types.js';
import type { EventProcessor, TaskOutcome } from './event-loop.js';

/** One task run's span. */
export interface TaskSpan {
  /** The `traceparent` naming this span, for the output event. */
  readonly traceparent: string;
  end(outcome: TaskOutcome): void;
}

/** What a tracer needs to say about the run besides the event. */
export interface TaskRunAttributes {
  taskName: string;
  pilotId: string | undefined;
}

/** Makes task-run spans and exports them. */
export interface TaskTracer {
  startTaskRun(delivery: Delivery, attributes: TaskRunAttributes): TaskSpan;
  /** Export what is buffered; bounded in time. */
  shutdown(): Promise<void>;
}

/**
 * Is span export asked for? The OpenTelemetry variables, read as the SDK reads them: an endpoint set, the SDK
 * not disabled, and the traces exporter not `none`.
 */
export function tracingWanted(env: Readonly<Record<string, string | undefined>> = process.env): boolean {
  if (!env.OTEL_EXPORTER_OTLP_ENDPOINT && !env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) return false;
  if (env.OTEL_SDK_DISABLED?.trim().toLowerCase() === 'true') return false;
  return env.OTEL_TRACES_EXPORTER?.trim().toLowerCase() !== 'none';
}

/** The tracer when export is asked for (loading OpenTelemetry then, and only then); undefined otherwise. */
export async function startTracer(options: { serviceVersion: string; env?: Readonly<Record<string, string | undefined>> }): Promise<TaskTracer | undefined> {
  if (!tracingWanted(options.env)) return undefined;
  const { startOtelTracer } = await import('./tracing-otel.js');
  return startOtelTracer(options.serviceVersion);
}

/**
 * The processor with trace context: the output of a successful run carries the run's span as its
 * `traceparent` (with a tracer), or the input's `traceparent` unchanged (without one).
 */
export function withTraceContext(processor: EventProcessor, tracer: TaskTracer | undefined, attributes: () => TaskRunAttributes): EventProcessor {
  if (!tracer) {
    return {
      slotAware: processor.slotAware,
      process: async (delivery, signal, slots) => carry(await processor.process(delivery, signal, slots), delivery.headers[TRACEPARENT_HEADER]),
    };
  }
  return {
    slotAware: processor.slotAware,
    process: async (delivery, signal, slots) => {
      const span = tracer.startTaskRun(delivery, attributes());
      let outcome: TaskOutcome | undefined;
      try {
        outcome = await processor.process(delivery, signal, slots);
        return carry(outcome, span.traceparent);
      } finally {
        span.end(outcome ?? { kind: 'aborted', durationMs: undefined });
      }
    },
  };
}

/** The outcome, its outputs (if any) carrying `traceparent`. */
function carry(outcome: TaskOutcome, traceparent: string | undefined): TaskOutcome {
  if (traceparent === undefined || outcome.kind !== 'success' || outcome.outputs.length === 0) return outcome;
  return { ...outcome, outputs: outcome.outputs.map((output) => ({ ...output, headers: { ...output.headers, [TRACEPARENT_HEADER]: traceparent } })) };
}
