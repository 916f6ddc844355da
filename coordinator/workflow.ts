/**
 * A workflow: one incoming queue, one outgoing queue, where dead letters go, and the pilots that turn the
 * first into the second.
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
 * The queues are provisioned by the pilots' backend (`backends/index.ts`): on the coordinator's broker for
 * `local` and `condor` (and when no pilots are named), by the WMS for `ewms` — each queue then with its own
 * token, so each gets a connection of its own.
 */
import { randomUUID } from 'node:crypto';
import type { WireFormat } from '../common/wire.js';
import { connect } from '../mq-adapters/index.js';
import { DEFAULTS, defaultDeadLetterQueue, type AdapterLogger, type Broker, type ConnectOptions } from '../mq-adapters/types.js';
import { brokerProvisioned, pilotBackend, validatePilotRequest, type Provisioned } from './backends/index.js';
import { singleTaskPlan } from './backends/plan.js';
import { collectOutcomes } from './collect.js';
import { DeadLetters } from './dead-letters.js';
import { CoordinatorConfigError } from './errors.js';
import { monitorQueueName, monitorQueueSpec } from './monitor/feed.js';
import { describeError } from '../common/redact.js';
import { publishEvents } from './publish.js';
import type {
  Collection,
  CollectOptions,
  CollectStats,
  DeadLetterRoute,
  EventData,
  PilotCluster,
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

/** The open connections of one workflow: one per distinct endpoint. */
interface Connections {
  incoming: Broker;
  outgoing: Broker;
  deadLetter: Broker | undefined;
  all: Broker[];
}

/** A connected workflow. Create it with `Workflow.create`. */
export class Workflow {
  /** Counters of every `collect` of this workflow so far (live while one runs); each collection also has its own. */
  readonly collectStats: CollectStats = { results: 0, deadLetters: 0, duplicates: 0, unexpected: 0 };
  /** Events confirmed by the broker across every `publish` call (concurrent calls included). */
  publishedCount = 0;
  private readonly clusters = new Set<PilotCluster>();
  private startedPilotsHandedOut = false;

  private constructor(
    /** Names the queues, or the WMS's workflow id; pass it again to `Workflow.create` to resume a broker workflow. */
    readonly id: string,
    readonly queues: WorkflowQueues,
    private readonly connections: Connections,
    private readonly provisioned: Provisioned,
    private readonly connectOptions: ConnectOptions,
    readonly maxDeliveries: number,
    readonly wireFormat: WireFormat,
    private readonly logger: AdapterLogger | undefined,
  ) {}

  /** The connection to the incoming queue (for depth queries and the like). */
  get broker(): Broker {
    return this.connections.incoming;
  }

  /** The queues belong to the backend (ewms): `close({ deleteQueues })` leaves them to it. */
  get queuesOwnedByBackend(): boolean {
    return this.provisioned.queuesOwnedByBackend;
  }

  /** Where dead letters go: a queue of their own, or the outgoing queue (ewms). */
  get deadLetterRoute(): DeadLetterRoute {
    return this.provisioned.deadLetterRoute;
  }

  /**
   * Provision the queues through the pilots' backend (`options.pilots`; else on `options.broker`), connect,
   * and declare them. With the ewms backend the WMS is asked for the workflow first; should anything fail
   * after that, the WMS workflow is aborted before the error is thrown.
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
    const requestedId = options.id ?? randomUUID().slice(0, 12);
    if (!ID_PATTERN.test(requestedId)) {
      throw new CoordinatorConfigError(`workflow id '${requestedId}' is not usable in queue names`, 'use letters, digits, - and _ (at most 64, starting with a letter or digit)');
    }
    if (options.pilots) validatePilotRequest(options.pilots);
    const names = workflowQueues(requestedId, options.queues);
    const provisioned = options.pilots
      ? await pilotBackend(options.pilots.backend).provision({
          plan: singleTaskPlan(options.pilots, maxDeliveries, wireFormat),
          broker: options.broker,
          queues: names,
          logger: options.logger,
        })
      : brokerProvisioned('local', options.broker, names);
    const { endpoints } = provisioned;
    const queues: WorkflowQueues = {
      incoming: endpoints.incoming.name,
      outgoing: endpoints.outgoing.name,
      deadLetter: endpoints.deadLetter?.name ?? endpoints.outgoing.name,
    };
    let connections: Connections | undefined;
    try {
      connections = await connectAll(provisioned, options.logger);
      if (provisioned.deadLetterRoute === 'queue') {
        await connections.incoming.declareQueue({ name: queues.incoming, deadLetterQueue: queues.deadLetter, maxDeliveries });
      } else {
        // No dead-letter queue may be declared: dead letters come back on the outgoing queue.
        await connections.incoming.declareQueue({ name: queues.incoming, deadLetter: false });
      }
      // Results are given back each time a collection ends with some unread: they must never be dead-lettered.
      await connections.outgoing.declareQueue({ name: queues.outgoing, deadLetter: false });
      // Pilots' heartbeats (bounded, disposable), beside the results on the broker pilots publish to. Not where
      // the backend owns the queues (the WMS: its pilots get no monitoring queue, its tokens cover only its own).
      if (!provisioned.queuesOwnedByBackend) {
        await connections.outgoing
          .declareQueue(monitorQueueSpec(monitorQueueName(provisioned.id ?? requestedId)))
          .catch((err: unknown) => options.logger?.warn({ err: describeError(err) }, 'the monitoring queue could not be declared; ewms monitor will show no pilots'));
      }
    } catch (err) {
      for (const broker of connections?.all ?? []) await broker.close().catch(() => undefined);
      await provisioned.startedPilots?.remove({ reason: 'aborted' }).catch((e: unknown) => options.logger?.error({ err: String(e) }, 'could not stop the pilots of the failed workflow'));
      throw err;
    }
    const id = provisioned.id ?? requestedId;
    options.logger?.info({ workflow: id, ...queues, broker: connections.incoming.displayAddress }, 'workflow queues ready');
    return new Workflow(id, queues, connections, provisioned, endpoints.incoming.broker, maxDeliveries, wireFormat, options.logger);
  }

  /**
   * Publish events (any iterable or async iterable of JSON values, or bytes with the raw wire format) to the
   * incoming queue, each confirmed by the broker, with bounded flight. Resolves with their ids in input order;
   * `collect` reports outcomes by these ids. On failure throws `PublishError` listing the ids that were confirmed.
   */
  async publish(
    events: Iterable<EventData> | AsyncIterable<EventData>,
    options: { onConfirmed?: (count: number) => void; signal?: AbortSignal; traceparent?: string } = {},
  ): Promise<string[]> {
    // Each call adds its own confirms: concurrent calls never overwrite each other's count.
    let counted = 0;
    return publishEvents(this.connections.incoming, this.queues.incoming, events, {
      wireFormat: this.wireFormat,
      ...(options.signal ? { signal: options.signal } : {}),
      ...(options.traceparent ? { traceparent: options.traceparent } : {}),
      onConfirmed: (count) => {
        this.publishedCount += count - counted;
        counted = count;
        options.onConfirmed?.(count);
      },
    });
  }

  /**
   * Yield each published event's outcome exactly once (its result, or its dead letter) until every
   * expected id has settled. An outcome is acked when you ask for the next one; stop early with `break`
   * and the last one stays in the queue. The collection's `stats` count as it goes, and so does
   * `collectStats` (the workflow's totals).
   */
  collect(options: CollectOptions): Collection {
    const stats: CollectStats = { results: 0, deadLetters: 0, duplicates: 0, unexpected: 0 };
    const totals = this.collectStats;
    const outcomes = collectOutcomes(
      { results: this.connections.outgoing, deadLetters: this.provisioned.deadLetterRoute === 'queue' ? this.connections.deadLetter : undefined },
      this.queues,
      this.wireFormat,
      options,
      stats,
      this.logger,
    );
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

  /** The dead letters: list, export, requeue (where they have a queue of their own). */
  deadLetters(): DeadLetters {
    const dlq = this.provisioned.deadLetterRoute === 'queue' ? this.connections.deadLetter : undefined;
    return new DeadLetters(dlq, this.connections.incoming, this.queues, this.wireFormat, this.logger);
  }

  /** Events waiting in (or, on NATS, held from) the incoming queue. */
  depth(): Promise<number> {
    return this.connections.incoming.depth(this.queues.incoming);
  }

  /**
   * Start pilots on this workflow's queues. `close()` does not stop them: call `remove()`. With the ewms
   * backend the WMS has started them with the workflow: this returns the handle that watches and stops them.
   */
  async startPilots(request: PilotRequest): Promise<PilotCluster> {
    validatePilotRequest(request);
    const provisioned = this.provisioned;
    if (provisioned.startedPilots && request.backend === provisioned.backend) {
      if (this.startedPilotsHandedOut) throw new CoordinatorConfigError(`the ${request.backend} pilots of workflow ${this.id} were handed out already`, 'use the PilotCluster the first startPilots returned');
      this.startedPilotsHandedOut = true;
    }
    const cluster = await pilotBackend(request.backend).start(
      { id: this.id, queues: this.queues, broker: this.connectOptions, maxDeliveries: this.maxDeliveries, wireFormat: this.wireFormat, depth: () => this.depth() },
      request,
      provisioned,
      this.logger,
    );
    this.clusters.add(cluster);
    return cluster;
  }

  /**
   * Close the broker connections; with `deleteQueues`, delete the queues (and every message) first — except
   * queues that belong to the backend (ewms: the WMS retires them when the workflow is deactivated).
   */
  async close(options: { deleteQueues?: boolean } = {}): Promise<void> {
    try {
      if (options.deleteQueues && !this.provisioned.queuesOwnedByBackend) {
        await this.connections.incoming.deleteQueue(this.queues.incoming, { deadLetterQueue: false });
        if (this.connections.deadLetter) await this.connections.deadLetter.deleteQueue(this.queues.deadLetter, { deadLetterQueue: false });
        await this.connections.outgoing.deleteQueue(this.queues.outgoing, { deadLetterQueue: false });
        await this.connections.outgoing.deleteQueue(monitorQueueName(this.id), { deadLetterQueue: false }).catch(() => undefined);
      }
    } finally {
      for (const broker of this.connections.all) await broker.close();
    }
  }
}

/** One connection per distinct endpoint (address, type, credentials): on one broker, one connection for all. */
async function connectAll(provisioned: Provisioned, logger: AdapterLogger | undefined): Promise<Connections> {
  const opened = new Map<string, Broker>();
  const all: Broker[] = [];
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
  const incoming = await open(endpoints.incoming.broker);
  const outgoing = await open(endpoints.outgoing.broker);
  const deadLetter = endpoints.deadLetter ? await open(endpoints.deadLetter.broker) : undefined;
  return { incoming, outgoing, deadLetter, all };
}
