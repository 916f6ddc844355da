/**
 * Everything a pilot tells the outside world while it runs, behind one small object the lifecycle calls at
 * its turning points: heartbeats to the monitoring queue (when the coordinator named one) and task-run spans
 * (when OpenTelemetry export is configured). Without either, every call is a no-op and nothing is wrapped
 * except the trace-context copy onto outputs.
 */
import { describeError } from '../common/redact.js';
import { MONITOR_QUEUE_BOUND, type PilotState } from '../common/heartbeat.js';
import type { Broker, Subscription } from '../mq-adapters/types.js';
import type { EventProcessor } from './event-loop.js';
import { DEFAULT_INTERVAL_SECONDS, HeartbeatPublisher, underCondor, type HeartbeatSettings } from './heartbeat.js';
import { TaskProbe } from './heartbeat-probe.js';
import type { Logger } from './logger.js';
import { startTracer, withTraceContext, type TaskTracer } from './tracing.js';

/** The pilot's monitoring settings (from `EWMS_PILOT_QUEUE_MONITOR`, `_HEARTBEAT_INTERVAL`, `_TASK_NAME`). */
export interface MonitorSettings extends Omit<HeartbeatSettings, 'intervalSeconds'> {
  /** Unset: 30 s in an HTCondor job, 2 s elsewhere. */
  intervalSeconds: number | undefined;
  /** Values to keep out of heartbeats (broker tokens, task env values). */
  secrets: readonly string[];
}

export interface ReporterOptions {
  /** Absent: no monitoring queue was named (an older coordinator); no heartbeats. */
  monitor: MonitorSettings | undefined;
  /** The task's name, for spans even without heartbeats. */
  taskName: string;
  /** The broker the monitoring queue is on (the outgoing one). */
  broker: Broker;
  incomingQueue: string;
  version: string;
  logger: Logger;
  /** The pilot's outcome counts. */
  counts(): { succeeded: number; failed: number; deadLettered: number };
}

export class PilotReporter {
  private ended: { exitCode: number; stopReason: string } | undefined;

  private constructor(
    private readonly heartbeats: HeartbeatPublisher | undefined,
    private readonly probe: TaskProbe | undefined,
    private readonly tracer: TaskTracer | undefined,
    private readonly taskName: string,
  ) {}

  /** Declare the monitoring queue and send the first heartbeat (`starting`); start the tracer if asked for. */
  static async start(opts: ReporterOptions): Promise<PilotReporter> {
    const { monitor, logger } = opts;
    const tracer = await startTracer({ serviceVersion: opts.version }).catch((err: unknown) => {
      logger.warn({ err: describeError(err) }, 'OpenTelemetry export could not start; task runs are not traced');
      return undefined;
    });
    if (tracer) logger.info({}, 'exporting one span per task run through OpenTelemetry (OTLP/HTTP)');
    if (!monitor) return new PilotReporter(undefined, undefined, tracer, opts.taskName);
    try {
      await opts.broker.declareQueue({ name: monitor.queue, deadLetter: false, bound: { ...MONITOR_QUEUE_BOUND } });
    } catch (err) {
      // The events matter, the heartbeats do not: run without them rather than not at all.
      logger.warn({ queue: monitor.queue, err: describeError(err) }, 'the monitoring queue could not be declared; no heartbeats');
      return new PilotReporter(undefined, undefined, tracer, opts.taskName);
    }
    const probe = new TaskProbe(monitor.secrets);
    const intervalSeconds = monitor.intervalSeconds ?? (underCondor() ? DEFAULT_INTERVAL_SECONDS.condor : DEFAULT_INTERVAL_SECONDS.local);
    const heartbeats = new HeartbeatPublisher({
      settings: { ...monitor, intervalSeconds },
      publish: (message) => opts.broker.publish(monitor.queue, message),
      sources: { counts: opts.counts, probe },
      incomingQueue: opts.incomingQueue,
      pilotVersion: opts.version,
      logger,
    });
    heartbeats.start();
    logger.info({ queue: monitor.queue, intervalSeconds, pilotId: heartbeats.pilotId }, 'sending heartbeats');
    return new PilotReporter(heartbeats, probe, tracer, opts.taskName);
  }

  state(state: PilotState): void {
    this.heartbeats?.setState(state);
  }

  /** A failure that is not a task's (init, broker), for the heartbeat's last error. */
  noteError(message: string): void {
    this.probe?.noteError(message);
  }

  /** The subscription as the event loop should see it: dead letters counted, `stopping` when intake stops. */
  wrapSubscription(subscription: Subscription): Subscription {
    if (!this.probe) return subscription;
    const observed = this.probe.wrapSubscription(subscription);
    return {
      [Symbol.asyncIterator]: () => observed[Symbol.asyncIterator](),
      close: () => {
        this.state('stopping');
        return observed.close();
      },
    };
  }

  /** The processor as the event loop should see it: timed, traced, trace context on outputs. */
  wrapProcessor(processor: EventProcessor): EventProcessor {
    const timed = this.probe ? this.probe.wrapProcessor(processor) : processor;
    const pilotId = this.heartbeats?.pilotId;
    return withTraceContext(timed, this.tracer, () => ({ taskName: this.taskName, pilotId }));
  }

  /** The pilot's outcome is known: start sending the final heartbeat. */
  finish(exitCode: number, stopReason: string): void {
    this.ended ??= { exitCode, stopReason };
  }

  /** Before the broker closes: the final heartbeat (bounded wait) and the buffered spans (bounded wait). */
  async close(): Promise<void> {
    const { exitCode, stopReason } = this.ended ?? { exitCode: 1, stopReason: 'unexpected-error' };
    await Promise.all([this.heartbeats?.stop(exitCode, stopReason), this.tracer?.shutdown()]);
  }
}
