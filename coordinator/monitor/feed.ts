/**
 * What feeds the monitor's state: the heartbeats on the monitoring queue (read and acked: they are disposable,
 * the state keeps what matters), the depth of every known queue, and a throughput tick.
 */
import { decodeHeartbeat, HeartbeatFormatError, MONITOR_QUEUE_BOUND } from '../../common/heartbeat.js';
import { describeError } from '../../common/redact.js';
import type { AdapterLogger, Broker, Subscription } from '../../mq-adapters/types.js';
import type { MonitorState } from './state.js';

/** The monitoring queue of a workflow: beside its others, as the coordinator names them. */
export function monitorQueueName(workflowId: string): string {
  return `ewms-${workflowId}-monitor`;
}

/** How the monitoring queue is declared, by the coordinator, the monitor and every pilot alike. */
export function monitorQueueSpec(name: string) {
  return { name, deadLetter: false, bound: { ...MONITOR_QUEUE_BOUND } } as const;
}

export interface FeedOptions {
  broker: Broker;
  state: MonitorState;
  /** The monitoring queue. */
  queue: string;
  /** Queues whose depth to show besides the tasks' own (results, dead letters). */
  extraQueues: readonly string[];
  /** How often depths are read and a throughput point is taken (default 2 s). */
  pollMs?: number;
  logger?: AdapterLogger;
}

/** A running feed; `stop()` ends it (idempotent). */
export interface Feed {
  /** Resolves when the heartbeat subscription ended (stopped, or the queue was deleted). */
  readonly ended: Promise<void>;
  stop(): Promise<void>;
}

/** Declare the monitoring queue, start reading heartbeats and polling depths. */
export async function startFeed(options: FeedOptions): Promise<Feed> {
  const { broker, state, logger } = options;
  await broker.declareQueue(monitorQueueSpec(options.queue));
  const subscription: Subscription = await broker.consume(options.queue, { prefetch: 200, deadLetter: false });
  let stopped = false;

  const ended = (async () => {
    try {
      for await (const delivery of subscription) {
        try {
          state.ingest(decodeHeartbeat(delivery.body));
        } catch (err) {
          const why = err instanceof HeartbeatFormatError ? err.message : describeError(err);
          state.reject(why);
          logger?.warn({ queue: options.queue, eventId: delivery.eventId, why }, 'a message on the monitoring queue is not a heartbeat; dropped');
        }
        await delivery.ack().catch(() => undefined);
      }
    } catch (err) {
      if (!stopped) logger?.warn({ queue: options.queue, err: describeError(err) }, 'reading heartbeats stopped; the page shows the last state');
    }
  })();

  let polling = false;
  const poll = async () => {
    if (polling) return;
    polling = true;
    try {
      for (const queue of state.queuesToWatch(options.extraQueues)) {
        // A deleted queue (the run ended and cleaned up) or a broker hiccup: unknown, not an error.
        state.setQueueDepth(queue, await broker.depth(queue).catch(() => undefined));
      }
      state.tick();
    } finally {
      polling = false;
    }
  };
  await poll();
  const timer = setInterval(() => void poll(), options.pollMs ?? 2_000);
  timer.unref();

  return {
    ended,
    async stop() {
      if (stopped) return;
      stopped = true;
      clearInterval(timer);
      await subscription.close().catch(() => undefined);
      await ended;
    },
  };
}
