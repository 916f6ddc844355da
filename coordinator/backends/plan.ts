/**
 * A workflow as backends provision it, in the shape of the EWMS WMS's request: tasks that read input queues
 * and write output queues (named by alias), some queues public (the coordinator publishes to or collects from
 * them). A single-task workflow is one task between two public queues (`singleTaskPlan`); a graph's plan
 * comes from `graph.ts`.
 */
import type { WireFormat } from '../../common/wire.js';
import type { PilotRequest } from '../types.js';

/** One task: the queues it reads and writes (aliases) and the pilots that run it. */
export interface PlannedTask {
  /** Names the task in logs and progress (not sent to the WMS). */
  name: string;
  inputQueues: string[];
  outputQueues: string[];
  pilots: PilotRequest;
}

/** The whole workflow. */
export interface PlannedWorkflow {
  tasks: PlannedTask[];
  /** Aliases of the queues the coordinator itself reaches. */
  publicQueues: string[];
  maxDeliveries: number;
  wireFormat: WireFormat;
  /** The workflow's priority (the WMS request's `priority`). */
  priority?: number;
  /** A graph (not the single-task workflow): pilots name their task and publish filter markers. */
  graph?: boolean;
}

/** The public queues events are published to (read by a task, written by none) and collected from (the reverse). */
export function publicDirections(plan: PlannedWorkflow): { inputs: string[]; outputs: string[] } {
  const read = new Set(plan.tasks.flatMap((t) => t.inputQueues));
  const written = new Set(plan.tasks.flatMap((t) => t.outputQueues));
  return {
    inputs: plan.publicQueues.filter((a) => read.has(a) && !written.has(a)),
    outputs: plan.publicQueues.filter((a) => written.has(a) && !read.has(a)),
  };
}

/** The aliases of the single-task workflow's two queues (as SkyDriver names its own pair). */
export const QUEUE_ALIASES = { incoming: 'input-queue', outgoing: 'output-queue' } as const;

/** input-queue → the task → output-queue, both public. */
export function singleTaskPlan(pilots: PilotRequest, maxDeliveries: number, wireFormat: WireFormat): PlannedWorkflow {
  return {
    tasks: [{ name: 'task-0', inputQueues: [QUEUE_ALIASES.incoming], outputQueues: [QUEUE_ALIASES.outgoing], pilots }],
    publicQueues: [QUEUE_ALIASES.incoming, QUEUE_ALIASES.outgoing],
    maxDeliveries,
    wireFormat,
  };
}
