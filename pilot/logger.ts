/**
 * The pilot's structured logger: pino, one JSON line per record on stderr (HTCondor keeps it in the job's
 * error file; stdout stays free for the task-output dumps a user asked for).
 */
import { pino, type Logger, type LevelWithSilent } from 'pino';

export type { Logger } from 'pino';

/** Log levels accepted by `EWMS_PILOT_LOG_LEVEL`. */
export const LOG_LEVELS: readonly LevelWithSilent[] = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'];

/**
 * Make the pilot's logger. Fields that could carry secrets are censored by pino itself, as a second line
 * of defence behind the config's own redaction.
 */
export function createPilotLogger(level: LevelWithSilent, destination: NodeJS.WritableStream = process.stderr): Logger {
  return pino(
    {
      level,
      base: { pid: process.pid, host: process.env.HOSTNAME ?? undefined },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: {
        paths: ['authToken', '*.authToken', 'password', '*.password', 'token', '*.token'],
        censor: '***',
      },
      formatters: { level: (label) => ({ level: label }) },
    },
    destination as pino.DestinationStream,
  );
}
