/**
 * The wire format of event bodies.
 *
 * - `mqclient` (default): what the Python MQClient v2 sends and expects — zstd (level 3, content size in
 *   the frame header, which the Python decoder insists on) of the UTF-8 JSON `{"headers": {…}, "data": …}`.
 * - `raw`: the event's bytes as they are; metadata travels in the broker's own headers.
 *
 * Decoding is bounded: a body that would decompress past `maxDecodedBytes` is refused before it is inflated
 * (a zip bomb must not take a pilot's memory).
 */
import { createRequire } from 'node:module';
import { compress } from 'zstd-napi';
import { EwmsError } from './errors.js';

/** The two wire formats (`EWMS_PILOT_WIRE_FORMAT`). */
export type WireFormat = 'mqclient' | 'raw';
export const WIRE_FORMATS: readonly WireFormat[] = ['mqclient', 'raw'];

/** A JSON value as it travels in an envelope's `data`. */
export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };

/** The Python MQClient v2 message envelope. */
export interface Envelope {
  headers: Record<string, unknown>;
  data: JsonValue;
}

/** A body that is not what its wire format promises. */
export class WireFormatError extends EwmsError {}

/** Default bound on a decoded body: far above any sane event, far below a node's memory. */
export const DEFAULT_MAX_DECODED_BYTES = 256 * 1024 * 1024;

// zstd-napi's low-level binding (not in its package exports) gives streaming decompression we can stop
// at a byte bound; its high-level decompress() allocates whatever the frame asks for.
interface StreamResult extends Array<number> {
  0: number;
  1: number;
  2: number;
}
interface ZstdBinding {
  DCtx: new () => { decompressStream(dst: Uint8Array, src: Uint8Array): StreamResult; reset(directive: number): void };
  getFrameContentSize(frame: Uint8Array): number | null;
  dStreamOutSize(): number;
}
const binding = createRequire(import.meta.url)('zstd-napi/binding') as ZstdBinding;

const ZSTD_MAGIC = 0xfd2fb528;
/** `ZSTD_reset_session_only`: abandon any frame in progress, keep the parameters. */
const RESET_SESSION = 1;
/**
 * One decompression context for every event: making one per event allocates its window buffers afresh each
 * time (~40 µs per event in a pilot's profile). Decoding is synchronous, so no two decodes share it at once.
 */
let sharedDctx: InstanceType<ZstdBinding['DCtx']> | undefined;

/** Encode an envelope the way the Python MQClient v2 does. */
export function encodeEnvelope(data: JsonValue, headers: Record<string, unknown> = {}): Uint8Array {
  const json = JSON.stringify({ headers, data });
  return compress(Buffer.from(json, 'utf8'), { compressionLevel: 3 });
}

/** Decode a Python-MQClient-v2 body. Throws `WireFormatError` with what is wrong and what to check. */
export function decodeEnvelope(body: Uint8Array, maxDecodedBytes = DEFAULT_MAX_DECODED_BYTES): Envelope {
  const json = inflate(body, maxDecodedBytes);
  let parsed: unknown;
  try {
    parsed = JSON.parse(json.toString('utf8'));
  } catch (err) {
    throw new WireFormatError(
      `event body decompressed but is not JSON (${(err as Error).message})`,
      'the publisher must send {"headers": {...}, "data": ...} as JSON, or use the raw wire format',
    );
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed) || !('data' in parsed)) {
    throw new WireFormatError(
      'event body is JSON but not an MQClient envelope (an object with "data")',
      'the publisher must send {"headers": {...}, "data": ...}, or use the raw wire format',
    );
  }
  const envelope = parsed as { headers?: unknown; data: JsonValue };
  const headers =
    typeof envelope.headers === 'object' && envelope.headers !== null && !Array.isArray(envelope.headers)
      ? (envelope.headers as Record<string, unknown>)
      : {};
  return { headers, data: envelope.data };
}

function inflate(body: Uint8Array, maxBytes: number): Buffer {
  if (body.length < 4 || Buffer.from(body.buffer, body.byteOffset, body.byteLength).readUInt32LE(0) !== ZSTD_MAGIC) {
    throw new WireFormatError(
      'event body is not zstd-compressed (no zstd frame magic)',
      'is the publisher using the MQClient v2 format? set EWMS_PILOT_WIRE_FORMAT=raw for plain bytes',
    );
  }
  let declared: number | null;
  try {
    declared = binding.getFrameContentSize(body);
  } catch (err) {
    throw new WireFormatError(`event body has a broken zstd frame header (${(err as Error).message})`, 'the message was corrupted or is not zstd');
  }
  if (declared !== null && declared > maxBytes) throw tooLarge(declared, maxBytes);

  const dctx = (sharedDctx ??= new binding.DCtx());
  // A frame an earlier decode abandoned (an error, a size limit) must not continue into this one.
  dctx.reset(RESET_SESSION);
  const chunks: Buffer[] = [];
  let total = 0;
  let src = body;
  const chunkSize = declared !== null ? Math.max(declared, 1) : binding.dStreamOutSize();
  try {
    for (;;) {
      const dst = Buffer.allocUnsafe(chunkSize);
      const [remaining, produced, consumed] = dctx.decompressStream(dst, src);
      total += produced;
      if (total > maxBytes) throw tooLarge(total, maxBytes);
      if (produced > 0) chunks.push(dst.subarray(0, produced));
      src = src.subarray(consumed);
      if (remaining === 0 && src.length === 0) break;
      if (consumed === 0 && produced === 0) {
        throw new WireFormatError('event body ends in the middle of a zstd frame', 'the message was truncated in transit');
      }
    }
  } catch (err) {
    if (err instanceof WireFormatError) throw err;
    throw new WireFormatError(`event body is not valid zstd (${(err as Error).message})`, 'the message was corrupted or is not zstd');
  }
  return Buffer.concat(chunks, total);
}

function tooLarge(bytes: number, max: number): WireFormatError {
  return new WireFormatError(
    `event body decompresses to ${bytes} bytes, over the ${max}-byte limit`,
    'keep large payloads on shared storage and send their path in the event',
  );
}
