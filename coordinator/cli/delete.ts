/**
 * `ewms delete --workflow ID`: remove a workflow's queues and everything in them (events waiting, results not
 * collected, dead letters). A workflow none of whose queues exist is refused (exit 2).
 */
import type { Logger } from 'pino';
import { InputProblems } from './input.js';
import { readBrokerWorkflow } from './open.js';
import { brokerOptions, EXIT, type Args, type CommandContext, type EwmsCommand } from './shared.js';
import { describeWorkflowState, inspectWorkflow, requireWorkflow, withBroker } from './workflow-state.js';

export async function cmdDelete(args: Args, logger: Logger, context: CommandContext): Promise<number> {
  const p = new InputProblems('ewms delete');
  const workflow = readBrokerWorkflow(p, args);
  p.check();
  return withBroker(workflow.broker, logger, async (b) => {
    const state = await inspectWorkflow(b, workflow.id, workflow.queues);
    requireWorkflow(state, b, 'ewms delete');
    context.changing();
    for (const queue of [state.incoming, state.outgoing, state.deadLetter, state.monitor]) {
      if (queue.depth !== undefined) await b.deleteQueue(queue.name, { deadLetterQueue: false });
    }
    process.stderr.write(`deleted workflow ${workflow.id}: ${describeWorkflowState(state)}\n`);
    return EXIT.ok;
  });
}

export const deleteCommand: EwmsCommand = {
  name: 'delete',
  describe: "Delete a workflow's queues and everything in them",
  options: (y) => brokerOptions(y, true),
  run: cmdDelete,
};
