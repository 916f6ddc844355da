/**
 * Reads and checks the pilot's configuration: the `EWMS_PILOT_*` environment (as HTCondor and the EWMS
 * Task Management Service set it), overridden by command-line flags. Everything is checked before the
 * pilot connects anywhere; a problem becomes one `ConfigError` naming each variable and its fix, without
 * ever echoing a secret.
 */
import { accessSync, constants, statSync } from 'node:fs';
import { delimiter, resolve } from 'node:path';
import { EwmsError } from '../common/errors.js';
import { redact } from '../common/redact.js';
import type { WireFormat } from '../common/wire.js';
import { isBrokerType, parseBrokerAddress, type BrokerAddress } from '../mq-adapters/address.js';
import { parseManagementUrl } from '../mq-adapters/management-url.js';
import type { BrokerType, ConnectOptions } from '../mq-adapters/types.js';
import { defaultDeadLetterQueue } from '../mq-adapters/types.js';
import { closestVariable, DEPRECATED_ALIASES, VARIABLES, flagOf, type VariableDefinition } from './config-table.js';
import type { LevelWithSilent } from 'pino';
import type { PilotSettings, QueueEndpoint } from './pilot.js';
import type { RuntimeName } from './runtime/types.js';
import { ShellWordsError, splitShellWords } from './shell-words.js';
import type { OutfileEvents } from './task-io.js';

/** One problem with one variable, and its fix (never carrying a secret). */
export interface ConfigProblem {
  readonly name: string;
  readonly problem: string;
  readonly fix: string;
}

/** The configuration is unusable; the pilot exits 2 without connecting anywhere. */
export class ConfigError extends EwmsError {
  constructor(
    message: string,
    hint: string,
    /** Each problem on its own (redacted), for callers that report them under names of their own (`ewms`). */
    readonly problems: readonly ConfigProblem[] = [],
  ) {
    super(message, hint);
  }
}

/** One command the pilot runs (the task, or init). */
export interface CommandSpec {
  /** Split argument vector, placeholders not yet substituted. */
  args: string[];
  /** Container image; undefined on the host runtime. */
  image: string | undefined;
  env: Record<string, string>;
  timeoutSeconds: number | undefined;
}

/** The whole, checked configuration. */
export interface PilotConfig {
  /** What the pilot lifecycle needs (queues, limits, timeouts). */
  settings: PilotSettings;
  task: CommandSpec;
  init: CommandSpec | undefined;
  runtime: RuntimeName;
  externalDirectories: string[];
  containerDebug: boolean;
  containerGpus: boolean;
  /** Where task images are converted to sandboxes (`_EWMS_PILOT_APPTAINER_BUILD_WORKDIR`), absolute. */
  imageWorkDir: string;
  /** False: an Apptainer task image must already be a sandbox (`_EWMS_PILOT_APPTAINER_IMAGE_DIRECTORY_MUST_BE_PRESENT`). */
  convertImages: boolean;
  /** `--shm-size` of docker/podman task containers (`_EWMS_PILOT_DOCKER_SHM_SIZE`). */
  shmSize: string | undefined;
  /** `<DATA_DIR_PARENT_PATH_ON_HOST>/ewms-pilot-data`, absolute. */
  dataDir: string;
  infileExt: string;
  outfileExt: string;
  /** How many output events an outfile holds: one, or one per line (`jsonl`). */
  outfileEvents: OutfileEvents;
  keepAllTaskFiles: boolean;
  dumpTaskOutput: boolean;
  wireFormat: WireFormat;
  okayErrors: string[];
  logLevel: LevelWithSilent;
  /** Every secret value configured, for redacting anything the pilot prints. */
  secrets: string[];
  /** Things worth a warning that do not stop the pilot (unknown variables, old names). */
  warnings: string[];
}

/** Flag values as yargs hands them over, keyed by flag name (`task-args`). */
export type FlagValues = Readonly<Record<string, string | number | boolean | undefined>>;

const BY_NAME = new Map(VARIABLES.map((variable) => [variable.name, variable]));
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** Node's timers hold at most 2^31-1 ms (about 24.8 days); a longer delay fires after 1 ms. */
const MAX_TIMER_SECONDS = Math.floor((2 ** 31 - 1) / 1000);
const PYTHON_LOG_LEVELS: Record<string, LevelWithSilent> = {
  DEBUG: 'debug',
  INFO: 'info',
  WARNING: 'warn',
  ERROR: 'error',
  CRITICAL: 'fatal',
};

/** What `loadConfig` checks beyond the settings themselves. */
export interface LoadOptions {
  /**
   * Check that the task and init commands exist on this host (tasks that run without a container), looking
   * bare program names up in this `PATH`: a missing program is a configuration error at start, not a failed
   * attempt per event. Unset: not checked (the commands run elsewhere, e.g. on an HTCondor execute node).
   */
  hostCommands?: { path: string | undefined };
}

/**
 * Read the configuration from `env` and `flags` (flags win). `cwd` anchors a relative or absent data
 * directory (and relative task programs: host tasks run in the pilot's working directory). Throws
 * `ConfigError` listing every problem found.
 */
export function loadConfig(env: Readonly<Record<string, string | undefined>>, flags: FlagValues = {}, cwd = process.cwd(), options: LoadOptions = {}): PilotConfig {
  const reader = new Reader(env, flags);
  const config = build(reader, cwd);
  if (config && options.hostCommands) checkHostCommands(reader, config, options.hostCommands.path, cwd);
  if (reader.problems.length > 0 || !config) {
    const secrets = reader.secretValues();
    const problems = reader.problems.map((p) => ({ name: p.name, problem: redact(p.problem, secrets), fix: redact(p.fix, secrets) }));
    const lines = problems.map((p) => `  ${p.name}: ${p.problem}\n    fix: ${p.fix}`);
    throw new ConfigError(
      `the pilot's configuration has ${problems.length} problem${problems.length > 1 ? 's' : ''}:\n${lines.join('\n')}`,
      'set the variables named above (or their --flags); `ewms-pilot --help` lists them all',
      problems,
    );
  }
  return config;
}

/** Reads typed values out of the raw strings, collecting problems instead of stopping at the first. */
class Reader {
  readonly problems: Array<{ name: string; problem: string; fix: string }> = [];
  readonly warnings: string[] = [];
  private readonly raw = new Map<string, string>();

  constructor(env: Readonly<Record<string, string | undefined>>, flags: FlagValues) {
    for (const [old, current] of Object.entries(DEPRECATED_ALIASES)) {
      const value = env[old];
      if (value === undefined || value === '') continue;
      if (env[current]) this.warnings.push(`${old} is ignored because ${current} is set`);
      else {
        this.warnings.push(`${old} is an old name; use ${current}`);
        this.raw.set(current, value);
      }
    }
    for (const variable of VARIABLES) {
      const value = env[variable.name];
      // The Python pilot treats an empty variable as unset; so do we.
      if (value !== undefined && value !== '') this.raw.set(variable.name, value);
    }
    for (const variable of VARIABLES) {
      const value = flags[flagOf(variable.name)];
      if (value === undefined || value === '') continue;
      // A command line is readable by every user of the machine (ps, /proc): secrets come from the environment.
      if (variable.type === 'secret' || (variable.name.endsWith('_BROKER_ADDRESS') && hasPassword(String(value)))) {
        this.problem(
          variable.name,
          `was given as the flag --${flagOf(variable.name)}, where any user of this machine can read it (ps)`,
          variable.type === 'secret' ? `set the environment variable ${variable.name} instead` : `give the address without its password, and the password in ${variable.name.replace('_BROKER_ADDRESS', '_AUTH_TOKEN')}`,
        );
        continue;
      }
      this.raw.set(variable.name, String(value));
    }
    for (const name of Object.keys(env)) {
      if (BY_NAME.has(name) || name in DEPRECATED_ALIASES) continue;
      if (name.startsWith('EWMS_PILOT_')) {
        const meant = closestVariable(name);
        this.warnings.push(`${name} is not a variable this pilot knows; ${meant ? `did you mean ${meant}?` : 'check its spelling'} (ewms-pilot --help lists them)`);
      } else if (name.startsWith('_EWMS_PILOT_') && env[name] !== undefined && env[name] !== '') {
        // Set by an image or the TMS for the Python pilot: say plainly that it has no effect here.
        this.warnings.push(`${name} is a Python pilot setting this pilot does not have; it is not applied (ewms-pilot --help lists the _EWMS_PILOT_* settings it honours)`);
      }
    }
  }

  problem(name: string, problem: string, fix: string): undefined {
    this.problems.push({ name, problem, fix });
    return undefined;
  }

  secretValues(): string[] {
    const out: string[] = [];
    for (const variable of VARIABLES) {
      const value = this.raw.get(variable.name);
      if (value && (variable.type === 'secret' || variable.type === 'env-json')) {
        out.push(value);
        // One token per queue (`;`-separated): each is a secret of its own.
        if (LISTED_QUEUE_VARIABLES.has(variable.name) && value.includes(';')) out.push(...value.split(';').filter((t) => t.trim() !== ''));
      }
    }
    return out;
  }

  isSet(name: string): boolean {
    return this.raw.has(name);
  }

  /** While one of several queues is read: its side and position (see `atQueue`). */
  private queueSlot: { direction: QueueDirection; index: number } | undefined;

  private text(name: string): string | undefined {
    const value = this.raw.get(name) ?? def(name).default;
    const direction = LISTED_QUEUE_VARIABLES.get(name);
    if (value === undefined || direction === undefined || !value.includes(';')) return value;
    // One of several queues: its own entry (the other side's first, for the outgoing fallbacks).
    const index = this.queueSlot?.direction === direction ? this.queueSlot.index : 0;
    const entry = value.split(';')[index]?.trim();
    return entry === '' ? undefined : entry;
  }

  /** The `;`-separated entries of a queue variable (none when unset). */
  entries(name: string): string[] {
    const value = this.raw.get(name);
    return value === undefined ? [] : value.split(';').map((s) => s.trim());
  }

  /** Read the settings of queue `index` of `direction`: each listed variable yields that queue's entry. */
  atQueue<T>(direction: QueueDirection, index: number, read: () => T): T {
    this.queueSlot = { direction, index };
    try {
      return read();
    } finally {
      this.queueSlot = undefined;
    }
  }

  string(name: string): string | undefined {
    return this.text(name);
  }

  required(name: string, what: string): string | undefined {
    const value = this.text(name);
    if (value === undefined) return this.problem(name, `is required but not set`, `set it to ${what}`);
    return value;
  }

  integer(name: string, min: number): number | undefined {
    const value = this.text(name);
    if (value === undefined) return undefined;
    if (!/^\s*\d+\s*$/.test(value) || Number(value) < min) {
      return this.problem(name, `'${value}' is not a whole number >= ${min}`, `set it to a whole number such as ${Math.max(min, 1)}`);
    }
    return Number(value);
  }

  seconds(name: string): number | undefined {
    const value = this.text(name);
    if (value === undefined) return undefined;
    const n = Number(value);
    if (value.trim() === '' || !Number.isFinite(n) || n < 0) {
      return this.problem(name, `'${value}' is not a number of seconds >= 0`, 'set it to a number of seconds, e.g. 60 or 0.5');
    }
    if (n > MAX_TIMER_SECONDS) {
      // Python users write 99999999 for "practically never"; a Node timer that long would fire at once.
      this.warnings.push(`${name}=${value} is longer than the longest timer (${MAX_TIMER_SECONDS} s, about 24.8 days); using ${MAX_TIMER_SECONDS} s`);
      return MAX_TIMER_SECONDS;
    }
    return n;
  }

  boolean(name: string): boolean {
    const value = this.text(name);
    if (value === undefined) return false;
    const lower = value.trim().toLowerCase();
    if (['true', '1', 'yes', 'on', 't', 'y'].includes(lower)) return true;
    if (['false', '0', 'no', 'off', 'f', 'n'].includes(lower)) return false;
    this.problem(name, `'${value}' is not a boolean`, 'set it to true or false');
    return false;
  }

  choice<T extends string>(name: string): T | undefined {
    const value = this.text(name);
    if (value === undefined) return undefined;
    const choices = def(name).choices ?? [];
    const match = choices.find((c) => c.toLowerCase() === value.trim().toLowerCase());
    if (match === undefined) return this.problem(name, `'${value}' is not one of ${choices.join(', ')}`, `set it to one of: ${choices.join(', ')}`);
    return match as T;
  }

  list(name: string, separators: RegExp): string[] {
    const value = this.text(name);
    if (value === undefined) return [];
    return value.split(separators).map((s) => s.trim()).filter((s) => s !== '');
  }

  command(name: string): string[] | undefined {
    const value = this.text(name);
    if (value === undefined) return undefined;
    try {
      const words = splitShellWords(value);
      if (words.length === 0) return this.problem(name, 'holds no command', 'set it to the command line to run');
      return words;
    } catch (err) {
      if (err instanceof ShellWordsError) return this.problem(name, err.message, err.hint);
      throw err;
    }
  }

  envJson(name: string): Record<string, string> {
    const value = this.text(name);
    if (value === undefined) return {};
    let parsed: unknown;
    try {
      parsed = JSON.parse(value);
    } catch (err) {
      // JSON.parse quotes the input in its message, and task env often carries tokens: say only where.
      const where = /position (\d+)/.exec((err as Error).message)?.[1];
      this.problem(name, `is not valid JSON${where !== undefined ? ` (at character ${Number(where) + 1})` : ''}`, 'set it to a JSON object such as {"MY_VAR": "value", "THREADS": 4}');
      return {};
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
      this.problem(name, 'is JSON but not an object', 'set it to a JSON object such as {"MY_VAR": "value"}');
      return {};
    }
    const out: Record<string, string> = {};
    for (const [key, val] of Object.entries(parsed)) {
      if (!ENV_NAME.test(key)) {
        this.problem(name, `'${key}' is not a valid environment variable name`, 'use letters, digits and underscores, not starting with a digit');
      } else if (typeof val === 'string' || (typeof val === 'number' && Number.isFinite(val))) {
        out[key] = String(val);
      } else {
        this.problem(name, `the value of '${key}' is not a string or a number`, 'give every variable a string or number value');
      }
    }
    return out;
  }
}

function def(name: string): VariableDefinition {
  const variable = BY_NAME.get(name);
  if (!variable) throw new Error(`no configuration variable ${name}`);
  return variable;
}

function build(r: Reader, cwd: string): PilotConfig | undefined {
  const taskArgs = r.command('EWMS_PILOT_TASK_ARGS');
  const taskImage = r.string('EWMS_PILOT_TASK_IMAGE');
  const initArgs = r.command('EWMS_PILOT_INIT_ARGS');
  const initImage = r.string('EWMS_PILOT_INIT_IMAGE') ?? taskImage;

  const runtime = containerRuntime(r, taskImage);
  if (!r.isSet('EWMS_PILOT_TASK_ARGS') && runtime === 'none') {
    // In a container an empty command runs the image's own (runscript / CMD), as the Python pilot does.
    r.problem('EWMS_PILOT_TASK_ARGS', 'is required but not set', "set it to the task's command line, e.g. 'python3 /opt/task.py {{INFILE}} {{OUTFILE}}', or set EWMS_PILOT_TASK_IMAGE to run that image's default command");
  }
  if (runtime === 'none' && taskImage) {
    r.problem('EWMS_PILOT_CONTAINER_RUNTIME', "is 'none' (run on the host) but EWMS_PILOT_TASK_IMAGE names an image", 'unset the image to run on the host, or choose apptainer, docker or podman');
  }
  if (runtime === 'none' && r.isSet('EWMS_PILOT_INIT_IMAGE')) {
    r.problem('EWMS_PILOT_INIT_IMAGE', 'names an image but tasks run on the host (no EWMS_PILOT_TASK_IMAGE)', 'unset it, or set EWMS_PILOT_TASK_IMAGE to run in containers');
  }
  if (runtime !== 'none' && !taskImage) {
    r.problem('EWMS_PILOT_TASK_IMAGE', `is required with EWMS_PILOT_CONTAINER_RUNTIME=${runtime}`, 'set the image the task runs in, or set EWMS_PILOT_CONTAINER_RUNTIME=none to run on the host');
  }

  const incomings = queueEndpoints(r, 'INCOMING', undefined);
  const incoming = incomings[0] ?? { queue: undefined, broker: undefined };
  const outgoings = queueEndpoints(r, 'OUTGOING', incoming.broker ?? 'unusable');
  const outgoing = outgoings[0] ?? { queue: undefined, broker: undefined };

  const maxDeliveries = r.integer('EWMS_PILOT_MAX_DELIVERIES', 1) ?? 3;
  // `auto` (the default) keeps the next event in hand beside every task; a number is taken as given (the Python
  // pilot's meaning), which a user with long tasks on RabbitMQ needs: events waiting in a pilot count towards
  // the server's consumer_timeout from the moment they are delivered.
  const prefetch: number | 'auto' = r.string('EWMS_PILOT_PREFETCH')?.trim().toLowerCase() === 'auto' ? 'auto' : (r.integer('EWMS_PILOT_PREFETCH', 0) ?? 'auto');
  const maxConcurrentTasks = r.integer('EWMS_PILOT_MAX_CONCURRENT_TASKS', 1) ?? 1;
  const stopOnTaskError = r.boolean('EWMS_PILOT_STOP_LISTENING_ON_TASK_ERROR');
  const quarantineSeconds = r.seconds('EWMS_PILOT_QUARANTINE_TIME') ?? 0;
  if (quarantineSeconds > 0 && !stopOnTaskError) {
    r.problem('EWMS_PILOT_QUARANTINE_TIME', 'is set but EWMS_PILOT_STOP_LISTENING_ON_TASK_ERROR is false, so the pilot never quarantines', 'unset EWMS_PILOT_QUARANTINE_TIME, or set EWMS_PILOT_STOP_LISTENING_ON_TASK_ERROR=true');
  }
  const idleTimeoutSeconds = r.seconds('EWMS_PILOT_TIMEOUT_QUEUE_INCOMING');
  const firstMessageTimeoutSeconds = r.seconds('EWMS_PILOT_TIMEOUT_QUEUE_WAIT_FOR_FIRST_MESSAGE') ?? idleTimeoutSeconds;
  const taskTimeoutSeconds = commandTimeout(r, 'EWMS_PILOT_TASK_TIMEOUT', 'task');
  const maxWorkerRuntimeSeconds = r.seconds('EWMS_PILOT_MAX_WORKER_RUNTIME');
  if (maxWorkerRuntimeSeconds === 0) {
    r.problem('EWMS_PILOT_MAX_WORKER_RUNTIME', 'is 0, which leaves no time for any task', "set the job's wall-time budget in seconds, or unset it for no limit");
  }
  if (maxWorkerRuntimeSeconds !== undefined && taskTimeoutSeconds !== undefined && taskTimeoutSeconds >= maxWorkerRuntimeSeconds) {
    r.problem('EWMS_PILOT_MAX_WORKER_RUNTIME', `(${maxWorkerRuntimeSeconds} s) leaves no room for one task of EWMS_PILOT_TASK_TIMEOUT (${taskTimeoutSeconds} s)`, 'make the wall-time budget longer than the task timeout');
  }
  const leaseSeconds = r.seconds('EWMS_PILOT_LEASE_TIMEOUT') ?? 60;
  if (leaseSeconds < 1) r.problem('EWMS_PILOT_LEASE_TIMEOUT', `${leaseSeconds} s is too short to renew`, 'set it to at least 1 second (60 is the default)');
  const killGraceSeconds = r.seconds('EWMS_PILOT_TASK_KILL_GRACE') ?? 10;

  const infileExt = extension(r, 'EWMS_PILOT_INFILE_EXT');
  const outfileExt = extension(r, 'EWMS_PILOT_OUTFILE_EXT');
  const deadLetterRoute = r.choice<'queue' | 'outgoing'>('EWMS_PILOT_DEAD_LETTER') ?? 'queue';
  if (deadLetterRoute === 'outgoing' && r.isSet('EWMS_PILOT_QUEUE_DEAD_LETTER')) {
    r.problem('EWMS_PILOT_QUEUE_DEAD_LETTER', 'names a dead-letter queue, but EWMS_PILOT_DEAD_LETTER=outgoing sends dead letters to the outgoing queue', 'unset one of the two');
  }
  const deadLetterQueueOf = (read: EndpointRead, index: number): string =>
    deadLetterRoute === 'outgoing'
      ? (outgoing.queue ?? '')
      : (r.atQueue('INCOMING', index, () => r.string('EWMS_PILOT_QUEUE_DEAD_LETTER')) ?? (read.queue ? defaultDeadLetterQueue(read.queue) : ''));
  const deadLetterQueue = deadLetterQueueOf(incoming, 0);
  const externalDirectories = r.list('EWMS_PILOT_EXTERNAL_DIRECTORIES', /,/);
  for (const dir of externalDirectories) {
    if (!dir.startsWith('/')) r.problem('EWMS_PILOT_EXTERNAL_DIRECTORIES', `'${dir}' is not an absolute path`, 'list absolute host directories, separated by commas');
  }

  const logLevel = r.choice<LevelWithSilent>('EWMS_PILOT_LOG_LEVEL') ?? PYTHON_LOG_LEVELS[r.choice<string>('EWMS_PILOT_CL_LOG') ?? 'INFO'] ?? 'info';
  const chirpDestination = r.choice<'JOB_ATTR' | 'JOB_EVENT_LOG'>('EWMS_PILOT_HTCHIRP_DEST') ?? 'JOB_ATTR';
  const task: CommandSpec = {
    args: taskArgs ?? [],
    image: runtime === 'none' ? undefined : taskImage,
    env: r.envJson('EWMS_PILOT_TASK_ENV_JSON'),
    timeoutSeconds: taskTimeoutSeconds,
  };
  const initEnv = r.envJson('EWMS_PILOT_INIT_ENV_JSON');
  const initTimeout = commandTimeout(r, 'EWMS_PILOT_INIT_TIMEOUT', 'init command');
  // As the Python pilot: an init image alone runs with its own default command (runscript / CMD).
  const initWanted = initArgs !== undefined || (runtime !== 'none' && r.isSet('EWMS_PILOT_INIT_IMAGE'));
  const init: CommandSpec | undefined = initWanted
    ? { args: initArgs ?? [], image: runtime === 'none' ? undefined : initImage, env: initEnv, timeoutSeconds: initTimeout }
    : undefined;

  if (runtime === 'docker' || runtime === 'podman') {
    // docker/podman read the task env from an env file: one NAME=VALUE per line, so a value cannot span
    // lines. Refuse it here, at start, rather than failing every event later.
    for (const [name, env] of [['EWMS_PILOT_TASK_ENV_JSON', task.env], ['EWMS_PILOT_INIT_ENV_JSON', initEnv]] as const) {
      for (const [key, value] of Object.entries(env)) {
        if (/[\r\n\0]/.test(value)) {
          r.problem(name, `the value of ${key} has a line break or NUL, which ${runtime}'s --env-file cannot carry`, 'encode it (e.g. base64), put it in a file under the data hub, or use the apptainer runtime');
        }
      }
    }
  }

  const wireFormat = r.choice<WireFormat>('EWMS_PILOT_WIRE_FORMAT') ?? 'mqclient';
  const outfileEvents = r.choice<OutfileEvents>('EWMS_PILOT_OUTFILE_EVENTS') ?? 'one';
  const okayErrors = r.list('EWMS_PILOT_OKAY_ERRORS', /[\s,]+/);
  const containerGpus = r.boolean('EWMS_PILOT_CONTAINER_GPUS');
  const containerDebug = r.boolean('EWMS_PILOT_CONTAINER_DEBUG');
  const keepAllTaskFiles = r.boolean('EWMS_PILOT_KEEP_ALL_TASK_FILES');
  const dumpTaskOutput = r.boolean('EWMS_PILOT_DUMP_TASK_OUTPUT');
  const chirpEnabled = r.boolean('EWMS_PILOT_HTCHIRP');
  const chirpRate = r.seconds('EWMS_PILOT_HTCHIRP_RATELIMIT_INTERVAL') ?? 60;
  const dataParent = resolve(cwd, r.string('EWMS_PILOT_DATA_DIR_PARENT_PATH_ON_HOST') ?? '.');
  const taskName = r.string('EWMS_PILOT_TASK_NAME') ?? 'task-0';
  const filterMarkers = r.boolean('EWMS_PILOT_FILTER_MARKERS');
  const monitorQueue = r.string('EWMS_PILOT_QUEUE_MONITOR');
  const heartbeatSeconds = r.seconds('EWMS_PILOT_HEARTBEAT_INTERVAL');
  if (heartbeatSeconds !== undefined && heartbeatSeconds < 0.1) r.problem('EWMS_PILOT_HEARTBEAT_INTERVAL', `${heartbeatSeconds} s is too short`, 'set it to at least 0.1 s (30 is right for thousands of pilots)');
  const dataDir = resolve(dataParent, 'ewms-pilot-data');
  const buildWorkDir = r.string('_EWMS_PILOT_APPTAINER_BUILD_WORKDIR');
  const convertImages = !r.boolean('_EWMS_PILOT_APPTAINER_IMAGE_DIRECTORY_MUST_BE_PRESENT');
  const shmSize = dockerShmSize(r, runtime);

  placeholderWarnings(r, task.args, infileExt, outfileExt);

  const usable = (read: EndpointRead): read is EndpointRead & { queue: string; broker: ConnectOptions } => read.queue !== undefined && read.broker !== undefined;
  if (!incomings.every(usable) || !outgoings.every(usable) || !usable(incoming) || !usable(outgoing)) return undefined;
  const settled = (read: EndpointRead & { queue: string; broker: ConnectOptions }): QueueEndpoint => ({
    queue: read.queue,
    broker: read.broker,
    ...(read.urgent !== undefined ? { urgent: read.urgent } : {}),
  });
  return {
    settings: {
      incoming: settled(incoming),
      outgoing: settled(outgoing),
      ...(incomings.length > 1 ? { moreIncoming: incomings.slice(1).map((read, i) => ({ ...settled(read), deadLetterQueue: deadLetterQueueOf(read, i + 1) })) } : {}),
      ...(outgoings.length > 1 ? { moreOutgoing: outgoings.slice(1).map(settled) } : {}),
      ...(filterMarkers ? { filterMarkers } : {}),
      deadLetterQueue,
      deadLetterRoute,
      maxDeliveries,
      prefetch,
      maxConcurrentTasks,
      stopOnTaskError,
      quarantineSeconds,
      firstMessageTimeoutSeconds,
      idleTimeoutSeconds,
      maxWorkerRuntimeSeconds,
      taskTimeoutSeconds,
      killGraceSeconds,
      leaseSeconds,
      chirp: { enabled: chirpEnabled, destination: chirpDestination, rateLimitSeconds: chirpRate },
      taskName,
      monitor: monitorQueue ? { queue: monitorQueue, intervalSeconds: heartbeatSeconds, taskName, secrets: r.secretValues() } : undefined,
    },
    task,
    init,
    runtime,
    externalDirectories,
    containerDebug,
    containerGpus,
    imageWorkDir: buildWorkDir !== undefined ? resolve(cwd, buildWorkDir) : resolve(dataDir, 'images'),
    convertImages,
    shmSize,
    dataDir,
    infileExt,
    outfileExt,
    outfileEvents,
    keepAllTaskFiles,
    dumpTaskOutput,
    wireFormat,
    okayErrors,
    logLevel,
    secrets: r.secretValues(),
    warnings: r.warnings,
  };
}

/**
 * How tasks run: `EWMS_PILOT_CONTAINER_RUNTIME`, else the platform a Python pilot image declares
 * (`_EWMS_PILOT_CONTAINER_PLATFORM`) when there is an image, else apptainer with an image and the host
 * without one.
 */
function containerRuntime(r: Reader, taskImage: string | undefined): RuntimeName {
  const explicit = r.choice<RuntimeName>('EWMS_PILOT_CONTAINER_RUNTIME');
  const platform = r.choice<'docker' | 'apptainer'>('_EWMS_PILOT_CONTAINER_PLATFORM');
  if (explicit !== undefined && platform !== undefined && taskImage && explicit !== platform) {
    r.problem(
      'EWMS_PILOT_CONTAINER_RUNTIME',
      `is '${explicit}' but _EWMS_PILOT_CONTAINER_PLATFORM (set by the pilot image) says '${platform}'`,
      'unset one of them (an empty _EWMS_PILOT_CONTAINER_PLATFORM counts as unset), or make them agree',
    );
  }
  return explicit ?? (taskImage ? (platform ?? 'apptainer') : 'none');
}

/** `_EWMS_PILOT_DOCKER_SHM_SIZE` as docker's `--shm-size` takes it (`<number>[b|k|m|g][b]`). */
function dockerShmSize(r: Reader, runtime: RuntimeName): string | undefined {
  const name = '_EWMS_PILOT_DOCKER_SHM_SIZE';
  const value = r.string(name)?.trim();
  if (value === undefined) return undefined;
  if (!/^\d+(\.\d+)?[bkmg]?b?$/i.test(value) || Number.parseFloat(value) <= 0) {
    return r.problem(name, `'${value}' is not a size`, 'set it to a size such as 6gb, 512m or 1073741824 (bytes)');
  }
  if (runtime !== 'docker' && runtime !== 'podman') {
    r.warnings.push(`${name}=${value} has no effect: tasks run with ${runtime === 'none' ? 'no container' : runtime}, not docker or podman`);
    return undefined;
  }
  return value;
}

/** One queue's endpoint as read: the queue name and the broker, each undefined when unusable (the problem is recorded). */
interface EndpointRead {
  queue: string | undefined;
  broker: ConnectOptions | undefined;
  /** Its urgent twin, when it has one. */
  urgent?: string;
}

type QueueDirection = 'INCOMING' | 'OUTGOING';

/** Variables that hold one entry per queue when several queues are named (`;`-separated, the TMS's form). */
const LISTED_QUEUE_VARIABLES = new Map<string, QueueDirection>([
  ...(['INCOMING', 'OUTGOING'] as const).flatMap((direction) =>
    ['', '_AUTH_TOKEN', '_BROKER_TYPE', '_BROKER_ADDRESS', '_BROKER_MANAGEMENT_URL', '_URGENT'].map((suffix): [string, QueueDirection] => [`EWMS_PILOT_QUEUE_${direction}${suffix}`, direction]),
  ),
  ['EWMS_PILOT_QUEUE_DEAD_LETTER', 'INCOMING'],
]);

/**
 * Every queue of one side. Several are named `;`-separated in `EWMS_PILOT_QUEUE_<side>`, as the EWMS TMS
 * writes them for a task with several input or output queues; each per-queue variable then holds one value
 * for all, or exactly one per queue in the same order (the urgent twins: one per queue, empty for none).
 */
function queueEndpoints(r: Reader, direction: QueueDirection, fallback: ConnectOptions | 'unusable' | undefined): EndpointRead[] {
  const prefix = `EWMS_PILOT_QUEUE_${direction}`;
  const names = r.entries(prefix);
  const count = Math.max(1, names.length);
  if (names.some((n) => n === '')) r.problem(prefix, `has an empty queue name in '${names.join(';')}'`, 'separate queue names with single `;`, none empty');
  for (const [name, side] of LISTED_QUEUE_VARIABLES) {
    if (side !== direction || name === prefix) continue;
    const entries = r.entries(name);
    const positional = name.endsWith('_URGENT');
    if (entries.length > 1 || (positional && entries.length > 0)) {
      if (entries.length !== count) {
        r.problem(name, `has ${entries.length} ${entries.length === 1 ? 'entry' : '`;`-separated entries'} for ${count} queue${count > 1 ? 's' : ''} in ${prefix}`, positional ? 'give one entry per queue, in the same order (empty for none)' : 'give one value for all queues, or one per queue in the same order');
      }
    }
  }
  return Array.from({ length: count }, (_, index) =>
    r.atQueue(direction, index, () => {
      const read = endpoint(r, direction, fallback);
      const urgent = r.string(`${prefix}_URGENT`);
      return urgent !== undefined ? { ...read, urgent } : read;
    }),
  );
}

/**
 * One queue's endpoint. The outgoing one falls back to the incoming broker for what it leaves unset; when
 * the incoming broker is itself unusable (`'unusable'`, already reported), the outgoing side reports only
 * its own problems, never that its address is missing.
 */
function endpoint(r: Reader, direction: 'INCOMING' | 'OUTGOING', fallback: ConnectOptions | 'unusable' | undefined): EndpointRead {
  const prefix = `EWMS_PILOT_QUEUE_${direction}`;
  const queue = r.required(prefix, `the ${direction.toLowerCase()} queue's name`);
  const base = fallback === 'unusable' ? undefined : fallback;
  const typeName = `${prefix}_BROKER_TYPE`;
  const typeText = r.string(typeName);
  let type: BrokerType | undefined = base?.type;
  if (typeText !== undefined) {
    const lower = typeText.trim().toLowerCase();
    if (isBrokerType(lower)) type = lower;
    else r.problem(typeName, `'${typeText}' is not a broker type this pilot supports`, 'set it to rabbitmq, nats or pulsar');
  }
  const addressName = `${prefix}_BROKER_ADDRESS`;
  // The outgoing queue takes the incoming broker's address when it names none (read with its own type).
  const text = r.string(addressName) ?? (base ? r.string('EWMS_PILOT_QUEUE_INCOMING_BROKER_ADDRESS') : undefined);
  if (text === undefined) {
    if (direction === 'INCOMING') r.problem(addressName, 'is required but not set', 'set it to host:port (with the broker type) or a URL such as amqp://host:5672; several nodes of a cluster comma-separated');
    return { queue, broker: undefined };
  }
  const authToken = r.string(`${prefix}_AUTH_TOKEN`) ?? base?.authToken;
  const managementUrl = managementUrlOf(r, `${prefix}_BROKER_MANAGEMENT_URL`) ?? (r.isSet(addressName) ? undefined : base?.managementUrl);
  // Parsed here, at the edge; everything after this passes the typed address on.
  let address: BrokerAddress;
  try {
    address = parseBrokerAddress(text, type);
  } catch (err) {
    if (typeText !== undefined && type === undefined) return { queue, broker: undefined }; // already reported above
    const message = err instanceof EwmsError ? err.message : String(err);
    const hint = err instanceof EwmsError ? err.hint : `check ${addressName} and ${typeName}`;
    r.problem(addressName, message, hint);
    return { queue, broker: undefined };
  }
  const broker: ConnectOptions = {
    address,
    type: address.type,
    ...(authToken ? { authToken } : {}),
    ...(managementUrl !== undefined ? { managementUrl } : {}),
  };
  return { queue, broker };
}

/** A broker's HTTP API URL (or `none`), checked. */
function managementUrlOf(r: Reader, name: string): string | false | undefined {
  const value = r.string(name);
  if (value === undefined) return undefined;
  try {
    return parseManagementUrl(value, name);
  } catch (err) {
    if (err instanceof EwmsError) return r.problem(name, err.message.replace(`${name} `, ''), err.hint);
    throw err;
  }
}

/** A file extension as the Python pilot takes it: with or without the leading dot. */
function extension(r: Reader, name: string): string {
  const value = r.string(name) ?? '';
  if (value.includes('/') || value.includes('\0')) {
    r.problem(name, `'${value}' is not a file extension`, 'set it to an extension such as .json or .txt');
    return '';
  }
  return value === '' || value.startsWith('.') ? value : `.${value}`;
}

/** Whether a broker address (a URL, or a list of them) carries a password. */
function hasPassword(address: string): boolean {
  return address.split(',').some((entry) => {
    try {
      return new URL(entry.trim()).password !== '';
    } catch {
      return false;
    }
  });
}

/**
 * A task or init timeout. Unset means no limit; 0 or a fraction of a second would stop every attempt before
 * the program could even start, so it is refused rather than spending every event's attempts on it.
 */
function commandTimeout(r: Reader, name: string, what: string): number | undefined {
  const seconds = r.seconds(name);
  if (seconds !== undefined && seconds < MIN_COMMAND_TIMEOUT_SECONDS) {
    return r.problem(
      name,
      `${seconds} s would stop every ${what} before it could start (${seconds === 0 ? '0 is not "no limit"' : `less than ${MIN_COMMAND_TIMEOUT_SECONDS} s`})`,
      `unset it for no limit, or give the longest a ${what} may run, at least ${MIN_COMMAND_TIMEOUT_SECONDS} s`,
    );
  }
  return seconds;
}

/** The shortest task/init timeout accepted: starting a program (an interpreter, a container) takes about this much. */
const MIN_COMMAND_TIMEOUT_SECONDS = 1;

const INFILE_MENTION = /\{\{(?:INFILE|IN_FILE)\}\}|EWMS_TASK_INFILE/;
const OUTFILE_MENTION = /\{\{(?:OUTFILE|OUT_FILE)\}\}|EWMS_TASK_OUTFILE/;

/**
 * A task command that names neither the infile nor the outfile is most often a forgotten placeholder: say so at
 * start, before any event is spent on it. (A program may still read `$EWMS_TASK_INFILE` itself, so it is a
 * warning, not an error.)
 */
function placeholderWarnings(r: Reader, args: readonly string[], infileExt: string, outfileExt: string): void {
  if (args.length === 0) return; // an image's own default command
  const extNote = (name: string, ext: string) => (r.isSet(name) ? ` although ${name}=${ext} expects one` : '');
  if (!args.some((a) => INFILE_MENTION.test(a))) {
    r.warnings.push(`EWMS_PILOT_TASK_ARGS has no {{INFILE}}${extNote('EWMS_PILOT_INFILE_EXT', infileExt)}: the task finds its event only if it reads $EWMS_TASK_INFILE itself`);
  }
  if (!args.some((a) => OUTFILE_MENTION.test(a))) {
    r.warnings.push(`EWMS_PILOT_TASK_ARGS has no {{OUTFILE}}${extNote('EWMS_PILOT_OUTFILE_EXT', outfileExt)}: unless the task writes $EWMS_TASK_OUTFILE itself, every event succeeds without a result`);
  }
}

/** The host programs of the task and init commands exist and may be run (tasks without a container only). */
function checkHostCommands(r: Reader, config: PilotConfig, searchPath: string | undefined, cwd: string): void {
  if (config.runtime !== 'none') return;
  const commands: Array<[string, readonly string[] | undefined]> = [
    ['EWMS_PILOT_TASK_ARGS', config.task.args],
    ['EWMS_PILOT_INIT_ARGS', config.init?.args],
  ];
  for (const [name, args] of commands) {
    const program = args?.[0];
    if (program === undefined || program.includes('{{')) continue;
    const problem = hostProgramProblem(program, searchPath, cwd);
    if (problem) r.problem(name, problem.problem, problem.fix);
  }
}

/** Why `program` cannot be started on this host, or undefined when it can. */
export function hostProgramProblem(program: string, searchPath: string | undefined, cwd: string): { problem: string; fix: string } | undefined {
  if (program.includes('/')) {
    const path = resolve(cwd, program);
    const where = program.startsWith('/') ? '' : ` (relative to the pilot's working directory ${cwd})`;
    let info;
    try {
      info = statSync(path);
    } catch {
      return { problem: `runs '${program}', which does not exist${where}`, fix: 'give the path of an existing program (an absolute path is safest)' };
    }
    if (info.isDirectory()) return { problem: `runs '${program}', which is a directory${where}`, fix: 'give the path of the program itself' };
    if (!isExecutable(path)) return { problem: `runs '${program}', which is not executable${where}`, fix: `make it executable (chmod +x), or run it through its interpreter (e.g. sh ${program})` };
    return undefined;
  }
  for (const dir of (searchPath ?? '').split(delimiter)) {
    if (dir === '') continue;
    const candidate = resolve(cwd, dir, program);
    if (isExecutable(candidate) && !statSync(candidate).isDirectory()) return undefined;
  }
  return { problem: `runs '${program}', which is not a program on this host's PATH`, fix: 'check the spelling, install it, or give its absolute path' };
}

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}
