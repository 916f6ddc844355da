/**
 * A pilot's queues, whatever their number: one connection per distinct broker (per-queue credentials, as
 * under EWMS, make distinct connections), every queue declared, one intake merged from every input queue
 * with the urgent twins taken first, and outputs published to every output queue (fan-out).
 *
 * With one input and one output (the common case) intake is the adapter's own subscription, untouched.
 */
import { connect, sameBroker } from '../mq-adapters/index.js';
import { HEADERS, type Broker, type ConnectOptions, type Delivery, type OutgoingMessage, type Subscription } from '../mq-adapters/types.js';
import { derivedEventId, PROVENANCE_HEADERS as P, readShare, splitShare, writeShare } from '../common/provenance.js';
import { describeError } from '../common/redact.js';
import type { Logger } from './logger.js';
import type { PilotSettings, QueueEndpoint } from './pilot.js';

/** One input queue (or urgent twin) as the pilot reads it. */
interface Input {
  queue: string;
  broker: Broker;
  deadLetterQueue: string;
  urgent: boolean;
}

interface Output {
  endpoint: QueueEndpoint;
  broker: Broker;
}

/** Consume options shared by every input. */
export interface IntakeOptions {
  prefetch: number;
  maxDeliveries: number;
  leaseMs: number;
}

export class PilotQueues {
  private constructor(
    private readonly brokers: Broker[],
    private readonly inputs: Input[],
    private readonly outputs: Output[],
    private readonly ownDeadLetterQueues: boolean,
    private readonly logger: Logger,
  ) {}

  /** The first input's connection (heartbeat counts, logs). */
  get incoming(): Broker {
    return this.inputs[0]!.broker;
  }

  /** The first output's connection (heartbeats go beside the results). */
  get outgoing(): Broker {
    return this.outputs[0]!.broker;
  }

  /** Every queue name, for logs (`;`-separated as in the configuration, urgent twins included). */
  describe(): { incoming: string; outgoing: string } {
    return { incoming: this.inputs.map((i) => i.queue).join(';'), outgoing: this.outputs.map((o) => o.endpoint.queue).join(';') };
  }

  /** Connect to every distinct broker the settings name; on failure what was opened is closed again. */
  static async open(settings: PilotSettings, connectBroker: (options: ConnectOptions) => Promise<Broker>, logger: Logger): Promise<PilotQueues> {
    // Without a dead-letter queue there is no broker policy to install, and per-queue credentials could not.
    const ownDeadLetterQueues = settings.deadLetterRoute === 'queue';
    const opened: Array<{ options: ConnectOptions; broker: Broker }> = [];
    const brokerFor = async (options: ConnectOptions): Promise<Broker> => {
      const known = opened.find((o) => sameBroker(o.options, options));
      if (known) return known.broker;
      const broker = await connectBroker({ ...options, ...(ownDeadLetterQueues ? {} : { managementUrl: false }), logger });
      opened.push({ options, broker });
      return broker;
    };
    try {
      const inputs: Input[] = [];
      const incoming = [{ ...settings.incoming, deadLetterQueue: settings.deadLetterQueue }, ...(settings.moreIncoming ?? [])];
      for (const endpoint of incoming) {
        const broker = await brokerFor(endpoint.broker);
        const deadLetterQueue = endpoint.deadLetterQueue ?? settings.deadLetterQueue;
        // The urgent twin first: intake prefers whatever came from an earlier-listed urgent input.
        if (endpoint.urgent) inputs.push({ queue: endpoint.urgent, broker, deadLetterQueue, urgent: true });
        inputs.push({ queue: endpoint.queue, broker, deadLetterQueue, urgent: false });
      }
      const outputs: Output[] = [];
      for (const endpoint of [settings.outgoing, ...(settings.moreOutgoing ?? [])]) outputs.push({ endpoint, broker: await brokerFor(endpoint.broker) });
      return new PilotQueues(
        opened.map((o) => o.broker),
        inputs,
        outputs,
        ownDeadLetterQueues,
        logger,
      );
    } catch (err) {
      // Nothing will use the connections made so far: left open they would keep the process alive.
      for (const { broker } of opened) await broker.close().catch((e: unknown) => logger.warn({ err: describeError(e) }, 'closing a broker connection'));
      throw err;
    }
  }

  /** Declare every queue: inputs with their dead-letter queue, outputs never dead-lettered. */
  async declare(maxDeliveries: number): Promise<void> {
    for (const input of this.inputs) {
      await input.broker.declareQueue(
        this.ownDeadLetterQueues
          ? { name: input.queue, deadLetterQueue: input.deadLetterQueue, maxDeliveries }
          : // The consumer still dead-letters after maxDeliveries, to the outgoing queue.
            { name: input.queue, deadLetter: false },
      );
    }
    // Results must never be dead-lettered: readers give back what they do not take, and that counts as a delivery.
    for (const { endpoint, broker } of this.outputs) {
      await broker.declareQueue({ name: endpoint.queue, deadLetter: false });
      if (endpoint.urgent) await broker.declareQueue({ name: endpoint.urgent, deadLetter: false });
    }
  }

  /** One intake over every input queue, urgent twins first. */
  async consume(options: IntakeOptions): Promise<Subscription> {
    const parts: Array<{ subscription: Subscription; urgent: boolean }> = [];
    try {
      for (const input of this.inputs) {
        const subscription = await input.broker.consume(input.queue, {
          prefetch: options.prefetch,
          deadLetterQueue: input.deadLetterQueue,
          maxDeliveries: options.maxDeliveries,
          leaseMs: options.leaseMs,
        });
        parts.push({ subscription, urgent: input.urgent });
      }
    } catch (err) {
      for (const part of parts) await part.subscription.close().catch(() => undefined);
      throw err;
    }
    return mergeSubscriptions(parts);
  }

  /**
   * Publish one output to every output queue and resolve once each confirmed it. Each copy gets an id of its
   * own, derived from the output's and the queue's (so two copies meeting again downstream are not taken for
   * one), and an equal part of the input's share. An urgent output goes to a queue's urgent twin where there
   * is one. A filter marker (or a dead letter passed on) goes to the first queue only, with the whole share.
   */
  async publish(message: OutgoingMessage): Promise<void> {
    const headers = message.headers ?? {};
    // A marker or a dead letter passed on is one outcome: it must reach the coordinator once, not once per branch.
    const passedOn = headers[P.filtered] !== undefined || headers[HEADERS.deadLetterReason] !== undefined;
    const targets = passedOn ? this.outputs.slice(0, 1) : this.outputs;
    const urgent = headers[P.priority] === 'urgent';
    const share = targets.length > 1 ? writeShare(splitShare(readShare(headers[P.share]), targets.length)) : headers[P.share];
    await Promise.all(
      targets.map(({ endpoint, broker }) =>
        broker.publish(urgent && endpoint.urgent ? endpoint.urgent : endpoint.queue, {
          body: message.body,
          headers: share !== undefined ? { ...headers, [P.share]: share } : headers,
          ...(message.eventId !== undefined ? { eventId: this.outputs.length > 1 ? derivedEventId(message.eventId, endpoint.queue) : message.eventId } : {}),
        }),
      ),
    );
  }

  /** Close every connection (unacked deliveries return to their queues). */
  async close(): Promise<void> {
    for (const broker of this.brokers) await broker.close().catch((e: unknown) => this.logger.warn({ err: describeError(e) }, 'closing a broker connection'));
  }
}

/**
 * Several subscriptions as one: what arrives on an urgent one is yielded before anything waiting on the
 * others. Each keeps its own prefetch, so what the pilot holds stays bounded. Closing closes them all and
 * gives back (releases) what was received but not yet yielded.
 */
export function mergeSubscriptions(parts: ReadonlyArray<{ subscription: Subscription; urgent: boolean }>): Subscription {
  if (parts.length === 1) return parts[0]!.subscription;
  const waiting: Record<'urgent' | 'normal', Delivery[]> = { urgent: [], normal: [] };
  let wake: (() => void) | undefined;
  let closed = false;
  let error: unknown;
  let live = parts.length;
  const poke = () => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  for (const { subscription, urgent } of parts) {
    void (async () => {
      try {
        for await (const delivery of subscription) {
          if (closed) await delivery.release().catch(() => undefined);
          else waiting[urgent ? 'urgent' : 'normal'].push(delivery);
          poke();
        }
      } catch (err) {
        error ??= err;
      } finally {
        live -= 1;
        poke();
      }
    })();
  }
  const releaseWaiting = async () => {
    const rest = [...waiting.urgent.splice(0), ...waiting.normal.splice(0)];
    await Promise.all(rest.map((d) => d.release().catch(() => undefined)));
  };
  const close = async () => {
    if (closed) return;
    closed = true;
    await Promise.all(parts.map((p) => p.subscription.close().catch(() => undefined)));
    await releaseWaiting();
    poke();
  };
  return {
    close,
    [Symbol.asyncIterator](): AsyncIterator<Delivery> {
      return {
        next: async (): Promise<IteratorResult<Delivery>> => {
          for (;;) {
            if (error !== undefined) throw error;
            if (closed) return { value: undefined, done: true };
            const next = waiting.urgent.shift() ?? waiting.normal.shift();
            if (next) return { value: next, done: false };
            if (live === 0) return { value: undefined, done: true };
            await new Promise<void>((resolve) => (wake = resolve));
          }
        },
        return: async () => {
          await close();
          return { value: undefined, done: true };
        },
      };
    },
  };
}
