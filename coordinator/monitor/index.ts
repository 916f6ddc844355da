/**
 * `ewms monitor` in one call: a broker connection of its own, the heartbeat feed, the state, the metrics
 * registry and the HTTP server.
 *
 * ```ts
 * const monitor = await startMonitor({ workflowId: 'skyscan-1', broker: { address: 'amqp://guest@localhost' }, port: 9464 });
 * console.log(monitor.url); // http://127.0.0.1:9464/
 * await monitor.close();
 * ```
 *
 * One monitor per workflow at a time: heartbeats are consumed, so two monitors would each see part of them.
 */
import { DEFAULT_TASK_NAME } from '../../common/heartbeat.js';
import { connect } from '../../mq-adapters/index.js';
import type { AdapterLogger, Broker, ConnectOptions } from '../../mq-adapters/types.js';
import type { WorkflowQueues } from '../types.js';
import { workflowQueues } from '../workflow.js';
import { monitorQueueName, startFeed, type Feed } from './feed.js';
import { createMetricsRegistry } from './metrics.js';
import { checkBind, startMonitorServer, type MonitorServer } from './server.js';
import { MonitorState, type RunProgress } from './state.js';

export { monitorQueueName, monitorQueueSpec } from './feed.js';
export { MonitorState, type MonitorSnapshot, type RunProgress, type TaskView, type PilotView, type DeadLetterView, type PilotStatus } from './state.js';
export { METRIC_NAMES } from './metrics.js';
export { checkBind, isLoopback, MIN_TOKEN_LENGTH } from './server.js';


export interface MonitorOptions {
  workflowId: string;
  /** Where the workflow's queues are (the monitor opens a connection of its own). */
  broker: ConnectOptions;
  /** The workflow's queues, when not the ones its id names. */
  queues?: WorkflowQueues;
  /** Default 127.0.0.1. Any other address needs `token`. */
  host?: string;
  /** Default 9464; 0 picks a free port. */
  port?: number;
  /** Bearer token (`EWMS_MONITOR_TOKEN`); required off loopback. */
  token?: string;
  /** Inside `ewms run`: the collector's exact progress. */
  run?: () => RunProgress | undefined;
  /** Secrets that must never reach the page. */
  secrets?: readonly string[];
  logger?: AdapterLogger;
  /** How often queue depths are read (default 2 s). */
  pollMs?: number;
}

/** A running monitor. */
export interface Monitor {
  readonly url: string;
  readonly state: MonitorState;
  /** Stop reading heartbeats but keep serving the last state (a finished run's final picture). */
  stopFeed(): Promise<void>;
  close(): Promise<void>;
}

/** Start a monitor for one workflow. */
export async function startMonitor(options: MonitorOptions): Promise<Monitor> {
  const queues = options.queues ?? workflowQueues(options.workflowId);
  // Refuse an unsafe bind before touching the broker.
  checkBind(options.host ?? '127.0.0.1', options.token);
  const broker: Broker = await connect({ ...options.broker, ...(options.logger ? { logger: options.logger } : {}) });
  let feed: Feed | undefined;
  let server: MonitorServer | undefined;
  try {
    const state = new MonitorState({
      workflowId: options.workflowId,
      tasks: [{ name: DEFAULT_TASK_NAME, queue: queues.incoming }],
      // NATS and Pulsar count delivered-but-unacked messages as waiting too.
      depthIncludesInFlight: broker.type !== 'rabbitmq',
      secrets: options.secrets ?? [],
    });
    if (options.run) state.attachRun(options.run);
    feed = await startFeed({
      broker,
      state,
      queue: monitorQueueName(options.workflowId),
      extraQueues: [queues.outgoing, queues.deadLetter],
      ...(options.pollMs !== undefined ? { pollMs: options.pollMs } : {}),
      ...(options.logger ? { logger: options.logger } : {}),
    });
    server = await startMonitorServer({
      state,
      registry: createMetricsRegistry(state),
      host: options.host ?? '127.0.0.1',
      port: options.port ?? 9464,
      ...(options.token ? { token: options.token } : {}),
      ...(options.logger ? { logger: options.logger } : {}),
    });
    const running = { feed, server };
    let feedStopped = false;
    let closed = false;
    const stopFeed = async () => {
      if (feedStopped) return;
      feedStopped = true;
      await running.feed.stop();
      await broker.close().catch(() => undefined);
    };
    return {
      url: server.url,
      state,
      stopFeed,
      async close() {
        await stopFeed();
        if (closed) return;
        closed = true;
        await running.server.close();
      },
    };
  } catch (err) {
    await feed?.stop().catch(() => undefined);
    await server?.close().catch(() => undefined);
    await broker.close().catch(() => undefined);
    throw err;
  }
}
