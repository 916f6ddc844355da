/**
 * A real pilot on a private 3-node cluster, given every node in its environment as the coordinator writes it
 * (`formatBrokerAddress`): the node leading its queue is SIGKILLed mid-run and the pilot fails over, finishes
 * every event, and exits 0 once the queue has drained.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { connect, formatBrokerAddress, parseBrokerAddress } from '../../mq-adapters/index.js';
import type { Broker } from '../../mq-adapters/types.js';
import { startNatsCluster, startRabbitMQCluster, type BrokerCluster } from '../helpers/clusters.js';
import { drainOutputs, pilotEnv, publishEvents, startPilot, type BrokerName } from './run-pilot.js';

const EVENTS = 150;

describe.each([
  ['rabbitmq', () => startRabbitMQCluster()],
  ['nats', () => startNatsCluster()],
] as Array<[BrokerName, () => Promise<BrokerCluster>]>)('a pilot on a 3-node %s cluster', (type, start) => {
  let cluster: BrokerCluster;
  let broker: Broker | undefined;

  beforeAll(async () => {
    cluster = await start();
  }, 180_000);

  afterAll(async () => {
    await broker?.close().catch(() => undefined);
    await cluster?.dispose();
  }, 60_000);

  test('the queue leader SIGKILLed mid-run: the pilot fails over and answers every event', async () => {
    broker = await connect({ address: cluster.address });
    const id = randomUUID().slice(0, 8);
    const queues = { incoming: `pc-in-${id}`, outgoing: `pc-out-${id}` };
    await broker.declareQueue({ name: queues.incoming });
    await broker.declareQueue({ name: queues.outgoing, deadLetter: false });
    const ids = await publishEvents(broker, queues.incoming, Array.from({ length: EVENTS }, (_, i) => `p${i}`));

    // What buildPilotEnv writes: every node, no password (the token travels on its own).
    const address = formatBrokerAddress(parseBrokerAddress(cluster.address));
    expect(address.split(',')).toHaveLength(3);
    const pilot = startPilot(
      pilotEnv(type, queues, {
        EWMS_PILOT_QUEUE_INCOMING_BROKER_ADDRESS: address,
        EWMS_PILOT_QUEUE_OUTGOING_BROKER_ADDRESS: address,
        EWMS_PILOT_TASK_ARGS: `sh -c 'sleep 0.05; cp "$EWMS_TASK_INFILE" "$EWMS_TASK_OUTFILE"'`,
        EWMS_PILOT_MAX_CONCURRENT_TASKS: '2',
        // Long enough to outlast a leader election without a task in hand, and the redelivery of the
        // deliveries whose acks died with the leader (lease 5 s), on a loaded machine.
        EWMS_PILOT_TIMEOUT_QUEUE_INCOMING: '30',
        EWMS_PILOT_LEASE_TIMEOUT: '5',
      }),
    );
    // Kill once a third of the events is done.
    const deadline = Date.now() + 60_000;
    while ((await broker.depth(queues.incoming)) > EVENTS * (2 / 3)) {
      if (pilot.child.exitCode !== null || Date.now() > deadline) throw new Error(`the pilot made no progress:\n${pilot.stderr().slice(-3000)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const leader = await cluster.leaderOf(queues.incoming);
    await leader.kill();

    const ended = await pilot.exited;
    expect(ended.code, pilot.stderr().slice(-3000)).toBe(0);
    await leader.start();
    const outputs = await drainOutputs(broker, queues.outgoing, EVENTS * 2, 5_000);
    // Each input answered; a second copy (an ack lost with the leader) is what the coordinator deduplicates.
    expect(new Set(outputs.map((o) => o.inputEventId))).toEqual(new Set(ids));
    // At most the pilot's prefetch window (3 × 2 tasks + 2: running, prepared, being acked) was in flight.
    expect(outputs.length - EVENTS).toBeLessThanOrEqual(3 * 2 + 2);
    expect(await broker.depth(`${queues.incoming}.dlq`)).toBe(0);
  }, 240_000);
});
