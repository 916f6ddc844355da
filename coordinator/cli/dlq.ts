/**
 * `ewms dlq list` and `ewms dlq requeue`: a workflow's dead letters.
 */
import { writeFile } from 'node:fs/promises';
import type { Logger } from 'pino';
import { LineWriter } from '../event-files.js';
import { openWorkflow } from './open.js';
import { brokerOptions, defined, EXIT, type Args, type EwmsCommand } from './shared.js';

export async function cmdDlqList(args: Args, logger: Logger): Promise<number> {
  const wf = await openWorkflow(args, logger);
  const out = new LineWriter(args.output as string | undefined);
  try {
    const n = await wf.deadLetters().export((line) => out.write(line), { limit: args.limit as number });
    process.stderr.write(`${n} dead letters in ${wf.queues.deadLetter}\n`);
    return EXIT.ok;
  } finally {
    await out.close();
    await wf.close();
  }
}

export async function cmdDlqRequeue(args: Args, logger: Logger): Promise<number> {
  const wf = await openWorkflow(args, logger);
  try {
    const ids = args.ids as string[] | undefined;
    const requeued = await wf.deadLetters().requeue(defined({ ids, limit: args.limit as number }));
    const idsOut = args['write-ids'] as string | undefined;
    if (idsOut) await writeFile(idsOut, requeued.map((id) => `${id}\n`).join(''));
    process.stdout.write(`${JSON.stringify({ workflow: wf.id, requeued: requeued.length, ids: requeued })}\n`);
    // By id: a count would also take the dead letters still in the queue for these events' outcomes.
    process.stderr.write(`requeued ${requeued.length} to ${wf.queues.incoming}; collect them with: ewms run --workflow ${wf.id} --also-expect-ids ${idsOut ?? '<file of the ids above>'} ...\n`);
    return EXIT.ok;
  } finally {
    await wf.close();
  }
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
          .option('limit', { type: 'number', default: 10_000, describe: 'Read at most this many' }),
      run: cmdDlqList,
    },
    {
      name: 'requeue',
      describe: 'Put dead letters back on the incoming queue, same event ids',
      options: (y) =>
        brokerOptions(y, true)
          .option('ids', { type: 'string', array: true, describe: 'Only these event ids (default: all)' })
          .option('limit', { type: 'number', default: 10_000, describe: 'Requeue at most this many' })
          .option('write-ids', { type: 'string', describe: 'Write the requeued ids here, one per line (for run --also-expect-ids)' }),
      run: cmdDlqRequeue,
    },
  ],
};
