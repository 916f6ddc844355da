/**
 * The pilot's configuration variables, defined once. The environment parser, the command-line flags,
 * `--help` and the Markdown reference in the README are all generated from this table, so they cannot
 * drift apart.
 *
 * Names marked `python` are those of the Python ewms-pilot 1.x, with its meaning and default; the others
 * are this pilot's own.
 */

/** How a variable's text is read. */
export type VariableType =
  | 'string'
  /** A string that must never be printed (tokens, passwords). */
  | 'secret'
  /** A whole number >= 0. */
  | 'integer'
  /** `auto` (the pilot chooses) or a whole number >= 0. */
  | 'integer-or-auto'
  /** A number of seconds >= 0 (fractions allowed). */
  | 'seconds'
  /** `true`/`false` (also `1`/`0`, `yes`/`no`, `on`/`off`; any case). */
  | 'boolean'
  /** A JSON object of environment variables (string or number values). */
  | 'env-json'
  /** A command line, split into words as Python's `shlex.split` does, never run by a shell. */
  | 'command'
  /** A list separated by commas. */
  | 'list'
  /** One of `choices` (any case). */
  | 'choice';

/** One configuration variable. */
export interface VariableDefinition {
  /** The environment variable. */
  readonly name: string;
  readonly type: VariableType;
  /** Allowed values of a `choice`. */
  readonly choices?: readonly string[];
  /** The default as a user would write it; undefined: unset. */
  readonly default: string | undefined;
  /** Words for the default when it is not a literal value (e.g. "the incoming broker's"). */
  readonly defaultText?: string;
  readonly description: string;
  /** Where the name comes from: the Python ewms-pilot 1.x, or this pilot. */
  readonly origin: 'python' | 'ours';
}

const v = (
  name: string,
  type: VariableType,
  defaultValue: string | undefined,
  description: string,
  extra: { origin?: 'python' | 'ours'; choices?: readonly string[]; defaultText?: string } = {},
): VariableDefinition => ({
  name,
  type,
  default: defaultValue,
  description,
  origin: extra.origin ?? 'python',
  ...(extra.choices ? { choices: extra.choices } : {}),
  ...(extra.defaultText ? { defaultText: extra.defaultText } : {}),
});

const queueVars = (direction: 'INCOMING' | 'OUTGOING'): VariableDefinition[] => {
  const which = direction.toLowerCase();
  const fallback = direction === 'OUTGOING' ? { defaultText: "the incoming queue's" } : {};
  return [
    v(
      `EWMS_PILOT_QUEUE_${direction}`,
      'string',
      undefined,
      direction === 'INCOMING'
        ? 'Name of the incoming queue (required); several separated by `;`, as the EWMS TMS writes them for a task with several input queues: the pilot reads them all. Each `_AUTH_TOKEN`, `_BROKER_TYPE`, `_BROKER_ADDRESS`, `_BROKER_MANAGEMENT_URL` then holds one value for all queues, or one per queue in the same order, `;`-separated.'
        : 'Name of the outgoing queue (required); several separated by `;` (the TMS\'s form): every output is published to each of them (fan-out), with per-queue settings as for the incoming queues.',
    ),
    v(
      `EWMS_PILOT_QUEUE_${direction}_AUTH_TOKEN`,
      'secret',
      undefined,
      `Secret for the ${which} broker: RabbitMQ password or OAuth2 token, NATS token, Pulsar token. Never printed; environment only (a flag would show in \`ps\`).`,
      fallback,
    ),
    v(
      `EWMS_PILOT_QUEUE_${direction}_BROKER_TYPE`,
      'choice',
      undefined,
      `Broker of the ${which} queue; may be omitted when the address is a URL with a scheme.`,
      { choices: ['rabbitmq', 'nats', 'pulsar'], ...fallback },
    ),
    v(
      `EWMS_PILOT_QUEUE_${direction}_BROKER_ADDRESS`,
      'string',
      undefined,
      `Broker of the ${which} queue: \`[user@]host[:port][/vhost]\` (with the broker type) or a URL such as \`amqp://host:5672\`; the nodes of a cluster comma-separated (\`user@rabbit1:5672/vhost,rabbit2:5672,rabbit3:5672\`), tried in turn on connect and after a loss${direction === 'INCOMING' ? ' (required)' : ''}.`,
      fallback,
    ),
    v(
      `EWMS_PILOT_QUEUE_${direction}_BROKER_MANAGEMENT_URL`,
      'string',
      undefined,
      `RabbitMQ: the management API of the ${which} broker, where the pilot installs the broker-side dead-letter policy with the broker's own user and token. Unset: the broker host on port 15672 (\`https://\` and 15671 when the broker connection is TLS), so the credentials go to no other host over no weaker transport. \`none\`: never contact it (the client-side delivery limit still applies).`,
      { origin: 'ours', ...(direction === 'OUTGOING' ? { defaultText: "the incoming queue's, when the broker is the same" } : { defaultText: 'the broker host, port 15672 (15671 over TLS)' }) },
    ),
  ];
};

/** Every variable the pilot reads, in the order `--help` and the README list them. */
export const VARIABLES: readonly VariableDefinition[] = [
  // the task
  v('EWMS_PILOT_TASK_ARGS', 'command', undefined, 'The task command line, run once per event (required unless a task image is set: unset or empty, the image\'s own default command runs, as with the Python pilot). Split into words as Python\'s `shlex.split` splits them (quotes, backslashes) but never run by a shell: use `sh -c \'…\'` for pipes or variables. Placeholders `{{INFILE}}`, `{{OUTFILE}}`, `{{DATA_HUB}}` (also `{{IN_FILE}}`, `{{OUT_FILE}}`, `{{DATAHUB}}`) become the task\'s paths; a command naming neither file gets a warning at start. On the host the program is looked up at start (PATH, or relative to the working directory): a missing one is a configuration error.'),
  v('EWMS_PILOT_TASK_IMAGE', 'string', undefined, 'Container image the task runs in (docker/podman reference, or an apptainer image or sandbox directory). Unset: the task runs on the host.'),
  v('EWMS_PILOT_TASK_ENV_JSON', 'env-json', '{}', 'Extra environment for the task, as a JSON object of strings or numbers.'),
  v('EWMS_PILOT_TASK_TIMEOUT', 'seconds', undefined, 'Longest a task may run, in seconds; past it the task\'s whole process tree is stopped and the attempt counts as a failure. Unset: no limit; 0 or less than 1 s is refused (every attempt would time out). (`EWMS_PILOT_SUBPROC_TIMEOUT` is read as an old name.)'),
  v('EWMS_PILOT_TASK_NAME', 'string', 'task-0', 'The task\'s name in heartbeats, metrics and traces (a workflow graph names each of its tasks).', { origin: 'ours' }),
  v('EWMS_PILOT_TASK_KILL_GRACE', 'seconds', '10', 'Seconds between SIGTERM and SIGKILL when a task is stopped (timeout, shutdown); also the grace in-flight tasks get on SIGTERM/SIGINT before their events are released.', { origin: 'ours' }),
  // init
  v('EWMS_PILOT_INIT_ARGS', 'command', undefined, 'A command run once before any event (same splitting and placeholders as the task; only `{{DATA_HUB}}` applies). Its failure stops the pilot before it takes work.'),
  v('EWMS_PILOT_INIT_IMAGE', 'string', undefined, 'Container image of the init command.', { defaultText: 'the task image' }),
  v('EWMS_PILOT_INIT_ENV_JSON', 'env-json', '{}', 'Extra environment for the init command, as a JSON object.'),
  v('EWMS_PILOT_INIT_TIMEOUT', 'seconds', undefined, 'Longest the init command may run, in seconds. Unset: no limit; 0 or less than 1 s is refused.'),
  // queues
  ...queueVars('INCOMING'),
  ...queueVars('OUTGOING'),
  v('EWMS_PILOT_QUEUE_INCOMING_URGENT', 'string', undefined, 'Urgent twin of each incoming queue (`;`-separated, in the order of EWMS_PILOT_QUEUE_INCOMING; an empty entry: none), on the same broker. The pilot takes what waits there before anything from the ordinary queues. Set by the coordinator for workflows with urgent events.', { origin: 'ours' }),
  v('EWMS_PILOT_QUEUE_OUTGOING_URGENT', 'string', undefined, 'Urgent twin of each outgoing queue (`;`-separated, in the order of EWMS_PILOT_QUEUE_OUTGOING; an empty entry: none): outputs of urgent events (`x-ewms-priority: urgent`) go there, so they stay ahead downstream too.', { origin: 'ours' }),
  v('EWMS_PILOT_QUEUE_DEAD_LETTER', 'string', undefined, 'Where events go after their last failed attempt, with the reason in headers. With several incoming queues: one for all, or one per queue (`;`-separated, same order).', { origin: 'ours', defaultText: '`<incoming>.dlq`' }),
  v('EWMS_PILOT_FILTER_MARKERS', 'boolean', 'false', 'A task that writes no outfile (a filter) still publishes a small marker (`x-ewms-filtered`, no data) to its first outgoing queue, and a pilot passes markers it receives on without running its task, so the coordinator can tell a filtered event from a lost one. Set by the coordinator for workflow graphs.', { origin: 'ours' }),
  v('EWMS_PILOT_DEAD_LETTER', 'choice', 'queue', '`queue`: dead letters go to EWMS_PILOT_QUEUE_DEAD_LETTER, which the pilot declares; `outgoing`: they go to the outgoing queue, marked by their reason headers, and no dead-letter queue is declared (nor a broker policy installed) — for brokers where each token covers only its own queue, as under EWMS (the coordinator sets it there).', { origin: 'ours', choices: ['queue', 'outgoing'] }),
  v('EWMS_PILOT_QUEUE_MONITOR', 'string', undefined, 'The workflow\'s monitoring queue, on the outgoing broker: heartbeats go there (declared bounded: the newest 20,000, none older than an hour; never dead-lettered). Set by the coordinator; unset: no heartbeats.', { origin: 'ours' }),
  v('EWMS_PILOT_MAX_DELIVERIES', 'integer', '3', 'Attempts an event gets before it is dead-lettered (>= 1).', { origin: 'ours' }),
  v('EWMS_PILOT_WIRE_FORMAT', 'choice', 'mqclient', '`mqclient`: zstd-compressed JSON envelope, interoperable with the Python MQClient; `raw`: bodies are the files\' bytes as they are.', { origin: 'ours', choices: ['mqclient', 'raw'] }),
  v('EWMS_PILOT_PREFETCH', 'integer-or-auto', 'auto', 'Events the broker may push ahead of need. `auto`: 3 × concurrent tasks + 2, so the next event is in hand (prepared) when a task slot frees while finished ones are published and acked — best for short tasks. A number is taken as given (at least one per task slot), as in the Python pilot (default 1 there): set `1` for tasks of minutes or more on RabbitMQ, where every event a pilot holds counts towards the server\'s `consumer_timeout` from its delivery.'),
  v('EWMS_PILOT_LEASE_TIMEOUT', 'seconds', '60', 'How long the broker waits for an ack before it gives an event to another pilot: NATS AckWait, renewed every third of it while a task runs, so long tasks keep their events. Not applied on RabbitMQ (no per-message lease: `consumer_timeout` on the server) nor on Pulsar (its ack timeout cannot be renewed, so it stays off and an event returns when its pilot disconnects).', { origin: 'ours' }),
  v('EWMS_PILOT_TIMEOUT_QUEUE_WAIT_FOR_FIRST_MESSAGE', 'seconds', undefined, 'Seconds to wait for the first event before ending with exit 0.', { defaultText: 'EWMS_PILOT_TIMEOUT_QUEUE_INCOMING' }),
  v('EWMS_PILOT_TIMEOUT_QUEUE_INCOMING', 'seconds', '1', 'Seconds with nothing to do, once events have flowed, before the pilot ends with exit 0 (the queue has drained).'),
  // files
  v('EWMS_PILOT_DATA_DIR_PARENT_PATH_ON_HOST', 'string', undefined, 'Directory under which `ewms-pilot-data/` (the data hub and one directory per event) is made.', { defaultText: 'the working directory' }),
  v('EWMS_PILOT_INFILE_EXT', 'string', '.in', 'Extension of the task\'s infile. `.json`: the event\'s data is written as JSON; otherwise text (binary with the raw wire format).'),
  v('EWMS_PILOT_OUTFILE_EVENTS', 'choice', 'one', '`one`: the outfile is one output event (as with the Python pilot). `jsonl`: each non-empty line of the outfile is one output event, read as JSON (as bytes, without its newline, with the raw wire format) whatever EWMS_PILOT_OUTFILE_EXT says: a task that splits an event into pieces. Each output gets its own event id, derived from the input\'s and the line\'s index (a redelivered event\'s outputs deduplicate), and an equal part of the input\'s share (`x-ewms-share`); all are published before the input is acked; an outfile with no line counts as filtered out (see EWMS_PILOT_FILTER_MARKERS).', { origin: 'ours', choices: ['one', 'jsonl'] }),
  v('EWMS_PILOT_OUTFILE_EXT', 'string', '.out', 'Extension of the task\'s outfile. `.json`: read as JSON; otherwise as text (binary with the raw wire format).'),
  v('EWMS_PILOT_EXTERNAL_DIRECTORIES', 'list', undefined, 'Comma-separated host directories bound read-only into task containers at the same path.'),
  v('EWMS_PILOT_KEEP_ALL_TASK_FILES', 'boolean', 'false', 'Keep every event\'s directory (infile, outfile, stdout, stderr) instead of removing it after the event.'),
  v('EWMS_PILOT_DUMP_TASK_OUTPUT', 'boolean', 'false', 'Copy every task\'s stdout and stderr to the pilot\'s stdout (they are always dumped when a task fails).'),
  // failure handling
  v('EWMS_PILOT_STOP_LISTENING_ON_TASK_ERROR', 'boolean', 'true', 'Fail-fast: after a task failure (not in OKAY_ERRORS) take no more events, finish in-flight ones, sleep QUARANTINE_TIME and exit 1.'),
  v('EWMS_PILOT_OKAY_ERRORS', 'list', undefined, 'Failure kinds that do not trigger fail-fast, comma- or space-separated: `TaskExitError`, `TaskTimeoutError` (or `TimeoutError`), `ContainerRunError` (the Python name: a non-zero exit, a signal or a timeout), `TaskSignalError`, `InvalidDataForInfileException`, `InvalidDataFromOutfileException`, or `exit:<code>` for one exit code.'),
  v('EWMS_PILOT_QUARANTINE_TIME', 'seconds', '0', 'Seconds to sleep after fail-fast, or after a failed init command, before exiting, so a broken node does not take more work (HTCondor would hand its slot straight back). A signal ends the sleep. Needs STOP_LISTENING_ON_TASK_ERROR.'),
  v('EWMS_PILOT_MAX_CONCURRENT_TASKS', 'integer', '1', 'Tasks run at once (>= 1).'),
  v('EWMS_PILOT_MAX_WORKER_RUNTIME', 'seconds', undefined, 'The job\'s wall-time budget in seconds: intake stops TASK_TIMEOUT before it so in-flight tasks can finish. Unset: no limit.', { origin: 'ours' }),
  // containers
  v('EWMS_PILOT_CONTAINER_RUNTIME', 'choice', undefined, 'How tasks run: `none` (host processes), `apptainer`, `docker` or `podman`.', { origin: 'ours', choices: ['none', 'apptainer', 'docker', 'podman'], defaultText: '`apptainer` when EWMS_PILOT_TASK_IMAGE is set (as the Python pilot on HTCondor), else `none`' }),
  v('EWMS_PILOT_CONTAINER_GPUS', 'boolean', 'false', 'Pass the node\'s GPUs into task containers (`--nv` / `--gpus all`).', { origin: 'ours' }),
  v('EWMS_PILOT_CONTAINER_DEBUG', 'boolean', 'false', 'Run the container runtime verbosely (`apptainer --debug`).'),
  // the Python pilot's "non-user" settings, which its images and the TMS set
  v('_EWMS_PILOT_CONTAINER_PLATFORM', 'choice', undefined, 'The Python pilot image\'s container platform (its Dockerfile sets it): the runtime of task images when EWMS_PILOT_CONTAINER_RUNTIME is unset. Contradicting EWMS_PILOT_CONTAINER_RUNTIME is a configuration error.', { choices: ['docker', 'apptainer'] }),
  v('_EWMS_PILOT_APPTAINER_BUILD_WORKDIR', 'string', undefined, 'Directory under which task images that are not sandbox directories are converted (`apptainer-images/`, with Apptainer\'s temporary and cache directories); the TMS may point it at the job\'s scratch space.', { defaultText: '`<data dir>/ewms-pilot-data/images` (the Python pilot: `/var/tmp`)' }),
  v('_EWMS_PILOT_APPTAINER_IMAGE_DIRECTORY_MUST_BE_PRESENT', 'boolean', undefined, 'True: an Apptainer task image must already be a sandbox directory (published unpacked, e.g. on CVMFS); anything else stops the pilot at start instead of being converted.', { defaultText: '`false` (the Python pilot: `true`)' }),
  v('_EWMS_PILOT_DOCKER_SHM_SIZE', 'string', undefined, 'Size of `/dev/shm` in docker/podman task containers (`--shm-size`, e.g. `6gb`); has no effect with apptainer (which shares the host\'s), and says so.'),
  // reporting
  v('EWMS_PILOT_HTCHIRP', 'boolean', 'false', 'Report status to HTCondor through `condor_chirp` (attributes `HTChirpEWMSPilot*`).'),
  v('EWMS_PILOT_HTCHIRP_DEST', 'choice', 'JOB_ATTR', 'Where chirps go: job ad attributes or the job event log.', { choices: ['JOB_ATTR', 'JOB_EVENT_LOG'] }),
  v('EWMS_PILOT_HTCHIRP_RATELIMIT_INTERVAL', 'seconds', '60', 'Least seconds between two updates of one attribute.'),
  v('EWMS_PILOT_HEARTBEAT_INTERVAL', 'seconds', undefined, 'Seconds between two heartbeats (besides one at start and one at every state change); a monitor calls a pilot stale after three missed ones.', { origin: 'ours', defaultText: '`30` in an HTCondor job, else `2`' }),
  v('EWMS_PILOT_LOG_LEVEL', 'choice', undefined, 'Log level of the pilot\'s JSON log on stderr.', { origin: 'ours', choices: ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'], defaultText: 'from EWMS_PILOT_CL_LOG, else `info`' }),
  v('EWMS_PILOT_CL_LOG', 'choice', 'INFO', 'The Python pilot\'s log level name, mapped onto EWMS_PILOT_LOG_LEVEL when that is unset.', { choices: ['DEBUG', 'INFO', 'WARNING', 'ERROR', 'CRITICAL'] }),
  v('EWMS_PILOT_CL_LOG_THIRD_PARTY', 'string', 'WARNING', 'Accepted for compatibility; the pilot has no third-party loggers to tune.'),
];

/** Old names still read, each standing for a current one. */
export const DEPRECATED_ALIASES: Readonly<Record<string, string>> = {
  EWMS_PILOT_SUBPROC_TIMEOUT: 'EWMS_PILOT_TASK_TIMEOUT',
};

/** The command-line flag of a variable: `EWMS_PILOT_TASK_ARGS` → `task-args`, `_EWMS_PILOT_DOCKER_SHM_SIZE` → `docker-shm-size`. */
export function flagOf(name: string): string {
  return name.replace(/^_?EWMS_PILOT_/, '').toLowerCase().replace(/_/g, '-');
}

/** The default as `--help` and the README show it. */
export function defaultLabel(variable: VariableDefinition): string {
  if (variable.defaultText) return variable.defaultText;
  if (variable.default === undefined) return '(unset)';
  return `\`${variable.default}\``;
}

/** The type as `--help` and the README show it. */
export function typeLabel(variable: VariableDefinition): string {
  switch (variable.type) {
    case 'choice':
      return (variable.choices ?? []).join(' | ');
    case 'env-json':
      return 'JSON object';
    case 'secret':
      return 'secret';
    case 'integer-or-auto':
      return 'auto | integer';
    default:
      return variable.type;
  }
}

/**
 * The configuration reference as a Markdown table (one row per variable), for the README. A test
 * compares the README with this, so the two stay in sync.
 */
export function renderConfigurationMarkdown(): string {
  const escape = (text: string) => text.replace(/\|/g, '\\|').replace(/\n/g, ' ');
  const rows = VARIABLES.map(
    (variable) =>
      `| \`${variable.name}\` | \`--${flagOf(variable.name)}\` | ${escape(typeLabel(variable))} | ${escape(defaultLabel(variable))} | ${escape(variable.description)}${variable.origin === 'ours' ? ' *(this pilot)*' : ''} |`,
  );
  return ['| Variable | Flag | Type | Default | Meaning |', '|---|---|---|---|---|', ...rows].join('\n') + '\n';
}

/** Edit distance between two names (insertions, deletions, substitutions; each costs 1). */
function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    previous = current;
  }
  return previous[b.length]!;
}

/**
 * The variable a misspelled name most likely meant (`EWMS_PILOT_TASK_TIMEOUTT` → `EWMS_PILOT_TASK_TIMEOUT`,
 * `EWMS_PILOT_INFILE_EXTENSION` → `EWMS_PILOT_INFILE_EXT`), or undefined when none is close. Case is ignored:
 * `ewms_pilot_prefetch` meant `EWMS_PILOT_PREFETCH`.
 */
export function closestVariable(name: string, candidates: readonly string[] = [...VARIABLES.map((v) => v.name), ...Object.keys(DEPRECATED_ALIASES)]): string | undefined {
  const wanted = name.toUpperCase().replace(/^_?EWMS_PILOT_/, '');
  let best: { name: string; distance: number } | undefined;
  for (const candidate of candidates) {
    const core = candidate.replace(/^_?EWMS_PILOT_/, '');
    // A name that contains the other one whole (an extra word, a plural) counts as close.
    const distance = wanted.includes(core) || core.includes(wanted) ? Math.abs(wanted.length - core.length) / 4 : editDistance(wanted, core);
    if (!best || distance < best.distance) best = { name: candidate, distance };
  }
  if (!best || best.name === name) return undefined;
  return best.distance <= Math.max(2, Math.floor(wanted.length / 5)) ? best.name : undefined;
}
