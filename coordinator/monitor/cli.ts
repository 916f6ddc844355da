/**
 * The `ewms` command line's monitor parts: `ewms monitor --workflow ID` and `ewms run --monitor [PORT]`.
 * Kept here so the main CLI only names them; loaded when used (prom-client and the server are not needed by
 * any other command).
 */
import type { AdapterLogger, ConnectOptions } from '../../mq-adapters/types.js';
import { CoordinatorConfigError } from '../errors.js';
import type { WorkflowQueues } from '../types.js';
import { startMonitor, type Monitor, type RunProgress } from './index.js';

/** The default port: Prometheus' range for exporters. */
export const DEFAULT_MONITOR_PORT = 9464;

/** `--monitor` with no value is the default port; otherwise a port number. */
export function parseMonitorPort(value: unknown): number {
  if (value === '' || value === true) return DEFAULT_MONITOR_PORT;
  const port = Number(value);
  if (!Number.isInteger(port) || port < 0 || port > 65_535) {
    throw new CoordinatorConfigError(`--monitor '${String(value)}' is not a port`, `give a port such as ${DEFAULT_MONITOR_PORT}, 0 for a free one, or just --monitor`);
  }
  return port;
}

export interface ServeOptions {
  workflowId: string;
  queues?: WorkflowQueues;
  broker: ConnectOptions;
  host: string;
  port: number;
  run?: () => RunProgress | undefined;
  secrets: readonly string[];
  logger?: AdapterLogger;
  env?: NodeJS.ProcessEnv;
}

/** Start a monitor with the token from `EWMS_MONITOR_TOKEN` and say where it is on stderr. */
export async function serveMonitor(options: ServeOptions): Promise<Monitor> {
  const token = (options.env ?? process.env).EWMS_MONITOR_TOKEN || undefined;
  const monitor = await startMonitor({
    workflowId: options.workflowId,
    broker: options.broker,
    host: options.host,
    port: options.port,
    secrets: [...options.secrets, ...(token ? [token] : [])],
    ...(options.queues ? { queues: options.queues } : {}),
    ...(options.run ? { run: options.run } : {}),
    ...(token ? { token } : {}),
    ...(options.logger ? { logger: options.logger } : {}),
  });
  process.stderr.write(`monitor: ${monitor.url}${token ? ' (bearer token required; in a browser open ?token=<EWMS_MONITOR_TOKEN> once)' : ''}\n`);
  return monitor;
}

/** `ewms monitor`: serve until SIGINT/SIGTERM. */
export async function runMonitorCommand(options: ServeOptions): Promise<number> {
  const monitor = await serveMonitor(options);
  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    process.once('SIGINT', () => resolve('SIGINT'));
    process.once('SIGTERM', () => resolve('SIGTERM'));
  });
  process.stderr.write(`ewms: ${signal}: monitor stopped\n`);
  await monitor.close();
  return 0;
}

/** After a run: keep the final picture up for `seconds`, or until `signal` aborts. */
export async function lingerThenClose(monitor: Monitor, seconds: number, signal: AbortSignal): Promise<void> {
  if (seconds > 0 && !signal.aborted) {
    process.stderr.write(`monitor: the run is over; ${monitor.url} shows its final state for ${seconds} s (Ctrl-C to leave now)\n`);
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, seconds * 1000);
      signal.addEventListener('abort', () => {
        clearTimeout(timer);
        resolve();
      }, { once: true });
    });
  }
  await monitor.close();
}
