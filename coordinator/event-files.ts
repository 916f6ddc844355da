/**
 * Events from files and outcomes to files, for the `ewms` CLI.
 *
 * Input: a `.jsonl` file (one JSON value per non-empty line), or a directory whose files are one event each
 * (`*.json` parsed as JSON, anything else as UTF-8 text), in name order. Read lazily: a file of millions of
 * events never sits in memory. Output: one JSON line per outcome.
 */
import { createReadStream, createWriteStream, type WriteStream } from 'node:fs';
import { readdir, readFile, stat, truncate } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { once } from 'node:events';
import { TRACEPARENT_HEADER } from '../common/trace-context.js';
import type { JsonValue } from '../common/wire.js';
import { CoordinatorConfigError } from './errors.js';
import type { WorkflowOutcome } from './types.js';

/** Where an event came from: `file:line` for JSONL, the file for a directory of events. */
export interface EventSource {
  where: string;
  /** Its text, as read. */
  text: string;
  /** JSON (a `.jsonl` line, a `*.json` file) or plain text (any other file in a directory). */
  json: boolean;
}

/** What a whole events file holds, found before anything is published. */
export interface EventsSummary {
  count: number;
  /** Events whose data is a string (any infile can hold one). */
  strings: number;
  /** Events whose data is other JSON (an object, array, number, boolean or null: only a `.json` infile holds it). */
  structured: number;
  /** Where the first of the `structured` ones is. */
  firstStructured: string | undefined;
  /** The largest event's size as written in the file, in bytes, and where it is. */
  largest: { bytes: number; where: string } | undefined;
}

/** A malformed event: where it is (`file:line:column`) and what is wrong. */
export interface EventProblem {
  where: string;
  problem: string;
}

/** Most malformed events listed one by one; the rest are counted. */
const LISTED_PROBLEMS = 5;

/** The events of `path` as text with where each is, without parsing them. */
async function* eventSources(path: string): AsyncGenerator<EventSource> {
  const info = await stat(path);
  if (info.isDirectory()) {
    const names = (await readdir(path, { withFileTypes: true })).filter((e) => e.isFile()).map((e) => e.name).sort();
    for (const name of names) yield { where: join(path, name), text: await readFile(join(path, name), 'utf8'), json: name.endsWith('.json') };
    return;
  }
  const lines = createInterface({ input: createReadStream(path, 'utf8'), crlfDelay: Infinity });
  let lineNo = 0;
  for await (const raw of lines) {
    lineNo += 1;
    // A byte-order mark some editors write is not part of the first event.
    const line = lineNo === 1 ? raw.replace(/^\uFEFF/, '') : raw;
    if (line.trim() === '') continue;
    yield { where: `${path}:${lineNo}`, text: line, json: true };
  }
}

/**
 * Where JSON text stops being valid, by a scan of the grammar (RFC 8259): JSON.parse says what is wrong, but
 * not always where (Node 20 drops the position from some messages). Returns the offset and what was expected.
 */
export function jsonErrorAt(text: string): { offset: number; expected: string } {
  let i = 0;
  const fail = (expected: string): never => {
    throw { offset: i, expected };
  };
  const ws = () => {
    while (i < text.length && ' \t\n\r'.includes(text[i]!)) i += 1;
  };
  const literal = (word: string) => {
    if (text.startsWith(word, i)) i += word.length;
    else fail('a JSON value');
  };
  const string = () => {
    i += 1; // the opening quote
    while (i < text.length && text[i] !== '"') {
      const c = text.charCodeAt(i);
      if (c < 0x20) fail('no raw control character inside a string (escape it)');
      if (text[i] === '\\') {
        i += 1;
        if (text[i] === 'u') {
          if (!/^[0-9a-fA-F]{4}$/.test(text.slice(i + 1, i + 5))) fail('four hex digits after \\u');
          i += 5;
          continue;
        }
        if (!'"\\/bfnrt'.includes(text[i] ?? '')) fail('a valid escape (\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX)');
      }
      i += 1;
    }
    if (i >= text.length) fail('the closing quote of the string');
    i += 1;
  };
  const value = (): void => {
    ws();
    const c = text[i];
    if (c === '{') {
      i += 1;
      ws();
      if (text[i] === '}') {
        i += 1;
        return;
      }
      for (;;) {
        ws();
        if (text[i] !== '"') fail('a double-quoted property name');
        string();
        ws();
        if (text[i] !== ':') fail("':' after the property name");
        i += 1;
        value();
        ws();
        if (text[i] === ',') i += 1;
        else if (text[i] === '}') {
          i += 1;
          return;
        } else fail("',' or '}'");
      }
    }
    if (c === '[') {
      i += 1;
      ws();
      if (text[i] === ']') {
        i += 1;
        return;
      }
      for (;;) {
        value();
        ws();
        if (text[i] === ',') i += 1;
        else if (text[i] === ']') {
          i += 1;
          return;
        } else fail("',' or ']'");
      }
    }
    if (c === '"') return string();
    if (c === 't') return literal('true');
    if (c === 'f') return literal('false');
    if (c === 'n') return literal('null');
    const number = /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/.exec(text.slice(i));
    if (!number) fail(c === undefined ? 'a JSON value (the text ends)' : /[A-Za-z_']/.test(c) ? 'a JSON value (a string must be in double quotes)' : 'a JSON value');
    i += number![0].length;
  };
  try {
    value();
    ws();
    if (i < text.length) fail('the end of the value (one JSON value per line)');
  } catch (err) {
    if (typeof err === 'object' && err !== null && 'offset' in err) return err as { offset: number; expected: string };
    throw err;
  }
  return { offset: text.length, expected: 'valid JSON' };
}

/** Where a malformed JSON text goes wrong, as `line:column` within it, and what was expected there. */
export function jsonProblem(text: string): { line: number; column: number; problem: string } {
  const { offset, expected } = jsonErrorAt(text);
  const before = text.slice(0, offset);
  const line = before.split('\n').length;
  const column = offset - before.lastIndexOf('\n');
  const found = offset < text.length ? `'${text[offset]}'` : 'the end';
  return { line, column, problem: `expected ${expected}, found ${found}` };
}

/**
 * Read the whole events file (or directory) once, parsing every event, before anything is published: all or
 * nothing. Resolves with what it holds; rejects with `CoordinatorConfigError` when `path` cannot be read or any
 * event is malformed, naming each bad line and column (the first few; the rest counted).
 */
export async function scanEvents(path: string): Promise<EventsSummary> {
  try {
    await stat(path);
  } catch {
    throw new CoordinatorConfigError(`no events at '${path}'`, 'give a .jsonl file (one JSON value per line) or a directory of event files');
  }
  const summary: EventsSummary = { count: 0, strings: 0, structured: 0, firstStructured: undefined, largest: undefined };
  const problems: EventProblem[] = [];
  let malformed = 0;
  try {
    for await (const source of eventSources(path)) {
      summary.count += 1;
      const bytes = Buffer.byteLength(source.text);
      if (!summary.largest || bytes > summary.largest.bytes) summary.largest = { bytes, where: source.where };
      if (!source.json) {
        summary.strings += 1;
        continue;
      }
      try {
        if (typeof JSON.parse(source.text) === 'string') {
          summary.strings += 1;
        } else {
          summary.structured += 1;
          summary.firstStructured ??= source.where;
        }
      } catch {
        malformed += 1;
        if (problems.length < LISTED_PROBLEMS) {
          const { line, column, problem } = jsonProblem(source.text);
          // A JSONL event is one line of the file (named in `where`): add the column; a *.json file gets both.
          problems.push({ where: /:\d+$/.test(source.where) ? `${source.where}:${column}` : `${source.where}:${line}:${column}`, problem });
        }
      }
    }
  } catch (err) {
    throw new CoordinatorConfigError(`cannot read the events at '${path}': ${(err as Error).message}`, 'check the path and its permissions', { cause: err });
  }
  if (malformed > 0) {
    const listed = problems.map((p) => `\n    ${p.where}: ${p.problem}`).join('');
    const more = malformed > problems.length ? `\n    … and ${malformed - problems.length} more` : '';
    throw new CoordinatorConfigError(
      `${malformed} of the ${summary.count} events in '${path}' ${malformed === 1 ? 'is' : 'are'} not valid JSON (nothing was published):${listed}${more}`,
      'one JSON value per line (JSONL): quote plain strings ("like this"), no trailing commas; in a directory, only *.json files are parsed',
    );
  }
  return summary;
}

/**
 * The events of `path` whose encoded body would exceed `limitBytes` (the broker's largest message), each with
 * where it is and its encoded size. Only events that could be that large are encoded.
 */
export async function oversizeEvents(path: string, encode: (data: JsonValue) => Uint8Array, limitBytes: number): Promise<Array<{ where: string; bytes: number }>> {
  const found: Array<{ where: string; bytes: number }> = [];
  for await (const source of eventSources(path)) {
    // The envelope compresses: a body can outgrow its text only by zstd's bound (about 1/128) plus a header.
    if (Buffer.byteLength(source.text) * 1.01 + 1024 < limitBytes) continue;
    const bytes = encode(source.json ? (JSON.parse(source.text) as JsonValue) : source.text).byteLength;
    if (bytes > limitBytes) found.push({ where: source.where, bytes });
  }
  return found;
}

/** The events in `path` (a JSONL file or a directory of event files). */
export async function* readEvents(path: string): AsyncGenerator<JsonValue> {
  let info;
  try {
    info = await stat(path);
  } catch {
    throw new CoordinatorConfigError(`no events at '${path}'`, 'give a .jsonl file or a directory of event files');
  }
  if (info.isDirectory()) {
    const names = (await readdir(path, { withFileTypes: true })).filter((e) => e.isFile()).map((e) => e.name).sort();
    for (const name of names) {
      const text = await readFile(join(path, name), 'utf8');
      yield name.endsWith('.json') ? parseJson(text, `${path}/${name}`) : text;
    }
    return;
  }
  const lines = createInterface({ input: createReadStream(path, 'utf8'), crlfDelay: Infinity });
  let lineNo = 0;
  for await (const line of lines) {
    lineNo += 1;
    if (line.trim() === '') continue;
    yield parseJson(line, `${path}:${lineNo}`);
  }
}

function parseJson(text: string, where: string): JsonValue {
  try {
    return JSON.parse(text) as JsonValue;
  } catch (err) {
    throw new CoordinatorConfigError(`${where} is not valid JSON (${(err as Error).message})`, 'one JSON value per line (JSONL); quote plain strings');
  }
}

/** One outcome as a JSON line: `{"eventId", "kind", "data"}` plus `reason`/`details` for dead letters. */
export function outcomeLine(outcome: WorkflowOutcome, options: { outcomeId?: boolean } = {}): string {
  // Provenance: the steps that made it (each naming its task by task_name), when the pilots recorded them.
  const provenance = outcome.provenance.length > 0 ? { ...(outcome.task !== undefined ? { task: outcome.task } : {}), provenance: outcome.provenance } : {};
  const record =
    outcome.kind === 'result'
      ? { eventId: outcome.inputEventId, kind: outcome.kind, data: outcome.data, ...(outcome.headers[TRACEPARENT_HEADER] ? { traceparent: outcome.headers[TRACEPARENT_HEADER] } : {}), ...provenance }
      : { eventId: outcome.inputEventId, kind: outcome.kind, reason: outcome.reason, details: outcome.details, data: outcome.data, ...(outcome.task !== undefined ? { task: outcome.task } : {}), ...(outcome.provenance.length > 0 ? { provenance: outcome.provenance } : {}) };
  // A streaming collector's lines carry the outcome's own id, so a restart can skip what was written already.
  return `${JSON.stringify(options.outcomeId ? { ...record, outcomeId: outcome.outcomeId } : record)}\n`;
}

/** Cut a line a kill left half-written off the end of `path`, so lines appended after it stay whole. */
export async function dropPartialLastLine(path: string | undefined): Promise<void> {
  if (path === undefined || path === '-') return;
  let text: Buffer;
  try {
    text = await readFile(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  if (text.length === 0 || text[text.length - 1] === 0x0a) return;
  await truncate(path, text.lastIndexOf(0x0a) + 1);
}

/**
 * The outcome ids in the last `limit` lines of a file `outcomeLine` wrote with ids (none when it does not
 * exist): what a restarted streaming collector has already written, and must not write again.
 */
export async function writtenOutcomeIds(path: string | undefined, limit: number): Promise<string[]> {
  if (path === undefined || path === '-') return [];
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  const ids: string[] = [];
  for (const line of text.split('\n').slice(-limit - 1)) {
    if (!line.trim()) continue;
    try {
      const id = (JSON.parse(line) as { outcomeId?: unknown }).outcomeId;
      if (typeof id === 'string') ids.push(id);
    } catch {
      // A line cut short by a kill mid-write: its outcome was never acked and will come again.
    }
  }
  return ids;
}

/** A line writer: `write` resolves once the line has been handed to the OS, and rejects if it cannot be. */
export class LineWriter {
  private readonly stream: NodeJS.WritableStream;
  private readonly owned: WriteStream | undefined;
  private failure: Error | undefined;

  /** `path` `-` or undefined writes to stdout. */
  constructor(
    private readonly path: string | undefined,
    options: { append?: boolean } = {},
  ) {
    if (path === undefined || path === '-') {
      this.stream = process.stdout;
    } else {
      this.owned = createWriteStream(path, { flags: options.append ? 'a' : 'w' });
      this.stream = this.owned;
    }
    // Without a listener an open or write error (no such directory, disk full) kills the process.
    this.stream.on('error', (err: Error) => (this.failure ??= err));
  }

  /** Resolves once the file is open; throws `CoordinatorConfigError` when it cannot be (check before starting work). */
  async ready(): Promise<void> {
    if (this.owned?.pending) await once(this.owned, 'open').catch(() => undefined);
    if (this.failure) throw this.error();
  }

  async write(line: string): Promise<void> {
    if (this.failure) throw this.error();
    // The callback, not 'drain': the caller acks the outcome once this resolves.
    await new Promise<void>((resolve, reject) => this.stream.write(line, (err?: Error | null) => (err ? reject(this.error(err)) : resolve())));
  }

  private error(err: Error | undefined = this.failure): CoordinatorConfigError {
    return new CoordinatorConfigError(`cannot write to ${this.path ?? 'stdout'}: ${err?.message ?? 'unknown error'}`, 'check the output path and the free disk space; the outcome not written stays in its queue', { cause: err });
  }

  async close(): Promise<void> {
    if (!this.owned || this.owned.destroyed) return;
    const owned = this.owned;
    await new Promise<void>((resolve, reject) => owned.end((err?: Error | null) => (err ? reject(err) : resolve())));
  }
}
