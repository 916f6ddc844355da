/**
 * How chirps reach HTCondor: the Chirp protocol spoken directly to the job's starter, or the
 * `condor_chirp` tool where no chirp configuration file can be found.
 *
 * The starter of a job with `+WantIOProxy = true` writes `.chirp.config` (`<host> <port> <cookie>`) into
 * the job's scratch directory and names it in `_CONDOR_CHIRP_CONFIG`. A client connects over TCP, sends
 * `cookie <cookie>` and then one command per line (`set_job_attr <name> <expr>`, `ulog <text>`); the
 * starter answers each line with a number, 0 for success and a negative Chirp error code otherwise. Words
 * are escaped with a backslash before `\`, space, tab and line breaks (HTCondor's `sscanf_chirp` reads
 * them back), and a request line longer than 1024 bytes is refused. Speaking the protocol needs no
 * HTCondor binary inside the pilot's container, which is where the pilot usually runs.
 */
import { execFile } from 'node:child_process';
import { accessSync, constants, readFileSync } from 'node:fs';
import { Socket } from 'node:net';
import { delimiter, join, resolve } from 'node:path';
import { EwmsError } from '../common/errors.js';

/** The longest request line the starter accepts (CHIRP_LINE_MAX). */
export const CHIRP_LINE_MAX = 1024;

/** One chirp: a job-ad attribute (value already a ClassAd expression) or a job event log line. */
export type ChirpCommand = { kind: 'set_job_attr'; attr: string; expr: string } | { kind: 'ulog'; text: string };

/** A way to send chirps. */
export interface ChirpTransport {
  /** For logs: how chirps are sent. */
  readonly description: string;
  /** Send the commands in order; rejects with a `ChirpError` on the first refusal. */
  send(commands: readonly ChirpCommand[]): Promise<void>;
}

/** A chirp was refused or could not be sent. */
export class ChirpError extends EwmsError {}

/** The Chirp protocol's error codes (chirp_protocol.h), for messages a person can read. */
const CHIRP_ERRORS: Record<number, string> = {
  [-1]: 'not authenticated (wrong cookie?)',
  [-2]: 'not authorized',
  [-3]: 'does not exist',
  [-5]: 'request too big',
  [-8]: 'invalid request',
  [-17]: 'offline',
  [-127]: 'unknown error',
};

/** Escape one word of a Chirp request as HTCondor's chirp client does. */
export function chirpWord(word: string): string {
  return word.replace(/[\\ \n\t\r]/g, (c) => `\\${c}`);
}

/** The request line for a command (without the newline). */
export function chirpRequest(command: ChirpCommand): string {
  return command.kind === 'set_job_attr'
    ? `set_job_attr ${chirpWord(command.attr)} ${chirpWord(command.expr)}`
    : `ulog ${chirpWord(command.text)}`;
}

/** Where the starter's chirp configuration is: `_CONDOR_CHIRP_CONFIG`, else the scratch dir's `.chirp.config`. */
export function chirpConfigPath(env: NodeJS.ProcessEnv, cwd: string = process.cwd()): string | undefined {
  const candidates = [env._CONDOR_CHIRP_CONFIG, env._CONDOR_SCRATCH_DIR ? join(env._CONDOR_SCRATCH_DIR, '.chirp.config') : undefined, join(cwd, '.chirp.config')];
  return candidates.find((path): path is string => !!path && hasAccess(path, constants.R_OK));
}

/** Where `condor_chirp` may be: PATH first, then where HTCondor installs it (`$(LIBEXEC)`, not on PATH). */
export function condorChirpCandidates(env: NodeJS.ProcessEnv): string[] {
  const onPath = (env.PATH ?? '').split(delimiter).filter(Boolean).map((dir) => join(dir, 'condor_chirp'));
  // The starter puts $(BIN) into _CONDOR_BIN; $(LIBEXEC) sits beside it in every packaged layout.
  const fromBin = env._CONDOR_BIN ? [resolve(env._CONDOR_BIN, '../libexec/condor/condor_chirp'), resolve(env._CONDOR_BIN, '../libexec/condor_chirp')] : [];
  return [...onPath, ...fromBin, '/usr/libexec/condor/condor_chirp', '/usr/local/libexec/condor/condor_chirp', '/usr/lib/condor/libexec/condor_chirp'];
}

/**
 * The transport this job can use: the protocol when the starter left a chirp configuration, else an
 * executable `condor_chirp`; undefined when neither exists (no `+WantIOProxy`, or not an HTCondor job).
 */
export function findChirpTransport(env: NodeJS.ProcessEnv, cwd?: string): ChirpTransport | undefined {
  const config = chirpConfigPath(env, cwd);
  if (config) return new ChirpProtocolClient(config);
  const tool = condorChirpCandidates(env).find((path) => hasAccess(path, constants.X_OK));
  return tool ? new CondorChirpTool(tool) : undefined;
}

/** Speaks the Chirp protocol to the starter named in a `.chirp.config` file. */
export class ChirpProtocolClient implements ChirpTransport {
  readonly description: string;

  constructor(
    private readonly configPath: string,
    private readonly timeoutMs = 10_000,
  ) {
    this.description = `the Chirp protocol (${configPath})`;
  }

  async send(commands: readonly ChirpCommand[]): Promise<void> {
    if (commands.length === 0) return;
    const { host, port, cookie } = this.readConfig();
    const connection = await ChirpConnection.open(host, port, this.timeoutMs);
    try {
      await connection.request(`cookie ${cookie}`, 'cookie');
      for (const command of commands) await connection.request(chirpRequest(command), command.kind);
    } finally {
      connection.close();
    }
  }

  /** Read on every send: a restarted starter writes a new port and cookie. */
  private readConfig(): { host: string; port: number; cookie: string } {
    let words: string[];
    try {
      words = readFileSync(this.configPath, 'utf8').trim().split(/\s+/);
    } catch (err) {
      throw new ChirpError(`cannot read ${this.configPath}: ${(err as Error).message}`, 'the job needs +WantIOProxy = true in its submit description', { cause: err });
    }
    const [host, port, cookie] = words;
    if (!host || !port || !/^\d+$/.test(port) || !cookie || words.length !== 3) {
      throw new ChirpError(`${this.configPath} is not "<host> <port> <cookie>"`, 'it is written by the HTCondor starter; do not edit it');
    }
    return { host, port: Number(port), cookie };
  }
}

/** One TCP connection to a starter's chirp proxy: request lines out, numeric answer lines in. */
class ChirpConnection {
  private buffered = '';
  private waiting: ((line: string | Error) => void) | undefined;

  private constructor(
    private readonly socket: Socket,
    private readonly where: string,
  ) {
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      this.buffered += chunk;
      this.deliver();
    });
    const fail = (err: Error) => {
      const waiter = this.waiting;
      this.waiting = undefined;
      waiter?.(err);
    };
    socket.on('error', fail);
    socket.on('close', () => fail(new ChirpError(`the chirp proxy at ${where} closed the connection`, 'the starter may have restarted; the next chirp reconnects')));
  }

  static open(host: string, port: number, timeoutMs: number): Promise<ChirpConnection> {
    const where = `${host}:${port}`;
    return new Promise((resolvePromise, reject) => {
      const socket = new Socket();
      socket.setTimeout(timeoutMs, () => socket.destroy(new ChirpError(`no answer from the chirp proxy at ${where} within ${timeoutMs} ms`, 'is the starter alive?')));
      socket.once('error', (err) => reject(new ChirpError(`cannot connect to the chirp proxy at ${where}: ${err.message}`, 'the job needs +WantIOProxy = true, and the pilot must share the starter’s network', { cause: err })));
      socket.connect(port, host, () => resolvePromise(new ChirpConnection(socket, where)));
    });
  }

  async request(line: string, what: string): Promise<void> {
    if (Buffer.byteLength(line) + 1 > CHIRP_LINE_MAX) {
      throw new ChirpError(`a ${what} request of ${Buffer.byteLength(line) + 1} bytes is over the Chirp line limit (${CHIRP_LINE_MAX})`, 'shorten the value');
    }
    const answer = await new Promise<string | Error>((resolveAnswer) => {
      this.waiting = resolveAnswer;
      this.socket.write(`${line}\n`);
      this.deliver();
    });
    if (answer instanceof Error) throw answer;
    const code = Number(answer.trim());
    if (!Number.isInteger(code)) throw new ChirpError(`the chirp proxy answered ${what} with '${answer.slice(0, 80)}'`, 'is this an HTCondor starter?');
    if (code < 0) throw new ChirpError(`the chirp proxy refused ${what}: ${CHIRP_ERRORS[code] ?? `error ${code}`}`, 'see the starter log on the execute point');
  }

  close(): void {
    this.socket.destroy();
  }

  private deliver(): void {
    const newline = this.buffered.indexOf('\n');
    if (newline < 0 || !this.waiting) return;
    const line = this.buffered.slice(0, newline);
    this.buffered = this.buffered.slice(newline + 1);
    const waiter = this.waiting;
    this.waiting = undefined;
    waiter(line);
  }
}

/** Runs `condor_chirp set_job_attr NAME EXPR` / `condor_chirp ulog TEXT`, one process per chirp. */
export class CondorChirpTool implements ChirpTransport {
  readonly description: string;

  constructor(
    private readonly command: string,
    private readonly timeoutMs = 30_000,
  ) {
    this.description = command;
  }

  async send(commands: readonly ChirpCommand[]): Promise<void> {
    for (const command of commands) {
      const args = command.kind === 'set_job_attr' ? ['set_job_attr', command.attr, command.expr] : ['ulog', command.text];
      await new Promise<void>((resolvePromise, reject) => {
        execFile(this.command, args, { timeout: this.timeoutMs }, (err, _stdout, stderr) => {
          if (!err) return resolvePromise();
          const detail = String(stderr).trim().split('\n').at(-1) || err.message;
          reject(new ChirpError(`${this.command} ${args[0]} failed: ${detail}`, 'the job needs +WantIOProxy = true in its submit description', { cause: err }));
        });
      });
    }
  }
}

/** Whether this process may read (`R_OK`) or execute (`X_OK`) `path`. */
function hasAccess(path: string, mode: number): boolean {
  try {
    accessSync(path, mode);
    return true;
  } catch {
    return false;
  }
}
