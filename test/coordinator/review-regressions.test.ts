/**
 * Regressions from the coordinator review: outcomes of other runs are never deleted, a collection whose
 * queue disappears fails instead of hanging, a failed publish stops the pilots it started, more than
 * 10,000 kept dead letters do not stall a run, the env file keeps values as they are.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, test } from 'vitest';
import { condorSize, envFileText } from '../../coordinator/condor/submit-description.js';
import { Workflow } from '../../coordinator/index.js';
import { runWorkflow } from '../../coordinator/run-workflow.js';
import { PublishError } from '../../coordinator/errors.js';
import { HEADERS } from '../../mq-adapters/types.js';
import { BROKER_NAMES, brokerOptions, freshId } from './helpers.js';

const cleanup: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f().catch(() => undefined);
});

const bytes = (s: string) => new TextEncoder().encode(s);

describe.each(BROKER_NAMES)('collect on %s', (name) => {
  test("another run's dead letter stays in the dead-letter queue", async () => {
    const wf = await Workflow.create({ broker: brokerOptions(name), id: freshId('rr'), wireFormat: 'raw' });
    cleanup.push(() => wf.close({ deleteQueues: true }));
    await wf.broker.publish(wf.queues.deadLetter, { body: bytes('old'), eventId: 'old', headers: { [HEADERS.deadLetterReason]: 'task exited with code 3' } });
    // The expected result arrives only after the old dead letter has been read.
    setTimeout(() => void wf.broker.publish(wf.queues.outgoing, { body: bytes('r'), eventId: 'new:out', headers: { [HEADERS.inputEventId]: 'new' } }), 500);
    const got: string[] = [];
    for await (const o of wf.collect({ expected: ['new'], keepDeadLetters: true, idleTimeoutMs: 10_000 })) got.push(o.inputEventId);
    expect(got).toEqual(['new']);
    expect(wf.collectStats.unexpected).toBe(1);
    expect((await wf.deadLetters().list()).map((d) => d.inputEventId)).toEqual(['old']);
  });
});

describe('collect on rabbitmq', () => {
  test('fails, instead of waiting for ever, when its queue is deleted', async () => {
    const wf = await Workflow.create({ broker: brokerOptions('rabbitmq'), id: freshId('rr') });
    cleanup.push(() => wf.close({ deleteQueues: true }));
    setTimeout(() => void wf.broker.deleteQueue(wf.queues.outgoing), 500);
    const run = (async () => {
      for await (const _ of wf.collect({ expected: 5 })) void _;
    })();
    await expect(run).rejects.toThrow(/ended before every outcome arrived/);
  });

  test('more than 10,000 kept dead letters are all collected', async () => {
    const wf = await Workflow.create({ broker: brokerOptions('rabbitmq'), id: freshId('rr'), wireFormat: 'raw' });
    cleanup.push(() => wf.close({ deleteQueues: true }));
    const n = 10_050;
    await Promise.all(
      Array.from({ length: n }, (_, i) => wf.broker.publish(wf.queues.deadLetter, { body: bytes('x'), eventId: `e${i}`, headers: { [HEADERS.deadLetterReason]: 'bad' } })),
    );
    let got = 0;
    for await (const _ of wf.collect({ expected: n, keepDeadLetters: true, idleTimeoutMs: 10_000 })) got += 1;
    expect(got).toBe(n);
  });
});

describe('runWorkflow', () => {
  test('a publish that fails stops the pilots that were started', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ewms-rr-'));
    const id = freshId('rr');
    async function* events() {
      for (let i = 0; i < 5; i++) yield { i };
      await new Promise((r) => setTimeout(r, 1500)); // the pilots are up by now
      throw new Error('bad line');
    }
    const run = runWorkflow({
      broker: brokerOptions('rabbitmq'),
      id,
      events: events(),
      progress: false,
      onOutcome: () => undefined,
      pilots: { backend: 'local', count: 1, task: { args: 'true' }, local: { workDir: dir, pilotCommand: ['sh', '-c', 'echo $$ > pid; exec sleep 60'], killGraceMs: 500 } },
    });
    await expect(run).rejects.toBeInstanceOf(PublishError);
    const pid = Number(readFileSync(join(dir, 'pilot-0', 'pid'), 'utf8'));
    expect(() => process.kill(pid, 0)).toThrow();
    const wf = await Workflow.create({ broker: brokerOptions('rabbitmq'), id });
    await wf.close({ deleteQueues: true });
  });
});

describe('condor submit values', () => {
  test('the env file keeps newlines, quotes and $ as they are', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ewms-rr-'));
    const value = "sh -c 'echo one # note\necho \"$HOME\" two'";
    writeFileSync(join(dir, 'env.sh'), envFileText({ EWMS_PILOT_TASK_ARGS: value }));
    expect(execFileSync('sh', ['-c', `. ${dir}/env.sh; printf %s "$EWMS_PILOT_TASK_ARGS"`]).toString()).toBe(value);
  });

  test('sizes: a unit letter with B or iB is kept, a lone B is refused', () => {
    expect(condorSize('2 GB', 'request_memory')).toBe('2G');
    expect(condorSize('1.5GiB', 'request_memory')).toBe('1.5G');
    expect(condorSize('2048', 'request_memory')).toBe('2048');
    expect(() => condorSize('512B', 'request_memory')).toThrow(/not a size/);
  });
});
