/**
 * What went wrong with one attempt, said once for every consumer of it: the dead-letter reason and its
 * headers, the log line, and the OKAY_ERRORS match that decides whether fail-fast applies.
 */
import { hostname } from 'node:os';
import type { DeadLetterReason } from '../mq-adapters/types.js';
import type { ProcessResult } from './task-process.js';

/** Kinds of failure; `EWMS_PILOT_OKAY_ERRORS` lists these (or their Python names). */
export type FailureKind =
  | 'TaskExitError'
  | 'TaskSignalError'
  | 'TaskTimeoutError'
  | 'TaskStartError'
  | 'InvalidDataForInfileException'
  | 'InvalidDataFromOutfileException'
  | 'MalformedEventError';

/** The Python pilot's exception names, as users already put them in OKAY_ERRORS. */
const PYTHON_NAMES: Readonly<Record<string, readonly FailureKind[]>> = {
  // The Python pilot raises ContainerRunError for a non-zero exit and for a timeout alike.
  ContainerRunError: ['TaskExitError', 'TaskSignalError', 'TaskTimeoutError'],
  TimeoutError: ['TaskTimeoutError'],
  ContainerSetupError: ['TaskStartError'],
};

/** One failed attempt. */
export interface Failure {
  kind: FailureKind;
  /** One line a human can act on. */
  message: string;
  exitCode?: number;
}

/** Most of a stderr tail a dead letter carries (headers must stay small on every broker). */
export const STDERR_TAIL_BYTES = 1000;

/** Describe a process that did not succeed; undefined when it did (exit 0). */
export function processFailure(result: ProcessResult, timeoutSeconds: number | undefined, what = 'task'): Failure | undefined {
  if (result.spawnError !== undefined) return { kind: 'TaskStartError', message: `${what} could not start: ${result.spawnError}` };
  if (result.timedOut) return { kind: 'TaskTimeoutError', message: `${what} timed out after ${timeoutSeconds ?? '?'} s and was stopped` };
  if (result.signal) return { kind: 'TaskSignalError', message: `${what} was killed by signal ${result.signal}` };
  if (result.exitCode !== 0 && result.exitCode !== null) {
    return { kind: 'TaskExitError', message: `${what} exited with code ${result.exitCode}`, exitCode: result.exitCode };
  }
  return undefined;
}

/** Does `failure` match an entry of OKAY_ERRORS (a kind, a Python name, or `exit:<code>`)? */
export function isOkayError(failure: Failure, okayErrors: readonly string[]): boolean {
  return okayErrors.some((entry) => {
    if (entry === failure.kind) return true;
    if (PYTHON_NAMES[entry]?.includes(failure.kind)) return true;
    const code = /^exit:(\d+)$/.exec(entry)?.[1];
    return code !== undefined && failure.exitCode === Number(code);
  });
}

/** The dead-letter reason: what failed, and the context to debug it without the node. */
export function deadLetterReason(failure: Failure, context: { attempt: number; version: string; stderrTail: string }): DeadLetterReason {
  const details: Record<string, string> = {
    'error-type': failure.kind,
    host: hostname(),
    attempt: String(context.attempt),
    'pilot-version': context.version,
  };
  if (failure.exitCode !== undefined) details['exit-code'] = String(failure.exitCode);
  const tail = headerSafe(context.stderrTail.trimEnd());
  if (tail) details['stderr-tail'] = tail;
  return { reason: headerSafe(failure.message), details };
}

/**
 * Header values travel on every broker: NATS headers cannot hold line breaks, so they become a visible
 * `\n`, and other control characters are dropped.
 */
function headerSafe(text: string): string {
  return text
    .replace(/\r?\n/g, '\\n')
    // eslint-disable-next-line no-control-regex
    .replace(/[\u0000-\u0008\u000b-\u001f\u007f]/g, '');
}
