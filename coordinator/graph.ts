/**
 * A workflow graph in the EWMS WMS's own request shape: tasks that read input queues and write output queues
 * (named by alias), some queues public (the coordinator publishes to or collects from them). Checked before
 * anything is provisioned or started, and turned into the plan every backend runs.
 *
 * ```ts
 * const tasks: WorkflowTask[] = [
 *   { task_name: 'split', task_args: 'split {{INFILE}} {{OUTFILE}}', input_queue_aliases: ['in'], output_queue_aliases: ['a', 'b'] },
 *   { task_name: 'fit-a', task_args: 'fit {{INFILE}} {{OUTFILE}}', input_queue_aliases: ['a'], output_queue_aliases: ['fits'] },
 *   { task_name: 'fit-b', task_args: 'fit {{INFILE}} {{OUTFILE}}', input_queue_aliases: ['b'], output_queue_aliases: ['fits'] },
 *   { task_name: 'merge', task_args: 'merge {{INFILE}} {{OUTFILE}}', input_queue_aliases: ['fits'], output_queue_aliases: ['out'] },
 * ];
 * await Workflow.create({ broker, tasks, publicQueues: ['in', 'out'], pilots: { backend: 'local' } });
 * ```
 */
import { readFile } from 'node:fs/promises';
import { LineCounter, parseDocument } from 'yaml';
import type { JsonValue } from '../common/wire.js';
import { CoordinatorConfigError } from './errors.js';
import { jsonProblem } from './event-files.js';
import type { PlannedTask } from './backends/plan.js';
import type { AutoscaleOptions, PilotDefaults, PilotRequest } from './types.js';

/**
 * One task, in the WMS's `tasks[]` shape. `task_name` and `autoscale` are this coordinator's additions and
 * are never sent to the WMS.
 */
export interface WorkflowTask {
  /** Names the task in progress lines, dead letters (`ewms dlq list --task`) and provenance. Default `task-<index>`. */
  task_name?: string;
  input_queue_aliases: string[];
  output_queue_aliases: string[];
  /** Container image; absent: the task runs on the pilot's host (local and condor backends). */
  task_image?: string;
  /** The command line; `{{INFILE}}`, `{{OUTFILE}}`, `{{DATA_HUB}}` are substituted by the pilot. */
  task_args: string;
  task_env?: Record<string, string>;
  init_image?: string;
  init_args?: string;
  init_env?: Record<string, string>;
  /** Pilots (workers) for this task; default: the pilot defaults' `count`, else 1. */
  n_workers?: number;
  /** Per-task pilot settings (`environment`: `EWMS_PILOT_*` variables), and for the WMS its image tag and source. */
  pilot_config?: { environment?: Record<string, string | number>; tag?: string; image_source?: 'auto' | 'cvmfs'; input_files?: string[] };
  /** The WMS's `worker_config` fields for this task (condor: cpus, memory, disk, requirements, wall time). */
  worker_config?: Record<string, JsonValue>;
  /** The WMS's `cluster_locations` for this task (default: the ewms settings' `locations`). */
  cluster_locations?: string[];
  /** Keep this task's pilot count proportional to its own input queues' depth (local and condor). */
  autoscale?: AutoscaleOptions;
}

/** A workflow file: the WMS request's shape, plus `allow_cycles` and `urgent_queues` (ours). */
export interface WorkflowDescription {
  tasks: WorkflowTask[];
  public_queue_aliases: string[];
  /** The WMS request's `priority`; also HTCondor's job priority of every pilot cluster. */
  priority?: number;
  allow_cycles?: boolean;
  /** Give every task's input queue an urgent twin (see `publish({ priority: 'urgent' })`). */
  urgent_queues?: boolean;
}

/** What is wrong with a graph, for callers that branch on it. */
export type GraphProblem = 'no-tasks' | 'bad-alias' | 'no-input' | 'unknown-alias' | 'unread-queue' | 'shared-input' | 'cycle' | 'no-public-input' | 'no-public-output' | 'duplicate-task-name';

/** The graph cannot run; names the task and the alias at fault. */
export class WorkflowGraphError extends CoordinatorConfigError {
  constructor(
    readonly problem: GraphProblem,
    message: string,
    hint: string,
    readonly task?: string,
    readonly alias?: string,
  ) {
    super(message, hint);
  }
}

/** A checked graph: tasks with their names, and the public queues split by direction. */
export interface CheckedGraph {
  tasks: Array<WorkflowTask & { task_name: string }>;
  /** Public queues some task reads and none writes: where events are published. */
  publicInputs: string[];
  /** Public queues some task writes and none reads: where outcomes are collected. */
  publicOutputs: string[];
  /** Every alias, in first-mention order. */
  aliases: string[];
}

const ALIAS_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,47}$/;

/** Check a graph before anything starts; throws `WorkflowGraphError` naming the task and alias at fault. */
export function checkGraph(tasks: readonly WorkflowTask[], publicQueues: readonly string[], options: { allowCycles?: boolean } = {}): CheckedGraph {
  if (tasks.length === 0) throw new WorkflowGraphError('no-tasks', 'the workflow has no tasks', 'give at least one task with input_queue_aliases and output_queue_aliases');
  const named = tasks.map((t, i) => ({ ...t, task_name: t.task_name ?? `task-${i}` }));
  const seenNames = new Set<string>();
  for (const t of named) {
    if (seenNames.has(t.task_name)) throw new WorkflowGraphError('duplicate-task-name', `two tasks are named '${t.task_name}'`, 'give each task a task_name of its own', t.task_name);
    seenNames.add(t.task_name);
  }
  const readers = new Map<string, string[]>();
  const writers = new Map<string, string[]>();
  const aliases: string[] = [];
  const mention = (alias: string, task: string) => {
    if (typeof alias !== 'string' || !ALIAS_PATTERN.test(alias)) {
      throw new WorkflowGraphError('bad-alias', `task '${task}' names queue alias '${String(alias)}', which cannot name a queue`, 'use letters, digits, -, _ and . (at most 48, starting with a letter or digit)', task, String(alias));
    }
    if (!aliases.includes(alias)) aliases.push(alias);
  };
  for (const t of named) {
    if (!Array.isArray(t.input_queue_aliases) || t.input_queue_aliases.length === 0) {
      throw new WorkflowGraphError('no-input', `task '${t.task_name}' has no input queue`, 'give it input_queue_aliases: a public queue you publish to, or another task\'s output', t.task_name);
    }
    for (const a of t.input_queue_aliases) {
      mention(a, t.task_name);
      readers.set(a, [...(readers.get(a) ?? []), t.task_name]);
    }
    for (const a of t.output_queue_aliases ?? []) {
      mention(a, t.task_name);
      writers.set(a, [...(writers.get(a) ?? []), t.task_name]);
    }
  }
  const isPublic = new Set(publicQueues);
  for (const alias of publicQueues) {
    if (!aliases.includes(alias)) throw new WorkflowGraphError('unknown-alias', `public queue '${alias}' is neither read nor written by any task`, `check its spelling; the tasks name: ${aliases.join(', ')}`, undefined, alias);
  }
  for (const [alias, names] of readers) {
    if (names.length > 1) {
      throw new WorkflowGraphError(
        'shared-input',
        `queue '${alias}' is read by tasks '${names.join("' and '")}': each event would reach only one of them`,
        `to send every event to both, give each task its own queue and list both in the writer's output_queue_aliases`,
        names[1],
        alias,
      );
    }
    if (!writers.has(alias) && !isPublic.has(alias)) {
      throw new WorkflowGraphError('unknown-alias', `task '${names[0]}' reads queue '${alias}', which no task writes and which is not public`, `add '${alias}' to public_queue_aliases to publish to it, or correct the alias`, names[0], alias);
    }
  }
  for (const [alias, names] of writers) {
    if (!readers.has(alias) && !isPublic.has(alias)) {
      throw new WorkflowGraphError('unread-queue', `task '${names[0]}' writes queue '${alias}', which no task reads and which is not public`, `add '${alias}' to public_queue_aliases to collect from it, or have a task read it`, names[0], alias);
    }
  }
  const cycle = findCycle(named, readers);
  if (cycle && !options.allowCycles) {
    throw new WorkflowGraphError(
      'cycle',
      `the tasks form a cycle: ${cycle.tasks.join(' → ')} (through queue '${cycle.alias}')`,
      'a cycle can keep events circling forever; break it, or allow it explicitly (allowCycles / "allow_cycles": true) if the tasks end it themselves',
      cycle.tasks[0],
      cycle.alias,
    );
  }
  const publicInputs = publicQueues.filter((a) => readers.has(a) && !writers.has(a));
  const publicOutputs = publicQueues.filter((a) => writers.has(a) && !readers.has(a));
  if (publicInputs.length === 0) throw new WorkflowGraphError('no-public-input', 'no public queue is an input of the graph (read by a task, written by none)', 'list the queue you publish events to in public_queue_aliases');
  if (publicOutputs.length === 0) throw new WorkflowGraphError('no-public-output', 'no public queue is an output of the graph (written by a task, read by none)', 'list the queue results arrive on in public_queue_aliases');
  return { tasks: named, publicInputs, publicOutputs, aliases };
}

/** The first cycle among the tasks (task → tasks reading its outputs), if any. */
function findCycle(tasks: ReadonlyArray<WorkflowTask & { task_name: string }>, readers: Map<string, string[]>): { tasks: string[]; alias: string } | undefined {
  const byName = new Map(tasks.map((t) => [t.task_name, t]));
  const state = new Map<string, 'open' | 'done'>();
  const path: Array<{ task: string; via: string }> = [];
  const visit = (name: string, via: string): { tasks: string[]; alias: string } | undefined => {
    if (state.get(name) === 'open') {
      const start = path.findIndex((p) => p.task === name);
      return { tasks: [...path.slice(start).map((p) => p.task), name], alias: via };
    }
    if (state.get(name) === 'done') return undefined;
    state.set(name, 'open');
    path.push({ task: name, via });
    for (const alias of byName.get(name)?.output_queue_aliases ?? []) {
      for (const next of readers.get(alias) ?? []) {
        const found = visit(next, alias);
        if (found) return found;
      }
    }
    path.pop();
    state.set(name, 'done');
    return undefined;
  };
  for (const t of tasks) {
    const found = visit(t.task_name, '');
    if (found) return found;
  }
  return undefined;
}

/** Each task as a backend runs it: its queues (aliases) and its pilot request. */
export function plannedTasks(graph: CheckedGraph, defaults: PilotDefaults): PlannedTask[] {
  return graph.tasks.map((t) => ({ name: t.task_name, inputQueues: t.input_queue_aliases, outputQueues: t.output_queue_aliases, pilots: taskPilotRequest(t, defaults) }));
}

/** One task's pilot request: the shared defaults, overridden by what the task itself says. */
export function taskPilotRequest(task: WorkflowTask & { task_name: string }, defaults: PilotDefaults): PilotRequest {
  if (typeof task.task_args !== 'string' || task.task_args.trim() === '') {
    throw new WorkflowGraphError('no-input', `task '${task.task_name}' has no task_args`, 'give the command line it runs per event, e.g. "python fit.py {{INFILE}} {{OUTFILE}}"', task.task_name);
  }
  const environment = Object.fromEntries(Object.entries(task.pilot_config?.environment ?? {}).map(([k, v]) => [k, String(v)]));
  const request: PilotRequest = {
    ...defaults,
    count: task.n_workers ?? defaults.count ?? 1,
    task: { args: task.task_args, ...(task.task_image ? { image: task.task_image } : {}), ...(task.task_env ? { env: task.task_env } : {}) },
    pilotEnv: { ...defaults.pilotEnv, ...environment },
  };
  if (task.init_args !== undefined || task.init_image !== undefined) {
    request.init = { args: task.init_args ?? '', ...(task.init_image ? { image: task.init_image } : {}), ...(task.init_env ? { env: task.init_env } : {}) };
  }
  if (task.autoscale) request.autoscale = task.autoscale;
  const pc = task.pilot_config;
  if (defaults.ewms || task.worker_config || task.cluster_locations || pc?.tag || pc?.image_source || pc?.input_files) {
    const ewms = defaults.ewms ?? { url: '', locations: [] };
    request.ewms = {
      ...ewms,
      ...(task.cluster_locations ? { locations: task.cluster_locations } : {}),
      ...(task.worker_config ? { workerConfig: { ...ewms.workerConfig, ...task.worker_config } } : {}),
      ...(pc?.tag ? { pilotTag: pc.tag } : {}),
      ...(pc?.image_source ? { imageSource: pc.image_source } : {}),
      ...(pc?.input_files ? { inputFiles: pc.input_files } : {}),
    };
  }
  return request;
}

/** How a workflow file is written: by its extension, `.yaml`/`.yml` for YAML, anything else JSON. */
export type WorkflowFileFormat = 'json' | 'yaml';

/** The format `path`'s extension names. */
export function workflowFileFormat(path: string): WorkflowFileFormat {
  return /\.ya?ml$/i.test(path) ? 'yaml' : 'json';
}

/** Read a workflow file (JSON, or YAML by its extension), checking its shape enough to name what is missing. */
export async function readWorkflowFile(path: string): Promise<WorkflowDescription> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new CoordinatorConfigError(`cannot read the workflow file '${path}'`, 'give the path of a JSON file (or a .yaml/.yml file) with tasks and public_queue_aliases', { cause: err });
  }
  return parseWorkflowDescription(text, path, workflowFileFormat(path));
}

const SHAPE_HINT = 'write it in the WMS request shape: {"tasks": [...], "public_queue_aliases": [...]} (in YAML: tasks: and public_queue_aliases: at the top)';

/** The parsed text; a malformed one is refused naming its line and column. */
function parseText(text: string, where: string, format: WorkflowFileFormat): unknown {
  if (format === 'json') {
    try {
      return JSON.parse(text);
    } catch {
      const { line, column, problem } = jsonProblem(text);
      throw new CoordinatorConfigError(`${where}:${line}:${column} is not valid JSON: ${problem}`, SHAPE_HINT);
    }
  }
  // Duplicate keys are errors (the default), as a silently dropped task setting would be worse.
  const lines = new LineCounter();
  const doc = parseDocument(text, { prettyErrors: false, uniqueKeys: true, lineCounter: lines });
  const first = doc.errors[0];
  if (first) {
    const at = lines.linePos(first.pos[0]);
    throw new CoordinatorConfigError(`${where}:${at.line}:${at.col} is not valid YAML: ${first.message.split('\n')[0]}`, SHAPE_HINT);
  }
  // Plain data (anchors resolved, their expansion bounded); the schema checks below apply as for JSON.
  return doc.toJS({ maxAliasCount: 100 });
}

/** Parse a workflow description from JSON (or YAML) text; `where` names it in errors. */
export function parseWorkflowDescription(text: string, where = 'the workflow file', format: WorkflowFileFormat = 'json'): WorkflowDescription {
  const parsed = parseText(text, where, format);
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new CoordinatorConfigError(`${where} is not ${format === 'json' ? 'a JSON object' : 'a YAML mapping'}`, SHAPE_HINT);
  }
  const d = parsed as Record<string, unknown>;
  if (!Array.isArray(d.tasks)) throw new CoordinatorConfigError(`${where} has no "tasks" list`, 'each task: {"task_name", "task_args", "input_queue_aliases", "output_queue_aliases", ...}');
  if (!Array.isArray(d.public_queue_aliases) || !d.public_queue_aliases.every((a) => typeof a === 'string')) {
    throw new CoordinatorConfigError(`${where} has no "public_queue_aliases" list of strings`, 'name the queues you publish to and collect from, e.g. ["in", "out"]');
  }
  const known = new Set(['tasks', 'public_queue_aliases', 'priority', 'allow_cycles', 'urgent_queues']);
  const unknown = Object.keys(d).filter((k) => !known.has(k));
  if (unknown.length > 0) throw new CoordinatorConfigError(`${where} has unknown field${unknown.length > 1 ? 's' : ''} ${unknown.join(', ')}`, `the fields are: ${[...known].join(', ')}`);
  if (d.priority !== undefined && !Number.isInteger(d.priority)) throw new CoordinatorConfigError(`${where}: "priority" must be a whole number`, 'e.g. "priority": 10 (higher runs first)');
  return d as unknown as WorkflowDescription;
}
