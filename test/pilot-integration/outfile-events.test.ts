/**
 * Several outputs per input (EWMS_PILOT_OUTFILE_EVENTS=jsonl) through a redelivery: a pilot SIGKILLed after
 * publishing some of an event's outputs, before its ack. The next attempt publishes every output again under the
 * same ids, and the coordinator's collection yields each piece once and settles the root once. Real brokers, the
 * real pilot command line; a publish gate (a proxy) stops the first pilot's outputs after the second. The copies
 * on the queue are checked (the same piece, the same id), then collected as the coordinator collects them.
 */
import { afterEach, describe, expect, test } from 'vitest';
import { PROVENANCE_HEADERS as P } from '../../common/provenance.js';
import { decodeEnvelope } from '../../common/wire.js';
import { HEADERS } from '../../mq-adapters/types.js';
import { collectOutcomes } from '../../coordinator/collect.js';
import type { CollectStats, WorkflowOutcome } from '../../coordinator/types.js';
import { startPublishGate, type PublishGate } from '../helpers/publish-gate.js';
import { BROKERS, drainDeliveries, pilotEnv, publishEvents, startPilot, TestQueues, type BrokerName, type PilotRun } from './run-pilot.js';

const brokers: BrokerName[] = ['rabbitmq', 'nats'];
const testQueues = new TestQueues();
const gates: PublishGate[] = [];
const pilots: PilotRun[] = [];
afterEach(async () => {
  for (const p of pilots.splice(0)) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
  for (const g of gates.splice(0)) await g.close();
  await testQueues.cleanup();
});

/** Writes n lines `"n-i"` for an input n (0: an empty outfile). */
const PIECES = `sh -c 'n=$(cat {{INFILE}}); i=0; : > {{OUTFILE}}; while [ $i -lt $n ]; do echo "\\"$n-$i\\"" >> {{OUTFILE}}; i=$((i+1)); done'`;

describe.each(brokers)('several outputs per input on %s', (name) => {
  test('SIGKILLed after publishing 2 of an event\'s 3 outputs: redelivered, all 3 again under the same ids, the root settled once', async () => {
    const { broker, queues } = await testQueues.create(name);
    const [host, port] = BROKERS[name].address.split(':') as [string, string];
    const gate = await startPublishGate(name === 'rabbitmq' ? 'amqp' : 'nats', { host, port: Number(port) }, 2);
    gates.push(gate);
    const [root] = await publishEvents(broker, queues.incoming, ['3']);
    const env = pilotEnv(name, queues, {
      EWMS_PILOT_TASK_ARGS: PIECES,
      EWMS_PILOT_OUTFILE_EVENTS: 'jsonl',
      // NATS gives a dead consumer's event to another after the ack wait.
      EWMS_PILOT_LEASE_TIMEOUT: '3',
      EWMS_PILOT_TIMEOUT_QUEUE_INCOMING: '10',
    });
    const user = BROKERS[name].user;
    const gated = startPilot({ ...env, EWMS_PILOT_QUEUE_OUTGOING_BROKER_ADDRESS: `${user ? `${user}@` : ''}127.0.0.1:${gate.port}` });
    pilots.push(gated);
    await Promise.race([gate.holding, gated.exited.then(() => Promise.reject(new Error(`the gated pilot exited: ${gated.stderr().slice(-2000)}`)))]);
    expect(gate.published()).toBe(2);
    let depth = 0;
    for (let i = 0; i < 100 && depth < 2; i++) {
      depth = await broker.depth(queues.outgoing);
      if (depth < 2) await new Promise((r) => setTimeout(r, 50));
    }
    expect(depth).toBe(2);
    gated.child.kill('SIGKILL');
    await gated.exited;

    const second = startPilot(env);
    pilots.push(second);
    for (let i = 0; i < 300 && depth < 5; i++) {
      depth = await broker.depth(queues.outgoing);
      if (depth < 5) await new Promise((r) => setTimeout(r, 50));
    }
    expect(depth, second.stderr().slice(-2000)).toBe(5);
    // An event behind the five: a collection that reaches its outcome has read every copy before it.
    const [after] = await publishEvents(broker, queues.incoming, ['1']);
    const copies = await drainDeliveries(broker, queues.outgoing, 6, 15_000);
    expect(copies.map((d) => d.headers[HEADERS.inputEventId])).toEqual([root, root, root, root, root, after]);
    // The next attempt's three carry the ids the killed one gave the same pieces.
    const idOf = new Map<string, string>();
    for (const d of copies.slice(0, 5)) {
      const piece = String(decodeEnvelope(d.body).data);
      expect(idOf.get(piece) ?? d.eventId, piece).toBe(d.eventId);
      idOf.set(piece, d.eventId);
    }
    expect([...idOf.keys()].sort()).toEqual(['3-0', '3-1', '3-2']);
    // The coordinator's collection over those six copies, in the order they came.
    const { queues: collected } = await testQueues.create(name);
    for (const d of copies) await broker.publish(collected.outgoing, { body: d.body, headers: d.headers, eventId: d.eventId });

    const stats: CollectStats = { settled: 0, results: 0, deadLetters: 0, filtered: 0, duplicates: 0, unexpected: 0 };
    const outcomes: WorkflowOutcome[] = [];
    for await (const o of collectOutcomes([{ broker, queue: collected.outgoing, kind: 'result' }], 'mqclient', { expected: [root!, after!], idleTimeoutMs: 30_000 }, stats)) outcomes.push(o);
    expect(stats).toMatchObject({ settled: 2, results: 4, duplicates: 2, deadLetters: 0 });
    const pieces = outcomes.filter((o) => o.inputEventId === root);
    expect(pieces.map((o) => o.data).sort()).toEqual(['3-0', '3-1', '3-2']);
    expect(new Set(pieces.map((o) => o.outcomeId)).size).toBe(3);
    for (const o of pieces) expect(o.kind === 'result' && o.headers[P.share]).toBe('1/3');
    // Two pieces from the killed attempt, the third from the next.
    expect(pieces.map((o) => o.provenance.at(-1)?.attempt).sort()).toEqual([1, 1, 2]);
    expect(await second.exited).toMatchObject({ code: 0 });
  }, 90_000);
});
