/**
 * `ewms collect`: collect outcomes until the expected number have settled. A workflow that does not exist is
 * refused (exit 2) rather than created and waited on.
 */
import type { Logger } from 'pino';
import { dropPartialLastLine, LineWriter, outcomeLine, writtenOutcomeIds } from '../event-files.js';
import { InputProblems, seconds, wholeNumber } from './input.js';
import { openBrokerWorkflow, readBrokerWorkflow } from './open.js';
import { brokerOptions, checkWritable, collectOptions, EXIT, readIds, type Args, type CommandContext, type EwmsCommand } from './shared.js';
import { inspectWorkflow, requireWorkflow, withBroker } from './workflow-state.js';

export async function cmdCollect(args: Args, logger: Logger, context: CommandContext): Promise<number> {
  if (args.follow === true) return cmdCollectFollow(args, logger, context);
  const p = new InputProblems('ewms collect');
  const workflow = readBrokerWorkflow(p, args);
  const idsFile = args.ids as string | undefined;
  const ids = idsFile !== undefined ? await p.absorbAsync('--ids', () => readIds(idsFile)) : undefined;
  const count = wholeNumber(p, args, 'expected', { min: 1, example: '100' });
  if (idsFile === undefined && args.expected === undefined) p.add('--expected', 'collect needs to know what to wait for', 'give --expected N or --ids FILE (as written by ewms publish --ids)');
  if (idsFile !== undefined && args.expected !== undefined) p.add('--expected', 'is given with --ids', 'give one of them');
  const idleTimeout = seconds(p, args, 'idle-timeout', { example: '600' }) ?? 600;
  await checkWritable(p, '--output', args.output as string | undefined);
  await checkWritable(p, '--dead-letters', args['dead-letters'] as string | undefined);
  p.check();
  await withBroker(workflow.broker, logger, async (b) => requireWorkflow(await inspectWorkflow(b, workflow.id, workflow.queues), b, 'ewms collect'));
  const expected: number | string[] = ids ?? count ?? 0;
  const results = new LineWriter(args.output as string | undefined, { append: args.append as boolean });
  const dead = args['dead-letters'] ? new LineWriter(args['dead-letters'] as string, { append: args.append as boolean }) : undefined;
  context.changing();
  const wf = await openBrokerWorkflow(workflow, logger);
  try {
    await results.ready();
    await dead?.ready();
    for await (const o of wf.collect({ expected, idleTimeoutMs: idleTimeout * 1000, keepDeadLetters: true })) {
      if (o.kind === 'result') await results.write(outcomeLine(o));
      else await dead?.write(outcomeLine(o));
    }
    const s = wf.collectStats;
    process.stderr.write(`${s.results} results, ${s.deadLetters} dead letters, ${s.duplicates} duplicates dropped${s.unexpected ? `, ${s.unexpected} outcomes of other events left in their queue` : ''}\n`);
    return s.deadLetters > 0 ? EXIT.deadLetters : EXIT.ok;
  } finally {
    await results.close();
    await dead?.close();
    await wf.close();
  }
}

/** The most outcome ids a streaming collector remembers (and reads back from its output on a restart). */
const FOLLOW_WINDOW = 100_000;

/**
 * `ewms collect --follow`: outcomes as they arrive, with no end, until SIGINT/SIGTERM (exit 0). Each line is
 * written before its outcome is acked and carries the outcome's id; restarted with `--append` on the same
 * files, the collector skips what they already hold, so a kill at any point loses nothing and repeats
 * nothing. Dead letters go to `--dead-letters`, else into `--output` (marked by their kind).
 */
async function cmdCollectFollow(args: Args, logger: Logger, context: CommandContext): Promise<number> {
  const p = new InputProblems('ewms collect');
  const workflow = readBrokerWorkflow(p, args);
  for (const flag of ['expected', 'ids']) if (args[flag] !== undefined) p.add(`--${flag}`, 'is given with --follow, which waits for no expected set', `leave --${flag} out, or --follow`);
  const output = args.output as string | undefined;
  const deadPath = args['dead-letters'] as string | undefined;
  await checkWritable(p, '--output', output);
  await checkWritable(p, '--dead-letters', deadPath);
  if (args.append !== true && output !== undefined && output !== '-') p.add('--follow', 'needs --append to resume after a restart', 'give --append (the output keeps what earlier runs wrote, and none of it is written twice)');
  p.check();
  await withBroker(workflow.broker, logger, async (b) => requireWorkflow(await inspectWorkflow(b, workflow.id, workflow.queues), b, 'ewms collect'));
  const alreadySeen: string[] = [];
  for (const path of new Set([output, deadPath])) {
    await dropPartialLastLine(path);
    alreadySeen.push(...(await writtenOutcomeIds(path, FOLLOW_WINDOW)));
  }
  const results = new LineWriter(output, { append: true });
  const dead = deadPath ? new LineWriter(deadPath, { append: true }) : results;
  const stop = new AbortController();
  const onSignal = () => stop.abort();
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  context.changing();
  const wf = await openBrokerWorkflow(workflow, logger);
  try {
    await results.ready();
    await dead.ready();
    if (alreadySeen.length > 0) process.stderr.write(`ewms: resuming: ${alreadySeen.length} outcomes already written are skipped if they come again\n`);
    for await (const o of wf.collect({ follow: true, signal: stop.signal, alreadySeen, dedupWindow: FOLLOW_WINDOW })) {
      await (o.kind === 'result' ? results : dead).write(outcomeLine(o, { outcomeId: true }));
    }
    const s = wf.collectStats;
    process.stderr.write(`${s.results} results, ${s.deadLetters} dead letters, ${s.duplicates} duplicates dropped\n`);
    return EXIT.ok;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await results.close();
    if (dead !== results) await dead.close();
    await wf.close();
  }
}

export const collectCommand: EwmsCommand = {
  name: 'collect',
  describe: 'Collect outcomes until the expected number have settled',
  options: (y) =>
    collectOptions(brokerOptions(y, true))
      .option('expected', { type: 'string', describe: 'How many outcomes to wait for' })
      .option('ids', { type: 'string', describe: 'File of event ids to wait for (from publish --ids)' })
      .option('follow', { type: 'boolean', describe: 'Stream: write outcomes as they arrive, with no end, until Ctrl-C/SIGTERM; restarted with --append it resumes without losing or repeating any' }),
  run: cmdCollect,
};
