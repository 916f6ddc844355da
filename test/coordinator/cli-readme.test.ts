/**
 * The README's `ewms run` example, run as a new user runs it: the commands are read from the README (the block
 * between `ewms-cli-example` markers) and run by a shell as they are written, with `npx ewms` being this
 * package's CLI and `scan1` a fresh workflow id (the brokers are shared). The events are JSON objects, the task
 * is a relative path (`python3 pixel.py …`), and a few events fail until the task is fixed:
 *
 *   run → exit 3 with every event's outcome → dlq list → fix → dlq requeue → run → exit 0, every result once.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, test } from 'vitest';
import { workflowQueues } from '../../coordinator/index.js';
import { connect } from '../../mq-adapters/index.js';
import { BROKER_NAMES, brokerOptions, freshId, type BrokerName } from './helpers.js';

const CLI = fileURLToPath(new URL('../../dist/coordinator/cli.js', import.meta.url));
const README = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** The README's example: the export line, and each `npx ewms …` command with its continuation lines joined. */
function readmeExample(): { exports: string; commands: string[] } {
  const block = /<!-- ewms-cli-example:start[^>]*-->\n```sh\n([\s\S]*?)```\n<!-- ewms-cli-example:end -->/.exec(README)?.[1];
  if (!block) throw new Error('README.md has no ewms-cli-example block');
  const lines = block.replace(/\\\n\s*/g, '').split('\n').filter(Boolean);
  const exports = lines.find((l) => l.startsWith('export '))!;
  // A trailing `# …` after two spaces is the README's explanation, not part of the command.
  const commands = lines.filter((l) => l.startsWith('npx ewms ')).map((l) => l.replace(/\s{2,}#.*$/, ''));
  return { exports, commands };
}

/** A shell runs the command as written; `npx ewms` is this checkout's CLI. */
function sh(command: string, cwd: string, env: NodeJS.ProcessEnv): Promise<{ code: number; stdout: string; stderr: string }> {
  const line = command.replace(/^npx ewms /, `${JSON.stringify(process.execPath)} ${JSON.stringify(CLI)} `);
  return new Promise((resolve) => {
    execFile('sh', ['-c', line], { cwd, env, maxBuffer: 16 * 1024 * 1024, timeout: 240_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

/** The environment the README's `export` line sets (its RabbitMQ), or the local NATS. */
function environment(name: BrokerName, exports: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: process.env.HOME };
  if (name === 'rabbitmq') {
    for (const [, key, value] of exports.matchAll(/(\w+)=(\S+)/g)) env[key!] = value;
  } else {
    env.EWMS_BROKER_URL = 'nats://127.0.0.1:4222';
  }
  return env;
}

const N = 40;
const FAILING = new Set([3, 17, 31]);
const BROKEN_TASK = 'import json, sys\nev = json.load(open(sys.argv[1]))\nif ev.get("fail"):\n    sys.exit("bad pixel %d" % ev["pixel"])\njson.dump({"pixel": ev["pixel"], "llh": ev["pixel"] / 2}, open(sys.argv[2], "w"))\n';
const FIXED_TASK = 'import json, sys\nev = json.load(open(sys.argv[1]))\njson.dump({"pixel": ev["pixel"], "llh": ev["pixel"] / 2}, open(sys.argv[2], "w"))\n';

describe.each(BROKER_NAMES)("README's ewms run example on %s", (name) => {
  test('run (exit 3, every outcome) → dlq list → dlq requeue after the fix → run (exit 0): every event once', async () => {
    const { exports, commands } = readmeExample();
    expect(commands).toHaveLength(4);
    const dir = mkdtempSync(join(tmpdir(), 'ewms-readme-'));
    dirs.push(dir);
    const workflow = freshId('scan');
    const env = environment(name, exports);
    const run = (command: string) => sh(command.replaceAll('--workflow scan1', `--workflow ${workflow}`), dir, env);
    writeFileSync(join(dir, 'pixel.py'), BROKEN_TASK);
    writeFileSync(join(dir, 'events.jsonl'), Array.from({ length: N }, (_, i) => JSON.stringify(FAILING.has(i) ? { pixel: i, fail: true } : { pixel: i })).join('\n') + '\n');
    const [first, list, requeue, again] = commands as [string, string, string, string];

    try {
      // 1. The first run reaches every event's outcome: results for most, dead letters for the failing ones.
      const r1 = await run(first);
      expect(r1.code, r1.stderr).toBe(3);
      expect(r1.stderr).toMatch(new RegExp(`workflow ${workflow}: ${N - FAILING.size} results, ${FAILING.size} dead letters`));
      expect(r1.stderr).toMatch(/the pilots get EWMS_PILOT_INFILE_EXT=\.json, EWMS_PILOT_OUTFILE_EXT=\.json/);
      expect(r1.stderr).toMatch(new RegExp(`--task-args: 'pixel\\.py' is taken from ${dir}`));
      expect(r1.stderr).toMatch(/dead letters by reason:\n {2}3× task exited with code 1 — e\.g\. stderr: bad pixel \d+/);
      const firstResults = readFileSync(join(dir, 'results.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { eventId: string; data: { pixel: number } });
      expect(firstResults).toHaveLength(N - FAILING.size);
      // The temporary pilots' directory of a finished run is gone.
      const pilotsDir = /pilots' files: (\S+)\/pilot-N\//.exec(r1.stderr)?.[1];
      expect(pilotsDir && existsSync(pilotsDir)).toBe(false);

      // 2. What failed, and why.
      const r2 = await run(list);
      expect(r2.code, r2.stderr).toBe(0);
      const dead = r2.stdout.trim().split('\n').map((l) => JSON.parse(l) as { eventId: string; reason: string; details: Record<string, string>; data: { pixel: number } });
      expect(dead.map((d) => d.data.pixel).sort((a, b) => a - b)).toEqual([...FAILING]);
      for (const d of dead) {
        expect(d.reason).toBe('task exited with code 1');
        expect(d.details['stderr-tail']).toContain(`bad pixel ${d.data.pixel}`);
      }

      // 3. Fix the task, requeue the dead letters with their ids.
      writeFileSync(join(dir, 'pixel.py'), FIXED_TASK);
      const r3 = await run(requeue);
      expect(r3.code, r3.stderr).toBe(0);
      expect(readFileSync(join(dir, 'again.txt'), 'utf8').trim().split('\n').sort()).toEqual(dead.map((d) => d.eventId).sort());
      expect(r3.stderr).toMatch(/--also-expect-ids again\.txt --pilot-env EWMS_PILOT_OUTFILE_EXT=\.json/);

      // 4. Collect them: every event now has exactly one result, as JSON, and the queues are gone.
      const r4 = await run(again);
      expect(r4.code, r4.stderr).toBe(0);
      expect(r4.stderr).toMatch(new RegExp(`workflow ${workflow}: ${FAILING.size} results, 0 dead letters.*queues deleted`));
      const results = readFileSync(join(dir, 'results.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { eventId: string; kind: string; data: { pixel: number; llh: number } });
      expect(results).toHaveLength(N);
      expect(new Set(results.map((r) => r.eventId)).size).toBe(N);
      expect(results.map((r) => r.data.pixel).sort((a, b) => a - b)).toEqual(Array.from({ length: N }, (_, i) => i));
      expect(results.every((r) => r.kind === 'result' && r.data.llh === r.data.pixel / 2)).toBe(true);
    } finally {
      const broker = await connect(brokerOptions(name));
      for (const queue of [...Object.values(workflowQueues(workflow)), `ewms-${workflow}-monitor`]) await broker.deleteQueue(queue, { deadLetterQueue: false }).catch(() => undefined);
      await broker.close();
    }
  }, 300_000);
});
