/**
 * `ewms dlq list` and `ewms dlq requeue`: a workflow's dead letters. Both read the queues as they are: a
 * workflow (or dead-letter queue) that does not exist is refused (exit 2), never created.
 */
import { writeFile } from 'node:fs/promises';
import type { Logger } from 'pino';
import type { Argv } from 'yargs';
import { defaultDeadLetterQueue } from '../../mq-adapters/types.js';
import { checkGraph, readWorkflowFile } from '../graph.js';
import { DeadLetters, type DeadLetter } from '../dead-letters.js';
import { LineWriter } from '../event-files.js';
import { graphQueueName } from '../queue-layout.js';
import { InputProblems, wholeNumber } from './input.js';
import { readBrokerWorkflow, type BrokerWorkflow } from './open.js';
import { brokerOptions, checkWritable, defined, EXIT, type Args, type CommandContext, type EwmsCommand } from './shared.js';
import { inspectWorkflow, requireWorkflow, withBroker } from './workflow-state.js';

/** The dead letters of an existing workflow, on one connection, declaring nothing. */
async function withDeadLetters<T>(workflow: BrokerWorkflow, logger: Logger, command: string, use: (letters: DeadLetters) => Promise<T>): Promise<T> {
  return withBroker(workflow.broker, logger, async (b) => {
    const state = await inspectWorkflow(b, workflow.id, workflow.queues);
    requireWorkflow(state, b, command, state.deadLetter);
    return use(new DeadLetters(b, b, workflow.queues, workflow.wireFormat, logger));
  });
}

/**
 * With `--task NAME` (and the `--workflow-file` that describes the graph): the workflow once per input queue
 * of that task, each with its own dead-letter queue; else the workflow as the flags name it.
 */
async function workflowsOf(p: InputProblems, args: Args, workflow: BrokerWorkflow): Promise<BrokerWorkflow[]> {
  const taskName = args.task as string | undefined;
  const file = args['workflow-file'] as string | undefined;
  if (taskName === undefined) {
    if (file !== undefined) p.add('--workflow-file', 'is given without --task', 'add --task NAME to read the dead letters of one task of the graph');
    return [workflow];
  }
  if (file === undefined) return p.add('--task', 'needs the graph: give --workflow-file FILE too', `e.g. ewms dlq list --workflow ${workflow.id} --workflow-file workflow.json --task ${taskName}`) ?? [];
  const description = await p.absorbAsync('--workflow-file', () => readWorkflowFile(file));
  const graph = description && p.absorb('--workflow-file', () => checkGraph(description.tasks, description.public_queue_aliases, { allowCycles: description.allow_cycles ?? false }));
  if (!graph) return [];
  const task = graph.tasks.find((t) => t.task_name === taskName);
  if (!task) return p.add('--task', `'${taskName}' is not a task of ${file}`, `its tasks: ${graph.tasks.map((t) => t.task_name).join(', ')}`) ?? [];
  return task.input_queue_aliases.map((alias) => {
    const incoming = graphQueueName(workflow.id, alias);
    return { ...workflow, queues: { incoming, outgoing: incoming, deadLetter: defaultDeadLetterQueue(incoming) } };
  });
}

export async function cmdDlqList(args: Args, logger: Logger): Promise<number> {
  const p = new InputProblems('ewms dlq list');
  const named = readBrokerWorkflow(p, args);
  const limit = wholeNumber(p, args, 'limit', { min: 1, example: '100' });
  await checkWritable(p, '--output', args.output as string | undefined);
  const workflows = await workflowsOf(p, args, named);
  p.check();
  const out = new LineWriter(args.output as string | undefined);
  try {
    for (const workflow of workflows) {
      await withDeadLetters(workflow, logger, 'ewms dlq list', async (letters) => {
        const n = await letters.export((line: string) => out.write(line), defined({ limit }));
        process.stderr.write(`${n} dead letter${n === 1 ? '' : 's'} in ${workflow.queues.deadLetter}\n`);
      });
    }
    return EXIT.ok;
  } finally {
    await out.close();
  }
}

export async function cmdDlqRequeue(args: Args, logger: Logger, context: CommandContext): Promise<number> {
  const p = new InputProblems('ewms dlq requeue');
  const limit = wholeNumber(p, args, 'limit', { min: 1, example: '100' });
  const idsOut = args['write-ids'] as string | undefined;
  await checkWritable(p, '--write-ids', idsOut);
  const workflows = await workflowsOf(p, args, readBrokerWorkflow(p, args));
  if (workflows.length > 1) p.add('--task', `reads ${workflows.length} queues: requeue reads one dead-letter queue at a time`, 'requeue the dead letters of a task that reads one queue, or use ewms dlq list to see them');
  p.check();
  const workflow = workflows[0]!;
  return withDeadLetters(workflow, logger, 'ewms dlq requeue', async (letters) => {
    // Whether the events are JSON other than strings, to say how the run collecting them should read outputs.
    let structured = false;
    context.changing();
    const requeued = await letters.requeue(defined({ ids: args.ids as string[] | undefined, limit, onRequeued: (d: DeadLetter) => void (structured ||= typeof d.data !== 'string') }));
    if (idsOut) await writeFile(idsOut, requeued.map((id: string) => `${id}\n`).join(''));
    process.stdout.write(`${JSON.stringify({ workflow: workflow.id, requeued: requeued.length, ids: requeued })}\n`);
    // By id: a count would also take the dead letters still in the queue for these events' outcomes.
    // The run that collects them cannot look at queued events: say how to read outputs as the first run did.
    const json = structured ? ' --pilot-env EWMS_PILOT_OUTFILE_EXT=.json' : '';
    process.stderr.write(`requeued ${requeued.length} to ${workflow.queues.incoming}; collect them with: ewms run --workflow ${workflow.id} --also-expect-ids ${idsOut ?? '<file of the ids above>'}${json} ...\n`);
    return EXIT.ok;
  });
}

/** `--task` / `--workflow-file`: the dead letters of one task of a graph. */
function taskOptions<T>(y: Argv<T>) {
  return y
    .option('task', { type: 'string', describe: 'The dead letters of this task of a workflow graph (its task_name; needs --workflow-file)' })
    .option('workflow-file', { type: 'string', describe: 'The workflow graph (JSON or YAML) --task refers to' });
}

export const dlqCommand: EwmsCommand = {
  name: 'dlq',
  describe: 'Inspect or requeue dead letters',
  options: (y) => y.demandCommand(1, 'name a dlq command: list or requeue'),
  subcommands: [
    {
      name: 'list',
      describe: 'Write the dead letters as JSON lines (they stay in the queue)',
      options: (y) =>
        taskOptions(brokerOptions(y, true))
          .option('output', { type: 'string', describe: 'File to write (default stdout)' })
          .option('limit', { type: 'string', default: '10000', describe: 'Read at most this many' }),
      run: cmdDlqList,
    },
    {
      name: 'requeue',
      describe: 'Put dead letters back on the incoming queue, same event ids',
      options: (y) =>
        taskOptions(brokerOptions(y, true))
          .option('ids', { type: 'string', array: true, describe: 'Only these event ids (default: all)' })
          .option('limit', { type: 'string', default: '10000', describe: 'Requeue at most this many' })
          .option('write-ids', { type: 'string', describe: 'Write the requeued ids here, one per line (for run --also-expect-ids)' }),
      run: cmdDlqRequeue,
      repeatable: ['ids'],
    },
  ],
};
