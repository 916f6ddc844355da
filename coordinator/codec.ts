/**
 * Event bodies in and out of the coordinator, per wire format (see `common/wire.ts`):
 * `mqclient` wraps a JSON value in the Python MQClient envelope (JSON only: bytes are refused); `raw` sends
 * bytes as they are, a string as its UTF-8 bytes and any other JSON value as its JSON text, and reads bodies
 * back as UTF-8 text (`decodeEvent`) or as the bytes themselves (`eventBytes`).
 */
import { decodeEnvelope, encodeEnvelope, type JsonValue, type WireFormat } from '../common/wire.js';
import { CoordinatorConfigError } from './errors.js';
import type { EventData } from './types.js';

/** The body to publish for `data`. Throws `CoordinatorConfigError` for bytes in the `mqclient` format. */
export function encodeEvent(data: EventData, format: WireFormat): Uint8Array {
  if (data instanceof Uint8Array) {
    if (format !== 'raw') {
      throw new CoordinatorConfigError('an event is bytes, but the mqclient wire format carries JSON values only', 'publish bytes with wireFormat: raw (--wire-format raw), or send JSON');
    }
    return data;
  }
  if (format === 'mqclient') return encodeEnvelope(data);
  return Buffer.from(typeof data === 'string' ? data : JSON.stringify(data), 'utf8');
}

/** The event carried by `body`. Throws `WireFormatError` on a body that is not what the format promises. */
export function decodeEvent(body: Uint8Array, format: WireFormat): JsonValue {
  if (format === 'mqclient') return decodeEnvelope(body).data;
  return eventBytes(body).toString('utf8');
}

/** The body's bytes as a Buffer (no copy). */
export function eventBytes(body: Uint8Array): Buffer {
  return Buffer.from(body.buffer, body.byteOffset, body.byteLength);
}
