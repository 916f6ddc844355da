/**
 * What every `ewms` command shares: exit codes, the help epilog, secrets and their redaction, the logger,
 * the broker options and where the broker's address and token come from.
 */
import { access, constants, readFile, stat } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { pino, type Logger } from 'pino';
import type { Argv } from 'yargs';
import { EwmsError } from '../../common/errors.js';
import type { ConnectOptions } from '../../mq-adapters/types.js';
import { parseManagementUrl } from '../../mq-adapters/management-url.js';
import { CoordinatorConfigError } from '../errors.js';
import type { InputProblems } from './input.js';

/** Exit codes, as documented in `--help`. */
export const EXIT = { ok: 0, failure: 1, usage: 2, deadLetters: 3, interrupted: 130, terminated: 143 } as const;

export const EPILOG = `Exit codes:
  0  done: every event has a result (run), or the command succeeded
  1  failure: broker unreachable, pilots could not start, no progress within --idle-timeout, …
  2  bad usage or configuration (nothing was changed)
  3  run/collect finished, but some events were dead-lettered (see: ewms dlq list)
  130/143  stopped by SIGINT/SIGTERM: run stops its pilots first; unfinished events stay queued

Environment:
  EWMS_BROKER_URL    broker URL when --broker is not given (may include the password)
  EWMS_BROKER_TOKEN  broker password or token (RabbitMQ password/JWT, NATS token)
  EWMS_BROKER_MANAGEMENT_URL  the broker's HTTP API when --broker-management-url is not given
  EWMS_MONITOR_TOKEN bearer token ewms monitor / run --monitor require (needed for any --host but loopback)
  --backend ewms (the WMS provisions the broker: no --broker needed):
  EWMS_WMS_TOKEN_URL, EWMS_WMS_CLIENT_ID, EWMS_WMS_CLIENT_SECRET
                     OAuth2 client credentials: the issuer (e.g. a Keycloak realm URL), client id and
                     secret; tokens are fetched and renewed as they expire
  EWMS_WMS_TOKEN     a static bearer token instead (client credentials win when set)`;

/** Parsed command-line values, keyed by option name. */
export type Args = Record<string, unknown>;

/** What a command tells `main` while it runs. */
export interface CommandContext {
  /**
   * Call just before the first change (a queue declared, an event published, a pilot started). Until then a
   * usage error is exit 2, "nothing was changed"; after it, any error is exit 1.
   */
  changing(): void;
}

/** A command's body: resolves with the exit code. */
export type Handler = (args: Args, logger: Logger, context: CommandContext) => Promise<number>;

/** Every secret the environment holds, to keep out of anything printed. */
export function secrets(): string[] {
  const env = process.env;
  return [env.EWMS_BROKER_TOKEN, env.EWMS_WMS_TOKEN, env.EWMS_WMS_CLIENT_SECRET, passwordOf(env.EWMS_BROKER_URL)].filter((s): s is string => !!s);
}

/** The password inside a broker URL, if any; every node of a cluster's list (`amqp://user:pw@r1,r2`) is looked at. */
export function passwordOf(url: string | undefined): string | undefined {
  if (!url) return undefined;
  for (const entry of url.split(',')) {
    try {
      const password = decodeURIComponent(new URL(entry.trim()).password);
      if (password) return password;
    } catch {
      // not a URL: no password in it
    }
  }
  return undefined;
}

export function makeLogger(level: string): Logger {
  return pino(
    { level, base: undefined, timestamp: pino.stdTimeFunctions.isoTime, redact: { paths: ['authToken', '*.authToken', 'token', '*.token', 'password'], censor: '***' } },
    pino.destination(2),
  );
}

/** The broker from `--broker` / `EWMS_BROKER_URL`, with the token from the environment. */
export function brokerFromArgs(args: Args, env: NodeJS.ProcessEnv = process.env): ConnectOptions {
  const flag = args.broker as string | undefined;
  if (flag && passwordOf(flag)) {
    throw new CoordinatorConfigError('--broker must not contain a password (it would be visible in ps)', 'put the password in EWMS_BROKER_TOKEN, or the whole URL in EWMS_BROKER_URL');
  }
  const address = flag ?? env.EWMS_BROKER_URL;
  if (!address) throw new CoordinatorConfigError('no broker given', 'pass --broker URL (e.g. amqp://guest@localhost:5672) or set EWMS_BROKER_URL');
  return { address, ...(env.EWMS_BROKER_TOKEN ? { authToken: env.EWMS_BROKER_TOKEN } : {}), ...managementUrlFromArgs(args, env) };
}

/** `--broker-management-url` / `EWMS_BROKER_MANAGEMENT_URL`: the broker's HTTP API, for the coordinator and its pilots. */
export function managementUrlFromArgs(args: Args, env: NodeJS.ProcessEnv): Pick<ConnectOptions, 'managementUrl'> {
  const text = (args['broker-management-url'] as string | undefined) ?? env.EWMS_BROKER_MANAGEMENT_URL;
  if (text === undefined || text === '') return {};
  try {
    return { managementUrl: parseManagementUrl(text, '--broker-management-url') };
  } catch (err) {
    if (err instanceof EwmsError) throw new CoordinatorConfigError(err.message, err.hint);
    throw err;
  }
}

/** `o` without its undefined properties. */
export function defined<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}

/** A count given on the command line must be a whole number >= 0. */
export function wholeCount(flag: string, value: number): number {
  if (!Number.isInteger(value) || value < 0) throw new CoordinatorConfigError(`${flag} must be a whole number >= 0, got ${String(value)}`, `give ${flag} a count such as 100`);
  return value;
}

/** Event ids, one per line (as `publish --ids` and `dlq requeue --write-ids` write them). */
export async function readIds(path: string): Promise<string[]> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new CoordinatorConfigError(`cannot read the ids file '${path}'`, 'give the file ewms publish --ids or ewms dlq requeue --write-ids wrote', { cause: err });
  }
  return text.split('\n').map((s) => s.trim()).filter(Boolean);
}

/** The options naming a broker and a workflow on it. */
export function brokerOptions<T>(y: Argv<T>, workflowRequired: boolean) {
  return y
    .epilog(EPILOG)
    .option('broker', { type: 'string', describe: 'Broker URL (amqp://user@host:5672, nats://host:4222; a cluster\'s nodes comma-separated: amqp://user@r1:5672,r2:5672); no password here. Default: EWMS_BROKER_URL', group: 'Broker:' })
    .option('broker-management-url', { type: 'string', describe: "The broker's HTTP API for the coordinator and its pilots: RabbitMQ management (dead-letter policy), Pulsar admin (queue depth); 'none': never contact it. Default: EWMS_BROKER_MANAGEMENT_URL, else the broker host on the API's port", group: 'Broker:' })
    .option('workflow', { type: 'string', demandOption: workflowRequired, describe: workflowRequired ? 'Workflow id (names the queues ewms-<id>-in / -out)' : 'Workflow id (names the queues); default: a new random id', group: 'Broker:' })
    .option('max-deliveries', { type: 'string', default: '3', describe: 'Attempts per event before it is dead-lettered', group: 'Broker:' })
    .option('wire-format', { choices: ['mqclient', 'raw'] as const, default: 'mqclient' as const, describe: 'Event body format on the wire', group: 'Broker:' })
    .option('log-level', { choices: ['debug', 'info', 'warn', 'error', 'silent'] as const, default: 'warn' as const, describe: 'Log level (logs go to stderr)', group: 'Broker:' });
}

/** The options of commands that collect outcomes (run, collect). */
export function collectOptions<T>(y: Argv<T>) {
  return y
    .option('output', { type: 'string', describe: 'Results file (JSONL: {"eventId","kind","data"}); default stdout' })
    .option('append', { type: 'boolean', default: false, describe: 'Append to --output instead of replacing it' })
    .option('dead-letters', { type: 'string', describe: 'Also write dead letters here (JSONL with reason and details)' })
    .option('idle-timeout', { type: 'string', default: '600', describe: 'Give up after this many seconds without any outcome' })
    .option('progress', { type: 'boolean', default: true, describe: 'Show progress on stderr (--no-progress to hide)' });
}

/**
 * One `ewms` command: its name, its options and what it does. `main.ts` registers every command from these,
 * so a new command is one module that exports one of these and one line in the list there.
 */
export interface EwmsCommand {
  readonly name: string;
  readonly describe: string;
  /** Adds the command's options to its parser. */
  options(y: Argv): Argv;
  /** Runs the command (absent for a command that only groups subcommands). */
  run?: Handler;
  readonly subcommands?: readonly EwmsCommand[];
  /** Options that may be given more than once (besides --pilot-env and --wms-location). */
  readonly repeatable?: readonly string[];
}

/**
 * Whether `path` can be written (its directory exists and is writable; an existing file is a writable file),
 * found without creating or truncating it: nothing may change before the whole command line is known good.
 */
export async function checkWritable(p: InputProblems, flag: string, path: string | undefined): Promise<void> {
  if (path === undefined || path === '-') return;
  const full = resolve(path);
  const info = await stat(full).catch(() => undefined);
  if (info?.isDirectory()) {
    p.add(flag, `'${path}' is a directory`, 'give a file name');
    return;
  }
  try {
    await access(info ? full : dirname(full), constants.W_OK);
  } catch {
    p.add(flag, info ? `'${path}' cannot be written (permissions)` : `'${path}' cannot be created: its directory ${dirname(full)} does not exist or is not writable`, 'give a path in a writable directory');
  }
}

/**
 * Ctrl-C or a kill while pilots run: say so once and abort `stop` (local pilots are in process groups of
 * their own and must be stopped, not orphaned). `signal()` is the first one received; `release()` unhooks.
 */
export function stopOnSignals(stop: AbortController, what: string): { signal(): NodeJS.Signals | undefined; release(): void } {
  let stoppedBy: NodeJS.Signals | undefined;
  const onSignal = (signal: NodeJS.Signals) => {
    stoppedBy ??= signal;
    process.stderr.write(`ewms: ${signal}: stopping the pilots; ${what}\n`);
    stop.abort(new Error(`stopped by ${signal}`));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return {
    signal: () => stoppedBy,
    release: () => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    },
  };
}
