/**
 * Errors the coordinator raises on purpose. Each says what went wrong and what to do (`hint`), and never
 * carries a secret: tool output and URLs pass through `redact` before they land in a message.
 */
import { EwmsError } from '../common/errors.js';

/** Bad input to the coordinator (options, event files, template variables). Nothing was changed. */
export class CoordinatorConfigError extends EwmsError {}

/** Publishing stopped part-way: `published` events were confirmed by the broker before the failure. */
export class PublishError extends EwmsError {
  constructor(
    message: string,
    /** Ids confirmed before the failure, in input order. */
    readonly published: readonly string[],
    options?: { cause?: unknown },
  ) {
    super(message, 'the confirmed events are in the queue; publish the rest again (ids already confirmed are listed)', options);
  }
}

/** `collect` waited `idleTimeoutMs` without receiving anything while outcomes were still missing. */
export class CollectTimeoutError extends EwmsError {
  constructor(
    readonly settled: number,
    readonly expected: number,
    idleMs: number,
  ) {
    super(
      `no result or dead letter arrived for ${Math.round(idleMs / 1000)} s; ${settled} of ${expected} events settled`,
      'are pilots running and connected to the same queues? check the pilot cluster status; collecting again resumes where this stopped',
    );
  }
}

/** A queue `collect` reads stopped delivering before every outcome arrived (deleted, or the broker is gone). */
export class CollectStoppedError extends EwmsError {
  constructor(readonly queue: string) {
    super(
      `the subscription to '${queue}' ended before every outcome arrived`,
      'was the queue deleted (another run with the same workflow id?) or the broker lost? collecting again resumes where this stopped',
    );
  }
}

/** An HTCondor tool is missing, or refused our request. The tool's stderr is included, redacted. */
export class CondorError extends EwmsError {
  constructor(
    readonly tool: string,
    message: string,
    hint: string,
    readonly stderr = '',
    options?: { cause?: unknown },
  ) {
    super(message, hint, options);
  }
}

/** The EWMS Workflow Management Service refused a request (4xx) or stayed unavailable through the retries. */
export class WmsError extends EwmsError {
  constructor(
    message: string,
    hint: string,
    /** The HTTP status, when there was a response. */
    readonly status: number | undefined,
    options?: { cause?: unknown },
  ) {
    super(message, hint, options);
  }
}

/** No bearer token could be had for the WMS (OAuth2 discovery or the token endpoint failed). */
export class WmsAuthError extends EwmsError {}

/**
 * `POST /v1/workflows` got no answer we can trust (a timeout, a 5xx such as a gateway's 504) and no workflow
 * made by it could be found afterwards. Nothing was sent twice: the WMS may still create it.
 */
export class WmsWorkflowUnconfirmedError extends EwmsError {
  constructor(
    message: string,
    hint: string,
    /** The request id the workflow carries (`pilot_config.environment.EWMS_COORDINATOR_REQUEST_ID`), to look it up later. */
    readonly requestId: string,
    options?: { cause?: unknown },
  ) {
    super(message, hint, options);
  }
}

/** A pilot backend could not start, inspect or stop pilots. */
export class PilotBackendError extends EwmsError {}
