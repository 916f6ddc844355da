/**
 * What a workflow already has on the broker, found without changing anything: which of its queues exist and
 * what waits in them. Commands that read a workflow (`dlq`, `collect`, `delete`) say so when it does not
 * exist instead of creating its queues, and `run` says what is already there before adding to it.
 */
import type { Logger } from 'pino';
import { connect } from '../../mq-adapters/index.js';
import { QueueNotFoundError } from '../../mq-adapters/errors.js';
import type { Broker, ConnectOptions } from '../../mq-adapters/types.js';
import { monitorQueueName } from '../monitor/feed.js';
import type { WorkflowQueues } from '../types.js';
import { UsageError } from './input.js';

/** One queue: its name, and how many messages wait in it (undefined: the queue does not exist). */
export interface QueueState {
  readonly name: string;
  readonly depth: number | undefined;
}

/** A workflow's queues as the broker has them. */
export interface WorkflowState {
  readonly id: string;
  readonly incoming: QueueState;
  readonly outgoing: QueueState;
  readonly deadLetter: QueueState;
  /** The pilots' heartbeats for `ewms monitor` (not the user's data: never counted as "holding" anything). */
  readonly monitor: QueueState;
  /** Any of its queues exists. */
  readonly exists: boolean;
  /** Nothing waits in any of them. */
  readonly empty: boolean;
}

/** The depth of `queue`, or undefined when it does not exist (`depth` is passive: it declares nothing). */
async function depthOrMissing(broker: Broker, queue: string): Promise<number | undefined> {
  try {
    return await broker.depth(queue);
  } catch (err) {
    if (err instanceof QueueNotFoundError) return undefined;
    throw err;
  }
}

/** Look at a workflow's queues without declaring or consuming anything. */
export async function inspectWorkflow(broker: Broker, id: string, queues: WorkflowQueues): Promise<WorkflowState> {
  const [incoming, outgoing, deadLetter, monitor] = (await Promise.all(
    [queues.incoming, queues.outgoing, queues.deadLetter, monitorQueueName(id)].map(async (name) => ({ name, depth: await depthOrMissing(broker, name) })),
  )) as [QueueState, QueueState, QueueState, QueueState];
  const data = [incoming, outgoing, deadLetter];
  return { id, incoming, outgoing, deadLetter, monitor, exists: [...data, monitor].some((q) => q.depth !== undefined), empty: data.every((q) => !q.depth) };
}

/** `12 events waiting, 5 dead letters, 0 results not yet collected` (queues that exist only). */
export function describeWorkflowState(state: WorkflowState): string {
  const parts: string[] = [];
  const say = (q: QueueState, what: (n: number) => string) => {
    if (q.depth !== undefined) parts.push(`${what(q.depth)} in ${q.name}`);
  };
  say(state.incoming, (n) => `${n} event${n === 1 ? '' : 's'} waiting`);
  say(state.deadLetter, (n) => `${n} dead letter${n === 1 ? '' : 's'}`);
  say(state.outgoing, (n) => `${n} result${n === 1 ? '' : 's'} not yet collected`);
  return parts.join(', ');
}

/** Refuse (exit 2: nothing was changed) a command on a workflow none of whose queues exist. */
export function requireWorkflow(state: WorkflowState, broker: Broker, command: string, queue?: QueueState): void {
  if (!state.exists || (queue && queue.depth === undefined)) {
    const what = state.exists && queue ? `has no queue ${queue.name}` : `does not exist (no queue ${state.incoming.name}, ${state.outgoing.name} or ${state.deadLetter.name})`;
    throw new UsageError([{ where: `--workflow ${state.id}`, problem: `${what} on the ${broker.type} broker at ${broker.displayAddress}`, fix: 'check the workflow id (ewms run and ewms publish print it) and the broker (--broker / EWMS_BROKER_URL)' }], command);
  }
}

/** Connect for a look, run `use`, close. */
export async function withBroker<T>(options: ConnectOptions, logger: Logger, use: (broker: Broker) => Promise<T>): Promise<T> {
  const broker = await connect({ ...options, logger });
  try {
    return await use(broker);
  } finally {
    await broker.close().catch(() => undefined);
  }
}
