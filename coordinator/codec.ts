/**
 * Event bodies in and out of the coordinator, per wire format (see `common/wire.ts`):
 * `mqclient` wraps the JSON value in the Python MQClient envelope; `raw` sends a string's UTF-8 bytes as they
 * are (any other JSON value as its JSON text) and reads bodies back as UTF-8 text.
 */
import { decodeEnvelope, encodeEnvelope, type JsonValue, type WireFormat } from '../common/wire.js';

/** The body to publish for `data`. */
export function encodeEvent(data: JsonValue, format: WireFormat): Uint8Array {
  if (format === 'mqclient') return encodeEnvelope(data);
  return Buffer.from(typeof data === 'string' ? data : JSON.stringify(data), 'utf8');
}

/** The event carried by `body`. Throws `WireFormatError` on a body that is not what the format promises. */
export function decodeEvent(body: Uint8Array, format: WireFormat): JsonValue {
  if (format === 'mqclient') return decodeEnvelope(body).data;
  return Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString('utf8');
}
