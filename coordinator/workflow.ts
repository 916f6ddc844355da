/**
 * A workflow: one incoming queue, one outgoing queue, where dead letters go, and the pilots that turn the
 * first into the second — or a graph of tasks and queues in the WMS request's shape (`tasks`,
 * `publicQueues`; see `graph.ts`), each task with pilots of its own.
 *
 * ```ts
 * const wf = await Workflow.create({ broker: { address: 'amqp://guest@localhost', authToken: 'guest' } });
 * const ids = await wf.publish(pixels());
 * const pilots = await wf.startPilots({ backend: 'local', count: 4, task: { args: 'scan {{INFILE}} {{OUTFILE}}' } });
 * for await (const outcome of wf.collect({ expected: ids })) save(outcome);
 * await pilots.remove();
 * await wf.close({ deleteQueues: true });
 * ```
 *
 * ```ts
 * const wf = await Workflow.create({ broker, tasks, publicQueues: ['in', 'out'], pilots: { backend: 'local' } });
 * const ids = await wf.publish(events);                       // to the one public input ('in')
 * const pilots = await wf.startPilots();                       // every task's pilots
 * for await (const outcome of wf.collect({ expected: ids })) save(outcome, outcome.provenance);
 * ```
 *
 * The queues are provisioned by the pilots' backend (`backends/index.ts`): on the coordinator's broker for
 * `local` and `condor` (and when no pilots are named), by the WMS for `ewms` — each queue then with its own
 * token, so each gets a connection of its own.
 */
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import type { WireFormat } from '../common/wire.js';
import { connect } from '../mq-adapters/index.js';
import { DEFAULTS, defaultDeadLetterQueue, type AdapterLogger, type Broker, type ConnectOptions } from '../mq-adapters/types.js';
import { brokerProvisioned, pilotBackend, validatePilotRequest, type Provisioned } from './backends/index.js';
import { singleTaskPlan, type PlannedWorkflow } from './backends/plan.js';
import { WorkflowPilots } from './backends/workflow-pilots.js';
import { collectOutcomes, type OutcomeSource } from './collect.js';
import { checkGraph, plannedTasks, taskPilotRequest } from './graph.js';
import { PROVENANCE_HEADERS } from '../common/provenance.js';
import { QueueLayout, type LayoutTask } from './queue-layout.js';
import type { TaskQueues } from './pilot-env.js';
import { DeadLetters } from './dead-letters.js';
import { CoordinatorConfigError } from './errors.js';
import { monitorQueueName, monitorQueueSpec } from './monitor/feed.js';
import { describeError } from '../common/redact.js';
import { publishEvents } from './publish.js';
import { isPilotRequest } from './types.js';
import type {
  Collection,
  CollectOptions,
  CollectStats,
  DeadLetterRoute,
  EventData,
  PilotCluster,
  PilotDefaults,
  PilotRequest,
  WorkflowOptions,
  WorkflowOutcome,
  WorkflowQueues,
} from './types.js';

/** The queue names a workflow id stands for, unless overridden. */
export function workflowQueues(id: string, overrides: Partial<WorkflowQueues> = {}): WorkflowQueues {
  const incoming = overrides.incoming ?? `ewms-${id}-in`;
  return {
    incoming,
    outgoing: overrides.outgoing ?? `ewms-${id}-out`,
    deadLetter: overrides.deadLetter ?? defaultDeadLetterQueue(incoming),
  };
}

const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;

/** Throws `CoordinatorConfigError` when `id` cannot name a workflow's queues. */
export function checkWorkflowId(id: string): void {
  if (!ID_PATTERN.test(id)) {
    throw new CoordinatorConfigError(`workflow id '${id}' is not usable in queue names`, 'use letters, digits, - and _ (at most 64, starting with a letter or digit)');
  }
}

/** The open connections of one workflow: one per distinct endpoint, and which one reaches each queue. */
interface Connections {
  /** By queue name: every queue the coordinator touches. */
  byQueue: Map<string, Broker>;
  all: Broker[];
}

/** A connected workflow. Create it with `Workflow.create`. */
export class Workflow {
  /** Counters of every `collect` of this workflow so far (live while one runs); each collection also has its own. */
  readonly collectStats: CollectStats = emptyStats();
  /** Events confirmed by the broker across every `publish` call (concurrent calls included). */
  publishedCount = 0;
  private readonly clusters = new Set<PilotCluster>();
  private startedPilotsHandedOut = false;

  private constructor(
    /** Names the queues, or the WMS's workflow id; pass it again to `Workflow.create` to resume a broker workflow. */
    readonly id: string,
    readonly queues: WorkflowQueues,
    /** Every alias's queue, the dead-letter queues and urgent twins, and the tasks. */
    readonly layout: QueueLayout,
    private readonly connections: Connections,
    private readonly provisioned: Provisioned,
    private readonly connectOptions: ConnectOptions,
    readonly maxDeliveries: number,
    readonly wireFormat: WireFormat,
    private readonly logger: AdapterLogger | undefined,
    private readonly pilotDefaults: PilotDefaults | undefined,
    private readonly priority: number | undefined,
  ) {}

  /** The connection to the incoming queue (for depth queries and the like). */
  get broker(): Broker {
    return this.brokerOf(this.queues.incoming);
  }

  /** The queues belong to the backend (ewms): `close({ deleteQueues })` leaves them to it. */
  get queuesOwnedByBackend(): boolean {
    return this.provisioned.queuesOwnedByBackend;
  }

  /** Where dead letters go: a queue of their own, or the outgoing queue (ewms). */
  get deadLetterRoute(): DeadLetterRoute {
    return this.provisioned.deadLetterRoute;
  }

  /** The tasks' names, in order. */
  get taskNames(): string[] {
    return this.layout.tasks.map((t) => t.name);
  }

  /**
   * Provision the queues through the pilots' backend (`options.pilots`; else on `options.broker`), connect,
   * and declare them. A graph (`options.tasks`) is checked first and refused with `WorkflowGraphError` naming
   * the task and alias at fault. With the ewms backend the WMS is asked for the workflow first; should
   * anything fail after that, the WMS workflow is aborted before the error is thrown.
   */
  static async create(options: WorkflowOptions): Promise<Workflow> {
    const maxDeliveries = options.maxDeliveries ?? DEFAULTS.maxDeliveries;
    if (!Number.isInteger(maxDeliveries) || maxDeliveries < 1) {
      throw new CoordinatorConfigError(`maxDeliveries must be a whole number >= 1, got ${maxDeliveries}`, 'use 1 for no retries, 3 (default) to retry twice');
    }
    const wireFormat = options.wireFormat ?? 'mqclient';
    if (wireFormat !== 'mqclient' && wireFormat !== 'raw') {
      throw new CoordinatorConfigError(`unknown wire format '${String(wireFormat)}'`, 'use mqclient (default) or raw');
    }
    if (options.priority !== undefined && !Number.isInteger(options.priority)) {
      throw new CoordinatorConfigError(`priority must be a whole number, got ${options.priority}`, 'e.g. 10; higher runs first');
    }
    const requestedId = options.id ?? randomUUID().slice(0, 12);
    checkWorkflowId(requestedId);
    const names = workflowQueues(requestedId, options.queues);
    const urgent = options.urgentQueues === true;

    // The plan: a checked graph, or the one task of `pilots`.
    let plan: PlannedWorkflow | undefined;
    let tasks: LayoutTask[];
    let publicIO: { inputs: string[]; outputs: string[] } | undefined;
    let pilotDefaults: PilotDefaults | undefined;
    if (options.tasks) {
      if (options.queues) throw new CoordinatorConfigError('queue names are given by alias in a workflow graph', 'leave queues out: alias A is the queue ewms-<id>-A');
      const graph = checkGraph(options.tasks, options.publicQueues ?? [], { allowCycles: options.allowCycles ?? false });
      pilotDefaults = options.pilots;
      const planned = pilotDefaults ? plannedTasks(graph, withPriority(pilotDefaults, options.priority)) : undefined;
      for (const t of planned ?? []) validatePilotRequest(t.pilots);
      tasks = graph.tasks.map((t, i) => ({ name: t.task_name, inputs: t.input_queue_aliases, outputs: t.output_queue_aliases, request: planned?.[i]?.pilots, spec: t }));
      publicIO = { inputs: graph.publicInputs, outputs: graph.publicOutputs };
      if (planned) plan = { tasks: planned, publicQueues: [...(options.publicQueues ?? [])], maxDeliveries, wireFormat, graph: true, ...(options.priority !== undefined ? { priority: options.priority } : {}) };
    } else {
      if (options.pilots && !isPilotRequest(options.pilots)) throw new CoordinatorConfigError('the pilots of a single-task workflow need their task and count', 'give pilots.task.args and pilots.count, or describe a graph with tasks');
      const request = options.pilots ? withPriority(options.pilots, options.priority) : undefined;
      if (request) {
        validatePilotRequest(request);
        plan = { ...singleTaskPlan(request, maxDeliveries, wireFormat), ...(options.priority !== undefined ? { priority: options.priority } : {}) };
      }
      tasks = [{ name: 'task-0', inputs: [], outputs: [], request }];
    }

    const backendName = options.pilots?.backend;
    const provisioned = plan && backendName
      ? await pilotBackend(backendName).provision({ plan, broker: options.broker, queues: names, logger: options.logger })
      : brokerProvisioned('local', options.broker, names);
    const { endpoints } = provisioned;
    const id = provisioned.id ?? requestedId;
    const layout = publicIO
      ? QueueLayout.graph(requestedId, tasks, publicIO.inputs, publicIO.outputs, urgent, Object.fromEntries(Object.entries(endpoints.publicQueues ?? {}).map(([alias, e]) => [alias, e.name])))
      : QueueLayout.single(
          { incoming: endpoints.incoming.name, outgoing: endpoints.outgoing.name, deadLetter: endpoints.deadLetter?.name ?? endpoints.outgoing.name },
          urgent,
          tasks[0]?.request,
        );
    const firstInput = layout.queue(layout.publicInputs[0]!);
    const firstOutput = layout.queue(layout.publicOutputs[0]!);
    const queues: WorkflowQueues = {
      incoming: firstInput,
      outgoing: firstOutput,
      deadLetter: provisioned.deadLetterRoute === 'queue' ? layout.deadLetterOf(layout.publicInputs[0]!) : firstOutput,
    };
    let connections: Connections | undefined;
    try {
      connections = await connectAll(provisioned, layout, options.logger);
      if (!provisioned.queuesOwnedByBackend) await declareQueues(connections, layout, maxDeliveries, provisioned.deadLetterRoute);
      else {
        // The backend made the queues; make sure the public ones answer (a token that does not cover one fails here).
        for (const alias of [...layout.publicInputs, ...layout.publicOutputs]) {
          const queue = layout.queue(alias);
          await connections.byQueue.get(queue)!.declareQueue({ name: queue, deadLetter: false });
        }
      }
      // Pilots' heartbeats (bounded, disposable), beside the results on the broker pilots publish to. Not where
      // the backend owns the queues (the WMS: its pilots get no monitoring queue, its tokens cover only its own).
      if (!provisioned.queuesOwnedByBackend) {
        await connections.byQueue
          .get(firstOutput)!
          .declareQueue(monitorQueueSpec(monitorQueueName(id)))
          .catch((err: unknown) => options.logger?.warn({ err: describeError(err) }, 'the monitoring queue could not be declared; ewms monitor will show no pilots'));
      }
    } catch (err) {
      for (const broker of connections?.all ?? []) await broker.close().catch(() => undefined);
      await provisioned.startedPilots?.remove({ reason: 'aborted' }).catch((e: unknown) => options.logger?.error({ err: String(e) }, 'could not stop the pilots of the failed workflow'));
      throw err;
    }
    options.logger?.info({ workflow: id, ...queues, tasks: layout.tasks.length, broker: connections.byQueue.get(firstInput)?.displayAddress }, 'workflow queues ready');
    return new Workflow(id, queues, layout, connections, provisioned, endpoints.incoming.broker, maxDeliveries, wireFormat, options.logger, pilotDefaults, options.priority);
  }

  /** The connection that reaches `queue`. */
  private brokerOf(queue: string): Broker {
    const broker = this.connections.byQueue.get(queue);
    if (!broker) throw new CoordinatorConfigError(`queue '${queue}' is not reachable from here`, 'with the ewms backend only the public queues are');
    return broker;
  }

  /**
   * Publish events (any iterable or async iterable of JSON values, or bytes with the raw wire format) to a
   * public input queue (`queue`: its alias; default the only one), each confirmed by the broker, with bounded
   * flight. Resolves with their ids in input order; `collect` reports outcomes by these ids. With
   * `priority: 'urgent'` they go to the queue's urgent twin, which pilots drain before the backlog (needs
   * `urgentQueues`). On failure throws `PublishError` listing the ids that were confirmed.
   */
  async publish(
    events: Iterable<EventData> | AsyncIterable<EventData>,
    options: { onConfirmed?: (count: number) => void; signal?: AbortSignal; traceparent?: string; queue?: string; priority?: 'normal' | 'urgent' } = {},
  ): Promise<string[]> {
    const alias = this.layout.publishTarget(options.queue);
    let queue = this.layout.queue(alias);
    const urgent = options.priority === 'urgent';
    if (urgent) {
      const twin = this.layout.urgentOf(alias);
      if (!twin) throw new CoordinatorConfigError('urgent events need the urgent queues', 'create the workflow with urgentQueues: true (workflow file: "urgent_queues": true; ewms run --urgent-queues)');
      queue = twin;
    }
    // Each call adds its own confirms: concurrent calls never overwrite each other's count.
    let counted = 0;
    return publishEvents(this.brokerOf(queue), queue, events, {
      wireFormat: this.wireFormat,
      ...(options.signal ? { signal: options.signal } : {}),
      ...(options.traceparent ? { traceparent: options.traceparent } : {}),
      ...(urgent ? { headers: { [PROVENANCE_HEADERS.priority]: 'urgent' } } : {}),
      onConfirmed: (count) => {
        this.publishedCount += count - counted;
        counted = count;
        options.onConfirmed?.(count);
      },
    });
  }

  /**
   * Yield each published event's outcomes exactly once (its result, or its dead letter; with a graph that
   * fans out, one per branch) until every expected event has settled — or, with `follow`, as they come until
   * `signal` aborts. An outcome is acked when you ask for the next one; stop early with `break` and the last
   * one stays in the queue. The collection's `stats` count as it goes, and so does `collectStats`.
   */
  collect(options: CollectOptions): Collection {
    const stats = emptyStats();
    const totals = this.collectStats;
    const outcomes = collectOutcomes(this.outcomeSources(), this.wireFormat, options, stats, this.logger);
    return {
      stats,
      async *[Symbol.asyncIterator](): AsyncGenerator<WorkflowOutcome, void, undefined> {
        let before = { ...stats };
        const addToTotals = () => {
          for (const key of Object.keys(stats) as Array<keyof CollectStats>) totals[key] += stats[key] - before[key];
          before = { ...stats };
        };
        try {
          for await (const outcome of outcomes) {
            addToTotals();
            yield outcome;
          }
        } finally {
          addToTotals();
        }
      },
    };
  }

  /** Every public output queue, and every dead-letter queue the coordinator can reach. */
  private outcomeSources(): OutcomeSource[] {
    const sources: OutcomeSource[] = this.layout.publicOutputs.map((alias) => {
      const queue = this.layout.queue(alias);
      return { broker: this.brokerOf(queue), queue, kind: 'result' };
    });
    if (this.provisioned.deadLetterRoute === 'queue') {
      for (const alias of this.layout.taskInputs) {
        const queue = this.layout.deadLetterOf(alias);
        sources.push({ broker: this.brokerOf(queue), queue, kind: 'dead-letter' });
      }
    }
    return sources;
  }

  /**
   * The dead letters: list, export, requeue (where they have a queue of their own). With a graph, those of one
   * task (`task`, default the first) and one of its input queues (`queue` alias, default its first).
   */
  deadLetters(options: { task?: string; queue?: string } = {}): DeadLetters {
    const task = options.task !== undefined ? this.layout.task(options.task) : this.layout.tasks[0]!;
    const alias = options.queue ?? task.inputs[0];
    if (alias === undefined || (options.queue !== undefined && !task.inputs.includes(options.queue))) {
      throw new CoordinatorConfigError(`task '${task.name}' does not read queue '${String(alias)}'`, `its input queues: ${task.inputs.join(', ')}`);
    }
    const incoming = this.layout.queue(alias);
    const queues = { incoming, outgoing: this.queues.outgoing, deadLetter: this.provisioned.deadLetterRoute === 'queue' ? this.layout.deadLetterOf(alias) : this.queues.outgoing };
    const dlq = this.provisioned.deadLetterRoute === 'queue' ? this.connections.byQueue.get(queues.deadLetter) : undefined;
    const incomingBroker = this.connections.byQueue.get(incoming) ?? this.broker;
    return new DeadLetters(dlq, incomingBroker, queues, this.wireFormat, this.logger);
  }

  /** Events waiting in (or, on NATS, held from) the incoming queue — with a graph, in a task's input queues and their urgent twins. */
  async depth(task?: string): Promise<number> {
    if (task === undefined && !this.layout.isGraph && !this.layout.urgent) return this.broker.depth(this.queues.incoming);
    const inputs = (task !== undefined ? [this.layout.task(task)] : this.layout.tasks).flatMap((t) => t.inputs);
    let total = 0;
    for (const alias of inputs) {
      for (const queue of [this.layout.queue(alias), this.layout.urgentOf(alias)]) {
        const broker = queue === undefined ? undefined : this.connections.byQueue.get(queue);
        if (broker && queue !== undefined) total += await broker.depth(queue);
      }
    }
    return total;
  }

  /**
   * Start pilots on this workflow's queues. `close()` does not stop them: call `remove()`. With a graph,
   * every task's pilots (the create-time `pilots` defaults, or these), one cluster per task, returned as one
   * `WorkflowPilots`. With the ewms backend the WMS has started them with the workflow: this returns the
   * handle that watches and stops them.
   */
  async startPilots(request?: PilotRequest | PilotDefaults): Promise<PilotCluster> {
    const given = request ?? (this.layout.isGraph ? this.pilotDefaults : this.layout.tasks[0]?.request);
    if (!given) throw new CoordinatorConfigError('no pilots were described', 'pass the pilot request (backend, count, task), or give pilots to Workflow.create');
    const provisioned = this.provisioned;
    if (provisioned.startedPilots && given.backend === provisioned.backend) {
      if (this.startedPilotsHandedOut) throw new CoordinatorConfigError(`the ${given.backend} pilots of workflow ${this.id} were handed out already`, 'use the PilotCluster the first startPilots returned');
      this.startedPilotsHandedOut = true;
      this.clusters.add(provisioned.startedPilots);
      return provisioned.startedPilots;
    }
    const backend = pilotBackend(given.backend);
    const started: Array<{ task: string; cluster: PilotCluster }> = [];
    try {
      for (const task of this.layout.tasks) {
        const taskRequest = this.layout.isGraph ? this.graphTaskRequest(task, given) : isPilotRequest(given) ? withPriority(given, this.priority) : undefined;
        if (!taskRequest) throw new CoordinatorConfigError('the pilots of a single-task workflow need their task and count', 'give task.args and count');
        validatePilotRequest(taskRequest);
        const cluster = await backend.start(
          {
            id: this.id,
            queues: this.queues,
            broker: this.connectOptions,
            maxDeliveries: this.maxDeliveries,
            wireFormat: this.wireFormat,
            depth: () => this.depth(this.layout.isGraph ? task.name : undefined),
            ...(this.layout.isGraph || this.layout.urgent ? { task: this.taskQueues(task) } : {}),
            ...(this.priority !== undefined ? { priority: this.priority } : {}),
          },
          taskRequest,
          provisioned,
          this.logger,
        );
        started.push({ task: task.name, cluster });
      }
    } catch (err) {
      for (const { cluster } of started) await cluster.remove({ reason: 'aborted' }).catch(() => undefined);
      throw err;
    }
    const cluster = started.length === 1 && !this.layout.isGraph ? started[0]!.cluster : new WorkflowPilots(given.backend, started);
    this.clusters.add(cluster);
    return cluster;
  }

  /** One task's pilot request: as planned at create time, or from these defaults. */
  private graphTaskRequest(task: LayoutTask, given: PilotRequest | PilotDefaults): PilotRequest {
    let request: PilotRequest;
    if (task.request && given === this.pilotDefaults) request = task.request;
    else if (task.spec) request = taskPilotRequest(task.spec, withPriority(given, this.priority));
    else throw new CoordinatorConfigError(`task '${task.name}' has no description`, 'create the workflow with its tasks');
    // A work directory given for all: each task's pilots (and condor files) in a directory of their own.
    const own = (dir: string | undefined) => (dir === undefined ? {} : { workDir: join(dir, task.name) });
    return {
      ...request,
      ...(request.local ? { local: { ...request.local, ...own(request.local.workDir) } } : {}),
      ...(request.condor ? { condor: { ...request.condor, ...own(request.condor.workDir) } } : {}),
    };
  }

  /** A task's queues as its pilots see them. */
  private taskQueues(task: LayoutTask): TaskQueues {
    const twin = (alias: string) => {
      const urgent = this.layout.urgentOf(alias);
      return urgent !== undefined ? { urgent } : {};
    };
    return {
      name: task.name,
      inputs: task.inputs.map((alias) => ({ queue: this.layout.queue(alias), deadLetter: this.layout.deadLetterOf(alias), ...twin(alias) })),
      outputs: task.outputs.map((alias) => ({ queue: this.layout.queue(alias), ...twin(alias) })),
      filterMarkers: this.layout.isGraph,
    };
  }

  /**
   * Close the broker connections; with `deleteQueues`, delete the queues (and every message) first — except
   * queues that belong to the backend (ewms: the WMS retires them when the workflow is deactivated).
   */
  async close(options: { deleteQueues?: boolean } = {}): Promise<void> {
    try {
      if (options.deleteQueues && !this.provisioned.queuesOwnedByBackend) {
        for (const queue of this.ownedQueues()) await this.brokerOf(queue).deleteQueue(queue, { deadLetterQueue: false });
        await this.brokerOf(this.queues.outgoing).deleteQueue(monitorQueueName(this.id), { deadLetterQueue: false }).catch(() => undefined);
      }
    } finally {
      for (const broker of this.connections.all) await broker.close();
    }
  }

  /** Every queue this workflow declared. */
  private ownedQueues(): string[] {
    return queuesOf(this.layout, this.provisioned.deadLetterRoute);
  }
}

/** The counters of a collection that has not started. */
function emptyStats(): CollectStats {
  return { settled: 0, results: 0, deadLetters: 0, filtered: 0, duplicates: 0, unexpected: 0 };
}

/** The request with the workflow's priority as HTCondor's job priority (condor backend). */
function withPriority<T extends PilotRequest | PilotDefaults>(request: T, priority: number | undefined): T {
  if (priority === undefined || request.backend !== 'condor') return request;
  return { ...request, condor: { ...request.condor, extra: { priority: String(priority), ...request.condor?.extra } } };
}

/** Every queue of the layout: task inputs with their dead-letter queues and urgent twins, and public outputs. */
function queuesOf(layout: QueueLayout, route: DeadLetterRoute): string[] {
  const out: string[] = [];
  for (const alias of layout.taskInputs) {
    out.push(layout.queue(alias));
    const twin = layout.urgentOf(alias);
    if (twin) out.push(twin);
    if (route === 'queue') out.push(layout.deadLetterOf(alias));
  }
  for (const alias of layout.publicOutputs) out.push(layout.queue(alias));
  return [...new Set(out)];
}

/** Declare every queue: task inputs (and urgent twins) dead-lettering to their queue, public outputs never dead-lettered. */
async function declareQueues(connections: Connections, layout: QueueLayout, maxDeliveries: number, route: DeadLetterRoute): Promise<void> {
  for (const alias of layout.taskInputs) {
    for (const queue of [layout.queue(alias), layout.urgentOf(alias)]) {
      if (queue === undefined) continue;
      const broker = connections.byQueue.get(queue)!;
      if (route === 'queue') await broker.declareQueue({ name: queue, deadLetterQueue: layout.deadLetterOf(alias), maxDeliveries });
      // No dead-letter queue may be declared: dead letters come back on the outgoing queue.
      else await broker.declareQueue({ name: queue, deadLetter: false });
    }
  }
  // Results are given back each time a collection ends with some unread: they must never be dead-lettered.
  for (const alias of layout.publicOutputs) {
    const queue = layout.queue(alias);
    await connections.byQueue.get(queue)!.declareQueue({ name: queue, deadLetter: false });
  }
}

/**
 * One connection per distinct endpoint (address, type, credentials): on one broker, one connection for all.
 * Where the backend gives each public queue its own endpoint (ewms), only those queues are reachable.
 */
async function connectAll(provisioned: Provisioned, layout: QueueLayout, logger: AdapterLogger | undefined): Promise<Connections> {
  const opened = new Map<string, Broker>();
  const all: Broker[] = [];
  const byQueue = new Map<string, Broker>();
  const open = async (options: ConnectOptions): Promise<Broker> => {
    const key = JSON.stringify([options.type, options.address, options.authToken, options.managementUrl]);
    let broker = opened.get(key);
    if (!broker) {
      try {
        broker = await connect({ ...options, logger: options.logger ?? logger });
      } catch (err) {
        for (const b of all) await b.close().catch(() => undefined);
        throw err;
      }
      opened.set(key, broker);
      all.push(broker);
    }
    return broker;
  };
  const { endpoints } = provisioned;
  const publicEndpoint = (alias: string): ConnectOptions | undefined => {
    const own = endpoints.publicQueues?.[alias]?.broker;
    if (own) return own;
    if (alias === layout.publicInputs[0]) return endpoints.incoming.broker;
    if (alias === layout.publicOutputs[0]) return endpoints.outgoing.broker;
    return undefined;
  };
  if (provisioned.queuesOwnedByBackend) {
    for (const alias of [...layout.publicInputs, ...layout.publicOutputs]) {
      const options = publicEndpoint(alias);
      if (options) byQueue.set(layout.queue(alias), await open(options));
    }
    return { byQueue, all };
  }
  // Every queue on the coordinator's broker (the dead-letter queue on its own endpoint when one was given).
  const broker = await open(endpoints.incoming.broker);
  for (const queue of queuesOf(layout, provisioned.deadLetterRoute)) byQueue.set(queue, broker);
  if (endpoints.deadLetter && !layout.isGraph) byQueue.set(layout.deadLetterOf(layout.publicInputs[0]!), await open(endpoints.deadLetter.broker));
  if (!layout.isGraph) byQueue.set(layout.queue(layout.publicOutputs[0]!), await open(endpoints.outgoing.broker));
  return { byQueue, all };
}
