import { EwmsError } from '../common/errors.js';
import type { BrokerType } from './types.js';

/** The address or options given to `connect()` cannot be used. */
export class BrokerConfigError extends EwmsError {}

/** The broker did not answer (refused, DNS, timeout) within the connect timeout. */
export class BrokerUnreachableError extends EwmsError {
  constructor(
    readonly broker: BrokerType,
    readonly displayAddress: string,
    detail: string,
    options?: { cause?: unknown },
  ) {
    super(
      `cannot reach ${broker} broker at ${displayAddress}: ${detail}`,
      `check that the broker is running and that host and port are right (is it reachable from this node?)`,
      options,
    );
  }
}

/** The broker refused our credentials. The message names the broker and user, never the secret. */
export class BrokerAuthError extends EwmsError {
  constructor(
    readonly broker: BrokerType,
    readonly displayAddress: string,
    options?: { cause?: unknown; user?: string },
  ) {
    super(
      `${broker} broker at ${displayAddress} refused the credentials` +
        (options?.user !== undefined ? ` for user '${options.user}'` : ''),
      'check the auth token / password (EWMS_PILOT_QUEUE_*_AUTH_TOKEN or the URL) and that it has not expired',
      options,
    );
  }
}

/** The connection broke and could not be re-established within the reconnect window. */
export class BrokerConnectionLostError extends EwmsError {
  constructor(
    readonly broker: BrokerType,
    readonly displayAddress: string,
    detail: string,
    options?: { cause?: unknown },
  ) {
    super(
      `lost the connection to ${broker} broker at ${displayAddress}: ${detail}`,
      'unacked messages return to the queue by themselves; restart once the broker is back',
      options,
    );
  }
}

/** A message is larger than the broker accepts. */
export class MessageTooLargeError extends EwmsError {
  constructor(
    readonly broker: BrokerType,
    readonly bytes: number,
    readonly limit: number,
  ) {
    super(
      `message of ${bytes} bytes exceeds the ${broker} limit of ${limit} bytes`,
      'keep large payloads on shared storage and send their path in the event, or raise the broker limit',
    );
  }
}

/**
 * The broker refused an operation on a queue for lack of permission (AMQP 403 ACCESS_REFUSED). The message
 * names the permission and the queue, and carries the broker's own reply (which names the user).
 */
export class BrokerPermissionError extends EwmsError {
  constructor(
    readonly broker: BrokerType,
    readonly displayAddress: string,
    /** The permission the operation needs: `configure` (declare, delete), `read` (consume), `write` (publish). */
    readonly permission: 'configure' | 'read' | 'write',
    readonly queue: string,
    detail: string,
    options?: { cause?: unknown },
  ) {
    super(
      `${broker} broker at ${displayAddress} refused ${permission} permission on queue '${queue}': ${detail}`,
      `these credentials do not cover '${queue}'. Where each queue has a token of its own (EWMS), a client may ` +
        'touch only the queues it was given: check that the queue and its token belong together, and declare no ' +
        'queue beside them (pilots: EWMS_PILOT_DEAD_LETTER=outgoing instead of a dead-letter queue)',
      options,
    );
  }
}

/** The queue does not exist on the broker. */
export class QueueNotFoundError extends EwmsError {
  constructor(
    readonly broker: BrokerType,
    readonly queue: string,
  ) {
    super(
      `queue '${queue}' does not exist on the ${broker} broker`,
      'declare it first (the coordinator does), or check the queue name',
    );
  }
}

/** The adapter's client library is not installed (Pulsar's native client is optional). */
export class AdapterUnavailableError extends EwmsError {}
