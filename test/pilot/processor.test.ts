/**
 * One event through the task processor on the host runtime, with real processes and files but no broker:
 * infile/outfile forms by extension and wire format, outcomes and their dead-letter reasons.
 */
import { existsSync, mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { decodeEnvelope, encodeEnvelope, type JsonValue, type WireFormat } from '../../common/wire.js';
import { HEADERS, type Delivery } from '../../mq-adapters/types.js';
import type { TaskOutcome } from '../../pilot/event-loop.js';
import { isOkayError } from '../../pilot/failure.js';
import { TaskProcessor, type TaskProcessorOptions } from '../../pilot/processor.js';
import { createHostRuntime } from '../../pilot/runtime/none.js';
import { splitShellWords } from '../../pilot/shell-words.js';
import { HelperSpawner } from '../../pilot/spawn/index.js';
import { TaskFiles } from '../../pilot/task-files.js';
import { outputEventId } from '../../pilot/task-io.js';

// Tasks start as a pilot starts them: through the spawn helper.
let spawner: HelperSpawner;
beforeAll(async () => {
  spawner = await HelperSpawner.start({ killGraceMs: 1000 });
});
afterAll(async () => {
  await spawner.close();
});

function delivery(body: Uint8Array, eventId = 'ev-1', deliveryCount = 1): Delivery {
  const fail = async () => {
    throw new Error('the processor never settles');
  };
  return { body, headers: {}, eventId, deliveryCount, ack: fail, nack: fail, release: fail, deadLetter: fail, extendLease: fail };
}

/** The options every test's processor starts from: a host task, mqclient events, the spawn helper. */
function processorOptions(args: string, files: TaskFiles, env: Record<string, string> = {}): TaskProcessorOptions {
  return {
    task: { args: splitShellWords(args), image: undefined, env, timeoutSeconds: undefined },
    runtime: createHostRuntime({ baseEnv: { PATH: process.env.PATH ?? '/usr/bin:/bin' } }),
    image: { reference: undefined, runnable: undefined },
    files,
    wireFormat: 'mqclient',
    infileExt: '.in',
    outfileExt: '.out',
    killGraceSeconds: 1,
    okayErrors: [],
    keepAllTaskFiles: false,
    dumpTaskOutput: false,
    version: '9.9.9',
    logger: pino({ level: 'silent' }),
    spawner,
  };
}

async function processOne(
  args: string,
  body: Uint8Array,
  options: Partial<TaskProcessorOptions> & { infileExt?: string; outfileExt?: string; wireFormat?: WireFormat } = {},
) {
  const dataDir = join(mkdtempSync(join(tmpdir(), 'ewms-proc-')), 'ewms-pilot-data');
  const infileExt = options.infileExt ?? '.in';
  const outfileExt = options.outfileExt ?? '.out';
  const files = new TaskFiles(dataDir, infileExt, outfileExt);
  await files.prepare();
  let dumped = '';
  const processor = new TaskProcessor({
    ...processorOptions(args, files, { GREETING: 'hi' }),
    wireFormat: options.wireFormat ?? 'mqclient',
    infileExt,
    outfileExt,
    dumpTo: new Writable({ write: (chunk: Buffer, _e, cb) => ((dumped += chunk.toString()), cb()) }),
    ...options,
  });
  const outcome = await processor.process(delivery(body), new AbortController().signal);
  return { outcome, dataDir, dumped: () => dumped };
}

const mq = (data: JsonValue) => encodeEnvelope(data);
function outputData(outcome: TaskOutcome): JsonValue | undefined {
  if (outcome.kind !== 'success') throw new Error(`expected success, got ${JSON.stringify(outcome)}`);
  expect(outcome.outputs.length).toBeLessThanOrEqual(1);
  return outcome.outputs[0] ? decodeEnvelope(outcome.outputs[0].body).data : undefined;
}

describe('TaskProcessor', () => {
  test('a reused slot directory carries nothing of the last event into the next: no outfile, no files the task left', async () => {
    const dataDir = join(mkdtempSync(join(tmpdir(), 'ewms-proc-')), 'ewms-pilot-data');
    const files = new TaskFiles(dataDir, '.in', '.out');
    await files.prepare();
    const processor = new TaskProcessor(
      processorOptions('sh -c \'if [ "$(cat {{INFILE}})" = first ]; then cp {{INFILE}} {{OUTFILE}}; mkdir "$(dirname {{INFILE}})/sub"; touch "$(dirname {{INFILE}})/left-over"; fi\'', files),
    );
    const first = await processor.process(delivery(mq('first'), 'a'), new AbortController().signal);
    expect(outputData(first)).toBe('first');
    const second = await processor.process(delivery(mq('second'), 'b'), new AbortController().signal);
    expect(second).toMatchObject({ kind: 'success', outputs: [] }); // not the first event's outfile
    expect(readdirSync(join(dataDir, 'slot-1', 'task-io'))).toEqual([]);
  });

  test('text in, text out; the output answers the input with a derived, stable event id', async () => {
    const { outcome, dataDir } = await processOne('sh -c \'printf "%s %s" "$GREETING" "$(cat {{INFILE}})" > {{OUTFILE}}\'', mq('world'));
    expect(outputData(outcome)).toBe('hi world');
    if (outcome.kind !== 'success') return;
    expect(outcome.outputs[0]?.headers).toEqual({ [HEADERS.inputEventId]: 'ev-1' });
    expect(outcome.outputs[0]?.eventId).toBe(outputEventId('ev-1'));
    expect(outputEventId('ev-1')).not.toBe(outputEventId('ev-2'));
    // No directory of the event's own: a reused slot directory, left empty for the next event.
    expect(readdirSync(dataDir).sort()).toEqual(['data-hub', 'slot-1']);
    expect(readdirSync(join(dataDir, 'slot-1', 'task-io'))).toEqual([]);
  });

  test('EWMS_TASK_* variables point at the files and the data hub', async () => {
    const { outcome } = await processOne('sh -c \'cat "$EWMS_TASK_INFILE" > "$EWMS_TASK_OUTFILE"; test -d "$EWMS_TASK_DATA_HUB_DIR" && echo " hub" >> "$EWMS_TASK_OUTFILE"\'', mq('x'));
    expect(outputData(outcome)).toBe('x hub\n');
  });

  test('JSON data into a .json infile, a .json outfile back as JSON', async () => {
    const { outcome } = await processOne('cp {{INFILE}} {{OUTFILE}}', mq({ a: [1, 2], b: null }), { infileExt: '.json', outfileExt: '.json' });
    expect(outputData(outcome)).toEqual({ a: [1, 2], b: null });
  });

  test('a string into a .json infile is written as the text it is (as the Python pilot does)', async () => {
    const { outcome } = await processOne('cp {{INFILE}} {{OUTFILE}}', mq('{"k": 1}'), { infileExt: '.json' });
    expect(outputData(outcome)).toBe('{"k": 1}');
  });

  test('non-string data without a .json infile is dead-lettered at once, without fail-fast', async () => {
    const { outcome } = await processOne('true', mq({ a: 1 }));
    expect(outcome).toMatchObject({ kind: 'failure', permanent: true, okay: true });
    if (outcome.kind === 'failure') expect(outcome.reason.details?.['error-type']).toBe('InvalidDataForInfileException');
  });

  test('no outfile: success without output', async () => {
    const { outcome } = await processOne('true', mq('x'));
    expect(outcome.kind).toBe('success');
    expect(outputData(outcome)).toBeUndefined();
  });

  test('raw wire format: bytes pass through untouched', async () => {
    const bytes = Uint8Array.from([0, 255, 10, 13, 128]);
    const { outcome } = await processOne('cp {{INFILE}} {{OUTFILE}}', bytes, { wireFormat: 'raw' });
    expect(outcome.kind === 'success' && Buffer.from(outcome.outputs[0]!.body)).toEqual(Buffer.from(bytes));
  });

  test('EWMS_PILOT_OUTFILE_EVENTS=jsonl: one output per non-empty line, ids derived from the input\'s and the index', async () => {
    const write = (text: string) => `sh -c 'printf ${JSON.stringify(text).replace(/'/g, "'\\''")} > {{OUTFILE}}'`;
    const three = await processOne(write('{"piece": 1}\r\n\n"two"\n  \n[3]'), mq('x'), { outfileEvents: 'jsonl' });
    if (three.outcome.kind !== 'success') throw new Error(JSON.stringify(three.outcome));
    expect(three.outcome.outputs.map((o) => decodeEnvelope(o.body).data)).toEqual([{ piece: 1 }, 'two', [3]]);
    expect(three.outcome.outputs.map((o) => o.eventId)).toEqual([outputEventId('ev-1', 0), outputEventId('ev-1', 1), outputEventId('ev-1', 2)]);
    expect(new Set([outputEventId('ev-1'), outputEventId('ev-1', 0), outputEventId('ev-1', 1), outputEventId('ev-2', 0)]).size).toBe(4);
    for (const o of three.outcome.outputs) expect(o.headers).toEqual({ [HEADERS.inputEventId]: 'ev-1' });
    // No line at all (an empty outfile, or none): no output, a filtered event.
    expect((await processOne(write('\n'), mq('x'), { outfileEvents: 'jsonl' })).outcome).toMatchObject({ kind: 'success', outputs: [] });
    expect((await processOne('true', mq('x'), { outfileEvents: 'jsonl' })).outcome).toMatchObject({ kind: 'success', outputs: [] });
    // Raw: each line's bytes, without its newline.
    const raw = await processOne(write('a b\nc'), Uint8Array.from([1]), { outfileEvents: 'jsonl', wireFormat: 'raw' });
    expect(raw.outcome.kind === 'success' && raw.outcome.outputs.map((o) => Buffer.from(o.body).toString())).toEqual(['a b', 'c']);
    // A line that is not JSON fails the event, naming the line.
    const bad = await processOne(write('1\nnot json\n'), mq('x'), { outfileEvents: 'jsonl' });
    expect(bad.outcome.kind === 'failure' && bad.outcome.reason.reason).toMatch(/line 2 of the outfile is not valid JSON/);
  });

  test('a binary outfile cannot travel as mqclient JSON: a failure that says what to do', async () => {
    const { outcome } = await processOne("sh -c 'printf \"\\377\\376\" > {{OUTFILE}}'", mq('x'));
    expect(outcome.kind).toBe('failure');
    if (outcome.kind === 'failure') expect(outcome.reason.reason).toMatch(/binary.*mqclient/);
  });

  test('a malformed body is a permanent failure that names the problem', async () => {
    const { outcome } = await processOne('true', Buffer.from('not zstd'));
    expect(outcome).toMatchObject({ kind: 'failure', permanent: true, okay: true });
    if (outcome.kind === 'failure') expect(outcome.reason.reason).toMatch(/^malformed event: .*zstd/);
  });

  test('a failing task: reason with exit code, stderr tail, host, attempt and version; output dumped', async () => {
    const { outcome, dumped } = await processOne("sh -c 'echo to-stdout; echo line1 >&2; echo line2 >&2; exit 4'", mq('x'));
    expect(outcome).toMatchObject({ kind: 'failure', permanent: false, okay: false });
    if (outcome.kind !== 'failure') return;
    expect(outcome.reason.reason).toBe('task exited with code 4');
    expect(outcome.reason.details).toMatchObject({ 'error-type': 'TaskExitError', 'exit-code': '4', attempt: '1', 'pilot-version': '9.9.9', 'stderr-tail': 'line1\\nline2' });
    expect(outcome.reason.details?.host).toBeTruthy();
    expect(dumped()).toContain('to-stdout');
    expect(dumped()).toContain('line2');
  });

  test('KEEP_ALL_TASK_FILES keeps the event directory', async () => {
    const { dataDir } = await processOne('cp {{INFILE}} {{OUTFILE}}', mq('x'), { keepAllTaskFiles: true });
    expect(existsSync(join(dataDir, 'ev-1', 'task-io', 'outfile.out'))).toBe(true);
    expect(existsSync(join(dataDir, 'ev-1', 'outputs', 'stderrfile'))).toBe(true);
  });

  test('OKAY_ERRORS accepts our kinds, the Python names and exit codes', () => {
    const exit3 = { kind: 'TaskExitError' as const, message: '', exitCode: 3 };
    expect(isOkayError(exit3, ['ContainerRunError'])).toBe(true);
    expect(isOkayError(exit3, ['exit:3'])).toBe(true);
    expect(isOkayError(exit3, ['exit:4', 'TimeoutError'])).toBe(false);
    expect(isOkayError({ kind: 'TaskTimeoutError', message: '' }, ['TimeoutError'])).toBe(true);
    // Python 1.x raises ContainerRunError("[Timeout-Error] ...") for a timeout too.
    expect(isOkayError({ kind: 'TaskTimeoutError', message: '' }, ['ContainerRunError'])).toBe(true);
  });
});
