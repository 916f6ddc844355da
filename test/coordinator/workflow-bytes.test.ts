/**
 * Bytes both ways, over the real brokers: events published as Buffers with the raw wire format reach a real
 * pilot's task byte for byte, and its outfile's bytes come back as `outcome.bytes` — including bytes that are
 * not UTF-8. And the counters of one Workflow: concurrent publishes add up, a second collection does not
 * reset the first's.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { PublishError, Workflow, type WorkflowOutcome } from '../../coordinator/index.js';
import { BROKER_NAMES, brokerOptions, freshId, startEchoPilot } from './helpers.js';

/** Writes the infile's bytes reversed: any byte value survives, and the result differs from the input. */
const REVERSE = `node -e "const fs=require('fs');fs.writeFileSync(process.argv[2],Buffer.from(fs.readFileSync(process.argv[1]).reverse()))" {{INFILE}} {{OUTFILE}}`;

describe.each(BROKER_NAMES)('bytes through a real pilot (%s)', (name) => {
  test('Buffers in, Buffers out (raw wire format), not-UTF-8 bytes included', async () => {
    const workDir = mkdtempSync(join(tmpdir(), 'ewms-bytes-'));
    const wf = await Workflow.create({ broker: brokerOptions(name), id: freshId('bytes'), wireFormat: 'raw' });
    const events: Buffer[] = [Buffer.from([0xff, 0xfe, 0x00, 0x80, 0xc3, 0x28]), randomBytes(4096), Buffer.alloc(0), randomBytes(1), Buffer.from('plain text', 'utf8')];
    try {
      const ids = await wf.publish(events);
      const pilots = await wf.startPilots({
        backend: 'local',
        count: 2,
        task: { args: REVERSE },
        pilotEnv: { EWMS_PILOT_TIMEOUT_QUEUE_WAIT_FOR_FIRST_MESSAGE: '60', EWMS_PILOT_TIMEOUT_QUEUE_INCOMING: '30' },
        local: { workDir },
      });
      const outcomes: WorkflowOutcome[] = [];
      try {
        for await (const o of wf.collect({ expected: ids, idleTimeoutMs: 60_000 })) outcomes.push(o);
      } finally {
        await pilots.remove();
      }
      expect(outcomes.every((o) => o.kind === 'result')).toBe(true);
      const byId = new Map(outcomes.map((o) => [o.inputEventId, o]));
      ids.forEach((id, i) => {
        const outcome = byId.get(id);
        // An empty outfile is a result of zero bytes; `bytes` is exactly what the task wrote.
        expect(outcome?.bytes, `event ${i}`).toBeInstanceOf(Buffer);
        expect(Buffer.compare(outcome!.bytes!, Buffer.from(events[i]!).reverse()), `event ${i}`).toBe(0);
      });
      expect(byId.get(ids[4]!)?.data).toBe('txet nialp');
    } finally {
      await wf.close({ deleteQueues: true });
      rmSync(workDir, { recursive: true, force: true });
    }
  }, 90_000);
});

describe('bytes and the mqclient format', () => {
  test('bytes with the mqclient wire format are refused with a hint; nothing is published', async () => {
    const wf = await Workflow.create({ broker: brokerOptions('rabbitmq'), id: freshId('bytesmq') });
    try {
      const err = await wf.publish([Buffer.from([1, 2, 3])]).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(PublishError);
      expect((err as PublishError).published).toEqual([]);
      expect(String((err as PublishError).message)).toMatch(/mqclient wire format carries JSON values only/);
      expect(await wf.depth()).toBe(0);
    } finally {
      await wf.close({ deleteQueues: true });
    }
  });
});

describe('counters of one Workflow', () => {
  test('concurrent publish() calls add up; a new collect() leaves a running one\'s counters alone', async () => {
    const wf = await Workflow.create({ broker: brokerOptions('rabbitmq'), id: freshId('counts') });
    const pilot = await startEchoPilot('rabbitmq', wf.queues);
    try {
      const [a, b] = await Promise.all([wf.publish(Array.from({ length: 300 }, (_, i) => `a${i}`)), wf.publish(Array.from({ length: 200 }, (_, i) => `b${i}`))]);
      expect(a).toHaveLength(300);
      expect(b).toHaveLength(200);
      expect(wf.publishedCount).toBe(500);

      const first = wf.collect({ expected: [...a, ...b], idleTimeoutMs: 30_000 });
      let taken = 0;
      for await (const _ of first) {
        taken += 1;
        if (taken === 100) {
          // Before: this reset the counters the first collection was still filling.
          wf.collect({ expected: 1 });
          expect(first.stats.results).toBe(100);
          expect(wf.collectStats.results).toBe(100);
        }
      }
      expect(first.stats).toMatchObject({ results: 500, deadLetters: 0 });
      expect(wf.collectStats.results).toBe(500);
    } finally {
      await pilot.stop();
      await wf.close({ deleteQueues: true });
    }
  }, 60_000);
});
