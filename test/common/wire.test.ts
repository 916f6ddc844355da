/**
 * The `mqclient` wire format against the Python MQClient v2: every golden vector the Python side wrote
 * decodes to what its index says, and the Python reference decoder (`mqclient.py`, the same zstd binding
 * the Python MQClient uses) reads back what we encode. Decoding is bounded: a zip bomb is refused.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { CompressStream, compress } from 'zstd-napi';
import { afterAll, describe, expect, test } from 'vitest';
import { DEFAULT_MAX_DECODED_BYTES, WireFormatError, decodeEnvelope, encodeEnvelope, type Envelope, type JsonValue } from '../../common/wire.js';

// The project's shared/ folder sits beside the checkout (`../shared/interop`).
const INTEROP = process.env.EWMS_TEST_INTEROP_DIR || fileURLToPath(new URL('../../../shared/interop', import.meta.url));
const VECTORS = join(INTEROP, 'mqclient-vectors');
const REFERENCE = join(INTEROP, 'mqclient.py');
const PYTHON = '/usr/bin/python3';

/** The index entry of the large vector describes its data instead of repeating it. */
interface LargeEntry {
  headers: Record<string, unknown>;
  data_utf8_length: number;
  data_sha256: string;
}
type IndexEntry = Envelope | LargeEntry;

const run = promisify(execFile);
const scratch = mkdtempSync(join(tmpdir(), 'ewms-wire-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** What the Python reference decoder makes of `body`: the envelope, or its refusal. */
async function pythonDecode(body: Uint8Array, name: string): Promise<{ ok: true; envelope: Envelope } | { ok: false; stderr: string }> {
  const file = join(scratch, `${name}.zst`);
  writeFileSync(file, body);
  try {
    const { stdout } = await run(PYTHON, [REFERENCE, 'decode', file], { maxBuffer: 64 * 1024 * 1024 });
    return { ok: true, envelope: JSON.parse(stdout) as Envelope };
  } catch (err) {
    return { ok: false, stderr: String((err as { stderr?: unknown }).stderr ?? err) };
  }
}

const sha256 = (text: string): string => createHash('sha256').update(text, 'utf8').digest('hex');

/** Compress as a stream: the frame header then has no content size (what the Python side refuses). */
async function streamedFrame(data: Uint8Array): Promise<Buffer> {
  return buffer(Readable.from([data]).pipe(new CompressStream()));
}

const haveReference = existsSync(REFERENCE) && existsSync(PYTHON);
const haveVectors = existsSync(join(VECTORS, 'index.json'));

describe.skipIf(!haveVectors)('golden vectors written by the Python MQClient', () => {
  const index = haveVectors ? (JSON.parse(readFileSync(join(VECTORS, 'index.json'), 'utf8')) as Record<string, IndexEntry>) : {};

  test('every vector in the directory is described by index.json, and every description has its vector', () => {
    const files = readdirSync(VECTORS).filter((f) => f.endsWith('.zst')).map((f) => f.slice(0, -'.zst'.length));
    expect(files.sort()).toEqual(Object.keys(index).sort());
    expect(files.length).toBeGreaterThanOrEqual(8);
  });

  for (const [name, expected] of Object.entries(index)) {
    test(`${name}.zst decodes to the envelope index.json describes`, () => {
      const decoded = decodeEnvelope(readFileSync(join(VECTORS, `${name}.zst`)));
      expect(decoded.headers).toEqual(expected.headers);
      if ('data_sha256' in expected) {
        expect(typeof decoded.data).toBe('string');
        const data = decoded.data as string;
        expect(Buffer.byteLength(data, 'utf8')).toBe(expected.data_utf8_length);
        expect(sha256(data)).toBe(expected.data_sha256);
      } else {
        expect(decoded.data).toEqual(expected.data);
      }
    });
  }

  test('re-encoding each vector gives a body the Python decoder reads back identically', async () => {
    for (const name of Object.keys(index)) {
      const original = decodeEnvelope(readFileSync(join(VECTORS, `${name}.zst`)));
      const ours = encodeEnvelope(original.data, original.headers);
      const back = await pythonDecode(ours, `re-${name}`);
      expect(back, name).toEqual({ ok: true, envelope: original });
    }
  });
});

describe.skipIf(!haveReference)('the Python reference decoder accepts what we encode', () => {
  const cases: Array<{ name: string; data: JsonValue; headers?: Record<string, unknown> }> = [
    { name: 'text infile', data: 'line one\nline two\n' },
    { name: 'empty string', data: '' },
    { name: 'json object with nesting and numbers', data: { a: [1, 2.5, -7, 1e300, 2.5e-300, 0.1], b: { c: null, d: true }, e: '' } },
    { name: 'headers of every JSON kind', data: 'x', headers: { traceparent: '00-abc-def-01', count: 3, nested: { k: ['v'] }, flag: false } },
    {
      name: 'unicode: accents, CJK, emoji, combining marks, NUL and control characters, quotes and backslashes',
      data: 'ünïcødé 数据 🚀👩‍🔬 e\u0301 \u0000\u0001\u001f\u007f "q" \\ \u2028\u2029 end',
    },
    { name: 'unicode in header names and values', data: 1, headers: { 'clé-ü': 'valeur ✓', '🔑': '🚀' } },
    { name: '8 MiB of text (large data)', data: '0123456789abcdef'.repeat(512 * 1024) },
    { name: '2 MiB of mixed multi-byte text', data: 'αβγ✓🚀'.repeat(128 * 1024) },
  ];

  for (const c of cases) {
    test(`${c.name}: Python reads back exactly what we encoded`, async () => {
      const body = encodeEnvelope(c.data, c.headers);
      const back = await pythonDecode(body, c.name.replace(/\W+/g, '-'));
      expect(back.ok, back.ok ? '' : back.stderr).toBe(true);
      if (back.ok) expect(back.envelope).toEqual({ headers: c.headers ?? {}, data: c.data });
      // And we read our own bytes back too.
      expect(decodeEnvelope(body)).toEqual({ headers: c.headers ?? {}, data: c.data });
    });
  }

  test('every frame we write declares its content size (the Python decoder insists on it)', () => {
    for (const c of cases) {
      const body = Buffer.from(encodeEnvelope(c.data, c.headers));
      // Frame header descriptor (RFC 8878 3.1.1.1.1): Frame_Content_Size_Flag (bits 7-6) plus
      // Single_Segment_Flag (bit 5); both zero means the size is absent.
      const descriptor = body[4]!;
      expect(descriptor >> 6 !== 0 || (descriptor & 0x20) !== 0, c.name).toBe(true);
    }
  });

  test('the interop trap: a streamed zstd frame (no content size) is refused by Python, and still read by us', async () => {
    const json = Buffer.from(JSON.stringify({ headers: {}, data: 'streamed' }));
    const streamed = await streamedFrame(json);
    const back = await pythonDecode(streamed, 'streamed');
    expect(back.ok).toBe(false);
    expect(decodeEnvelope(streamed)).toEqual({ headers: {}, data: 'streamed' });
  });
});

describe('bounded, strict decoding', () => {
  test('a zip bomb that declares its size (64 MiB of zeros in a few KB) is refused before inflating', () => {
    const json = Buffer.concat([Buffer.from('{"headers":{},"data":"'), Buffer.alloc(64 * 1024 * 1024, 0x30), Buffer.from('"}')]);
    const bomb = compress(json, { compressionLevel: 19 });
    expect(bomb.byteLength).toBeLessThan(64 * 1024);
    const before = process.memoryUsage().arrayBuffers;
    let caught: unknown;
    try {
      decodeEnvelope(bomb, 1024 * 1024);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(WireFormatError);
    expect((caught as WireFormatError).message).toMatch(/decompresses to \d+ bytes, over the 1048576-byte limit/);
    expect((caught as WireFormatError).hint).toMatch(/shared storage/);
    // Refused from the header: nothing near 64 MiB was allocated for it.
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(16 * 1024 * 1024);
  });

  test('a zip bomb without a declared size is stopped while inflating, at the bound', async () => {
    const json = Buffer.concat([Buffer.from('{"headers":{},"data":"'), Buffer.alloc(16 * 1024 * 1024, 0x30), Buffer.from('"}')]);
    const bomb = await streamedFrame(json);
    expect(() => decodeEnvelope(bomb, 1024 * 1024)).toThrow(WireFormatError);
    expect(() => decodeEnvelope(bomb, 1024 * 1024)).toThrow(/over the 1048576-byte limit/);
    // The same body is fine under a bound that allows it.
    expect((decodeEnvelope(bomb, 32 * 1024 * 1024).data as string).length).toBe(16 * 1024 * 1024);
  });

  test('the default bound is 256 MiB', () => {
    expect(DEFAULT_MAX_DECODED_BYTES).toBe(256 * 1024 * 1024);
  });

  test.each([
    ['not zstd at all', Buffer.from('{"headers":{},"data":"plain json"}'), /not zstd-compressed/],
    ['empty body', Buffer.alloc(0), /not zstd-compressed/],
    ['truncated frame', Buffer.from(encodeEnvelope('a'.repeat(10_000))).subarray(0, 20), /middle of a zstd frame|not valid zstd|broken zstd/],
    ['zstd of text that is not JSON', compress(Buffer.from('hello')), /not JSON/],
    ['zstd of JSON that is not an envelope', compress(Buffer.from('[1,2,3]')), /not an MQClient envelope/],
    ['zstd of an object without data', compress(Buffer.from('{"headers":{}}')), /not an MQClient envelope/],
  ])('%s → WireFormatError saying what is wrong', (_name, body, message) => {
    expect(() => decodeEnvelope(body)).toThrow(WireFormatError);
    expect(() => decodeEnvelope(body)).toThrow(message);
  });

  test('an envelope whose headers are not an object decodes with empty headers (the data is what matters)', () => {
    expect(decodeEnvelope(compress(Buffer.from('{"headers":null,"data":5}')))).toEqual({ headers: {}, data: 5 });
  });
});
