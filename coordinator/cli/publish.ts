/**
 * `ewms publish`: publish events to a workflow's incoming queue.
 */
import { writeFile } from 'node:fs/promises';
import type { Logger } from 'pino';
import { readEvents } from '../event-files.js';
import { openWorkflow } from './open.js';
import { brokerOptions, EXIT, type Args, type EwmsCommand } from './shared.js';

export async function cmdPublish(args: Args, logger: Logger): Promise<number> {
  const wf = await openWorkflow(args, logger);
  try {
    const ids = await wf.publish(readEvents(args.events as string));
    if (args.ids) await writeFile(args.ids as string, ids.map((id) => `${id}\n`).join(''));
    process.stdout.write(`${JSON.stringify({ workflow: wf.id, published: ids.length, queues: wf.queues })}\n`);
    return EXIT.ok;
  } finally {
    await wf.close();
  }
}

export const publishCommand: EwmsCommand = {
  name: 'publish',
  describe: "Publish events to a workflow's incoming queue",
  options: (y) =>
    brokerOptions(y, false)
      .option('events', { type: 'string', demandOption: true, describe: 'A .jsonl file or a directory of event files' })
      .option('ids', { type: 'string', describe: 'Write the event ids here, one per line (for collect --ids)' }),
  run: cmdPublish,
};
