/**
 * `ewms dlq list` and `ewms dlq requeue`: a workflow's dead letters. Both read the queues as they are: a
 * workflow (or dead-letter queue) that does not exist is refused (exit 2), never created.
 */
import { writeFile } from 'node:fs/promises';
import type { Logger } from 'pino';
import { DeadLetters, type DeadLetter } from '../dead-letters.js';
import { LineWriter } from '../event-files.js';
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

export async function cmdDlqList(args: Args, logger: Logger): Promise<number> {
  const p = new InputProblems('ewms dlq list');
  const workflow = readBrokerWorkflow(p, args);
  const limit = wholeNumber(p, args, 'limit', { min: 1, example: '100' });
  await checkWritable(p, '--output', args.output as string | undefined);
  p.check();
  return withDeadLetters(workflow, logger, 'ewms dlq list', async (letters) => {
    const out = new LineWriter(args.output as string | undefined);
    try {
      const n = await letters.export((line: string) => out.write(line), defined({ limit }));
      process.stderr.write(`${n} dead letter${n === 1 ? '' : 's'} in ${workflow.queues.deadLetter}\n`);
      return EXIT.ok;
    } finally {
      await out.close();
    }
  });
}

export async function cmdDlqRequeue(args: Args, logger: Logger, context: CommandContext): Promise<number> {
  const p = new InputProblems('ewms dlq requeue');
  const workflow = readBrokerWorkflow(p, args);
  const limit = wholeNumber(p, args, 'limit', { min: 1, example: '100' });
  const idsOut = args['write-ids'] as string | undefined;
  await checkWritable(p, '--write-ids', idsOut);
  p.check();
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

export const dlqCommand: EwmsCommand = {
  name: 'dlq',
  describe: 'Inspect or requeue dead letters',
  options: (y) => y.demandCommand(1, 'name a dlq command: list or requeue'),
  subcommands: [
    {
      name: 'list',
      describe: 'Write the dead letters as JSON lines (they stay in the queue)',
      options: (y) =>
        brokerOptions(y, true)
          .option('output', { type: 'string', describe: 'File to write (default stdout)' })
          .option('limit', { type: 'string', default: '10000', describe: 'Read at most this many' }),
      run: cmdDlqList,
    },
    {
      name: 'requeue',
      describe: 'Put dead letters back on the incoming queue, same event ids',
      options: (y) =>
        brokerOptions(y, true)
          .option('ids', { type: 'string', array: true, describe: 'Only these event ids (default: all)' })
          .option('limit', { type: 'string', default: '10000', describe: 'Requeue at most this many' })
          .option('write-ids', { type: 'string', describe: 'Write the requeued ids here, one per line (for run --also-expect-ids)' }),
      run: cmdDlqRequeue,
      repeatable: ['ids'],
    },
  ],
};
