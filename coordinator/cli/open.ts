/**
 * A workflow on the coordinator's broker as the command line names it (`--workflow`, `--broker`,
 * `--max-deliveries`, `--wire-format`), read in the same one pass as each command's own options.
 */
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { ConnectOptions } from '../../mq-adapters/types.js';
import type { WireFormat, WorkflowQueues } from '../types.js';
import { checkWorkflowId, Workflow, workflowQueues } from '../workflow.js';
import { InputProblems, wholeNumber } from './input.js';
import { brokerFromArgs, type Args } from './shared.js';

/** A workflow on the coordinator's broker, as the flags name it. */
export interface BrokerWorkflow {
  id: string;
  queues: WorkflowQueues;
  broker: ConnectOptions;
  maxDeliveries: number;
  wireFormat: WireFormat;
}

/** Read the broker and workflow options (problems go to `p`; the result is usable once `p` has none). */
export function readBrokerWorkflow(p: InputProblems, args: Args): BrokerWorkflow {
  const id = (args.workflow as string | undefined) ?? randomUUID().slice(0, 12);
  p.absorb('--workflow', () => checkWorkflowId(id));
  const broker = p.absorb('--broker', () => brokerFromArgs(args));
  const maxDeliveries = wholeNumber(p, args, 'max-deliveries', { min: 1, example: '3' }) ?? 3;
  return { id, queues: workflowQueues(id), broker: broker ?? { address: '' }, maxDeliveries, wireFormat: args['wire-format'] as WireFormat };
}

/** Declare (or bind to) the workflow's queues and connect: call once the command line is known good. */
export function openBrokerWorkflow(w: BrokerWorkflow, logger: Logger, options: { urgentQueues?: boolean } = {}): Promise<Workflow> {
  return Workflow.create({ broker: w.broker, id: w.id, maxDeliveries: w.maxDeliveries, wireFormat: w.wireFormat, logger, ...(options.urgentQueues ? { urgentQueues: true } : {}) });
}
