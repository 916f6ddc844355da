/**
 * Workflows as graphs: checked before anything starts (errors name the task and the alias), and run end to
 * end on local pilots against the real brokers — a fan-out to two tasks, then a merge — with every input's
 * outcomes once, each with its provenance chain, filtered and failed branches counted so the run ends.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { runWorkflow, Workflow, WorkflowGraphError, WorkflowPilots, checkGraph, parseWorkflowDescription, workflowFileFormat, type WorkflowOutcome, type WorkflowTask } from '../../coordinator/index.js';
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

  test('workflow files: YAML by extension, the same description as JSON; a malformed file named by line and column', () => {
    const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
    const json = /```json\n(\{\n {2}"tasks"[\s\S]*?)```/.exec(readme)?.[1];
    const yaml = /The same workflow as `workflow\.yaml`:\n\n```yaml\n([\s\S]*?)```/.exec(readme)?.[1];
    expect(json && yaml).toBeTruthy();
    expect(parseWorkflowDescription(yaml!, 'workflow.yaml', 'yaml')).toEqual(parseWorkflowDescription(json!, 'workflow.json'));
    expect([workflowFileFormat('w.yaml'), workflowFileFormat('w.YML'), workflowFileFormat('w.json'), workflowFileFormat('w')]).toEqual(['yaml', 'yaml', 'json', 'json']);

    expect(() => parseWorkflowDescription('tasks:\n  - task_name: a\n    input_queue_aliases: [in\n  - task_name: b\n', 'w.yaml', 'yaml')).toThrow(/^w\.yaml:\d+:\d+ is not valid YAML: /);
    expect(() => parseWorkflowDescription('tasks: []\ntasks: []\npublic_queue_aliases: []\n', 'w.yaml', 'yaml')).toThrow(/^w\.yaml:2:1 is not valid YAML: Map keys must be unique/);
    expect(() => parseWorkflowDescription('{\n  "tasks": [,]\n}', 'w.json')).toThrow(/^w\.json:2:13 is not valid JSON: expected a JSON value, found ','/);
    // The schema checks after parsing are the format's own no more: the same messages for both.
    expect(() => parseWorkflowDescription('- a\n- b\n', 'w.yml', 'yaml')).toThrow('w.yml is not a YAML mapping');
    expect(() => parseWorkflowDescription('tasks: []\n', 'w.yml', 'yaml')).toThrow('w.yml has no "public_queue_aliases" list of strings');
    expect(() => parseWorkflowDescription('tasks: []\npublic_queue_aliases: [in]\npriorty: 3\n', 'w.yml', 'yaml')).toThrow('w.yml has unknown field priorty');
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

  test('a task with 0, 1 or 3 outputs per input (EWMS_PILOT_OUTFILE_EVENTS=jsonl), fanned out: every root settled once', async () => {
    // pieces → a, b (its n outputs, each to both queues: 1/(2n) of the root apiece);  left: a → joined;
    // merge: b, joined → out.  An input n gives 2n results; n = 0 writes an empty outfile: filtered.
    const pieces = `sh -c 'n=$(cat {{INFILE}}); i=0; : > {{OUTFILE}}; while [ $i -lt $n ]; do echo "\\"$n-$i\\"" >> {{OUTFILE}}; i=$((i+1)); done'`;
    const tasks: WorkflowTask[] = [
      { ...task('pieces', ['in'], ['a', 'b'], pieces), pilot_config: { environment: { EWMS_PILOT_OUTFILE_EVENTS: 'jsonl' } } },
      task('left', ['a'], ['joined']),
      task('merge', ['b', 'joined'], ['out']),
    ];
    const events = ['0', '1', '3', '3', '1', '0', '1', '3', '0'];
    const outcomes: WorkflowOutcome[] = [];
    const report = await runWorkflow({
      broker: brokerOptions(name),
      id: freshId('gpieces'),
      tasks,
      publicQueues: ['in', 'out'],
      maxDeliveries: 1,
      events,
      pilots: { backend: 'local', count: 1, pilotEnv: { EWMS_PILOT_TIMEOUT_QUEUE_WAIT_FOR_FIRST_MESSAGE: '30', EWMS_PILOT_TIMEOUT_QUEUE_INCOMING: '30' }, local: { workDir } },
      onOutcome: (o) => {
        outcomes.push(o);
      },
      idleTimeoutMs: 60_000,
      deleteQueues: true,
    });
    expect(report).toMatchObject({ published: 9, settled: 9, results: 24, deadLetters: 0, filtered: 3, duplicates: 0 });
    expect(new Set(outcomes.map((o) => o.outcomeId)).size).toBe(24);
    const byRoot = new Map<string, string[]>();
    for (const o of outcomes) byRoot.set(o.inputEventId, [...(byRoot.get(o.inputEventId) ?? []), `${String(o.data)} ${o.provenance.map((s) => s.task_name).join('>')}`]);
    expect([...byRoot.values()].map((r) => r.length).sort()).toEqual([2, 2, 2, 6, 6, 6]);
    for (const results of byRoot.values()) {
      const n = results.length / 2;
      const expected = Array.from({ length: n }, (_, i) => [`${n}-${i} pieces>left>merge`, `${n}-${i} pieces>merge`]).flat().sort();
      expect(results.sort()).toEqual(expected);
    }
  }, 180_000);
});

test('autoscaling per task, from its own queue depth: the slow stage grows, the fast one stays as it is', async () => {
  const wf = await Workflow.create({
    broker: brokerOptions('rabbitmq'),
    id: freshId('gscale'),
    tasks: [
      { ...task('slow', ['in'], ['mid'], `sh -c 'sleep 0.2; cp {{INFILE}} {{OUTFILE}}'`), n_workers: 1, autoscale: { min: 1, max: 3, eventsPerPilot: 10, periodSeconds: 1 } },
      { ...task('fast', ['mid'], ['out']), n_workers: 1 },
    ],
    publicQueues: ['in', 'out'],
    pilots: { backend: 'local', local: { workDir }, pilotEnv: { EWMS_PILOT_TIMEOUT_QUEUE_WAIT_FOR_FIRST_MESSAGE: '30', EWMS_PILOT_TIMEOUT_QUEUE_INCOMING: '30' } },
  });
  try {
    const ids = await wf.publish(Array.from({ length: 80 }, (_, i) => `event ${i}`));
    const pilots = await wf.startPilots();
    try {
      let outcomes = 0;
      for await (const _ of wf.collect({ expected: ids, idleTimeoutMs: 60_000 })) outcomes += 1;
      expect(outcomes).toBe(80);
      expect(pilots).toBeInstanceOf(WorkflowPilots);
      const byTask = pilots as WorkflowPilots;
      // Pilots ever started per task (status counts the ones that ended too).
      expect((await byTask.clusterOf('slow').status()).total).toBeGreaterThan(1);
      expect((await byTask.clusterOf('fast').status()).total).toBe(1);
    } finally {
      await pilots.remove();
    }
  } finally {
    await wf.close({ deleteQueues: true });
  }
}, 120_000);
