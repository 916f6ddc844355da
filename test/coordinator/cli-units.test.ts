/**
 * The `ewms` CLI's checks, one piece at a time and without a broker: the events file read whole before the
 * first publish (line and column of every malformed event), the pilots' settings through the pilot's own
 * rules, relative task paths, the workstation defaults of local pilots, and the usage-error format.
 */
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { PACKAGE_VERSION } from '../../common/version.js';
import { InputProblems, seconds, UsageError, wholeNumber } from '../../coordinator/cli/input.js';
import { checkPilots, resolveRelativePaths } from '../../coordinator/cli/pilot-check.js';
import { encodeEvent } from '../../coordinator/codec.js';
import { jsonErrorAt, oversizeEvents, scanEvents } from '../../coordinator/event-files.js';
import { buildPilotEnv, type WorkflowTarget } from '../../coordinator/pilot-env.js';
import type { PilotRequest } from '../../coordinator/types.js';

const dir = mkdtempSync(join(tmpdir(), 'ewms-cli-units-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const file = (name: string, text: string) => {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
};

describe('the events file, read whole before anything is published', () => {
  test('what it holds: strings, other JSON (and where the first is), the largest event', async () => {
    const path = file('mixed.jsonl', '\uFEFF"a string"\n\n{"pixel": 1}\n[1, 2, 3]\n"x"\n');
    expect(await scanEvents(path)).toEqual({ count: 4, strings: 2, structured: 2, firstStructured: `${path}:3`, largest: { bytes: 12, where: `${path}:3` } });
  });

  test('every malformed line is named with its column (the first five; the rest counted), none published', async () => {
    const lines = ['{"ok": 1}', '{"b": 2,}', "{'single': 1}", 'plain words', '[1, 2', '{"a":1} {"b":2}', '{"x": tru}', '"ok"', '{,}'];
    const path = file('bad.jsonl', `${lines.join('\n')}\n`);
    const err = await scanEvents(path).then(
      () => undefined,
      (e: unknown) => e as Error & { hint: string },
    );
    expect(err?.message).toBe(
      [
        `7 of the 9 events in '${path}' are not valid JSON (nothing was published):`,
        `    ${path}:2:9: expected a double-quoted property name, found '}'`,
        `    ${path}:3:2: expected a double-quoted property name, found '''`,
        `    ${path}:4:1: expected a JSON value (a string must be in double quotes), found 'p'`,
        `    ${path}:5:6: expected ',' or ']', found the end`,
        `    ${path}:6:9: expected the end of the value (one JSON value per line), found '{'`,
        '    … and 2 more',
      ].join('\n'),
    );
    expect(err?.hint).toMatch(/one JSON value per line/);
  });

  test('a directory: *.json files parsed (line and column inside the file), other files are text events', async () => {
    const events = join(dir, 'events-dir');
    mkdirSync(events);
    writeFileSync(join(events, 'a.json'), '{\n  "pixel": 1,\n}\n');
    writeFileSync(join(events, 'b.txt'), 'free text');
    await expect(scanEvents(events)).rejects.toThrow(new RegExp(`${join(events, 'a.json')}:3:1: expected a double-quoted property name, found '}'`));
    writeFileSync(join(events, 'a.json'), '{"pixel": 1}');
    expect(await scanEvents(events)).toMatchObject({ count: 2, strings: 1, structured: 1 });
  });

  test('an empty file holds no events; a missing one is a usage error', async () => {
    expect((await scanEvents(file('empty.jsonl', '\n\n'))).count).toBe(0);
    await expect(scanEvents(join(dir, 'nope.jsonl'))).rejects.toThrow(/no events at '.*nope\.jsonl'/);
  });

  test.each([
    ['{"a":1}', undefined],
    ['[1, 2.5e3, "x\\u00e9", null, true, {"k": []}]', undefined],
    ['{"b":,}', { offset: 5, expected: 'a JSON value' }],
    ['"abc', { offset: 4, expected: 'the closing quote of the string' }],
    ['"a\\qb"', { offset: 3, expected: expect.stringMatching(/^a valid escape/) }],
    ['01', { offset: 1, expected: 'the end of the value (one JSON value per line)' }],
    ['', { offset: 0, expected: 'a JSON value (the text ends)' }],
  ])('JSON %s: where it goes wrong agrees with JSON.parse', (text, wrong) => {
    let valid = true;
    try {
      JSON.parse(text);
    } catch {
      valid = false;
    }
    expect(valid).toBe(wrong === undefined);
    if (wrong) expect(jsonErrorAt(text)).toEqual(wrong);
  });

  test('events too large for a broker are found by encoding only those that could be', async () => {
    const big = 'x'.repeat(5000);
    const path = file('sizes.jsonl', `"small"\n${JSON.stringify(big)}\n`);
    const found = await oversizeEvents(path, (data) => encodeEvent(data, 'raw'), 4000);
    expect(found).toEqual([{ where: `${path}:2`, bytes: 5000 }]);
  });
});

describe('the command line, in one pass', () => {
  test('numbers are read from the text typed, so a message quotes it', () => {
    const p = new InputProblems('ewms run');
    expect(wholeNumber(p, { pilots: 'abc' }, 'pilots', { min: 1, example: '4' })).toBeUndefined();
    expect(wholeNumber(p, { pilots: '2.5' }, 'pilots', { min: 1, example: '4' })).toBeUndefined();
    expect(wholeNumber(p, { pilots: '0' }, 'pilots', { min: 1, example: '4' })).toBeUndefined();
    expect(wholeNumber(p, { pilots: '3' }, 'pilots', { min: 1, example: '4' })).toBe(3);
    expect(seconds(p, { 'idle-timeout': '-5' }, 'idle-timeout', { example: '600' })).toBeUndefined();
    expect(seconds(p, { 'idle-timeout': '0.5' }, 'idle-timeout', { example: '600' })).toBe(0.5);
    const err = (() => {
      try {
        p.check();
      } catch (e) {
        return e as UsageError;
      }
      return undefined;
    })();
    expect(err).toBeInstanceOf(UsageError);
    expect(err!.problems.map((x) => `${x.where}: ${x.problem}`)).toEqual([
      "--pilots: 'abc' is not a whole number >= 1",
      "--pilots: '2.5' is not a whole number >= 1",
      "--pilots: '0' is not a whole number >= 1",
      "--idle-timeout: '-5' is not a number of seconds > 0",
    ]);
    expect(err!.message).toMatch(/^4 problems with the command line:\n {2}--pilots: 'abc' is not a whole number >= 1\n {4}fix: give a whole number, e.g. --pilots 4/);
    expect(err!.hint).toBe('nothing was changed; ewms run --help lists every option');
    const one = new UsageError([{ where: '--pilots', problem: "'abc' is not a whole number >= 1", fix: 'e.g. --pilots 4' }], 'ewms run');
    expect(one.toString()).toBe("UsageError: --pilots: 'abc' is not a whole number >= 1\n  hint: e.g. --pilots 4; nothing was changed (ewms run --help lists every option)");
  });
});

const target: WorkflowTarget = {
  id: 'units',
  queues: { incoming: 'ewms-units-in', outgoing: 'ewms-units-out', deadLetter: 'ewms-units-in.dlq' },
  broker: { address: 'amqp://guest@127.0.0.1:5672', authToken: 'guest' },
  maxDeliveries: 3,
  wireFormat: 'mqclient',
  depth: async () => 0,
};
const request = (extra: Partial<PilotRequest> = {}): PilotRequest => ({ backend: 'local', count: 2, task: { args: 'cp {{INFILE}} {{OUTFILE}}' }, ...extra });

describe('the pilots, checked with the pilot\'s own rules', () => {
  const check = (r: PilotRequest, cwd = dir) => {
    const p = new InputProblems('ewms run');
    const result = checkPilots(p, r, target, { cwd, workDir: join(dir, 'pilots') });
    return { problems: (() => {
      try {
        p.check();
        return [];
      } catch (e) {
        return (e as UsageError).problems.map((x) => `${x.where}: ${x.problem} | ${x.fix}`);
      }
    })(), ...result };
  };

  test.each([
    [{ pilotEnv: { EWMS_PILOT_TASK_TIMEOUTT: '5' } }, /^--pilot-env EWMS_PILOT_TASK_TIMEOUTT: is not a setting the pilot knows \| did you mean EWMS_PILOT_TASK_TIMEOUT\?/],
    [{ pilotEnv: { EWMS_PILOT_QUEUE_INCOMING_AUTH_TOKEN: 'x' } }, /^--pilot-env EWMS_PILOT_QUEUE_INCOMING_AUTH_TOKEN: is a secret.* \| set EWMS_BROKER_TOKEN/],
    [{ pilotEnv: { EWMS_PILOT_MAX_DELIVERIES: '5' } }, /^--pilot-env EWMS_PILOT_MAX_DELIVERIES: is set by ewms from --max-deliveries \| give --max-deliveries instead/],
    [{ pilotEnv: { EWMS_PILOT_MAX_CONCURRENT_TASKS: '0' } }, /^--pilot-env EWMS_PILOT_MAX_CONCURRENT_TASKS: '0' is not a whole number >= 1/],
    [{ task: { args: 'cp {{INFILE}} {{OUTFILE}}', timeoutSeconds: 0 } }, /^--task-timeout \(EWMS_PILOT_TASK_TIMEOUT\): 0 s would stop every task/],
    [{ task: { args: 'cp {{INFILE}} {{OUTFILE}}', timeoutSeconds: -1 } }, /^--task-timeout \(EWMS_PILOT_TASK_TIMEOUT\): '-1' is not a number of seconds >= 0/],
    [{ task: { args: 'pyhton3 pixel.py {{INFILE}} {{OUTFILE}}' } }, /^--task-args \(EWMS_PILOT_TASK_ARGS\): runs 'pyhton3', which is not a program on this host's PATH/],
  ])('%o is refused under the flag that set it', (extra, pattern) => {
    const { problems } = check(request(extra));
    expect(problems).toEqual([expect.stringMatching(pattern)]);
  });

  test('condor pilots run elsewhere: their program is not looked up here; their other settings are checked', () => {
    expect(check(request({ backend: 'condor', task: { args: 'pyhton3 {{INFILE}} {{OUTFILE}}' } })).problems).toEqual([]);
    expect(check(request({ backend: 'condor', pilotEnv: { EWMS_PILOT_PREFETCH: 'many' } })).problems).toEqual([expect.stringMatching(/^--pilot-env EWMS_PILOT_PREFETCH: 'many'/)]);
  });

  test("the pilot's warnings are passed on (a command with no {{OUTFILE}})", () => {
    expect(check(request({ task: { args: 'cat {{INFILE}}' } })).notes).toEqual([expect.stringMatching(/^warning: EWMS_PILOT_TASK_ARGS has no \{\{OUTFILE\}\}/)]);
  });

  test('a relative path that exists where ewms runs is made absolute for local pilots (they run in scratch dirs)', () => {
    file('pixel.py', 'print(1)\n');
    mkdirSync(join(dir, 'tools'), { recursive: true });
    file('tools/run me.sh', '#!/bin/sh\n');
    chmodSync(join(dir, 'tools', 'run me.sh'), 0o755);
    const checked = check(request({ task: { args: "python3 pixel.py {{INFILE}} {{OUTFILE}} --config=x.cfg missing.txt -v" } }));
    expect(checked.problems).toEqual([]);
    expect(checked.request.task.args).toBe(`python3 ${join(dir, 'pixel.py')} {{INFILE}} {{OUTFILE}} --config=x.cfg missing.txt -v`);
    expect(checked.notes).toContain(`--task-args: 'pixel.py' is taken from ${dir}: ${join(dir, 'pixel.py')}`);
    // A program with a slash is resolved too (quoted again when it needs it); a bare one stays a PATH lookup.
    const notes: string[] = [];
    const p = new InputProblems('ewms run');
    expect(resolveRelativePaths(p, '--task-args', "'./tools/run me.sh' {{INFILE}} {{OUTFILE}}", dir, notes)).toBe(`'${join(dir, 'tools', 'run me.sh')}' {{INFILE}} {{OUTFILE}}`);
    expect(resolveRelativePaths(p, '--task-args', 'pixel.py {{INFILE}}', dir, notes)).toBe('pixel.py {{INFILE}}');
    // In a container the paths are the image's: left alone.
    expect(check(request({ task: { args: 'python3 pixel.py {{INFILE}} {{OUTFILE}}', image: 'img:1' } })).request.task.args).toBe('python3 pixel.py {{INFILE}} {{OUTFILE}}');
  });
});

describe('workstation defaults of local pilots', () => {
  test('a failed task does not stop a local pilot (no other node to protect); condor pilots keep fail-fast; the user decides', () => {
    expect(buildPilotEnv(target, request()).env.EWMS_PILOT_STOP_LISTENING_ON_TASK_ERROR).toBe('false');
    expect(buildPilotEnv(target, request({ backend: 'condor' })).env.EWMS_PILOT_STOP_LISTENING_ON_TASK_ERROR).toBeUndefined();
    expect(buildPilotEnv(target, request({ pilotEnv: { EWMS_PILOT_STOP_LISTENING_ON_TASK_ERROR: 'true' } })).env.EWMS_PILOT_STOP_LISTENING_ON_TASK_ERROR).toBe('true');
    // A quarantine asks for fail-fast: no default that would contradict it.
    expect(buildPilotEnv(target, request({ pilotEnv: { EWMS_PILOT_QUARANTINE_TIME: '60' } })).env.EWMS_PILOT_STOP_LISTENING_ON_TASK_ERROR).toBeUndefined();
  });
});

test("the package's own version, wherever it runs from", () => {
  expect(PACKAGE_VERSION).toMatch(/^\d+\.\d+\.\d+/);
});
