/**
 * Running the HTCondor command-line tools: condor_submit, condor_q, condor_rm. A missing tool or a refusal
 * becomes a `CondorError` with the tool's stderr (redacted); nothing secret is ever on their command line
 * (the pilot's secrets travel in the 0600 env file).
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { redact } from '../../common/redact.js';
import { CondorError } from '../errors.js';

/** How to reach the tools and the schedd. */
export interface CondorToolOptions {
  binDir?: string;
  schedd?: string;
  pool?: string;
  /** Secrets to scrub from tool output that ends up in errors. */
  secrets?: string[];
  timeoutMs?: number;
}

export type CondorTool = 'condor_submit' | 'condor_q' | 'condor_rm';

/** Run one tool; resolves with its stdout. */
export function runCondorTool(tool: CondorTool, args: string[], options: CondorToolOptions): Promise<string> {
  const file = options.binDir ? join(options.binDir, tool) : tool;
  const location = [...(options.schedd ? ['-name', options.schedd] : []), ...(options.pool ? ['-pool', options.pool] : [])];
  return new Promise((resolve, reject) => {
    execFile(file, [...location, ...args], { timeout: options.timeoutMs ?? 120_000, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (!err) return resolve(stdout);
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') {
        return reject(
          new CondorError(tool, `${tool} not found${options.binDir ? ` in ${options.binDir}` : ' on PATH'}`, 'run this on an HTCondor access point (where condor_submit works), or set condor.binDir', '', { cause: err }),
        );
      }
      const text = redact(String(stderr || stdout || err.message).trim(), options.secrets ?? []);
      const tail = text.split('\n').slice(-15).join('\n');
      reject(new CondorError(tool, `${tool} failed (${typeof code === 'number' ? `exit ${code}` : String(code ?? err.message)}): ${tail}`, hintFor(tool, text), text, { cause: err }));
    });
  });
}

function hintFor(tool: CondorTool, stderr: string): string {
  if (/authenticat|permission|not authorized/i.test(stderr)) return 'HTCondor refused our identity: check that you may submit to this schedd (condor_ping WRITE)';
  if (/schedd|collector|connect/i.test(stderr)) return 'cannot talk to the schedd: check condor.schedd / condor.pool and that HTCondor is up (condor_status -schedd)';
  if (tool === 'condor_submit') return 'the submit description was refused: the message above names the line; check the template and condor options';
  return 'check the cluster id and that the jobs still exist (condor_q)';
}

/** The cluster id and job count from `condor_submit -terse` output (`123.0 - 123.9`). */
export function parseTerseSubmit(stdout: string): { clusterId: string; jobs: number } {
  const m = /^\s*(\d+)\.(\d+)\s*-\s*(\d+)\.(\d+)\s*$/m.exec(stdout);
  if (!m) {
    throw new CondorError('condor_submit', `cannot read the cluster id from condor_submit -terse output: ${JSON.stringify(stdout.slice(0, 200))}`, 'is condor_submit a real HTCondor tool (version 8.4 or later)?');
  }
  if (m[1] !== m[3]) throw new CondorError('condor_submit', `condor_submit made more than one cluster (${m[1]}..${m[3]})`, 'a pilot template must have exactly one queue statement');
  return { clusterId: m[1]!, jobs: Number(m[4]) - Number(m[2]) + 1 };
}

/** HTCondor's JobStatus numbers. */
export const JOB_STATUS: Record<number, string> = {
  1: 'idle',
  2: 'running',
  3: 'removed',
  4: 'completed',
  5: 'held',
  6: 'transferring-output',
  7: 'suspended',
};

/** One job as condor_q -json reports it (only the attributes we ask for). */
export interface CondorJobAd {
  ClusterId: number;
  ProcId: number;
  JobStatus: number;
  HTChirpEWMSPilotStatus?: string;
}

/** Parse `condor_q -json` output (empty output means no jobs). */
export function parseCondorQ(stdout: string): CondorJobAd[] {
  if (stdout.trim() === '') return [];
  let parsed: unknown;
  try {
    parsed = JSON.parse(stdout);
  } catch {
    throw new CondorError('condor_q', 'condor_q -json printed something that is not JSON', 'is condor_q a real HTCondor tool?', stdout.slice(0, 500));
  }
  if (!Array.isArray(parsed)) throw new CondorError('condor_q', 'condor_q -json did not print a list of job ads', 'is condor_q a real HTCondor tool?');
  return parsed as CondorJobAd[];
}
