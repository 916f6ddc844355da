/**
 * `ewms run`: publish events, start pilots, collect every outcome, stop the pilots.
 */
import type { Logger } from 'pino';
import { CoordinatorConfigError } from '../errors.js';
import { LineWriter, outcomeLine, readEvents } from '../event-files.js';
import { runWorkflow } from '../run-workflow.js';
import type { WireFormat } from '../types.js';
import { coordinatorBroker } from './open.js';
import { pilotOptions, pilotRequestFromArgs } from './pilot-options.js';
import { brokerOptions, collectOptions, defined, EXIT, readIds, wholeCount, type Args, type EwmsCommand } from './shared.js';

export async function cmdRun(args: Args, logger: Logger): Promise<number> {
  const eventsPath = args.events as string | undefined;
  const alsoExpectIdsFile = args['also-expect-ids'] as string | undefined;
  const alsoExpect: number | string[] = alsoExpectIdsFile ? await readIds(alsoExpectIdsFile) : wholeCount('--also-expect', (args['also-expect'] as number | undefined) ?? 0);
  if (!eventsPath && (typeof alsoExpect === 'number' ? alsoExpect === 0 : alsoExpect.length === 0)) throw new CoordinatorConfigError('nothing to run', 'give --events FILE|DIR, or --also-expect N for events already queued (e.g. requeued dead letters)');
  const pilots = (args.pilots as number) > 0 || args['autoscale-max'] !== undefined ? pilotRequestFromArgs(args) : undefined;
  const results = new LineWriter(args.output as string | undefined, { append: args.append as boolean });
  const dead = args['dead-letters'] ? new LineWriter(args['dead-letters'] as string, { append: args.append as boolean }) : undefined;
  // An output that cannot be written is a usage error: find out before anything is published or started.
  await results.ready();
  await dead?.ready();
  // Ctrl-C or a kill must not leave local pilots running (they are in process groups of their own).
  const stop = new AbortController();
  let stoppedBy: NodeJS.Signals | undefined;
  const onSignal = (signal: NodeJS.Signals) => {
    stoppedBy ??= signal;
    process.stderr.write(`ewms: ${signal}: stopping the pilots; unfinished events stay in the queue\n`);
    stop.abort(new Error(`stopped by ${signal}`));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    const report = await runWorkflow(
      defined({
        broker: coordinatorBroker(args, pilots, logger),
        id: args.workflow as string | undefined,
        maxDeliveries: args['max-deliveries'] as number,
        wireFormat: args['wire-format'] as WireFormat,
        logger,
        events: eventsPath ? readEvents(eventsPath) : undefined,
        alsoExpect,
        pilots,
        idleTimeoutMs: (args['idle-timeout'] as number) * 1000,
        progress: args.progress ? {} : (false as const),
        deleteQueues: args['keep-queues'] ? false : ('if-clean' as const),
        onOutcome: async (o) => {
          if (o.kind === 'result') await results.write(outcomeLine(o));
          else await dead?.write(outcomeLine(o));
        },
        signal: stop.signal,
      }),
    ).catch((err: unknown) => {
      if (stoppedBy) return undefined;
      throw err;
    });
    if (!report) return stoppedBy === 'SIGTERM' ? EXIT.terminated : EXIT.interrupted;
    process.stderr.write(
      `workflow ${report.workflowId}: ${report.results} results, ${report.deadLetters} dead letters, ${report.duplicates} duplicates dropped, ` +
        `${report.published} published, ${report.seconds.toFixed(1)} s (${report.ratePerSecond.toFixed(1)}/s); queues ${report.queuesDeleted ? 'deleted' : 'kept'}\n`,
    );
    if (report.deadLetters > 0) {
      process.stderr.write(
        report.deadLetterRoute === 'queue'
          ? `inspect: ewms dlq list --workflow ${report.workflowId}; retry: ewms dlq requeue --workflow ${report.workflowId}\n`
          : `dead letters came with the results${args['dead-letters'] ? ` and are in ${String(args['dead-letters'])}` : ' (give --dead-letters FILE to keep them)'}\n`,
      );
    }
    return report.deadLetters > 0 ? EXIT.deadLetters : EXIT.ok;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await results.close();
    await dead?.close();
  }
}

export const runCommand: EwmsCommand = {
  name: 'run',
  describe: 'Publish events, start pilots, collect every outcome, stop the pilots',
  options: (y) =>
    collectOptions(pilotOptions(brokerOptions(y, false)))
      .option('events', { type: 'string', describe: 'Events: a .jsonl file (one JSON value per line) or a directory (one event per file)' })
      .option('also-expect', { type: 'number', describe: 'How many outcomes to await besides --events (dead letters still queued count too: prefer --also-expect-ids)' })
      .option('also-expect-ids', { type: 'string', conflicts: 'also-expect', describe: 'File of event ids to await besides --events (e.g. from ewms dlq requeue --write-ids)' })
      .option('keep-queues', { type: 'boolean', default: false, describe: 'Keep the queues at the end (they are kept anyway while dead letters remain)' }),
  run: cmdRun,
};
