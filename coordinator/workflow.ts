/**
 * A workflow: one incoming queue, one outgoing queue, the incoming queue's dead-letter queue, and the
 * pilots that turn the first into the second.
 *
 * ```ts
 * const wf = await Workflow.create({ broker: { address: 'amqp://guest@localhost', authToken: 'guest' } });
 * const ids = await wf.publish(pixels());
 * const pilots = await wf.startPilots({ backend: 'local', count: 4, task: { args: 'scan {{INFILE}} {{OUTFILE}}' } });
 * for await (const outcome of wf.collect({ expected: ids })) save(outcome);
 * await pilots.remove();
 * await wf.close({ deleteQueues: true });
 * ```
 */
import { randomUUID } from 'node:crypto';
import type { JsonValue, WireFormat } from '../common/wire.js';
import { connect } from '../mq-adapters/index.js';
import { DEFAULTS, defaultDeadLetterQueue, type AdapterLogger, type Broker, type ConnectOptions } from '../mq-adapters/types.js';
import { startPilotCluster } from './backends/index.js';
import { collectOutcomes } from './collect.js';
import { DeadLetters } from './dead-letters.js';
import { CoordinatorConfigError } from './errors.js';
import { monitorQueueName, monitorQueueSpec } from './monitor/feed.js';
import { describeError } from '../common/redact.js';
import { publishEvents } from './publish.js';
import type { CollectOptions, CollectStats, PilotCluster, PilotRequest, WorkflowOptions, WorkflowOutcome, WorkflowQueues } from './types.js';

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

/** A connected workflow. Create it with `Workflow.create`. */
export class Workflow {
  /** Counters of the most recent `collect` (live while it runs). */
  readonly collectStats: CollectStats = { results: 0, deadLetters: 0, duplicates: 0, unexpected: 0 };
  /** Events confirmed by the broker across every `publish` call. */
  publishedCount = 0;
  private readonly clusters = new Set<PilotCluster>();

  private constructor(
    /** Names the queues; pass it again to `Workflow.create` to resume this workflow elsewhere. */
    readonly id: string,
    readonly queues: WorkflowQueues,
    /** The open broker connection (for depth queries and the like). */
    readonly broker: Broker,
    private readonly connectOptions: ConnectOptions,
    readonly maxDeliveries: number,
    readonly wireFormat: WireFormat,
    private readonly logger: AdapterLogger | undefined,
  ) {}

  /** Connect and declare the workflow's queues (incoming with its dead-letter queue, outgoing). */
  static async create(options: WorkflowOptions): Promise<Workflow> {
    const id = options.id ?? randomUUID().slice(0, 12);
    if (!ID_PATTERN.test(id)) {
      throw new CoordinatorConfigError(`workflow id '${id}' is not usable in queue names`, 'use letters, digits, - and _ (at most 64, starting with a letter or digit)');
    }
    const maxDeliveries = options.maxDeliveries ?? DEFAULTS.maxDeliveries;
    if (!Number.isInteger(maxDeliveries) || maxDeliveries < 1) {
      throw new CoordinatorConfigError(`maxDeliveries must be a whole number >= 1, got ${maxDeliveries}`, 'use 1 for no retries, 3 (default) to retry twice');
    }
    const wireFormat = options.wireFormat ?? 'mqclient';
    if (wireFormat !== 'mqclient' && wireFormat !== 'raw') {
      throw new CoordinatorConfigError(`unknown wire format '${String(wireFormat)}'`, 'use mqclient (default) or raw');
    }
    const queues = workflowQueues(id, options.queues);
    const broker = await connect({ ...options.broker, logger: options.broker.logger ?? options.logger });
    try {
      await broker.declareQueue({ name: queues.incoming, deadLetterQueue: queues.deadLetter, maxDeliveries });
      // Results are given back each time a collection ends with some unread: they must never be dead-lettered.
      await broker.declareQueue({ name: queues.outgoing, deadLetter: false });
      // Pilots' heartbeats (bounded, disposable): a broker that refuses it (an MQS token) costs only the monitor.
      await broker.declareQueue(monitorQueueSpec(monitorQueueName(id))).catch((err: unknown) => options.logger?.warn({ err: describeError(err) }, 'the monitoring queue could not be declared; ewms monitor will show no pilots'));
    } catch (err) {
      await broker.close().catch(() => undefined);
      throw err;
    }
    options.logger?.info({ workflow: id, ...queues, broker: broker.displayAddress }, 'workflow queues ready');
    return new Workflow(id, queues, broker, options.broker, maxDeliveries, wireFormat, options.logger);
  }

  /**
   * Publish events (any iterable or async iterable of JSON values) to the incoming queue, each confirmed
   * by the broker, with bounded flight. Resolves with their ids in input order; `collect` reports outcomes
   * by these ids. On failure throws `PublishError` listing the ids that were confirmed.
   */
  async publish(
    events: Iterable<JsonValue> | AsyncIterable<JsonValue>,
    options: { onConfirmed?: (count: number) => void; signal?: AbortSignal; traceparent?: string } = {},
  ): Promise<string[]> {
    const before = this.publishedCount;
    return publishEvents(this.broker, this.queues.incoming, events, {
      wireFormat: this.wireFormat,
      ...(options.signal ? { signal: options.signal } : {}),
      ...(options.traceparent ? { traceparent: options.traceparent } : {}),
      onConfirmed: (count) => {
        this.publishedCount = before + count;
        options.onConfirmed?.(count);
      },
    });
  }

  /**
   * Yield each published event's outcome exactly once (its result, or its dead letter) until every
   * expected id has settled. An outcome is acked when you ask for the next one; stop early with `break`
   * and the last one stays in the queue. `collectStats` counts as it goes.
   */
  collect(options: CollectOptions): AsyncIterable<WorkflowOutcome> {
    Object.assign(this.collectStats, { results: 0, deadLetters: 0, duplicates: 0, unexpected: 0 });
    return collectOutcomes(this.broker, this.queues, this.wireFormat, options, this.collectStats, this.logger);
  }

  /** The dead letters: list, export, requeue. */
  deadLetters(): DeadLetters {
    return new DeadLetters(this.broker, this.queues, this.wireFormat, this.logger);
  }

  /** Events waiting in (or, on NATS, held from) the incoming queue. */
  depth(): Promise<number> {
    return this.broker.depth(this.queues.incoming);
  }

  /** Start pilots on this workflow's queues. `close()` does not stop them: call `remove()`. */
  async startPilots(request: PilotRequest): Promise<PilotCluster> {
    const cluster = await startPilotCluster(
      { id: this.id, queues: this.queues, broker: this.connectOptions, maxDeliveries: this.maxDeliveries, wireFormat: this.wireFormat, depth: () => this.depth() },
      request,
      this.logger,
    );
    this.clusters.add(cluster);
    return cluster;
  }

  /** Close the broker connection; with `deleteQueues`, delete the three queues (and every message) first. */
  async close(options: { deleteQueues?: boolean } = {}): Promise<void> {
    try {
      if (options.deleteQueues) {
        await this.broker.deleteQueue(this.queues.incoming, { deadLetterQueue: this.queues.deadLetter });
        await this.broker.deleteQueue(this.queues.outgoing);
        await this.broker.deleteQueue(monitorQueueName(this.id), { deadLetterQueue: false }).catch(() => undefined);
      }
    } finally {
      await this.broker.close();
    }
  }
}
