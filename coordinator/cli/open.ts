/**
 * Opening a workflow from the command line: the coordinator's broker (none with `--backend ewms`, whose WMS
 * provisions one) and `Workflow.create` with the flags' settings.
 */
import type { Logger } from 'pino';
import type { ConnectOptions } from '../../mq-adapters/types.js';
import type { PilotRequest, WireFormat } from '../types.js';
import { Workflow } from '../workflow.js';
import { brokerFromArgs, defined, type Args } from './shared.js';

/** The coordinator's broker: none with --backend ewms, whose WMS provisions one (a --broker then is unused). */
export function coordinatorBroker(args: Args, pilots: PilotRequest | undefined, logger: Logger): ConnectOptions | undefined {
  if (pilots?.backend !== 'ewms') return brokerFromArgs(args);
  if (args.broker) logger.warn({}, '--broker is not used with --backend ewms: the WMS provisions the queues on its own broker');
  return undefined;
}

export async function openWorkflow(args: Args, logger: Logger, pilots?: PilotRequest): Promise<Workflow> {
  return Workflow.create(
    defined({
      broker: coordinatorBroker(args, pilots, logger),
      pilots,
      id: args.workflow as string | undefined,
      maxDeliveries: args['max-deliveries'] as number,
      wireFormat: args['wire-format'] as WireFormat,
      logger,
    }),
  );
}
