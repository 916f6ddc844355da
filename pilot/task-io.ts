/**
 * Turning events into infiles and outfiles into output events, by wire format and file extension, the way
 * the Python ewms-pilot does: string data → the text as it is; other JSON data → JSON, but only into a
 * `.json` infile; a `.json` outfile → parsed JSON; any other outfile → its text. With the `raw` wire format
 * bytes pass through untouched both ways.
 */
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { EwmsError } from '../common/errors.js';
import { derivedEventId, uuidShaped } from '../common/provenance.js';
import { decodeEnvelope, encodeEnvelope, type JsonValue, type WireFormat } from '../common/wire.js';
import { HEADERS, type Delivery, type OutgoingMessage } from '../mq-adapters/types.js';

/** The event cannot become an infile (the Python pilot's name, so OKAY_ERRORS lists match). */
export class InvalidDataForInfileException extends EwmsError {}
/** The outfile cannot become an output event (the Python pilot's name). */
export class InvalidDataFromOutfileException extends EwmsError {}

/** An input event's payload, decoded. */
export type Payload = { kind: 'json'; data: JsonValue } | { kind: 'bytes'; bytes: Uint8Array };

/** Decode a delivery's body. Throws `WireFormatError` when it is not what the wire format promises. */
export function decodePayload(delivery: Delivery, wireFormat: WireFormat): Payload {
  if (wireFormat === 'raw') return { kind: 'bytes', bytes: delivery.body };
  return { kind: 'json', data: decodeEnvelope(delivery.body).data };
}

/*
 * The infile and outfile are read and written synchronously. They are small files on the job's scratch
 * directory, where a synchronous call costs the pilot's only thread less than a trip through libuv's thread
 * pool, which wakes a worker thread per call: on a 2-core node under load those hand-offs (open, fstat, read,
 * close) took ~0.7 ms of the main thread per event, the largest item of its profile at two concurrent tasks.
 */

/** Write the infile for `payload`. Throws `InvalidDataForInfileException` when it has no file form. */
export async function writeInfile(path: string, ext: string, payload: Payload): Promise<void> {
  if (payload.kind === 'bytes') return writeFileSync(path, payload.bytes);
  const { data } = payload;
  if (typeof data === 'string') return writeFileSync(path, data, 'utf8');
  if (ext.toLowerCase() === '.json') return writeFileSync(path, JSON.stringify(data), 'utf8');
  throw new InvalidDataForInfileException(
    `the event's data is ${Array.isArray(data) ? 'an array' : data === null ? 'null' : `a ${typeof data}`}, which only a .json infile can hold`,
    'set EWMS_PILOT_INFILE_EXT=.json, or publish the data as a string',
  );
}

/** How many output events an outfile holds (`EWMS_PILOT_OUTFILE_EVENTS`): one, or one per non-empty line. */
export type OutfileEvents = 'one' | 'jsonl';

/**
 * Read the outfile into the output messages answering `inputEventId`: none when the task wrote no outfile
 * (success without output) or, with `jsonl`, an outfile with no line. Throws `InvalidDataFromOutfileException`
 * when the outfile has no wire form.
 */
export async function readOutfile(path: string, ext: string, wireFormat: WireFormat, inputEventId: string, events: OutfileEvents = 'one'): Promise<OutgoingMessage[]> {
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  const headers = { [HEADERS.inputEventId]: inputEventId };
  if (events === 'jsonl') {
    return outfileLines(bytes).map((line, index) => ({ body: wireFormat === 'raw' ? line.bytes : encodeEnvelope(lineData(line)), headers, eventId: outputEventId(inputEventId, index) }));
  }
  const eventId = outputEventId(inputEventId);
  if (wireFormat === 'raw') return [{ body: bytes, headers, eventId }];
  let data: JsonValue;
  if (ext.toLowerCase() === '.json') {
    try {
      data = JSON.parse(bytes.toString('utf8')) as JsonValue;
    } catch (err) {
      throw new InvalidDataFromOutfileException(`the .json outfile is not valid JSON (${(err as Error).message.slice(0, 200)})`, 'make the task write JSON, or set EWMS_PILOT_OUTFILE_EXT to a non-.json extension');
    }
  } else {
    try {
      data = UTF8.decode(bytes);
    } catch {
      throw new InvalidDataFromOutfileException(
        'the outfile is binary, which the mqclient wire format (JSON) cannot carry',
        'set EWMS_PILOT_WIRE_FORMAT=raw, or make the task write text or JSON',
      );
    }
  }
  return [{ body: encodeEnvelope(data), headers, eventId }];
}

/** The non-empty lines of a `jsonl` outfile (a `\r` before the newline dropped), with their line numbers. */
function outfileLines(bytes: Buffer): Array<{ bytes: Buffer; number: number }> {
  const lines: Array<{ bytes: Buffer; number: number }> = [];
  let start = 0;
  for (let number = 1; start < bytes.length; number += 1) {
    let end = bytes.indexOf(0x0a, start);
    if (end < 0) end = bytes.length;
    const line = bytes.subarray(start, end > start && bytes[end - 1] === 0x0d ? end - 1 : end);
    if (line.some((b) => b !== 0x20 && b !== 0x09 && b !== 0x0d)) lines.push({ bytes: line, number });
    start = end + 1;
  }
  return lines;
}

/** One `jsonl` line's JSON value. */
function lineData(line: { bytes: Buffer; number: number }): JsonValue {
  try {
    return JSON.parse(UTF8.decode(line.bytes)) as JsonValue;
  } catch (err) {
    throw new InvalidDataFromOutfileException(
      `line ${line.number} of the outfile is not valid JSON (${(err as Error).message.slice(0, 200)}), and EWMS_PILOT_OUTFILE_EVENTS=jsonl reads one JSON value per line`,
      'make the task write one JSON value per line (a string in double quotes), or set EWMS_PILOT_OUTFILE_EVENTS=one',
    );
  }
}

const UTF8 = new TextDecoder('utf-8', { fatal: true });

/**
 * The output's event id, derived from the input's (and, for one of several outputs, its index): every attempt
 * at one input publishes the same ids, so a result published twice (a pilot died between publish and ack) is
 * deduplicated downstream.
 */
export function outputEventId(inputEventId: string, index?: number): string {
  if (index !== undefined) return derivedEventId('ewms-output', inputEventId, String(index));
  // The single output's id as it always was (sha256 of 'ewms-output:' + the input's id).
  return uuidShaped(createHash('sha256').update('ewms-output:').update(inputEventId).digest('hex'));
}
