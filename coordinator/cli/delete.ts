/**
 * `ewms delete --workflow ID`: remove a workflow's queues and everything in them (events waiting, results not
 * collected, dead letters). A workflow none of whose queues exist is refused (exit 2).
 */
import type { Logger } from 'pino';
import { readWorkflowFile } from '../graph.js';
import { URGENT_SUFFIX } from '../queue-layout.js';
import { Workflow } from '../workflow.js';
import { InputProblems } from './input.js';
import { readBrokerWorkflow } from './open.js';
import { brokerOptions, EXIT, type Args, type CommandContext, type EwmsCommand } from './shared.js';
import { describeWorkflowState, inspectWorkflow, requireWorkflow, withBroker } from './workflow-state.js';

export async function cmdDelete(args: Args, logger: Logger, context: CommandContext): Promise<number> {
  const p = new InputProblems('ewms delete');
  const workflow = readBrokerWorkflow(p, args);
  const file = args['workflow-file'] as string | undefined;
  const description = file !== undefined ? await p.absorbAsync('--workflow-file', () => readWorkflowFile(file)) : undefined;
  p.check();
  if (description) {
    // A graph's queues are named by its aliases: every task input (with its dead-letter queue and urgent twin) and public output.
    context.changing();
    const wf = await Workflow.create({ broker: workflow.broker, id: workflow.id, tasks: description.tasks, publicQueues: description.public_queue_aliases, allowCycles: description.allow_cycles ?? false, urgentQueues: true, logger });
    await wf.close({ deleteQueues: true });
    process.stderr.write(`deleted the queues of workflow graph ${workflow.id} (${wf.taskNames.join(', ')})\n`);
    return EXIT.ok;
  }
  return withBroker(workflow.broker, logger, async (b) => {
    const state = await inspectWorkflow(b, workflow.id, workflow.queues);
    requireWorkflow(state, b, 'ewms delete');
    context.changing();
    for (const queue of [state.incoming, state.outgoing, state.deadLetter, state.monitor]) {
      if (queue.depth !== undefined) await b.deleteQueue(queue.name, { deadLetterQueue: false });
    }
    // The urgent twin, where the workflow had one (ewms run --urgent-queues).
    await b.deleteQueue(`${workflow.queues.incoming}${URGENT_SUFFIX}`, { deadLetterQueue: false }).catch(() => undefined);
    process.stderr.write(`deleted workflow ${workflow.id}: ${describeWorkflowState(state)}\n`);
    return EXIT.ok;
  });
}

export const deleteCommand: EwmsCommand = {
  name: 'delete',
  describe: "Delete a workflow's queues and everything in them",
  options: (y) => brokerOptions(y, true).option('workflow-file', { type: 'string', describe: 'A workflow graph (JSON or YAML): delete every queue of the graph' }),
  run: cmdDelete,
};
