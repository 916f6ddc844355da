/**
 * `ewms publish`: publish events to a workflow's incoming queue. The whole events file is checked first:
 * all or nothing.
 */
import { writeFile } from 'node:fs/promises';
import type { Logger } from 'pino';
import { readEvents, scanEvents } from '../event-files.js';
import { checkEventsFit } from './event-checks.js';
import { InputProblems } from './input.js';
import { openBrokerWorkflow, readBrokerWorkflow } from './open.js';
import { brokerOptions, checkWritable, EXIT, type Args, type CommandContext, type EwmsCommand } from './shared.js';
import { withBroker } from './workflow-state.js';

export async function cmdPublish(args: Args, logger: Logger, context: CommandContext): Promise<number> {
  const p = new InputProblems('ewms publish');
  const workflow = readBrokerWorkflow(p, args);
  const path = args.events as string;
  await checkWritable(p, '--ids', args.ids as string | undefined);
  const summary = await p.absorbAsync(`--events ${path}`, () => scanEvents(path));
  p.check();
  if (summary?.count === 0) {
    process.stderr.write(`ewms: warning: ${path} holds no events: nothing published (nothing was changed)\n`);
    return EXIT.ok;
  }
  await withBroker(workflow.broker, logger, async (b) => {
    if (summary) await checkEventsFit(p, b, path, summary, workflow.wireFormat);
    p.check();
  });
  context.changing();
  const urgent = args.urgent === true;
  const wf = await openBrokerWorkflow(workflow, logger, { urgentQueues: urgent });
  try {
    const ids = await wf.publish(readEvents(path), urgent ? { priority: 'urgent' } : {});
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
      .option('events', { type: 'string', demandOption: true, describe: 'A .jsonl file or a directory of event files; checked whole before the first is published' })
      .option('ids', { type: 'string', describe: 'Write the event ids here, one per line (for collect --ids)' })
      .option('urgent', { type: 'boolean', default: false, describe: "Publish to the incoming queue's urgent twin, which pilots started with --urgent-queues drain before the backlog" }),
  run: cmdPublish,
};
