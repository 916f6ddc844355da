/**
 * `ewms run --workflow-file FILE`: a workflow graph in the WMS request's shape (JSON, or YAML by its extension).
 * Everything is checked before anything changes — the graph (errors name the task and the alias), every events
 * file, every task's pilot settings with the pilot's own rules, the output paths — then events are published
 * to the public input queues (`--events FILE` for the only one, `--events ALIAS=FILE` for each of several),
 * every task's pilots start, and outcomes are collected from the public output queues and every task's
 * dead-letter queue.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Logger } from 'pino';
import { LineWriter, outcomeLine, readEvents, scanEvents, type EventsSummary } from '../event-files.js';
import { checkGraph, plannedTasks, readWorkflowFile, WorkflowGraphError, type WorkflowDescription, type WorkflowTask } from '../graph.js';
import type { WorkflowTarget } from '../pilot-env.js';
import { defaultDeadLetterQueue } from '../../mq-adapters/types.js';
import { graphQueueName } from '../queue-layout.js';
import { runWorkflow } from '../run-workflow.js';
import type { EventData, PilotDefaults, WireFormat, WorkflowOutcome } from '../types.js';
import { checkWorkflowId, workflowQueues } from '../workflow.js';
import { InputProblems, seconds, wholeNumber } from './input.js';
import { checkPilots } from './pilot-check.js';
import { readPilotDefaults } from './pilot-options.js';
import { brokerFromArgs, checkWritable, defined, EXIT, stopOnSignals, type Args, type CommandContext } from './shared.js';

const say = (line: string) => process.stderr.write(`ewms: ${line}\n`);

/** Flags that describe the one task of a plain run: with a workflow file the tasks say it themselves. */
const SINGLE_TASK_FLAGS = ['task-args', 'task-image', 'task-env', 'task-timeout', 'init-args', 'init-image', 'init-env', 'init-timeout', 'autoscale-max', 'also-expect', 'also-expect-ids', 'write-ids'];

/** `--events` as given: one file for the only public input, or `ALIAS=FILE` per public input. */
function eventFiles(p: InputProblems, given: unknown, publicInputs: readonly string[]): Map<string, string> {
  const items = given === undefined ? [] : Array.isArray(given) ? (given as string[]) : [String(given)];
  const files = new Map<string, string>();
  for (const item of items) {
    const at = item.indexOf('=');
    const alias = at > 0 && publicInputs.includes(item.slice(0, at)) ? item.slice(0, at) : undefined;
    if (alias === undefined && publicInputs.length > 1) {
      p.add('--events', `'${item}' does not say which public input queue it is for (there are ${publicInputs.length}: ${publicInputs.join(', ')})`, `give --events ALIAS=FILE, e.g. --events ${publicInputs[0]}=events.jsonl`);
      continue;
    }
    const target = alias ?? publicInputs[0]!;
    if (files.has(target)) p.add('--events', `names queue '${target}' twice`, 'give one file per public input queue');
    files.set(target, alias !== undefined ? item.slice(at + 1) : item);
  }
  if (files.size === 0) p.add('--events', 'nothing to run: no events given', `give --events FILE (one JSON value per line) for ${publicInputs.length > 1 ? 'each public input: --events ALIAS=FILE' : `the public input '${publicInputs[0]}'`}`);
  return files;
}

/** Structured JSON events need .json infiles (and give .json outfiles) all along the graph, unless a task says otherwise. */
function jsonFiles(defaults: PilotDefaults, summaries: ReadonlyArray<{ path: string; summary: EventsSummary }>, notes: string[]): PilotDefaults {
  const structured = summaries.find((s) => s.summary.structured > 0);
  if (!structured) return defaults;
  const pilotEnv = { ...defaults.pilotEnv };
  pilotEnv.EWMS_PILOT_INFILE_EXT ??= '.json';
  pilotEnv.EWMS_PILOT_OUTFILE_EXT ??= '.json';
  notes.push(`events in ${structured.path} are JSON other than strings (the first at ${structured.summary.firstStructured}): every task gets .json infiles and outfiles unless its pilot_config.environment says otherwise`);
  return { ...defaults, pilotEnv };
}

export async function cmdRunGraph(args: Args, logger: Logger, context: CommandContext): Promise<number> {
  const p = new InputProblems('ewms run');
  const cwd = process.cwd();
  const notes: string[] = [];
  const file = args['workflow-file'] as string;
  for (const flag of SINGLE_TASK_FLAGS) {
    if (args[flag] !== undefined) p.add(`--${flag}`, 'is given with --workflow-file, which describes the tasks', "put it in the workflow file's tasks (task_args, task_image, task_env, init_*, autoscale, pilot_config.environment)");
  }
  const description: WorkflowDescription | undefined = await p.absorbAsync('--workflow-file', () => readWorkflowFile(file));
  const graph = description ? p.absorb(`--workflow-file ${file}`, () => checkGraph(description.tasks, description.public_queue_aliases, { allowCycles: description.allow_cycles ?? false })) : undefined;
  const files = graph ? eventFiles(p, args.events, graph.publicInputs) : new Map<string, string>();
  const maxDeliveries = wholeNumber(p, args, 'max-deliveries', { min: 1, example: '3' }) ?? 3;
  const idleTimeout = seconds(p, args, 'idle-timeout', { example: '600' }) ?? 600;
  const wireFormat = args['wire-format'] as WireFormat;
  const id = (args.workflow as string | undefined) ?? `wf${Date.now().toString(36)}`;
  p.absorb('--workflow', () => checkWorkflowId(id));
  let defaults = readPilotDefaults(p, args);
  const count = wholeNumber(p, args, 'pilots', { min: 1, example: '2' });
  if (count !== undefined) defaults.count = count;
  const broker = defaults.backend === 'ewms' ? undefined : p.absorb('--broker', () => brokerFromArgs(args));
  await checkWritable(p, '--output', args.output as string | undefined);
  await checkWritable(p, '--dead-letters', args['dead-letters'] as string | undefined);

  // Every events file, whole, before anything is published.
  const summaries: Array<{ alias: string; path: string; summary: EventsSummary }> = [];
  for (const [alias, path] of files) {
    const summary = await p.absorbAsync(`--events ${path}`, () => scanEvents(path));
    if (summary) summaries.push({ alias, path, summary });
  }
  if (wireFormat !== 'raw') defaults = jsonFiles(defaults, summaries, notes);

  // Each task's pilots, with the pilot's own rules; relative programs resolved here, as for a plain run.
  let tasks: WorkflowTask[] = description?.tasks ?? [];
  const localWorkDir = defaults.backend === 'local' ? resolve((defaults.local?.workDir as string | undefined) ?? mkdtempSync(join(tmpdir(), `ewms-${id}-pilots-`))) : undefined;
  if (graph && (broker || defaults.backend === 'ewms')) {
    const planned = p.absorb('--workflow-file', () => plannedTasks(graph, defaults)) ?? [];
    tasks = graph.tasks.map((task, i) => {
      const request = planned[i]?.pilots;
      if (!request) return task;
      const target: WorkflowTarget = {
        id,
        queues: workflowQueues(id),
        broker: broker ?? { address: 'ewms://wms' },
        maxDeliveries,
        wireFormat,
        depth: async () => 0,
        task: { name: task.task_name, inputs: task.input_queue_aliases.map((a) => ({ queue: graphQueueName(id, a), deadLetter: defaultDeadLetterQueue(graphQueueName(id, a)) })), outputs: task.output_queue_aliases.map((a) => ({ queue: graphQueueName(id, a) })), filterMarkers: true },
      };
      const sub = new InputProblems(`task '${task.task_name}'`);
      const checked = checkPilots(sub, request, target, { cwd, workDir: join(localWorkDir ?? tmpdir(), task.task_name) });
      for (const problem of sub.found) p.add(`task '${task.task_name}': ${problem.where}`, problem.problem, problem.fix);
      notes.push(...checked.notes.map((n) => `task '${task.task_name}': ${n}`));
      return { ...task, task_args: checked.request.task.args, ...(checked.request.init ? { init_args: checked.request.init.args } : {}) };
    });
  }
  p.check();
  if (!graph || !description) return EXIT.usage;
  if (localWorkDir) defaults = { ...defaults, local: { ...defaults.local, workDir: localWorkDir } };

  const total = summaries.reduce((n, s) => n + s.summary.count, 0);
  say(`workflow ${id}: ${graph.tasks.length} tasks (${graph.tasks.map((t) => t.task_name).join(', ')}); ${total} event${total === 1 ? '' : 's'} to ${summaries.map((s) => `${s.alias} (${s.summary.count} from ${s.path})`).join(', ')}; ${defaults.backend} pilots`);
  if (localWorkDir) say(`pilots' files: ${localWorkDir}/<task>/pilot-N/ (pilot.err: the pilot's log)`);
  for (const note of notes) say(note);

  const results = new LineWriter(args.output as string | undefined, { append: args.append as boolean });
  const dead = args['dead-letters'] ? new LineWriter(args['dead-letters'] as string, { append: args.append as boolean }) : undefined;
  await results.ready();
  await dead?.ready();
  const deadByTask = new Map<string, number>();
  const stop = new AbortController();
  const signals = stopOnSignals(stop, 'unfinished events stay in their queues');
  context.changing();
  try {
    const eventsByQueue: Record<string, AsyncIterable<EventData>> = Object.fromEntries(summaries.map((s) => [s.alias, readEvents(s.path)]));
    const report = await runWorkflow(
      defined({
        broker,
        id,
        tasks,
        publicQueues: description.public_queue_aliases,
        allowCycles: description.allow_cycles,
        urgentQueues: description.urgent_queues ?? (args['urgent-queues'] === true ? true : undefined),
        priority: description.priority,
        maxDeliveries,
        wireFormat,
        logger,
        eventsByQueue,
        pilots: defaults,
        idleTimeoutMs: idleTimeout * 1000,
        progress: args.progress ? {} : (false as const),
        deleteQueues: args['keep-queues'] ? false : ('if-clean' as const),
        onOutcome: async (o: WorkflowOutcome) => {
          if (o.kind === 'result') return results.write(outcomeLine(o));
          deadByTask.set(o.task ?? '?', (deadByTask.get(o.task ?? '?') ?? 0) + 1);
          await dead?.write(outcomeLine(o));
        },
        signal: stop.signal,
      }),
    ).catch((err: unknown) => {
      if (signals.signal()) return undefined;
      throw err;
    });
    if (!report) return signals.signal() === 'SIGTERM' ? EXIT.terminated : EXIT.interrupted;
    process.stderr.write(
      `workflow ${report.workflowId}: ${report.settled} of ${report.published} events settled — ${report.results} results, ${report.deadLetters} dead letters, ${report.filtered} filtered out; ` +
        `${report.duplicates} duplicates dropped, ${report.seconds.toFixed(1)} s; queues ${report.queuesDeleted ? 'deleted' : 'kept'}\n`,
    );
    for (const [task, n] of deadByTask) {
      process.stderr.write(`  ${n} dead letter${n === 1 ? '' : 's'} at task '${task}': ewms dlq list --workflow ${report.workflowId} --workflow-file ${file} --task ${task}\n`);
    }
    return report.deadLetters > 0 ? EXIT.deadLetters : EXIT.ok;
  } catch (err) {
    if (err instanceof WorkflowGraphError) p.add(`--workflow-file ${file}`, err.message, err.hint);
    p.check();
    throw err;
  } finally {
    signals.release();
    await results.close();
    await dead?.close();
  }
}
