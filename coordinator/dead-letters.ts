/**
 * Inspecting and requeueing a workflow's dead letters.
 *
 * Listing reads without consuming: the messages are held unacked while they are read and released after,
 * so they stay in the queue. Requeueing publishes the original body back to the incoming queue with the
 * same event id (so results still match the id `publish` returned), confirmed, then acks the dead letter:
 * a crash in between leaves a duplicate, never a loss.
 */
import { describeError } from '../common/redact.js';
import type { WireFormat } from '../common/wire.js';
import { HEADERS, type AdapterLogger, type Broker, type Delivery } from '../mq-adapters/types.js';
import { deadLetterOutcome } from './collect.js';
import { CoordinatorConfigError } from './errors.js';
import type { WorkflowOutcome, WorkflowQueues } from './types.js';

/** One dead letter as listed or exported. */
export type DeadLetter = WorkflowOutcome & { kind: 'dead-letter' };

/** Options for reading the dead-letter queue. */
export interface DeadLetterReadOptions {
  /** Read at most this many (default 10,000). */
  limit?: number;
  /** Stop after this long without a new message (default 1,000 ms). */
  idleMs?: number;
}

/** Options for `requeue`. */
export interface RequeueOptions extends DeadLetterReadOptions {
  /** Requeue only these event ids (default: all read). */
  ids?: Iterable<string>;
}

const DEFAULT_LIMIT = 10_000;
const DEFAULT_IDLE_MS = 1_000;

/** The dead letters of one workflow. */
export class DeadLetters {
  constructor(
    /** Where the dead-letter queue lives; undefined when dead letters travel on the outgoing queue (EWMS). */
    private readonly deadLetterBroker: Broker | undefined,
    /** Where the incoming queue lives (requeue publishes there). */
    private readonly incomingBroker: Broker,
    private readonly queues: WorkflowQueues,
    private readonly wireFormat: WireFormat,
    private readonly logger?: AdapterLogger,
  ) {}

  /** Messages waiting in the dead-letter queue (as the broker counts them); 0 where there is none. */
  depth(): Promise<number> {
    return this.deadLetterBroker ? this.deadLetterBroker.depth(this.queues.deadLetter) : Promise.resolve(0);
  }

  private get broker(): Broker {
    if (!this.deadLetterBroker) {
      throw new CoordinatorConfigError(
        'this workflow has no dead-letter queue: its dead letters arrive with the results, marked by their reason',
        'collect takes them (ewms run/collect --dead-letters FILE writes them); to retry, publish their data again',
      );
    }
    return this.deadLetterBroker;
  }

  /** Read the dead letters without removing them. */
  async list(options: DeadLetterReadOptions = {}): Promise<DeadLetter[]> {
    const listed: DeadLetter[] = [];
    await this.read(options, async (delivery) => {
      listed.push(deadLetterOutcome(delivery, this.wireFormat));
      return 'keep';
    });
    return listed;
  }

  /** Write the dead letters as JSON lines (`{eventId, reason, details, data}`) without removing them. */
  async export(write: (line: string) => void | Promise<void>, options: DeadLetterReadOptions = {}): Promise<number> {
    const letters = await this.list(options);
    for (const d of letters) {
      await write(`${JSON.stringify({ eventId: d.inputEventId, reason: d.reason, details: d.details, data: d.data })}\n`);
    }
    return letters.length;
  }

  /**
   * Put dead letters back on the incoming queue (e.g. after fixing the task); returns the requeued ids.
   * Pilots then process them as new events with the same ids.
   */
  async requeue(options: RequeueOptions = {}): Promise<string[]> {
    const only = options.ids ? new Set(options.ids) : undefined;
    const requeued: string[] = [];
    await this.read(options, async (delivery) => {
      if (only && !only.has(delivery.eventId)) return 'keep';
      await this.incomingBroker.publish(this.queues.incoming, {
        body: delivery.body,
        eventId: delivery.eventId,
        headers: withoutDeadLetterHeaders(delivery.headers),
      });
      requeued.push(delivery.eventId);
      return 'ack';
    });
    this.logger?.info({ count: requeued.length, queue: this.queues.incoming }, 'dead letters requeued');
    return requeued;
  }

  /** Hold each message until the read ends, then ack or release it as `visit` decided. */
  private async read(options: DeadLetterReadOptions, visit: (delivery: Delivery) => Promise<'keep' | 'ack'>): Promise<void> {
    const limit = options.limit ?? DEFAULT_LIMIT;
    const idleMs = options.idleMs ?? DEFAULT_IDLE_MS;
    const depth = await this.broker.depth(this.queues.deadLetter);
    const want = Math.min(limit, depth);
    if (want === 0) return;
    const subscription = await this.broker.consume(this.queues.deadLetter, {
      prefetch: want,
      // Listing gives every dead letter back: that must never count against a delivery limit.
      deadLetter: false,
    });
    const held: Delivery[] = [];
    const seen = new Set<string>();
    const iterator = subscription[Symbol.asyncIterator]();
    try {
      while (seen.size < want) {
        const next = await Promise.race([
          iterator.next(),
          new Promise<'idle'>((resolve) => setTimeout(() => resolve('idle'), idleMs).unref()),
        ]);
        if (next === 'idle' || next.done) break;
        const delivery = next.value;
        if (seen.has(delivery.eventId)) {
          // Our own release came back around (NATS redelivers at once): the listing is complete.
          held.push(delivery);
          break;
        }
        seen.add(delivery.eventId);
        const decision = await visit(delivery);
        if (decision === 'ack') await delivery.ack();
        else held.push(delivery);
      }
    } finally {
      await subscription.close().catch(() => undefined);
      for (const delivery of held) {
        await delivery.release().catch((err: unknown) => this.logger?.warn({ err: describeError(err) }, 'could not release a dead letter'));
      }
    }
  }
}

function withoutDeadLetterHeaders(headers: Readonly<Record<string, string>>): Record<string, string> {
  const kept: Record<string, string> = {};
  for (const [key, value] of Object.entries(headers)) {
    if (!key.startsWith(HEADERS.deadLetterDetailPrefix)) kept[key] = value;
  }
  return kept;
}
