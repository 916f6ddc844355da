/**
 * Events from files and outcomes to files, for the `ewms` CLI.
 *
 * Input: a `.jsonl` file (one JSON value per non-empty line), or a directory whose files are one event each
 * (`*.json` parsed as JSON, anything else as UTF-8 text), in name order. Read lazily: a file of millions of
 * events never sits in memory. Output: one JSON line per outcome.
 */
import { createReadStream, createWriteStream, type WriteStream } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { once } from 'node:events';
import { TRACEPARENT_HEADER } from '../common/trace-context.js';
import type { JsonValue } from '../common/wire.js';
import { CoordinatorConfigError } from './errors.js';
import type { WorkflowOutcome } from './types.js';

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
export function outcomeLine(outcome: WorkflowOutcome): string {
  const record =
    outcome.kind === 'result'
      ? { eventId: outcome.inputEventId, kind: outcome.kind, data: outcome.data, ...(outcome.headers[TRACEPARENT_HEADER] ? { traceparent: outcome.headers[TRACEPARENT_HEADER] } : {}) }
      : { eventId: outcome.inputEventId, kind: outcome.kind, reason: outcome.reason, details: outcome.details, data: outcome.data };
  return `${JSON.stringify(record)}\n`;
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
