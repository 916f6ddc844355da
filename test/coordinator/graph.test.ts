/**
 * Workflows as graphs: checked before anything starts (errors name the task and the alias), and run end to
 * end on local pilots against the real brokers — a fan-out to two tasks, then a merge — with every input's
 * outcomes once, each with its provenance chain, filtered and failed branches counted so the run ends.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { runWorkflow, Workflow, WorkflowGraphError, checkGraph, type WorkflowOutcome, type WorkflowTask } from '../../coordinator/index.js';
import { brokerOptions, freshId, type BrokerName } from './helpers.js';

const task = (name: string, inputs: string[], outputs: string[], args = 'cp {{INFILE}} {{OUTFILE}}'): WorkflowTask => ({
  task_name: name,
  task_args: args,
  input_queue_aliases: inputs,
  output_queue_aliases: outputs,
});

function graphError(fn: () => unknown): WorkflowGraphError {
  try {
    fn();
  } catch (err) {
    if (err instanceof WorkflowGraphError) return err;
    throw err;
  }
  throw new Error('expected a WorkflowGraphError');
}

describe('graph checks, before anything starts', () => {
  test('an unknown alias is refused, naming the task and the alias', () => {
    const err = graphError(() => checkGraph([task('fit', ['pixles'], ['out'])], ['pixels', 'out']));
    expect(err).toMatchObject({ problem: 'unknown-alias', alias: 'pixels' });
    const read = graphError(() => checkGraph([task('fit', ['in'], ['out']), task('merge', ['fitz'], ['out2'])], ['in', 'out', 'out2']));
    expect(read).toMatchObject({ problem: 'unknown-alias', task: 'merge', alias: 'fitz' });
    expect(read.message).toContain("task 'merge' reads queue 'fitz'");
  });

  test('a task with no input, a queue nothing reads, a queue two tasks read, a cycle', () => {
    expect(graphError(() => checkGraph([task('a', [], ['out'])], ['out']))).toMatchObject({ problem: 'no-input', task: 'a' });
    expect(graphError(() => checkGraph([task('a', ['in'], ['out', 'lost'])], ['in', 'out']))).toMatchObject({ problem: 'unread-queue', task: 'a', alias: 'lost' });
    expect(graphError(() => checkGraph([task('a', ['in'], ['out']), task('b', ['in'], ['out'])], ['in', 'out']))).toMatchObject({ problem: 'shared-input', alias: 'in' });
    const cyclic = [task('a', ['in', 'back'], ['mid']), task('b', ['mid'], ['back', 'out'])];
    const cycle = graphError(() => checkGraph(cyclic, ['in', 'out']));
    expect(cycle).toMatchObject({ problem: 'cycle' });
    expect(cycle.message).toMatch(/a → b → a/);
    expect(checkGraph(cyclic, ['in', 'out'], { allowCycles: true }).publicOutputs).toEqual(['out']);
  });

  test('Workflow.create refuses a bad graph before touching the broker', async () => {
    // No broker is reachable at this address: the graph error must come first.
    const err = await Workflow.create({ broker: { address: 'amqp://127.0.0.1:1' }, tasks: [task('fit', ['in'], ['out']), task('merge', ['fitz'], ['out'])], publicQueues: ['in', 'out'] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WorkflowGraphError);
    expect((err as WorkflowGraphError).alias).toBe('fitz');
  });

  test('default task names are task-<index>', () => {
    expect(checkGraph([{ task_args: 'x', input_queue_aliases: ['in'], output_queue_aliases: ['out'] }], ['in', 'out']).tasks[0]?.task_name).toBe('task-0');
  });
});

let workDir = '';
beforeEach(() => {
  workDir = mkdtempSync(join(tmpdir(), 'ewms-graph-'));
});
afterEach(() => rmSync(workDir, { recursive: true, force: true }));

const brokers: BrokerName[] = ['rabbitmq', 'nats'];

describe.each(brokers)('a graph on local pilots (%s)', (name) => {
  test('fan-out to two tasks, then a merge: every input settles, each result with its provenance chain', async () => {
    // split → a, b;  left: a → joined;  merge: b, joined → out.  Each input yields two results at `out`,
    // one through `left` and one straight from `split`, each half of it. An event split drops (DROP) settles
    // as filtered; one `left` fails on (POISON) settles as a dead letter for one half and a result for the other.
    const tasks: WorkflowTask[] = [
      task('split', ['in'], ['a', 'b'], `sh -c 'grep -q DROP {{INFILE}} || cp {{INFILE}} {{OUTFILE}}'`),
      task('left', ['a'], ['joined'], `sh -c 'if grep -q POISON {{INFILE}}; then echo bad >&2; exit 3; fi; cp {{INFILE}} {{OUTFILE}}'`),
      task('merge', ['b', 'joined'], ['out']),
    ];
    const events = [...Array.from({ length: 20 }, (_, i) => `event ${i}`), 'DROP me', 'POISON me'];
    const outcomes: WorkflowOutcome[] = [];
    let progress = '';
    const id = freshId('graph');
    const report = await runWorkflow({
      broker: brokerOptions(name),
      id,
      tasks,
      publicQueues: ['in', 'out'],
      maxDeliveries: 1,
      events,
      pilots: {
        backend: 'local',
        count: 1,
        pilotEnv: { EWMS_PILOT_TIMEOUT_QUEUE_WAIT_FOR_FIRST_MESSAGE: '30', EWMS_PILOT_TIMEOUT_QUEUE_INCOMING: '30' },
        local: { workDir },
      },
      onOutcome: (o) => {
        outcomes.push(o);
      },
      idleTimeoutMs: 60_000,
      deleteQueues: true,
      progress: { stream: Object.assign(new PassThrough(), { isTTY: false }).on('data', (b: Buffer) => (progress += b.toString())), logIntervalMs: 500 },
    });
    expect(report).toMatchObject({ published: 22, settled: 22, results: 41, deadLetters: 1, filtered: 1, duplicates: 0 });
    const results = outcomes.filter((o) => o.kind === 'result');
    // Every result once: two per input that was neither dropped nor failed, one for the failed one.
    expect(new Set(results.map((o) => o.outcomeId)).size).toBe(results.length);
    const chains = new Map<string, string[][]>();
    for (const r of results) chains.set(r.inputEventId, [...(chains.get(r.inputEventId) ?? []), r.provenance.map((s) => s.task_name)]);
    expect(chains.size).toBe(21);
    const sorted = (c: string[][]) => c.map((x) => x.join('>')).sort();
    for (const [root, c] of chains) {
      const data = results.find((r) => r.inputEventId === root)?.data;
      if (data === 'POISON me') expect(sorted(c)).toEqual(['split>merge']);
      else expect(sorted(c)).toEqual(['split>left>merge', 'split>merge']);
    }
    for (const r of results) {
      for (const step of r.provenance) {
        expect(step).toMatchObject({ attempt: 1, host: expect.any(String), pilot_version: expect.any(String) });
        expect(step.duration_s).toBeGreaterThanOrEqual(0);
      }
      expect(r.provenance[0]?.input_event_id).toBe(r.inputEventId);
      expect(r.task).toBe('merge');
    }
    const [dead] = outcomes.filter((o) => o.kind === 'dead-letter');
    expect(dead).toMatchObject({ kind: 'dead-letter', task: 'left', data: 'POISON me' });
    expect(dead?.provenance.map((s) => s.task_name)).toEqual(['split']);
    expect(progress).toMatch(/settled 22\/22/);
    // A line per stage: each task's queued events and running pilots.
    expect(progress).toMatch(/split: \d+ queued, \d+ pilots? · left: \d+ queued, \d+ pilots? · merge: \d+ queued/);
  }, 180_000);
});
