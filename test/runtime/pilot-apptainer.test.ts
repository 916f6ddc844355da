/**
 * The whole pilot path with EWMS_PILOT_CONTAINER_RUNTIME=apptainer: the real CLI (`node dist/pilot/cli.js`)
 * against the real RabbitMQ, the `apptainer` stand-in first on PATH (it checks each argument vector and
 * runs the task for real under bubblewrap). The init command and every task read and write their files
 * through the binds, at the container paths.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, test } from 'vitest';
import { drainOutputs, PILOT_CLI, pilotEnv, publishEvents, startPilot, TestQueues } from '../pilot-integration/run-pilot.js';
import { pathWithStandIns } from './helpers.js';

const skipReason = !existsSync(PILOT_CLI)
  ? `${PILOT_CLI} is missing (build first: npx tsc -p tsconfig.json)`
  : spawnSync('bwrap', ['--version']).status !== 0
    ? 'bubblewrap (bwrap) is not installed'
    : undefined;
if (skipReason) console.warn(`SKIPPED pilot-with-apptainer end-to-end test: ${skipReason}`);

const testQueues = new TestQueues();
afterEach(() => testQueues.cleanup());

describe.skipIf(skipReason !== undefined)('pilot with the apptainer runtime (stand-in + bubblewrap)', () => {
  test('init and tasks run in containers: infile in, outfile out through the binds; one sandbox build', async () => {
    const { broker, queues } = await testQueues.create('rabbitmq');
    const root = mkdtempSync(join(tmpdir(), 'ewms-pilot-apptainer-'));
    const external = join(root, 'calibration');
    mkdirSync(external);
    writeFileSync(join(external, 'gain.txt'), 'gain=2');
    const log = join(root, 'apptainer-calls.jsonl');

    const ids = await publishEvents(broker, queues.incoming, ['event zero', 'event one', 'event two']);
    const env = pilotEnv('rabbitmq', queues, {
      PATH: pathWithStandIns(),
      APPTAINER_STANDIN_LOG: log,
      EWMS_PILOT_CONTAINER_RUNTIME: 'apptainer',
      EWMS_PILOT_TASK_IMAGE: 'docker://icecube/ewms-example-task:1',
      EWMS_PILOT_INIT_ARGS: `sh -c 'echo "prepared by init" > {{DATA_HUB}}/init.txt'`,
      EWMS_PILOT_TASK_ARGS:
        `sh -c 'printf "%s|%s|%s|%s|%s" "$(cat {{INFILE}})" "$GREETING" "$(cat "$EWMS_TASK_DATA_HUB_DIR/init.txt")"` +
        ` "$(cat ${external}/gain.txt)" "$EWMS_TASK_INFILE" > {{OUTFILE}}'`,
      EWMS_PILOT_TASK_ENV_JSON: JSON.stringify({ GREETING: 'hello, "world"' }),
      EWMS_PILOT_EXTERNAL_DIRECTORIES: external,
      EWMS_PILOT_CONTAINER_DEBUG: 'true',
    });
    const pilot = startPilot(env);
    const { code } = await pilot.exited;
    expect(code, pilot.stderr().slice(-3000)).toBe(0);

    const outputs = await drainOutputs(broker, queues.outgoing, 3);
    expect(outputs).toHaveLength(3);
    const byInput = new Map(outputs.map((o) => [o.inputEventId, String(o.data)]));
    ['event zero', 'event one', 'event two'].forEach((text, i) => {
      const [infileText, greeting, fromInit, gain, infilePath] = byInput.get(ids[i]!)!.split('|');
      expect(infileText).toBe(text);
      expect(greeting).toBe('hello, "world"');
      expect(fromInit).toBe('prepared by init');
      expect(gain).toBe('gain=2');
      expect(infilePath).toMatch(/^\/ewms-pilot-data\/task-io\/[^/]+$/);
    });
    expect(await broker.depth(queues.incoming)).toBe(0);

    const calls = readFileSync(log, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { argv: string[]; apptainerEnv: Record<string, string> });
    expect(calls.filter((c) => c.argv.includes('build'))).toHaveLength(1);
    const runs = calls.filter((c) => c.argv.includes('run'));
    expect(runs).toHaveLength(4); // init + 3 tasks
    for (const run of runs) {
      expect(run.argv.slice(0, 4)).toEqual(['--debug', 'run', '--containall', '--no-eval']);
      expect(run.argv).toContain(`type=bind,src=${external},dst=${external},ro`);
    }
    // The task env and the EWMS_TASK_* paths travel as APPTAINERENV_*, never on the command line.
    expect(runs.slice(1).every((r) => r.apptainerEnv.APPTAINERENV_GREETING === 'hello, "world"')).toBe(true);
    expect(runs.slice(1).every((r) => /^\/ewms-pilot-data\/task-io\//.test(r.apptainerEnv.APPTAINERENV_EWMS_TASK_INFILE ?? ''))).toBe(true);
    for (const run of runs) expect(run.argv.filter((arg) => arg === '--env' || arg.includes('hello'))).toEqual([]);
  }, 90_000);

  test('a missing image stops the pilot at start with a clear error, before any event is taken', async () => {
    const { broker, queues } = await testQueues.create('rabbitmq');
    await publishEvents(broker, queues.incoming, ['untouched']);
    const pilot = startPilot(
      pilotEnv('rabbitmq', queues, {
        PATH: pathWithStandIns(),
        EWMS_PILOT_CONTAINER_RUNTIME: 'apptainer',
        EWMS_PILOT_TASK_IMAGE: '/nonexistent/task.sif',
        EWMS_PILOT_TASK_ARGS: 'cat {{INFILE}}',
      }),
    );
    const { code } = await pilot.exited;
    expect(code).not.toBe(0);
    expect(pilot.stderr()).toMatch(/apptainer image not found: \/nonexistent\/task.sif/);
    expect(await broker.depth(queues.incoming)).toBe(1);
  }, 60_000);
});
