/**
 * Every bad input to `ewms`, table-driven, against the real brokers: the exit code, a message that names the
 * flag and the fix, and — where the exit is 2 — nothing changed: the workflow's queues do not exist on the
 * broker afterwards (asked of the broker, not read from the output), a results file that was there is
 * untouched, and none was created.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { Workflow, workflowQueues } from '../../coordinator/index.js';
import { connect } from '../../mq-adapters/index.js';
import { QueueNotFoundError } from '../../mq-adapters/errors.js';
import { BROKER_NAMES, brokerOptions, freshId, type BrokerName } from './helpers.js';

const CLI = fileURLToPath(new URL('../../dist/coordinator/cli.js', import.meta.url));
const STAND_INS = fileURLToPath(new URL('./stand-ins/', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'ewms-cli-validation-'));
const standinDir = mkdtempSync(join(tmpdir(), 'ewms-cli-validation-condor-'));
/** Every workflow id a case used, so a case that wrongly made queues does not leave them on the shared brokers. */
const used: Array<[BrokerName, string]> = [];
afterAll(async () => {
  rmSync(dir, { recursive: true, force: true });
  rmSync(standinDir, { recursive: true, force: true });
  for (const [name, workflow] of used) {
    const broker = await connect(brokerOptions(name));
    for (const queue of [...Object.values(workflowQueues(workflow)), `ewms-${workflow}-monitor`]) await broker.deleteQueue(queue, { deadLetterQueue: false }).catch(() => undefined);
    await broker.close();
  }
});

function workflowFor(name: BrokerName, prefix: string): string {
  const id = freshId(prefix);
  used.push([name, id]);
  return id;
}

const RESULTS_BEFORE = '{"eventId":"earlier","kind":"result","data":1}\n';
const TASK = 'python3 pixel.py {{INFILE}} {{OUTFILE}}';

beforeAll(() => {
  writeFileSync(join(dir, 'pixel.py'), 'import json, sys\njson.dump(json.load(open(sys.argv[1])), open(sys.argv[2], "w"))\n');
  writeFileSync(join(dir, 'events.jsonl'), Array.from({ length: 5 }, (_, i) => JSON.stringify({ pixel: i })).join('\n') + '\n');
  writeFileSync(join(dir, 'strings.jsonl'), '"a"\n"b"\n');
  writeFileSync(join(dir, 'malformed.jsonl'), '{"pixel": 0}\n{"pixel": 1,}\n{"pixel": 2}\n');
  writeFileSync(join(dir, 'empty.jsonl'), '\n');
  // Base64 of 1.5 MB of random bytes: 2 MB of text, about 1.5 MB after zstd, over NATS's default max_payload (1 MiB).
  writeFileSync(join(dir, 'big.jsonl'), `${JSON.stringify(randomBytes(1_500_000).toString('base64'))}\n`);
});

function env(name: BrokerName): NodeJS.ProcessEnv {
  const base = { PATH: `${STAND_INS}:${process.env.PATH}`, HOME: process.env.HOME, EWMS_CONDOR_STANDIN_DIR: standinDir };
  return name === 'rabbitmq' ? { ...base, EWMS_BROKER_URL: 'amqp://guest@127.0.0.1:5672', EWMS_BROKER_TOKEN: 'guest' } : { ...base, EWMS_BROKER_URL: 'nats://127.0.0.1:4222' };
}

function ewms(name: BrokerName, args: string[], extraEnv: NodeJS.ProcessEnv = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { cwd: dir, env: { ...env(name), ...extraEnv }, timeout: 60_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

/** Which of the workflow's queues exist on the broker (asked with a passive depth query). */
async function existingQueues(name: BrokerName, workflow: string): Promise<string[]> {
  const broker = await connect(brokerOptions(name));
  try {
    const found: string[] = [];
    for (const queue of [...Object.values(workflowQueues(workflow)), `ewms-${workflow}-monitor`]) {
      try {
        await broker.depth(queue);
        found.push(queue);
      } catch (err) {
        if (!(err instanceof QueueNotFoundError)) throw err;
      }
    }
    return found;
  } finally {
    await broker.close();
  }
}

interface Case {
  /** What is wrong. */
  label: string;
  /** The command line after `ewms` (`WF` stands for the case's fresh workflow id). */
  args: string[];
  code: number;
  /** The message: what is wrong and the fix. */
  says: RegExp[];
}

const RUN = ['run', '--workflow', 'WF', '--output', 'results.jsonl', '--no-progress'];
const CASES: Case[] = [
  { label: 'no pilots', args: [...RUN, '--events', 'events.jsonl', '--pilots', '0', '--task-args', TASK], code: 2, says: [/--pilots: '0' is not a whole number >= 1/, /e\.g\. --pilots 4/] },
  { label: 'pilots not a number', args: [...RUN, '--events', 'events.jsonl', '--pilots', 'abc', '--task-args', TASK], code: 2, says: [/--pilots: 'abc' is not a whole number >= 1/] },
  { label: 'a fraction of a pilot', args: [...RUN, '--events', 'events.jsonl', '--pilots', '2.5', '--task-args', TASK], code: 2, says: [/--pilots: '2\.5' is not a whole number >= 1/] },
  { label: 'a negative task timeout', args: [...RUN, '--events', 'events.jsonl', '--task-args', TASK, '--task-timeout', '-1'], code: 2, says: [/--task-timeout \(EWMS_PILOT_TASK_TIMEOUT\): '-1' is not a number of seconds/] },
  { label: 'a task timeout of 0', args: [...RUN, '--events', 'events.jsonl', '--task-args', TASK, '--task-timeout', '0'], code: 2, says: [/--task-timeout \(EWMS_PILOT_TASK_TIMEOUT\): 0 s would stop every task before it could start \(0 is not "no limit"\)/, /unset it for no limit/] },
  { label: 'a negative idle timeout', args: [...RUN, '--events', 'events.jsonl', '--task-args', TASK, '--idle-timeout', '-5'], code: 2, says: [/--idle-timeout: '-5' is not a number of seconds > 0/, /--idle-timeout 600/] },
  { label: 'an unknown --pilot-env name', args: [...RUN, '--events', 'events.jsonl', '--task-args', TASK, '--pilot-env', 'EWMS_PILOT_MAX_CONCURENT_TASKS=2'], code: 2, says: [/--pilot-env EWMS_PILOT_MAX_CONCURENT_TASKS: is not a setting the pilot knows/, /did you mean EWMS_PILOT_MAX_CONCURRENT_TASKS\?/] },
  { label: 'a secret in --pilot-env', args: [...RUN, '--events', 'events.jsonl', '--task-args', TASK, '--pilot-env', 'EWMS_PILOT_QUEUE_INCOMING_AUTH_TOKEN=hunter2'], code: 2, says: [/is a secret/, /set EWMS_BROKER_TOKEN/] },
  { label: 'a --pilot-env value the pilot refuses', args: [...RUN, '--events', 'events.jsonl', '--task-args', TASK, '--pilot-env', 'EWMS_PILOT_MAX_CONCURRENT_TASKS=0'], code: 2, says: [/--pilot-env EWMS_PILOT_MAX_CONCURRENT_TASKS: '0' is not a whole number >= 1/] },
  { label: 'a --pilot-env that ewms sets from its own flag', args: [...RUN, '--events', 'events.jsonl', '--task-args', TASK, '--pilot-env', 'EWMS_PILOT_MAX_DELIVERIES=9'], code: 2, says: [/is set by ewms from --max-deliveries/, /give --max-deliveries instead/] },
  { label: 'no events file', args: [...RUN, '--events', 'nope.jsonl', '--task-args', TASK], code: 2, says: [/no events at 'nope\.jsonl'/, /give a \.jsonl file/] },
  { label: 'a malformed line', args: [...RUN, '--events', 'malformed.jsonl', '--task-args', TASK], code: 2, says: [/1 of the 3 events in 'malformed\.jsonl' is not valid JSON \(nothing was published\)/, /malformed\.jsonl:2:13: expected a double-quoted property name, found '\}'/, /one JSON value per line/] },
  { label: 'no task', args: [...RUN, '--events', 'events.jsonl'], code: 2, says: [/--task-args: is required: no task given/] },
  { label: 'a task program that does not exist', args: [...RUN, '--events', 'events.jsonl', '--task-args', 'pyhton3 pixel.py {{INFILE}} {{OUTFILE}}'], code: 2, says: [/--task-args \(EWMS_PILOT_TASK_ARGS\): runs 'pyhton3', which is not a program on this host's PATH/, /check the spelling/] },
  { label: 'an infile extension that cannot hold JSON events', args: [...RUN, '--events', 'events.jsonl', '--task-args', TASK, '--pilot-env', 'EWMS_PILOT_INFILE_EXT=.txt'], code: 2, says: [/EWMS_PILOT_INFILE_EXT=\.txt: cannot hold them: all 5 events in events\.jsonl are JSON other than strings/, /leave EWMS_PILOT_INFILE_EXT out/] },
  { label: 'an output in a directory that does not exist', args: ['run', '--workflow', 'WF', '--output', 'no/such/dir/r.jsonl', '--events', 'events.jsonl', '--task-args', TASK], code: 2, says: [/--output: 'no\/such\/dir\/r\.jsonl' cannot be created/] },
  { label: '--events twice', args: [...RUN, '--events', 'events.jsonl', '--events', 'strings.jsonl', '--task-args', TASK], code: 2, says: [/--events: was given 2 times/] },
  { label: 'several problems at once', args: [...RUN, '--events', 'malformed.jsonl', '--pilots', 'x', '--task-timeout', '0'], code: 2, says: [/4 problems with the command line/, /--pilots: 'x'/, /--task-args: is required/, /malformed\.jsonl:2:13/, /--task-timeout \(EWMS_PILOT_TASK_TIMEOUT\): 0 s/] },
  { label: 'an empty events file (a warning, nothing to do)', args: [...RUN, '--events', 'empty.jsonl', '--task-args', TASK], code: 0, says: [/warning: empty\.jsonl holds no events: nothing to run \(nothing was changed\)/] },
  { label: 'dlq list of a workflow that does not exist', args: ['dlq', 'list', '--workflow', 'WF'], code: 2, says: [/--workflow WF: does not exist \(no queue ewms-WF-in, ewms-WF-out or ewms-WF-in\.dlq\) on the \w+ broker/, /check the workflow id/] },
  { label: 'dlq requeue of a workflow that does not exist', args: ['dlq', 'requeue', '--workflow', 'WF', '--write-ids', 'again.txt'], code: 2, says: [/--workflow WF: does not exist/] },
  { label: 'collect of a workflow that does not exist', args: ['collect', '--workflow', 'WF', '--expected', '3', '--output', 'results.jsonl'], code: 2, says: [/--workflow WF: does not exist/] },
  { label: 'delete of a workflow that does not exist', args: ['delete', '--workflow', 'WF'], code: 2, says: [/--workflow WF: does not exist/] },
  { label: 'run --also-expect of a workflow that does not exist', args: [...RUN, '--also-expect', '3', '--task-args', TASK], code: 2, says: [/--workflow WF: does not exist on the \w+ broker at .*: no events to expect/] },
  { label: 'status of a condor cluster that has no jobs', args: ['status', '--backend', 'condor', '--cluster', '987654'], code: 2, says: [/--cluster 987654: has no job in the queue of the local schedd/, /check the id ewms submit printed/] },
];

describe.each(BROKER_NAMES)('on %s: bad input, exit code, the fix named, nothing changed', (name) => {
  test.each(CASES.map((c) => [c.label, c] as const))('%s', async (_label, c) => {
    const workflow = workflowFor(name, 'val');
    writeFileSync(join(dir, 'results.jsonl'), RESULTS_BEFORE);
    rmSync(join(dir, 'again.txt'), { force: true });
    const r = await ewms(name, c.args.map((a) => a.replace('WF', workflow)));
    expect(r.code, r.stderr).toBe(c.code);
    for (const pattern of c.says) expect(r.stderr).toMatch(new RegExp(pattern.source.replaceAll('WF', workflow)));
    if (c.code === 2) expect(r.stderr).toMatch(/nothing was changed/);
    // Nothing changed: no queue, no file written or created.
    expect(await existingQueues(name, workflow)).toEqual([]);
    expect(readFileSync(join(dir, 'results.jsonl'), 'utf8')).toBe(RESULTS_BEFORE);
    expect(existsSync(join(dir, 'again.txt'))).toBe(false);
  });
});

describe('against what is already there', () => {
  test.each(BROKER_NAMES)('%s: re-running a workflow id that holds dead letters says what is there, changes nothing', async (name) => {
    const workflow = workflowFor(name, 'rerun');
    const wf = await Workflow.create({ broker: brokerOptions(name), id: workflow });
    try {
      await wf.publish(['waiting 1', 'waiting 2']);
      const r = await ewms(name, ['run', '--workflow', workflow, '--events', 'events.jsonl', '--task-args', TASK, '--output', 'results.jsonl']);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toMatch(new RegExp(`--workflow ${workflow}: already holds 2 events waiting in ewms-${workflow}-in, 0 dead letters in ewms-${workflow}-in\\.dlq, 0 results not yet collected in ewms-${workflow}-out`));
      expect(r.stderr).toMatch(/ewms dlq requeue --workflow .*; start over: ewms delete --workflow/);
      expect(r.stderr.split('\n').filter(Boolean).length).toBeLessThanOrEqual(3);
      expect(await wf.depth()).toBe(2);
      // ewms delete removes the queues (and says what was in them).
      const deleted = await ewms(name, ['delete', '--workflow', workflow]);
      expect(deleted.code, deleted.stderr).toBe(0);
      expect(deleted.stderr).toMatch(new RegExp(`deleted workflow ${workflow}: 2 events waiting`));
      expect(await existingQueues(name, workflow)).toEqual([]);
    } finally {
      await wf.close().catch(() => undefined);
    }
  });

  test('nats: an event larger than the server\'s max_payload is refused by line before anything is published', async () => {
    const workflow = workflowFor('nats', 'big');
    writeFileSync(join(dir, 'results.jsonl'), RESULTS_BEFORE);
    const r = await ewms('nats', ['run', '--workflow', workflow, '--events', 'big.jsonl', '--task-args', TASK, '--output', 'results.jsonl']);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toMatch(/big\.jsonl:1: this event is \d+ bytes on the wire, more than the nats broker takes \(max_payload \d+ bytes, headers included\)/);
    expect(r.stderr).toMatch(/raise max_payload in the nats-server configuration/);
    expect(await existingQueues('nats', workflow)).toEqual([]);
    expect(readFileSync(join(dir, 'results.jsonl'), 'utf8')).toBe(RESULTS_BEFORE);
  });
});

test('a token the broker refuses: exit 1, the hint names EWMS_BROKER_TOKEN (the variable ewms reads), the token appears nowhere', async () => {
  const r = await ewms('rabbitmq', ['dlq', 'list', '--workflow', 'anything'], { EWMS_BROKER_TOKEN: 'hunter2-wrong' });
  expect(r.code).toBe(1);
  expect(r.stderr).toMatch(/BrokerAuthError: rabbitmq broker at .* refused the credentials for user 'guest'\n\s+hint: check EWMS_BROKER_TOKEN/);
  expect(r.stderr).not.toMatch(/EWMS_PILOT_QUEUE_\*/);
  expect(r.stderr + r.stdout).not.toContain('hunter2-wrong');
});

describe('help', () => {
  test('status and rm list only their own options; --version is the package version', async () => {
    for (const command of ['status', 'rm']) {
      const help = await ewms('nats', [command, '--help']);
      expect(help.code).toBe(0);
      for (const option of ['--backend', '--cluster', '--condor-schedd', '--condor-pool', '--wms-url']) expect(help.stdout).toContain(option);
      for (const option of ['--task-args', '--pilots', '--pilot-env', '--condor-memory', '--autoscale-max', '--local-work-dir']) expect(help.stdout).not.toContain(option);
    }
    const version = await ewms('nats', ['--version']);
    expect(version.stdout.trim()).toBe((JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version);
    mkdirSync(join(dir, 'x'), { recursive: true });
  });
});
