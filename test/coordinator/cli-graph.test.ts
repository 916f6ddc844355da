/**
 * `ewms run --workflow-file` end to end: a graph described in the WMS request's shape, local pilots per task,
 * every outcome in the output file with its provenance, dead letters listed per task; a bad graph refused
 * (exit 2) naming the task and the alias before anything is created. A YAML workflow file runs the same, on
 * both brokers; a malformed one is refused naming its line and column.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, test } from 'vitest';
import { connect } from '../../mq-adapters/index.js';
import { cliEnv, freshId, type BrokerName } from './helpers.js';

const CLI = fileURLToPath(new URL('../../dist/coordinator/cli.js', import.meta.url));
const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function ewms(args: string[], cwd: string, env: NodeJS.ProcessEnv = cliEnv('rabbitmq')): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { cwd, env, maxBuffer: 16 * 1024 * 1024, timeout: 150_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

const WORKFLOW = {
  tasks: [
    { task_name: 'split', task_args: 'cp {{INFILE}} {{OUTFILE}}', input_queue_aliases: ['in'], output_queue_aliases: ['a', 'b'] },
    { task_name: 'left', task_args: `sh -c 'grep -q poison {{INFILE}} && exit 3; cp {{INFILE}} {{OUTFILE}}'`, input_queue_aliases: ['a'], output_queue_aliases: ['joined'] },
    { task_name: 'merge', task_args: 'cp {{INFILE}} {{OUTFILE}}', input_queue_aliases: ['b', 'joined'], output_queue_aliases: ['out'], n_workers: 2 },
  ],
  public_queue_aliases: ['in', 'out'],
};


// A filter then a transform, in YAML (block and flow styles, a comment, a folded string, an anchor).
const WORKFLOW_YAML = `# drop what is marked, then tag the rest
tasks:
  - task_name: keep
    task_args: >-
      sh -c 'grep -q drop {{INFILE}} || cp {{INFILE}} {{OUTFILE}}'
    input_queue_aliases: [in]
    output_queue_aliases: [kept]
    pilot_config: &settings
      environment:
        EWMS_PILOT_MAX_CONCURRENT_TASKS: 2
  - task_name: tag
    task_args: "sh -c 'sed s/pixel/tagged/ {{INFILE}} > {{OUTFILE}}'"
    input_queue_aliases:
      - kept
    output_queue_aliases: [out]
    pilot_config: *settings
public_queue_aliases: [in, out]
`;

describe('ewms run --workflow-file', () => {
  test('a three-task graph on local pilots: outcomes with provenance, dead letters listed by task', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ewms-cli-graph-'));
    dirs.push(dir);
    writeFileSync(join(dir, 'workflow.json'), JSON.stringify(WORKFLOW));
    writeFileSync(join(dir, 'events.jsonl'), `${Array.from({ length: 30 }, (_, i) => JSON.stringify(i === 7 ? { pixel: i, poison: true } : { pixel: i })).join('\n')}\n`);
    const workflow = freshId('clig');
    const common = ['--workflow', workflow, '--max-deliveries', '1', '--no-progress'];
    const run = await ewms(
      ['run', ...common, '--workflow-file', 'workflow.json', '--events', 'events.jsonl', '--output', 'out.jsonl', '--dead-letters', 'dead.jsonl', '--backend', 'local',
        '--pilot-env', 'EWMS_PILOT_TIMEOUT_QUEUE_WAIT_FOR_FIRST_MESSAGE=30', '--pilot-env', 'EWMS_PILOT_TIMEOUT_QUEUE_INCOMING=30', '--pilot-env', 'EWMS_PILOT_STOP_LISTENING_ON_TASK_ERROR=false'],
      dir,
    );
    expect(run.code, run.stderr).toBe(3);
    expect(run.stderr).toMatch(/30 of 30 events settled — 59 results, 1 dead letters/);
    expect(run.stderr).toContain(`ewms dlq list --workflow ${workflow} --workflow-file workflow.json --task left`);
    const lines = readFileSync(join(dir, 'out.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { eventId: string; data: { pixel: number }; task: string; provenance: Array<{ task_name: string; attempt: number; host: string }> });
    expect(lines).toHaveLength(59);
    for (const line of lines) {
      expect(line.task).toBe('merge');
      expect(line.provenance[0]?.task_name).toBe('split');
      expect(line.provenance.at(-1)?.task_name).toBe('merge');
      expect(line.provenance.every((s) => s.attempt === 1 && typeof s.host === 'string')).toBe(true);
    }
    const dead = readFileSync(join(dir, 'dead.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { task: string; data: { pixel: number } });
    expect(dead).toMatchObject([{ task: 'left', data: { pixel: 7, poison: true } }]);

    const list = await ewms(['dlq', 'list', '--workflow', workflow, '--workflow-file', 'workflow.json', '--task', 'left'], dir);
    expect(list.code, list.stderr).toBe(0);
    expect(JSON.parse(list.stdout.trim())).toMatchObject({ reason: 'task exited with code 3', data: { pixel: 7, poison: true } });
    const none = await ewms(['dlq', 'list', '--workflow', workflow, '--workflow-file', 'workflow.json', '--task', 'merge'], dir);
    expect(none.stderr).toMatch(/0 dead letters in ewms-.*-b\.dlq/);
    // The queues were kept for the dead letter: delete them all (the graph's queues, by its description).
    const deleted = await ewms(['delete', '--workflow', workflow, '--workflow-file', 'workflow.json'], dir);
    expect(deleted.code, deleted.stderr).toBe(0);
    const broker = await connect({ address: 'amqp://guest@127.0.0.1:5672', authToken: 'guest' });
    try {
      await expect(broker.depth(`ewms-${workflow}-a.dlq`)).rejects.toThrow();
    } finally {
      await broker.close();
    }
  }, 180_000);

  test.each<BrokerName>(['rabbitmq', 'nats'])('a YAML workflow file on %s: every event settled once, the filtered ones counted', async (name) => {
    const dir = mkdtempSync(join(tmpdir(), 'ewms-cli-graph-'));
    dirs.push(dir);
    writeFileSync(join(dir, 'workflow.yml'), WORKFLOW_YAML);
    writeFileSync(join(dir, 'events.jsonl'), `${Array.from({ length: 12 }, (_, i) => JSON.stringify(i % 3 === 0 ? { pixel: i, drop: true } : { pixel: i })).join('\n')}\n`);
    const workflow = freshId('cliy');
    const run = await ewms(
      ['run', '--workflow', workflow, '--workflow-file', 'workflow.yml', '--events', 'events.jsonl', '--output', 'out.jsonl', '--backend', 'local', '--no-progress',
        '--pilot-env', 'EWMS_PILOT_TIMEOUT_QUEUE_WAIT_FOR_FIRST_MESSAGE=30', '--pilot-env', 'EWMS_PILOT_TIMEOUT_QUEUE_INCOMING=30'],
      dir,
      cliEnv(name),
    );
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toMatch(/12 of 12 events settled — 8 results/);
    const lines = readFileSync(join(dir, 'out.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { data: { tagged: number }; provenance: Array<{ task_name: string }> });
    expect(lines.map((l) => l.data.tagged).sort((x, y) => x - y)).toEqual([1, 2, 4, 5, 7, 8, 10, 11]);
    for (const line of lines) expect(line.provenance.map((s) => s.task_name)).toEqual(['keep', 'tag']);
  }, 180_000);

  test('a malformed workflow file is refused (exit 2) naming its line and column, YAML or JSON', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ewms-cli-graph-'));
    dirs.push(dir);
    writeFileSync(join(dir, 'bad.yaml'), WORKFLOW_YAML.replace('output_queue_aliases: [kept]', 'output_queue_aliases: [kept'));
    writeFileSync(join(dir, 'bad.json'), JSON.stringify(WORKFLOW, null, 2).replace('"in"', 'in'));
    writeFileSync(join(dir, 'events.jsonl'), '"x"\n');
    const yaml = await ewms(['run', '--workflow', freshId('clibad'), '--workflow-file', 'bad.yaml', '--events', 'events.jsonl', '--backend', 'local', '--no-progress'], dir);
    expect(yaml.code).toBe(2);
    expect(yaml.stderr).toMatch(/bad\.yaml:\d+:\d+ is not valid YAML: /);
    const json = await ewms(['run', '--workflow', freshId('clibad'), '--workflow-file', 'bad.json', '--events', 'events.jsonl', '--backend', 'local', '--no-progress'], dir);
    expect(json.code).toBe(2);
    expect(json.stderr).toMatch(/bad\.json:7:9 is not valid JSON: expected a JSON value/);
  }, 60_000);

  test('a graph error is refused (exit 2) before anything is created, naming the task and the alias', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ewms-cli-graph-'));
    dirs.push(dir);
    const broken = { ...WORKFLOW, tasks: WORKFLOW.tasks.map((t) => (t.task_name === 'merge' ? { ...t, input_queue_aliases: ['b', 'joind'] } : t)) };
    writeFileSync(join(dir, 'workflow.json'), JSON.stringify(broken));
    writeFileSync(join(dir, 'events.jsonl'), '"x"\n');
    const workflow = freshId('clibad');
    const run = await ewms(['run', '--workflow', workflow, '--workflow-file', 'workflow.json', '--events', 'events.jsonl', '--backend', 'local', '--no-progress'], dir);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain("task 'merge' reads queue 'joind'");
  }, 60_000);
});
