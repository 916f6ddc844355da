/**
 * `ewms monitor --workflow ID`: serve a live page, /metrics (Prometheus) and /api/status for a running
 * workflow (`coordinator/monitor/`), until SIGINT/SIGTERM.
 */
import type { Logger } from 'pino';
import { InputProblems } from './input.js';
import { brokerFromArgs, brokerOptions, secrets, type Args, type EwmsCommand } from './shared.js';

/** `--port` of `ewms monitor`, `--monitor [PORT]` of `ewms run`: checked with the monitor's own rule. */
export async function readMonitorPort(p: InputProblems, flag: string, value: unknown): Promise<number | undefined> {
  const { parseMonitorPort } = await import('../monitor/cli.js');
  return p.absorb(flag, () => parseMonitorPort(value));
}

export async function cmdMonitor(args: Args, logger: Logger): Promise<number> {
  const p = new InputProblems('ewms monitor');
  const broker = p.absorb('--broker', () => brokerFromArgs(args));
  const port = await readMonitorPort(p, '--port', args.port);
  p.check();
  const { runMonitorCommand } = await import('../monitor/cli.js');
  return runMonitorCommand({ workflowId: args.workflow as string, broker: broker!, host: args.host as string, port: port!, secrets: secrets(), logger });
}

export const monitorCommand: EwmsCommand = {
  name: 'monitor',
  describe: 'Serve a live page, /metrics (Prometheus) and /api/status for a running workflow',
  options: (y) =>
    brokerOptions(y, true)
      .option('port', { type: 'string', default: '9464', describe: 'Port to serve on (0: a free one)', group: 'Monitor:' })
      .option('host', { type: 'string', default: '127.0.0.1', describe: 'Address to bind; anything but loopback needs EWMS_MONITOR_TOKEN', group: 'Monitor:' }),
  run: cmdMonitor,
};
