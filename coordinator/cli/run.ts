/**
 * `ewms run`: publish events, start pilots, collect every outcome, stop the pilots.
 *
 * Nothing changes until the whole input is known good: every flag and `--pilot-env` value (with the pilot's
 * own rules), the whole events file (all or nothing), the output paths, and what the workflow already holds
 * on the broker (a look that changes nothing). Only then are queues declared, events published and pilots
 * started.
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Logger } from 'pino';
import { dropPartialLastLine, LineWriter, outcomeLine, readEvents, scanEvents, writtenOutcomeIds, type EventsSummary } from '../event-files.js';
import type { WorkflowTarget } from '../pilot-env.js';
import { runWorkflow } from '../run-workflow.js';
import type { PilotRequest, WireFormat, WorkflowOutcome } from '../types.js';
import type { ProgressSnapshot } from '../progress.js';
import { checkWorkflowId, workflowQueues, type Workflow } from '../workflow.js';
import { checkEventsFit } from './event-checks.js';
import { InputProblems, seconds, UsageError, wholeNumber } from './input.js';
import { checkPilots } from './pilot-check.js';
import { pilotOptions, readPilotRequest } from './pilot-options.js';
import { readMonitorPort } from './monitor.js';
import { cmdRunGraph } from './run-graph.js';
import { brokerFromArgs, brokerOptions, checkWritable, collectOptions, defined, EXIT, readIds, secrets, stopOnSignals, type Args, type CommandContext, type EwmsCommand } from './shared.js';
import { describeWorkflowState, inspectWorkflow, withBroker } from './workflow-state.js';

const say = (line: string) => process.stderr.write(`ewms: ${line}\n`);

/**
 * The infile and outfile extensions the events need. JSON that is not a string (an object, array, number,
 * boolean or null) fits only a `.json` infile, so such events get `.json` infiles and outfiles unless the
 * user set them — and an infile extension that cannot hold them is refused here, before any attempt is spent.
 * Events already queued (`--also-expect*` alone) cannot be looked at without spending one of their attempts:
 * they get a `.json` infile, which holds any event (a string lands as its text), and outputs read as text.
 */
function chooseExtensions(p: InputProblems, request: PilotRequest, events: { path: string; summary: EventsSummary } | undefined, wireFormat: WireFormat, notes: string[]): PilotRequest {
  if (wireFormat === 'raw') return request;
  const pilotEnv = { ...request.pilotEnv };
  const infile = pilotEnv.EWMS_PILOT_INFILE_EXT;
  if (!events) {
    if (infile !== undefined) return request;
    pilotEnv.EWMS_PILOT_INFILE_EXT = '.json';
    notes.push(
      'the events already queued are not read before the pilots take them: the pilots get a .json infile, which holds any event (a string lands as its text)' +
        (pilotEnv.EWMS_PILOT_OUTFILE_EXT === undefined ? '; outputs are read as text unless --pilot-env EWMS_PILOT_OUTFILE_EXT=.json' : ''),
    );
    return { ...request, pilotEnv };
  }
  const { summary } = events;
  if (summary.structured === 0) return request;
  const what = `${summary.structured === summary.count ? 'all' : `${summary.structured} of`} ${summary.count} events in ${events.path} are JSON other than strings (the first at ${summary.firstStructured})`;
  if (infile !== undefined && infile.replace(/^\.?/, '.').toLowerCase() !== '.json') {
    p.add(`--pilot-env EWMS_PILOT_INFILE_EXT=${infile}`, `cannot hold them: ${what}, which only a .json infile can hold`, 'leave EWMS_PILOT_INFILE_EXT out (ewms then gives the pilots .json), or make each event a JSON string');
    return request;
  }
  const chosen = [];
  if (infile === undefined) chosen.push('EWMS_PILOT_INFILE_EXT=.json');
  if (pilotEnv.EWMS_PILOT_OUTFILE_EXT === undefined) chosen.push('EWMS_PILOT_OUTFILE_EXT=.json');
  pilotEnv.EWMS_PILOT_INFILE_EXT ??= '.json';
  pilotEnv.EWMS_PILOT_OUTFILE_EXT ??= '.json';
  if (chosen.length > 0) notes.push(`${what}: the pilots get ${chosen.join(', ')} (--pilot-env EWMS_PILOT_OUTFILE_EXT=.out reads outputs as text)`);
  return { ...request, pilotEnv };
}

/** Dead letters by reason, for the closing summary (the reason alone is in `dlq list`, which few read first). */
class DeadLetterTally {
  private readonly byReason = new Map<string, { count: number; stderr: string | undefined }>();

  add(outcome: WorkflowOutcome & { kind: 'dead-letter' }): void {
    const entry = this.byReason.get(outcome.reason) ?? { count: 0, stderr: lastLine(outcome.details['stderr-tail']) };
    // One line of stderr per reason: the first seen, called an example once there are more.
    entry.count += 1;
    this.byReason.set(outcome.reason, entry);
  }

  /** The commonest reasons, one line each. */
  lines(most = 3): string[] {
    const sorted = [...this.byReason.entries()].sort((a, b) => b[1].count - a[1].count);
    const lines = sorted.slice(0, most).map(([reason, { count, stderr }]) => `  ${count}× ${reason}${stderr ? ` — ${count > 1 ? 'e.g. ' : ''}stderr: ${stderr}` : ''}`);
    if (sorted.length > most) lines.push(`  … and ${sorted.length - most} other reason${sorted.length - most === 1 ? '' : 's'}`);
    return lines;
  }
}

function lastLine(text: string | undefined): string | undefined {
  const line = text?.trim().split('\n').pop()?.trim();
  return line ? line.slice(0, 200) : undefined;
}

export async function cmdRun(args: Args, logger: Logger, context: CommandContext): Promise<number> {
  if (args['workflow-file'] !== undefined) return cmdRunGraph(args, logger, context);
  const p = new InputProblems('ewms run');
  if (Array.isArray(args.events)) p.add('--events', `was given ${args.events.length} times`, 'give --events once; several public input queues (--events ALIAS=FILE each) need a --workflow-file');
  const cwd = process.cwd();
  const notes: string[] = [];

  // 1. The command line, in one pass.
  const eventsPath = args.events as string | undefined;
  const idsFile = args['also-expect-ids'] as string | undefined;
  const alsoExpectIds = idsFile !== undefined ? await p.absorbAsync('--also-expect-ids', () => readIds(idsFile)) : undefined;
  if (alsoExpectIds?.length === 0) p.add('--also-expect-ids', `'${idsFile}' holds no event ids`, 'give the file ewms dlq requeue --write-ids wrote');
  const alsoExpectCount = wholeNumber(p, args, 'also-expect', { min: 1, example: '5' });
  const alsoExpect: number | string[] = alsoExpectIds ?? alsoExpectCount ?? 0;
  const follow = args.follow === true;
  if (follow && (idsFile !== undefined || args['also-expect'] !== undefined)) p.add('--follow', 'is given with --also-expect*', 'a stream waits for no expected set: leave --also-expect out');
  if (follow && args.output !== undefined && args.output !== '-' && args.append !== true) p.add('--follow', 'needs --append to resume after a restart', 'give --append (the output keeps what earlier runs wrote, and none of it is written twice)');
  if (!follow && !eventsPath && idsFile === undefined && args['also-expect'] === undefined) {
    p.add('--events', 'nothing to run: no events given', 'give --events FILE|DIR, or --also-expect-ids FILE (or --also-expect N) for events already queued, e.g. requeued dead letters');
  }
  if (args['write-ids'] !== undefined && !eventsPath) p.add('--write-ids', 'is given without --events: nothing is published', 'leave it out, or add --events');
  const monitorPort = args.monitor !== undefined ? await readMonitorPort(p, '--monitor', args.monitor) : undefined;
  const monitorLinger = seconds(p, args, 'monitor-linger', { zero: true, example: '60' }) ?? 0;
  const maxDeliveries = wholeNumber(p, args, 'max-deliveries', { min: 1, example: '3' }) ?? 3;
  const idleTimeout = seconds(p, args, 'idle-timeout', { example: '600' }) ?? 600;
  const wireFormat = args['wire-format'] as WireFormat;
  const id = (args.workflow as string | undefined) ?? randomUUID().slice(0, 12);
  p.absorb('--workflow', () => checkWorkflowId(id));
  let request = readPilotRequest(p, args);
  const broker = request.backend === 'ewms' ? undefined : p.absorb('--broker', () => brokerFromArgs(args));
  await checkWritable(p, '--output', args.output as string | undefined);
  await checkWritable(p, '--dead-letters', args['dead-letters'] as string | undefined);
  await checkWritable(p, '--write-ids', args['write-ids'] as string | undefined);

  // 2. The whole events file, before anything is published: all or nothing.
  const summary = eventsPath ? await p.absorbAsync(`--events ${eventsPath}`, () => scanEvents(eventsPath)) : undefined;
  if (summary?.count === 0 && alsoExpect === 0 && !follow) {
    say(`warning: ${eventsPath} holds no events: nothing to run (nothing was changed)`);
    p.check();
    return EXIT.ok;
  }
  if (summary?.count === 0) say(`warning: ${eventsPath} holds no events`);
  request = chooseExtensions(p, request, eventsPath && summary ? { path: eventsPath, summary } : undefined, wireFormat, notes);

  // 3. The pilots, with the pilot's own configuration rules (local: their programs looked up on this host).
  const localWorkDir = request.backend === 'local' ? (request.local?.workDir ? resolve(request.local.workDir) : undefined) : undefined;
  if (broker || request.backend === 'ewms') {
    const target: WorkflowTarget = { id, queues: workflowQueues(id), broker: broker ?? { address: 'ewms://wms' }, maxDeliveries, wireFormat, depth: async () => 0 };
    const checked = checkPilots(p, request, target, { cwd, workDir: localWorkDir ?? join(tmpdir(), `ewms-${id}-pilots`) });
    request = checked.request;
    notes.push(...checked.notes);
  }
  p.check();

  // 4. What the broker already holds for this workflow, and whether every event fits through it (a look only).
  if (broker) {
    await withBroker(broker, logger, async (b) => {
      if (args.workflow !== undefined) {
        const state = await inspectWorkflow(b, id, workflowQueues(id));
        if (eventsPath && state.exists && !state.empty) {
          throw new UsageError(
            [{ where: `--workflow ${id}`, problem: `already holds ${describeWorkflowState(state)}`, fix: `retry its dead letters: ewms dlq requeue --workflow ${id} --write-ids again.txt, then ewms run --workflow ${id} --also-expect-ids again.txt …; start over: ewms delete --workflow ${id}; or run under a new --workflow id` }],
            'ewms run',
          );
        }
        if (!eventsPath && !state.exists) {
          throw new UsageError([{ where: `--workflow ${id}`, problem: `does not exist on the ${b.type} broker at ${b.displayAddress}: no events to expect`, fix: 'check the workflow id and the broker, or give --events' }], 'ewms run');
        }
        if (state.exists) say(`workflow ${id} has ${describeWorkflowState(state)}${state.deadLetter.depth ? ' (dead letters already there are not counted as outcomes of this run)' : ''}`);
      }
      if (eventsPath && summary) await checkEventsFit(p, b, eventsPath, summary, wireFormat);
      p.check();
    });
  }

  // 5. Go.
  const pilotsLine = `${request.count}${request.autoscale ? `–${request.autoscale.max} (autoscaled)` : ''} ${request.backend} pilot${request.count === 1 && !request.autoscale ? '' : 's'}`;
  say(`workflow ${id}: ${summary ? `${summary.count} event${summary.count === 1 ? '' : 's'} from ${eventsPath}` : 'no new events'}${alsoExpect !== 0 ? `, ${typeof alsoExpect === 'number' ? alsoExpect : alsoExpect.length} more expected` : ''}; ${pilotsLine}`);
  for (const note of notes) say(note);
  // A stream resumes: what its files already hold is not written again.
  const alreadySeen: string[] = [];
  if (follow) {
    for (const path of new Set([args.output as string | undefined, args['dead-letters'] as string | undefined])) {
      await dropPartialLastLine(path);
      alreadySeen.push(...(await writtenOutcomeIds(path, 100_000)));
    }
  }
  const results = new LineWriter(args.output as string | undefined, { append: args.append as boolean });
  const dead = args['dead-letters'] ? new LineWriter(args['dead-letters'] as string, { append: args.append as boolean }) : undefined;
  const tally = new DeadLetterTally();
  await results.ready();
  await dead?.ready();
  let ownedWorkDir: string | undefined;
  if (request.backend === 'local') {
    const dir = localWorkDir ?? (ownedWorkDir = mkdtempSync(join(tmpdir(), `ewms-${id}-pilots-`)));
    request = { ...request, local: { ...request.local, workDir: dir } };
    say(`pilots' files: ${dir}/pilot-N/ (pilot.err: the pilot's log; pilot.out: output of failed tasks)${ownedWorkDir ? '; removed after a finished run unless --keep-pilot-files' : ''}`);
  }
  // Ctrl-C or a kill must not leave local pilots running (they are in process groups of their own).
  const stop = new AbortController();
  const signals = stopOnSignals(stop, 'unfinished events stay in the queue');
  let finished = false;
  const monitorCli = monitorPort !== undefined ? await import('../monitor/cli.js') : undefined;
  let monitor: Awaited<ReturnType<NonNullable<typeof monitorCli>['serveMonitor']>> | undefined;
  context.changing();
  try {
    const report = await runWorkflow(
      defined({
        broker,
        id,
        maxDeliveries,
        wireFormat,
        logger,
        events: eventsPath ? readEvents(eventsPath) : undefined,
        alsoExpect,
        pilots: request,
        urgentQueues: args['urgent-queues'] === true ? true : undefined,
        follow: follow || undefined,
        alreadySeen: follow ? alreadySeen : undefined,
        idleTimeoutMs: idleTimeout * 1000,
        progress: args.progress ? {} : (false as const),
        // A stream's queues outlive the collector: a restart resumes from them.
        deleteQueues: args['keep-queues'] || follow ? false : ('if-clean' as const),
        onPublished: args['write-ids'] ? (ids: readonly string[]) => writeFile(args['write-ids'] as string, ids.map((i) => `${i}\n`).join('')) : undefined,
        onOutcome: async (o: WorkflowOutcome) => {
          if (o.kind === 'result') {
            await results.write(outcomeLine(o, { outcomeId: follow }));
          } else {
            tally.add(o);
            // A stream acks dead letters once handed over: without --dead-letters they go with the results.
            await (dead ?? (follow ? results : undefined))?.write(outcomeLine(o, { outcomeId: follow }));
          }
        },
        signal: stop.signal,
        onWorkflow:
          monitorCli && broker
            ? async (wf: Workflow, progress: () => ProgressSnapshot) => {
                monitor = await monitorCli.serveMonitor({ workflowId: wf.id, queues: wf.queues, broker, host: args['monitor-host'] as string, port: monitorPort!, run: progress, secrets: secrets(), logger });
              }
            : undefined,
      }),
    ).catch((err: unknown) => {
      if (signals.signal()) return undefined;
      throw err;
    });
    if (!report) return signals.signal() === 'SIGTERM' ? EXIT.terminated : EXIT.interrupted;
    finished = true;
    process.stderr.write(
      `workflow ${report.workflowId}: ${report.results} results, ${report.deadLetters} dead letters, ${report.duplicates} duplicates dropped, ` +
        `${report.published} published, ${report.seconds.toFixed(1)} s (${report.ratePerSecond.toFixed(1)}/s); queues ${report.queuesDeleted ? 'deleted' : 'kept'}\n`,
    );
    if (report.deadLetters > 0) {
      process.stderr.write(`dead letters by reason:\n${tally.lines().join('\n')}\n`);
      process.stderr.write(
        report.deadLetterRoute === 'queue'
          ? `inspect: ewms dlq list --workflow ${report.workflowId}; retry: ewms dlq requeue --workflow ${report.workflowId} --write-ids again.txt, then ewms run --workflow ${report.workflowId} --also-expect-ids again.txt …\n`
          : `dead letters came with the results${args['dead-letters'] ? ` and are in ${String(args['dead-letters'])}` : ' (give --dead-letters FILE to keep them)'}\n`,
      );
    }
    if (monitor) await monitorCli!.lingerThenClose(monitor, monitorLinger, stop.signal);
    return report.deadLetters > 0 ? EXIT.deadLetters : EXIT.ok;
  } finally {
    await (monitor as { close(): Promise<void> } | undefined)?.close();
    signals.release();
    await results.close();
    await dead?.close();
    const dir = request.local?.workDir;
    if (ownedWorkDir && finished && !args['keep-pilot-files']) rmSync(ownedWorkDir, { recursive: true, force: true });
    else if (dir && !finished) say(`the pilots' files are kept in ${dir} (pilot-N/pilot.err: each pilot's log; pilot-N/pilot.out: output of failed tasks)`);
  }
}

export const runCommand: EwmsCommand = {
  name: 'run',
  describe: 'Publish events, start pilots, collect every outcome, stop the pilots',
  options: (y) =>
    collectOptions(pilotOptions(brokerOptions(y, false)))
      .option('events', { type: 'string', describe: 'Events: a .jsonl file (one JSON value per line) or a directory (one event per file); checked whole before the first is published. With --workflow-file and several public input queues: ALIAS=FILE, once per queue' })
      .option('workflow-file', { type: 'string', describe: 'A workflow graph (JSON, or YAML when it ends in .yaml/.yml; the WMS request shape: tasks[] with task_name, task_args, input_queue_aliases, output_queue_aliases, …; public_queue_aliases): every task runs with its own pilots' })
      .option('write-ids', { type: 'string', describe: 'Write the published event ids here, one per line, in the order of --events' })
      .option('also-expect', { type: 'string', describe: 'How many outcomes to await besides --events (dead letters already in the queue when the run starts are not counted; --also-expect-ids is exact)' })
      .option('also-expect-ids', { type: 'string', conflicts: 'also-expect', describe: 'File of event ids to await besides --events (e.g. from ewms dlq requeue --write-ids)' })
      .option('keep-queues', { type: 'boolean', default: false, describe: 'Keep the queues at the end (they are kept anyway while dead letters remain)' })
      .option('follow', { type: 'boolean', describe: 'Stream: start the pilots (with --autoscale-min 0 they scale to zero while idle), write outcomes as they arrive until Ctrl-C/SIGTERM; restarted with --append it resumes without losing or repeating any' })
      .option('urgent-queues', { type: 'boolean', describe: 'Give each task input queue an urgent twin the pilots drain first (ewms publish --urgent sends there); a workflow file says "urgent_queues": true' })
      .option('monitor', { type: 'string', describe: 'Serve the live page and /metrics during the run on this port (default 9464; 0: a free one)', group: 'Monitor:' })
      .option('monitor-host', { type: 'string', default: '127.0.0.1', describe: 'Address the monitor binds (anything but loopback needs EWMS_MONITOR_TOKEN)', group: 'Monitor:' })
      .option('monitor-linger', { type: 'string', default: '0', describe: 'Keep serving the final state this many seconds after the run (Ctrl-C ends it sooner)', group: 'Monitor:' }),
  run: cmdRun,
  repeatable: ['events'],
};
