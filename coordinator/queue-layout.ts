/**
 * Which broker queue each alias of a workflow stands for, and the queues around it: the dead-letter queue
 * of every task input, the urgent twins. A single-task workflow is the graph `input-queue → task →
 * output-queue` whose queues keep their historic names (`ewms-<id>-in`, `ewms-<id>-out`, `<in>.dlq`); a
 * graph's queue for alias A is `ewms-<id>-A` (or the WMS's queue id, for a public queue under ewms).
 */
import { defaultDeadLetterQueue } from '../mq-adapters/types.js';
import { QUEUE_ALIASES } from './backends/plan.js';
import { CoordinatorConfigError } from './errors.js';
import type { WorkflowTask } from './graph.js';
import type { PilotRequest, WorkflowQueues } from './types.js';

/** The suffix of an urgent twin: `<queue>.urgent`. */
export const URGENT_SUFFIX = '.urgent';

/** The queue a graph's alias names in workflow `id`, where the backend chose no other name. */
export function graphQueueName(id: string, alias: string): string {
  return `ewms-${id}-${alias}`;
}

/** One task: the aliases it reads and writes, and its pilots (when known at create time). */
export interface LayoutTask {
  name: string;
  inputs: string[];
  outputs: string[];
  request: PilotRequest | undefined;
  /** The task as the graph describes it (graphs only). */
  spec?: WorkflowTask & { task_name: string };
}

export class QueueLayout {
  private constructor(
    readonly tasks: LayoutTask[],
    /** Aliases events are published to. */
    readonly publicInputs: string[],
    /** Aliases outcomes are collected from. */
    readonly publicOutputs: string[],
    private readonly names: ReadonlyMap<string, string>,
    private readonly deadLetterOverride: ReadonlyMap<string, string>,
    /** Every task input has an urgent twin. */
    readonly urgent: boolean,
    /** A graph (rather than the one-task workflow). */
    readonly isGraph: boolean,
  ) {}

  /** The one-task workflow on `queues`. */
  static single(queues: WorkflowQueues, urgent: boolean, request: PilotRequest | undefined): QueueLayout {
    const { incoming, outgoing } = QUEUE_ALIASES;
    return new QueueLayout(
      [{ name: 'task-0', inputs: [incoming], outputs: [outgoing], request }],
      [incoming],
      [outgoing],
      new Map([
        [incoming, queues.incoming],
        [outgoing, queues.outgoing],
      ]),
      new Map([[incoming, queues.deadLetter]]),
      urgent,
      false,
    );
  }

  /** A graph of workflow `id`; `named` gives queue names the backend chose (the WMS's ids of public queues). */
  static graph(
    id: string,
    tasks: LayoutTask[],
    publicInputs: string[],
    publicOutputs: string[],
    urgent: boolean,
    named: Readonly<Record<string, string>> = {},
  ): QueueLayout {
    const names = new Map<string, string>();
    for (const t of tasks) for (const alias of [...t.inputs, ...t.outputs]) names.set(alias, named[alias] ?? graphQueueName(id, alias));
    return new QueueLayout(tasks, publicInputs, publicOutputs, names, new Map(), urgent, true);
  }

  /** The queue an alias stands for. */
  queue(alias: string): string {
    const name = this.names.get(alias);
    if (name === undefined) throw new CoordinatorConfigError(`no queue alias '${alias}' in this workflow`, `its aliases: ${[...this.names.keys()].join(', ')}`);
    return name;
  }

  /** Every alias some task reads. */
  get taskInputs(): string[] {
    return this.tasks.flatMap((t) => t.inputs);
  }

  /** The dead-letter queue of a task input. */
  deadLetterOf(alias: string): string {
    return this.deadLetterOverride.get(alias) ?? defaultDeadLetterQueue(this.queue(alias));
  }

  /** The urgent twin of a task input (none for queues no task reads, nor without urgent queues). */
  urgentOf(alias: string): string | undefined {
    return this.urgent && this.taskInputs.includes(alias) ? `${this.queue(alias)}${URGENT_SUFFIX}` : undefined;
  }

  /** The task of that name. */
  task(name: string): LayoutTask {
    const task = this.tasks.find((t) => t.name === name);
    if (!task) throw new CoordinatorConfigError(`no task '${name}' in this workflow`, `its tasks: ${this.tasks.map((t) => t.name).join(', ')}`);
    return task;
  }

  /** The public input to publish to: the one named, or the only one. */
  publishTarget(alias: string | undefined): string {
    if (alias !== undefined) {
      if (!this.publicInputs.includes(alias)) {
        throw new CoordinatorConfigError(`'${alias}' is not a public input queue of this workflow`, `publish to one of: ${this.publicInputs.join(', ')}`);
      }
      return alias;
    }
    if (this.publicInputs.length > 1) {
      throw new CoordinatorConfigError(`this workflow has ${this.publicInputs.length} public input queues`, `say which: publish(events, { queue: '${this.publicInputs[0]}' }) (ewms run: --events ALIAS=FILE)`);
    }
    return this.publicInputs[0]!;
  }
}
