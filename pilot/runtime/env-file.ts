/**
 * The task env as a docker/podman `--env-file`, so no value reaches the client's command line.
 *
 * The format both CLIs read (Docker's `opts.ParseEnvFile`, Podman's `pkg/env.ParseFile`): one
 * `NAME=VALUE` per line, read with Go's `bufio.Scanner`; leading blanks and `#` lines are skipped, the
 * value is everything after the first `=`, taken literally (no quotes, no escapes, no expansion). So a
 * line break cannot be carried, a carriage return before one is dropped, and a line longer than the
 * scanner's 64 KiB token limit fails the run; Docker also refuses invalid UTF-8. Such values are refused
 * here with a clear error instead of reaching the task changed. (Podman 4.7.0 alone parsed quotes and
 * multi-line values; 4.7.1 reverted it.)
 */
import { dirname, join } from 'node:path';
import { RuntimeSetupError, type LaunchFile } from './types.js';

/** The file's name, in the run's own directory beside (never inside) the bound task-io directory. */
export const ENV_FILE_NAME = 'container.env';

/** Go's `bufio.MaxScanTokenSize` (64 KiB) less room for the line ending. */
const MAX_LINE_BYTES = 64 * 1024 - 2;

/** Why `value` cannot travel in an env file unchanged, or undefined when it can. */
export function envFileProblem(name: string, value: string): string | undefined {
  if (/[\n\r]/.test(value)) return 'holds a line break, which the one-line-per-variable format cannot carry';
  if (value.includes('\0')) return 'holds a NUL character, which no environment can carry';
  if (Buffer.from(value, 'utf8').toString('utf8') !== value) return 'is not valid Unicode (a lone surrogate)';
  if (Buffer.byteLength(`${name}=${value}`, 'utf8') > MAX_LINE_BYTES) return `is longer than the ${MAX_LINE_BYTES}-byte line limit of the env-file reader`;
  return undefined;
}

/**
 * The env file for one run: its path (the parent of `taskIoDir`, i.e. the run's own directory, so it is
 * not visible in the container and goes with the run's files) and its content. Throws a
 * `RuntimeSetupError` naming (never showing) a value the format cannot carry.
 */
export function envFile(env: ReadonlyArray<readonly [string, string]>, taskIoDir: string, engine: string): LaunchFile {
  const lines: string[] = [];
  for (const [name, value] of env) {
    const problem = envFileProblem(name, value);
    if (problem !== undefined) {
      throw new RuntimeSetupError(
        `the task env variable ${name} ${problem}; ${engine} receives the task env through --env-file, one NAME=VALUE per line`,
        `Encode the value on one line (e.g. base64, or \\n escapes the task decodes), or pass it in a file under the data hub; EWMS_PILOT_CONTAINER_RUNTIME=apptainer carries any value.`,
      );
    }
    lines.push(`${name}=${value}\n`);
  }
  return { path: join(dirname(taskIoDir), ENV_FILE_NAME), content: lines.join('') };
}
