/**
 * Nothing lost across many collections. Every collection that ends with results unread gives them back to
 * the outgoing queue, and RabbitMQ quorum queues and NATS count each return as a delivery: with a delivery
 * limit on that queue, a result given back a few times was dead-lettered to `<outgoing>.dlq`, which nobody
 * reads, and the next collection waited for it forever. These tests give results back more often than
 * any delivery limit allows and check that each still arrives exactly once.
 *
 * - with a real consumer on the workflow's connection: results published the way a pilot publishes them,
 *   collections ended early over and over;
 * - with real local pilots and injected task failures (each failing event is retried and succeeds),
 *   several publish/collect rounds on one Workflow, each round's collection ended early several times.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, test } from 'vitest';
import { encodeEvent } from '../../coordinator/codec.js';
import { Workflow, type PilotCluster, type WorkflowOutcome } from '../../coordinator/index.js';
import { DEFAULTS, HEADERS } from '../../mq-adapters/types.js';
import { BROKER_NAMES, brokerOptions, freshId, type BrokerName } from './helpers.js';

/** More collections ended early than the default delivery limit allows returns. */
const EARLY_ENDS = DEFAULTS.maxDeliveries + 2;

const cleanup: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f().catch(() => undefined);
});

async function workflow(name: BrokerName): Promise<Workflow> {
  const wf = await Workflow.create({ broker: brokerOptions(name), id: freshId('stall') });
  cleanup.push(() => wf.close({ deleteQueues: true }));
  return wf;
}

/** Results not settled yet, as far as the caller knows. */
function remainingOf(ids: readonly string[], seen: Map<string, number>): string[] {
  return ids.filter((id) => !seen.has(id));
}

/**
 * Take one outcome, wait until the rest have reached the collector, then end the collection: everything
 * unread goes back to the queue (one more delivery on the broker's count).
 */
async function takeOneAndGiveBackTheRest(wf: Workflow, expected: string[], seen: Map<string, number>): Promise<void> {
  for await (const outcome of wf.collect({ expected, idleTimeoutMs: 20_000 })) {
    record(outcome, seen);
    await new Promise((resolve) => setTimeout(resolve, 300));
    break;
  }
}

async function collectAll(wf: Workflow, expected: string[], seen: Map<string, number>): Promise<void> {
  if (expected.length === 0) return;
  for await (const outcome of wf.collect({ expected, idleTimeoutMs: 20_000 })) record(outcome, seen);
}

function record(outcome: WorkflowOutcome, seen: Map<string, number>): void {
  expect(outcome.kind).toBe('result');
  seen.set(outcome.inputEventId, (seen.get(outcome.inputEventId) ?? 0) + 1);
}

/** Wait until at least `count` messages wait in the queue (all of a round's results are in). */
async function waitForDepth(wf: Workflow, queue: string, count: number, timeoutMs: number): Promise<void> {
  const giveUpAt = Date.now() + timeoutMs;
  for (;;) {
    const depth = await wf.broker.depth(queue);
    if (depth >= count) return;
    if (Date.now() > giveUpAt) throw new Error(`only ${depth} of ${count} results reached '${queue}' within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

/** Messages in a queue, 0 when it does not exist (a queue that never dead-letters has no dead-letter queue). */
async function depthOrZero(wf: Workflow, queue: string): Promise<number> {
  return wf.broker.depth(queue).catch(() => 0);
}

/**
 * A task that fails the first attempt at each event marked `fail` (a marker file remembers the attempt,
 * whichever pilot made it) and echoes `{ key }` otherwise.
 */
function writeTask(dir: string): string {
  const script = join(dir, 'fail-once.cjs');
  writeFileSync(
    script,
    `const fs = require('node:fs');
const [infile, outfile, markers] = process.argv.slice(2);
const event = JSON.parse(fs.readFileSync(infile, 'utf8'));
if (event.fail) {
  try {
    fs.writeFileSync(markers + '/failed-' + event.key, '', { flag: 'wx' });
    process.stderr.write('injected failure for ' + event.key + '\\n');
    process.exit(3);
  } catch {}
}
fs.writeFileSync(outfile, JSON.stringify({ key: event.key }));
`,
  );
  return script;
}

describe.each(BROKER_NAMES)('no result lost on %s', (name) => {
  test(`results given back by ${EARLY_ENDS} collections ended early still arrive, each once`, async () => {
    const wf = await workflow(name);
    const ids = Array.from({ length: 8 }, (_, i) => `input-${i}`);
    for (const id of ids) {
      await wf.broker.publish(wf.queues.outgoing, {
        body: encodeEvent({ id }, wf.wireFormat),
        eventId: `${id}:out`,
        headers: { [HEADERS.inputEventId]: id },
      });
    }
    const seen = new Map<string, number>();
    for (let i = 0; i < EARLY_ENDS; i++) await takeOneAndGiveBackTheRest(wf, remainingOf(ids, seen), seen);
    await collectAll(wf, remainingOf(ids, seen), seen);

    expect([...seen.keys()].sort()).toEqual([...ids].sort());
    expect([...seen.values()].every((n) => n === 1)).toBe(true);
    expect(await depthOrZero(wf, `${wf.queues.outgoing}${DEFAULTS.deadLetterSuffix}`)).toBe(0);
  }, 60_000);

  test(
    'several rounds on one Workflow with local pilots, retried task failures and collections ended early: every result once',
    async () => {
      const dir = mkdtempSync(join(tmpdir(), 'ewms-stall-'));
      cleanup.push(async () => rmSync(dir, { recursive: true, force: true }));
      const task = writeTask(dir);
      const wf = await workflow(name);
      const pilots: PilotCluster = await wf.startPilots({
        backend: 'local',
        count: 2,
        task: { args: `${process.execPath} ${task} {{INFILE}} {{OUTFILE}} ${dir}`, timeoutSeconds: 30 },
        pilotEnv: {
          EWMS_PILOT_INFILE_EXT: '.json',
          EWMS_PILOT_OUTFILE_EXT: '.json',
          EWMS_PILOT_MAX_CONCURRENT_TASKS: '2',
          EWMS_PILOT_PREFETCH: '2',
          EWMS_PILOT_TIMEOUT_QUEUE_WAIT_FOR_FIRST_MESSAGE: '120',
          EWMS_PILOT_TIMEOUT_QUEUE_INCOMING: '120',
          EWMS_PILOT_STOP_LISTENING_ON_TASK_ERROR: 'false',
        },
        local: { workDir: join(dir, 'pilots') },
      });
      cleanup.push(() => pilots.remove());

      const rounds = 3;
      const perRound = 16;
      for (let round = 1; round <= rounds; round++) {
        // Every fourth event fails its first attempt: it is nacked, retried (by either pilot) and succeeds.
        const events = Array.from({ length: perRound }, (_, i) => ({ key: `r${round}-${i}`, fail: i % 4 === 0 }));
        const ids = await wf.publish(events);
        await waitForDepth(wf, wf.queues.outgoing, perRound, 30_000);

        const seen = new Map<string, number>();
        for (let i = 0; i < EARLY_ENDS; i++) await takeOneAndGiveBackTheRest(wf, remainingOf(ids, seen), seen);
        await collectAll(wf, remainingOf(ids, seen), seen);

        expect(seen.size, `round ${round}`).toBe(perRound);
        expect([...seen.values()].every((n) => n === 1), `round ${round}: each result once`).toBe(true);
        expect(wf.collectStats.duplicates, `round ${round}: no duplicates`).toBe(0);
      }
      expect(await depthOrZero(wf, `${wf.queues.outgoing}${DEFAULTS.deadLetterSuffix}`)).toBe(0);
      expect(await depthOrZero(wf, wf.queues.deadLetter)).toBe(0);
    },
    60_000,
  );
});
