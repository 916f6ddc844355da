/**
 * Shared pieces of the coordinator tests: the real brokers, fresh workflow ids, and an "echo pilot" — a
 * real consumer on its own broker connection that moves each incoming event to the outgoing queue (or to
 * the dead-letter queue when told to), the way a pilot does, ack-last.
 */
import { randomUUID } from 'node:crypto';
import { connect } from '../../mq-adapters/index.js';
import { HEADERS, type Broker, type ConnectOptions, type Subscription } from '../../mq-adapters/types.js';
import type { WorkflowQueues } from '../../coordinator/types.js';

export const BROKER_NAMES = ['rabbitmq', 'nats'] as const;
export type BrokerName = (typeof BROKER_NAMES)[number];

export function brokerOptions(name: BrokerName): ConnectOptions {
  return name === 'rabbitmq' ? { address: 'amqp://guest@127.0.0.1:5672', authToken: 'guest' } : { address: 'nats://127.0.0.1:4222' };
}

export function brokerUrl(name: BrokerName): string {
  return name === 'rabbitmq' ? 'amqp://guest:guest@127.0.0.1:5672' : 'nats://127.0.0.1:4222';
}

/** The environment an `ewms` command line gets in the tests: the broker from EWMS_BROKER_URL/TOKEN, nothing else. */
export function cliEnv(name: BrokerName): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: process.env.HOME };
  if (name === 'rabbitmq') Object.assign(env, { EWMS_BROKER_URL: 'amqp://guest@127.0.0.1:5672', EWMS_BROKER_TOKEN: 'guest' });
  else env.EWMS_BROKER_URL = 'nats://127.0.0.1:4222';
  return env;
}

export function freshId(prefix = 't'): string {
  return `${prefix}${randomUUID().replace(/-/g, '').slice(0, 10)}`;
}

/** What the echo pilot does with one event. */
export type EchoDecision = 'echo' | 'echo-twice' | 'dead-letter';

export interface EchoPilot {
  moved(): number;
  stop(): Promise<void>;
}

/**
 * Consume `queues.incoming` and republish each body to `queues.outgoing` with the input's id (confirmed
 * before the ack), or dead-letter it with a reason, as `decide` says.
 */
export async function startEchoPilot(
  name: BrokerName,
  queues: WorkflowQueues,
  decide: (eventId: string, index: number) => EchoDecision = () => 'echo',
  prefetch = 200,
): Promise<EchoPilot> {
  const broker: Broker = await connect(brokerOptions(name));
  const sub: Subscription = await broker.consume(queues.incoming, { prefetch, deadLetterQueue: queues.deadLetter });
  let moved = 0;
  const loop = (async () => {
    const inFlight = new Set<Promise<void>>();
    for await (const d of sub) {
      const index = moved++;
      const decision = decide(d.eventId, index);
      const work = (async () => {
        if (decision === 'dead-letter') {
          await d.deadLetter({ reason: 'task exited with code 3', details: { stderr: 'bad pixel' } });
          return;
        }
        const out = { body: d.body, eventId: `${d.eventId}:out`, headers: { [HEADERS.inputEventId]: d.eventId } };
        await broker.publish(queues.outgoing, out);
        if (decision === 'echo-twice') await broker.publish(queues.outgoing, out);
        await d.ack();
      })().finally(() => inFlight.delete(work));
      inFlight.add(work);
      if (inFlight.size >= prefetch) await Promise.race(inFlight);
    }
    await Promise.all(inFlight);
  })();
  return {
    moved: () => moved,
    stop: async () => {
      await sub.close();
      await loop;
      await broker.close();
    },
  };
}
