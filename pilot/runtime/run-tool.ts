/**
 * Runs a runtime's helper command (`apptainer build`, `docker pull`, `podman rm -f` …) to completion and
 * captures its output, for the set-up and clean-up steps that are not the task itself.
 */
import { spawn } from 'node:child_process';

/** How a helper command ended. */
export interface ToolResult {
  /** Exit code, or null when the command was killed (see `signal`) or could not start. */
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** Set when the executable could not be started at all (e.g. `ENOENT`: not on PATH). */
  spawnError?: NodeJS.ErrnoException;
  /** True when `timeoutMs` passed and the command was killed. */
  timedOut: boolean;
}

/** Keep only the end of long output: build logs can run to megabytes. */
const MAX_CAPTURE = 64 * 1024;

function append(buffer: string, chunk: Buffer): string {
  const next = buffer + chunk.toString();
  return next.length > MAX_CAPTURE ? next.slice(-MAX_CAPTURE) : next;
}

/** Run `file args` without a shell; never rejects. */
export function runTool(
  file: string,
  args: readonly string[],
  options: { env: Readonly<Record<string, string>>; cwd?: string; timeoutMs?: number },
): Promise<ToolResult> {
  return new Promise((resolve) => {
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    const child = spawn(file, args, {
      env: options.env,
      cwd: options.cwd,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const timer =
      options.timeoutMs === undefined
        ? undefined
        : setTimeout(() => {
            timedOut = true;
            child.kill('SIGKILL');
          }, options.timeoutMs);
    child.stdout.on('data', (chunk: Buffer) => (stdout = append(stdout, chunk)));
    child.stderr.on('data', (chunk: Buffer) => (stderr = append(stderr, chunk)));
    child.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      resolve({ code: null, signal: null, stdout, stderr, spawnError: err, timedOut });
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, timedOut });
    });
  });
}

/** The last non-empty lines of a command's error output, for an error message. */
export function outputTail(result: ToolResult, lines = 5): string {
  const text = (result.stderr.trim() || result.stdout.trim()).split('\n').slice(-lines).join('\n');
  if (result.spawnError) return result.spawnError.message;
  if (result.timedOut) return `timed out${text ? `: ${text}` : ''}`;
  return text || (result.signal ? `killed by ${result.signal}` : `exit code ${result.code}`);
}
