/**
 * `ewms collect`: collect outcomes until the expected number have settled.
 */
import type { Logger } from 'pino';
import { CoordinatorConfigError } from '../errors.js';
import { LineWriter, outcomeLine } from '../event-files.js';
import { openWorkflow } from './open.js';
import { brokerOptions, collectOptions, EXIT, readIds, wholeCount, type Args, type EwmsCommand } from './shared.js';

export async function cmdCollect(args: Args, logger: Logger): Promise<number> {
  const idsFile = args.ids as string | undefined;
  const expected: number | string[] = idsFile ? await readIds(idsFile) : (args.expected as number | undefined) ?? -1;
  if (expected === -1) throw new CoordinatorConfigError('collect needs to know what to wait for', 'give --expected N or --ids FILE (as written by ewms publish --ids)');
  if (typeof expected === 'number') wholeCount('--expected', expected);
  const wf = await openWorkflow(args, logger);
  const results = new LineWriter(args.output as string | undefined, { append: args.append as boolean });
  const dead = args['dead-letters'] ? new LineWriter(args['dead-letters'] as string, { append: args.append as boolean }) : undefined;
  try {
    await results.ready();
    await dead?.ready();
    for await (const o of wf.collect({ expected, idleTimeoutMs: (args['idle-timeout'] as number) * 1000, keepDeadLetters: true })) {
      if (o.kind === 'result') await results.write(outcomeLine(o));
      else await dead?.write(outcomeLine(o));
    }
    const s = wf.collectStats;
    process.stderr.write(`${s.results} results, ${s.deadLetters} dead letters, ${s.duplicates} duplicates dropped\n`);
    return s.deadLetters > 0 ? EXIT.deadLetters : EXIT.ok;
  } finally {
    await results.close();
    await dead?.close();
    await wf.close();
  }
}

export const collectCommand: EwmsCommand = {
  name: 'collect',
  describe: 'Collect outcomes until the expected number have settled',
  options: (y) =>
    collectOptions(brokerOptions(y, true))
      .option('expected', { type: 'number', describe: 'How many outcomes to wait for' })
      .option('ids', { type: 'string', describe: 'File of event ids to wait for (from publish --ids)' }),
  run: cmdCollect,
};
