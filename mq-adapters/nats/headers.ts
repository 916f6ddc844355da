/**
 * A JetStream message's headers as the adapter sees them: our event id apart, NATS's own (`Nats-*`) left
 * out, one value per key.
 */
import type { MsgHdrs } from '@nats-io/transport-node';
import { HEADERS } from '../types.js';

export function readNatsHeaders(h: MsgHdrs | undefined): { eventId: string | undefined; headers: Record<string, string> } {
  const headers: Record<string, string> = {};
  let eventId: string | undefined;
  if (h) {
    for (const [key, values] of h) {
      if (key === HEADERS.eventId) eventId = values[0];
      else if (values[0] !== undefined && !key.startsWith('Nats-')) headers[key] = values[0];
    }
  }
  return { eventId, headers };
}
