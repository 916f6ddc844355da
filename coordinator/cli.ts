#!/usr/bin/env node
/**
 * `ewms`: run and inspect workflows from the shell.
 *
 *   ewms run --events pixels.jsonl --output results.jsonl --pilots 4 --task-args 'scan {{INFILE}} {{OUTFILE}}'
 *
 * The broker comes from `--broker URL` or `EWMS_BROKER_URL`; its password/token only from `EWMS_BROKER_TOKEN`
 * (or inside `EWMS_BROKER_URL`), never from a flag, so it cannot show up in `ps`. The WMS token likewise only
 * from `EWMS_WMS_TOKEN`. Secrets are never printed.
 */
import { realpathSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { pino, type Logger } from 'pino';
import yargs, { type Argv, type Options } from 'yargs';
import { EwmsError } from '../common/errors.js';
import { describeError, redact } from '../common/redact.js';
import type { ConnectOptions } from '../mq-adapters/types.js';
import { parseManagementUrl } from '../mq-adapters/management-url.js';
import { CoordinatorConfigError } from './errors.js';
import { LineWriter, outcomeLine, readEvents } from './event-files.js';
import type { ProgressSnapshot } from './progress.js';
import { runWorkflow } from './run-workflow.js';
import type { CondorOptions, EwmsWmsOptions, JsonValue, PilotCluster, PilotRequest, WireFormat } from './types.js';
import { wmsAuthFromEnv } from './wms-auth.js';
import { Workflow } from './workflow.js';

/** Exit codes, as documented in `--help`. */
export const EXIT = { ok: 0, failure: 1, usage: 2, deadLetters: 3, interrupted: 130, terminated: 143 } as const;

const EPILOG = `Exit codes:
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

type Args = Record<string, unknown>;

function secrets(): string[] {
  const env = process.env;
  return [env.EWMS_BROKER_TOKEN, env.EWMS_WMS_TOKEN, env.EWMS_WMS_CLIENT_SECRET, passwordOf(env.EWMS_BROKER_URL)].filter((s): s is string => !!s);
}

function passwordOf(url: string | undefined): string | undefined {
  if (!url) return undefined;
  // Every node of a cluster's address list (amqp://user:pw@rabbit1,rabbit2) is looked at.
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

function makeLogger(level: string): Logger {
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
function managementUrlFromArgs(args: Args, env: NodeJS.ProcessEnv): Pick<ConnectOptions, 'managementUrl'> {
  const text = (args['broker-management-url'] as string | undefined) ?? env.EWMS_BROKER_MANAGEMENT_URL;
  if (text === undefined || text === '') return {};
  try {
    return { managementUrl: parseManagementUrl(text, '--broker-management-url') };
  } catch (err) {
    if (err instanceof EwmsError) throw new CoordinatorConfigError(err.message, err.hint);
    throw err;
  }
}

function jsonObject(text: string | undefined, flag: string): Record<string, string> | undefined {
  if (text === undefined) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new CoordinatorConfigError(`${flag} is not valid JSON`, `${flag} takes a JSON object, e.g. '{"KEY": "value"}'`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new CoordinatorConfigError(`${flag} must be a JSON object`, `e.g. '{"KEY": "value"}'`);
  return Object.fromEntries(Object.entries(parsed).map(([k, v]) => [k, String(v)]));
}

function keyValues(list: unknown, flag: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const item of (list as string[] | undefined) ?? []) {
    const at = item.indexOf('=');
    if (at <= 0) throw new CoordinatorConfigError(`${flag} '${item}' is not KEY=VALUE`, `e.g. ${flag} EWMS_PILOT_MAX_CONCURRENT_TASKS=2`);
    out[item.slice(0, at)] = item.slice(at + 1);
  }
  return out;
}

function defined<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}

/** Which `--condor-*` flag sets which `CondorOptions` field (yargs has already typed the values). */
const CONDOR_FLAGS: ReadonlyArray<[keyof CondorOptions, string]> = [
  ['universe', 'condor-universe'],
  ['template', 'condor-template'],
  ['pilotImage', 'condor-pilot-image'],
  ['pilotCommand', 'condor-pilot-command'],
  ['cpus', 'condor-cpus'],
  ['memory', 'condor-memory'],
  ['disk', 'condor-disk'],
  ['requirements', 'condor-requirements'],
  ['defaultRequirements', 'condor-default-requirements'],
  ['maxRuntimeSeconds', 'condor-max-runtime'],
  ['maxRetries', 'condor-max-retries'],
  ['workDir', 'condor-work-dir'],
  ['schedd', 'condor-schedd'],
  ['pool', 'condor-pool'],
];

function condorFromArgs(args: Args): CondorOptions {
  const options: Record<string, unknown> = {};
  for (const [field, flag] of CONDOR_FLAGS) if (args[flag] !== undefined) options[field] = args[flag];
  return options as CondorOptions;
}

function ewmsFromArgs(args: Args): EwmsWmsOptions {
  const url = args['wms-url'] as string | undefined;
  if (!url) throw new CoordinatorConfigError('--backend ewms needs --wms-url', 'e.g. --wms-url https://ewms.example.org');
  const locations: string[] = [];
  for (const item of (args['wms-location'] as string[] | undefined) ?? []) {
    if (item.includes('=') || item.includes(',')) {
      throw new CoordinatorConfigError(`--wms-location '${item}' is not a location name`, 'give the name the WMS knows (e.g. --wms-location sub-2): the WMS looks up the collector and schedd itself');
    }
    locations.push(item);
  }
  const options: EwmsWmsOptions = { url, locations, ...wmsAuthFromEnv() };
  const worker = jsonRecord(args['wms-worker-config'] as string | undefined, '--wms-worker-config');
  if (worker) options.workerConfig = worker;
  if (args['wms-image-source'] !== undefined) options.imageSource = args['wms-image-source'] as 'auto' | 'cvmfs';
  if (args['wms-pilot-tag'] !== undefined) options.pilotTag = args['wms-pilot-tag'] as string;
  if (args['wms-priority'] !== undefined) options.priority = args['wms-priority'] as number;
  if (args['wms-poll-seconds'] !== undefined) options.pollSeconds = args['wms-poll-seconds'] as number;
  return options;
}

/** A JSON object whose values keep their JSON types (worker_config takes integers and booleans). */
function jsonRecord(text: string | undefined, flag: string): Record<string, JsonValue> | undefined {
  if (text === undefined) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new CoordinatorConfigError(`${flag} is not valid JSON`, `${flag} takes a JSON object, e.g. '{"n_cores": 2, "worker_memory": "4GB"}'`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new CoordinatorConfigError(`${flag} must be a JSON object`, `e.g. '{"n_cores": 2}'`);
  return parsed as Record<string, JsonValue>;
}

function localCommand(text: string | undefined): string[] | undefined {
  if (text === undefined) return undefined;
  if (text.trim().startsWith('[')) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      throw new CoordinatorConfigError('--local-command is not valid JSON', 'e.g. \'["node", "dist/pilot/cli.js"]\', or a plain command line');
    }
    if (Array.isArray(parsed) && parsed.every((x) => typeof x === 'string')) return parsed as string[];
    throw new CoordinatorConfigError('--local-command as JSON must be an array of strings', 'e.g. \'["node", "dist/pilot/cli.js"]\'');
  }
  return text.trim().split(/\s+/);
}

/** The pilot request the flags describe. */
export function pilotRequestFromArgs(args: Args): PilotRequest {
  const backend = args.backend as PilotRequest['backend'];
  const taskArgs = args['task-args'] as string | undefined;
  if (!taskArgs) throw new CoordinatorConfigError('no task given', "pass --task-args, e.g. --task-args 'python scan.py {{INFILE}} {{OUTFILE}}'");
  const request: PilotRequest = {
    backend,
    count: args.pilots as number,
    task: defined({
      args: taskArgs,
      image: args['task-image'] as string | undefined,
      env: jsonObject(args['task-env'] as string | undefined, '--task-env'),
      timeoutSeconds: args['task-timeout'] as number | undefined,
    }),
    pilotEnv: keyValues(args['pilot-env'], '--pilot-env'),
  };
  if (args['init-args']) {
    request.init = defined({
      args: args['init-args'] as string,
      image: args['init-image'] as string | undefined,
      env: jsonObject(args['init-env'] as string | undefined, '--init-env'),
      timeoutSeconds: args['init-timeout'] as number | undefined,
    });
  }
  if (args['pilot-broker']) {
    const address = args['pilot-broker'] as string;
    if (passwordOf(address)) throw new CoordinatorConfigError('--pilot-broker must not contain a password', 'the pilots get the token from EWMS_BROKER_TOKEN');
    request.pilotBroker = { address, ...(process.env.EWMS_BROKER_TOKEN ? { authToken: process.env.EWMS_BROKER_TOKEN } : {}), ...managementUrlFromArgs(args, process.env) };
  }
  if (backend === 'local') request.local = defined({ workDir: args['local-work-dir'] as string | undefined, pilotCommand: localCommand(args['local-command'] as string | undefined) });
  if (backend === 'condor') request.condor = condorFromArgs(args);
  if (backend === 'ewms') request.ewms = ewmsFromArgs(args);
  if (args['autoscale-max'] !== undefined) {
    request.autoscale = defined({
      min: (args['autoscale-min'] as number | undefined) ?? 0,
      max: args['autoscale-max'] as number,
      eventsPerPilot: args['autoscale-events-per-pilot'] as number | undefined,
    });
  }
  return request;
}

// ---------------------------------------------------------------------------------------------------------
// Option groups
// ---------------------------------------------------------------------------------------------------------

function brokerOptions<T>(y: Argv<T>, workflowRequired: boolean) {
  return y
    .epilog(EPILOG)
    .option('broker', { type: 'string', describe: 'Broker URL (amqp://user@host:5672, nats://host:4222; a cluster\'s nodes comma-separated: amqp://user@r1:5672,r2:5672); no password here. Default: EWMS_BROKER_URL', group: 'Broker:' })
    .option('broker-management-url', { type: 'string', describe: "The broker's HTTP API for the coordinator and its pilots: RabbitMQ management (dead-letter policy), Pulsar admin (queue depth); 'none': never contact it. Default: EWMS_BROKER_MANAGEMENT_URL, else the broker host on the API's port", group: 'Broker:' })
    .option('workflow', { type: 'string', demandOption: workflowRequired, describe: workflowRequired ? 'Workflow id (names the queues ewms-<id>-in / -out)' : 'Workflow id (names the queues); default: a new random id', group: 'Broker:' })
    .option('max-deliveries', { type: 'number', default: 3, describe: 'Attempts per event before it is dead-lettered', group: 'Broker:' })
    .option('wire-format', { choices: ['mqclient', 'raw'] as const, default: 'mqclient' as const, describe: 'Event body format on the wire', group: 'Broker:' })
    .option('log-level', { choices: ['debug', 'info', 'warn', 'error', 'silent'] as const, default: 'warn' as const, describe: 'Log level (logs go to stderr)', group: 'Broker:' });
}

const PILOTS = 'Pilots:';
const CONDOR = 'HTCondor (--backend condor):';
const WMS = 'EWMS WMS (--backend ewms):';

/** The options that describe pilots (run, submit, status, rm). */
const PILOT_OPTIONS: ReadonlyArray<readonly [string, Options]> = [
  ['backend', { choices: ['local', 'condor', 'ewms'] as const, default: 'local' as const, describe: 'Where pilots run', group: PILOTS }],
  ['pilots', { type: 'number', default: 1, describe: 'How many pilots', group: PILOTS }],
  ['task-args', { type: 'string', describe: 'Task command line; {{INFILE}} {{OUTFILE}} {{DATA_HUB}} are substituted', group: PILOTS }],
  ['task-image', { type: 'string', describe: 'Task container image (unset: the task runs on the pilot host)', group: PILOTS }],
  ['task-env', { type: 'string', describe: 'Task environment, JSON object', group: PILOTS }],
  ['task-timeout', { type: 'number', describe: 'Task timeout, seconds', group: PILOTS }],
  ['init-args', { type: 'string', describe: 'Init command, run once per pilot before any event', group: PILOTS }],
  ['init-image', { type: 'string', describe: 'Init container image', group: PILOTS }],
  ['init-env', { type: 'string', describe: 'Init environment, JSON object', group: PILOTS }],
  ['init-timeout', { type: 'number', describe: 'Init timeout, seconds', group: PILOTS }],
  ['pilot-env', { type: 'string', array: true, describe: 'Extra pilot setting KEY=VALUE (EWMS_PILOT_* only); repeatable', group: PILOTS }],
  ['pilot-broker', { type: 'string', describe: 'Broker URL as the pilots must use it (default: --broker)', group: PILOTS }],
  ['local-work-dir', { type: 'string', describe: 'local: directory for the pilots\' scratch dirs and logs', group: PILOTS }],
  ['local-command', { type: 'string', describe: 'local: pilot command (default: node <this package>/dist/pilot/cli.js)', group: PILOTS }],
  ['autoscale-min', { type: 'number', describe: 'Autoscaling: fewest pilots', group: PILOTS }],
  ['autoscale-max', { type: 'number', describe: 'Autoscaling: most pilots (enables autoscaling)', group: PILOTS }],
  ['autoscale-events-per-pilot', { type: 'number', describe: 'Autoscaling: queue depth per pilot (default 100)', group: PILOTS }],
  ['condor-universe', { choices: ['vanilla', 'container'] as const, describe: 'Job universe (default vanilla)', group: CONDOR }],
  ['condor-template', { type: 'string', describe: 'Submit template of your own', group: CONDOR }],
  ['condor-pilot-image', { type: 'string', describe: 'Pilot image (container_image / +SingularityImage)', group: CONDOR }],
  ['condor-pilot-command', { type: 'string', describe: 'Pilot command on the execute node, vanilla universe (default ewms-pilot; the container universe runs the image entrypoint)', group: CONDOR }],
  ['condor-cpus', { type: 'number', describe: 'request_cpus', group: CONDOR }],
  ['condor-memory', { type: 'string', describe: 'request_memory, e.g. "2 GB"', group: CONDOR }],
  ['condor-disk', { type: 'string', describe: 'request_disk, e.g. "4 GB"', group: CONDOR }],
  ['condor-requirements', { type: 'string', describe: 'requirements (ClassAd expression), ANDed with the defaults', group: CONDOR }],
  ['condor-default-requirements', { type: 'boolean', describe: 'Add what pilots need (Apptainer, user namespaces, CVMFS repositories); --no-condor-default-requirements: only --condor-requirements', group: CONDOR }],
  ['condor-max-runtime', { type: 'number', describe: 'Wall-time limit in seconds: +OriginalTime, and EWMS_PILOT_MAX_WORKER_RUNTIME for the pilots', group: CONDOR }],
  ['condor-max-retries', { type: 'number', describe: 'max_retries (default 3)', group: CONDOR }],
  ['condor-work-dir', { type: 'string', describe: 'Where submit file, env file and logs go', group: CONDOR }],
  ['condor-schedd', { type: 'string', describe: 'Schedd name (-name)', group: CONDOR }],
  ['condor-pool', { type: 'string', describe: 'Collector (-pool)', group: CONDOR }],
  ['wms-url', { type: 'string', describe: 'WMS base URL (credentials: EWMS_WMS_TOKEN_URL/_CLIENT_ID/_CLIENT_SECRET or EWMS_WMS_TOKEN)', group: WMS }],
  ['wms-location', { type: 'string', array: true, describe: 'Cluster location by the name the WMS knows (e.g. sub-2); repeatable', group: WMS }],
  ['wms-image-source', { choices: ['auto', 'cvmfs'] as const, describe: 'Where the TMS takes the pilot image from (pilot_config.image_source; default auto)', group: WMS }],
  ['wms-pilot-tag', { type: 'string', describe: 'Pilot image tag (pilot_config.tag): latest (default) or X.Y.Z', group: WMS }],
  ['wms-priority', { type: 'number', describe: "The workflow's priority (default: the WMS's)", group: WMS }],
  ['wms-worker-config', { type: 'string', describe: 'worker_config overrides, JSON object (e.g. {"n_cores": 2, "worker_memory": "4GB"})', group: WMS }],
  ['wms-poll-seconds', { type: 'number', describe: 'How often to ask the WMS whether the queues are activated (default 15)', group: WMS }],
];

function pilotOptions<T>(y: Argv<T>): Argv<T> {
  let out = y;
  for (const [name, option] of PILOT_OPTIONS) out = out.option(name, option) as unknown as Argv<T>;
  return out;
}

function collectOptions<T>(y: Argv<T>) {
  return y
    .option('output', { type: 'string', describe: 'Results file (JSONL: {"eventId","kind","data"}); default stdout' })
    .option('append', { type: 'boolean', default: false, describe: 'Append to --output instead of replacing it' })
    .option('dead-letters', { type: 'string', describe: 'Also write dead letters here (JSONL with reason and details)' })
    .option('idle-timeout', { type: 'number', default: 600, describe: 'Give up after this many seconds without any outcome' })
    .option('progress', { type: 'boolean', default: true, describe: 'Show progress on stderr (--no-progress to hide)' });
}

// ---------------------------------------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------------------------------------

/** The coordinator's broker: none with --backend ewms, whose WMS provisions one (a --broker then is unused). */
function coordinatorBroker(args: Args, pilots: PilotRequest | undefined, logger: Logger): ConnectOptions | undefined {
  if (pilots?.backend !== 'ewms') return brokerFromArgs(args);
  if (args.broker) logger.warn({}, '--broker is not used with --backend ewms: the WMS provisions the queues on its own broker');
  return undefined;
}

async function openWorkflow(args: Args, logger: Logger, pilots?: PilotRequest): Promise<Workflow> {
  return Workflow.create(
    defined({
      broker: coordinatorBroker(args, pilots, logger),
      pilots,
      id: args.workflow as string | undefined,
      maxDeliveries: args['max-deliveries'] as number,
      wireFormat: args['wire-format'] as WireFormat,
      logger,
    }),
  );
}

async function cmdMonitor(args: Args, logger: Logger): Promise<number> {
  const { runMonitorCommand } = await import('./monitor/cli.js');
  return runMonitorCommand({ workflowId: args.workflow as string, broker: brokerFromArgs(args), host: args.host as string, port: args.port as number, secrets: secrets(), logger });
}

async function cmdRun(args: Args, logger: Logger): Promise<number> {
  const eventsPath = args.events as string | undefined;
  const alsoExpectIdsFile = args['also-expect-ids'] as string | undefined;
  const alsoExpect: number | string[] = alsoExpectIdsFile ? await readIds(alsoExpectIdsFile) : wholeCount('--also-expect', (args['also-expect'] as number | undefined) ?? 0);
  if (!eventsPath && (typeof alsoExpect === 'number' ? alsoExpect === 0 : alsoExpect.length === 0)) throw new CoordinatorConfigError('nothing to run', 'give --events FILE|DIR, or --also-expect N for events already queued (e.g. requeued dead letters)');
  const pilots = (args.pilots as number) > 0 || args['autoscale-max'] !== undefined ? pilotRequestFromArgs(args) : undefined;
  const results = new LineWriter(args.output as string | undefined, { append: args.append as boolean });
  const dead = args['dead-letters'] ? new LineWriter(args['dead-letters'] as string, { append: args.append as boolean }) : undefined;
  // An output that cannot be written is a usage error: find out before anything is published or started.
  await results.ready();
  await dead?.ready();
  // Ctrl-C or a kill must not leave local pilots running (they are in process groups of their own).
  const stop = new AbortController();
  let stoppedBy: NodeJS.Signals | undefined;
  const onSignal = (signal: NodeJS.Signals) => {
    stoppedBy ??= signal;
    process.stderr.write(`ewms: ${signal}: stopping the pilots; unfinished events stay in the queue\n`);
    stop.abort(new Error(`stopped by ${signal}`));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const monitorCli = args.monitor !== undefined ? await import('./monitor/cli.js') : undefined;
  const monitorPort = monitorCli?.parseMonitorPort(args.monitor);
  let monitor: Awaited<ReturnType<NonNullable<typeof monitorCli>['serveMonitor']>> | undefined;
  try {
    const report = await runWorkflow(
      defined({
        broker: coordinatorBroker(args, pilots, logger),
        id: args.workflow as string | undefined,
        maxDeliveries: args['max-deliveries'] as number,
        wireFormat: args['wire-format'] as WireFormat,
        logger,
        events: eventsPath ? readEvents(eventsPath) : undefined,
        alsoExpect,
        pilots,
        idleTimeoutMs: (args['idle-timeout'] as number) * 1000,
        progress: args.progress ? {} : (false as const),
        deleteQueues: args['keep-queues'] ? false : ('if-clean' as const),
        onOutcome: async (o) => {
          if (o.kind === 'result') await results.write(outcomeLine(o));
          else await dead?.write(outcomeLine(o));
        },
        signal: stop.signal,
        onWorkflow: monitorCli
          ? async (wf: Workflow, progress: () => ProgressSnapshot) => {
              monitor = await monitorCli.serveMonitor({ workflowId: wf.id, queues: wf.queues, broker: brokerFromArgs(args), host: args['monitor-host'] as string, port: monitorPort!, run: progress, secrets: secrets(), logger });
            }
          : undefined,
      }),
    ).catch((err: unknown) => {
      if (stoppedBy) return undefined;
      throw err;
    });
    if (!report) return stoppedBy === 'SIGTERM' ? EXIT.terminated : EXIT.interrupted;
    process.stderr.write(
      `workflow ${report.workflowId}: ${report.results} results, ${report.deadLetters} dead letters, ${report.duplicates} duplicates dropped, ` +
        `${report.published} published, ${report.seconds.toFixed(1)} s (${report.ratePerSecond.toFixed(1)}/s); queues ${report.queuesDeleted ? 'deleted' : 'kept'}\n`,
    );
    if (report.deadLetters > 0) {
      process.stderr.write(
        report.deadLetterRoute === 'queue'
          ? `inspect: ewms dlq list --workflow ${report.workflowId}; retry: ewms dlq requeue --workflow ${report.workflowId}\n`
          : `dead letters came with the results${args['dead-letters'] ? ` and are in ${String(args['dead-letters'])}` : ' (give --dead-letters FILE to keep them)'}\n`,
      );
    }
    if (monitor) await monitorCli!.lingerThenClose(monitor, args['monitor-linger'] as number, stop.signal);
    return report.deadLetters > 0 ? EXIT.deadLetters : EXIT.ok;
  } finally {
    await (monitor as { close(): Promise<void> } | undefined)?.close();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await results.close();
    await dead?.close();
  }
}

async function cmdPublish(args: Args, logger: Logger): Promise<number> {
  const wf = await openWorkflow(args, logger);
  try {
    const ids = await wf.publish(readEvents(args.events as string));
    if (args.ids) await writeFile(args.ids as string, ids.map((id) => `${id}\n`).join(''));
    process.stdout.write(`${JSON.stringify({ workflow: wf.id, published: ids.length, queues: wf.queues })}\n`);
    return EXIT.ok;
  } finally {
    await wf.close();
  }
}

/** Event ids, one per line (as `publish --ids` and `dlq requeue --write-ids` write them). */
/** A count given on the command line must be a whole number >= 0. */
function wholeCount(flag: string, value: number): number {
  if (!Number.isInteger(value) || value < 0) throw new CoordinatorConfigError(`${flag} must be a whole number >= 0, got ${String(value)}`, `give ${flag} a count such as 100`);
  return value;
}

async function readIds(path: string): Promise<string[]> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new CoordinatorConfigError(`cannot read the ids file '${path}'`, 'give the file ewms publish --ids or ewms dlq requeue --write-ids wrote', { cause: err });
  }
  return text.split('\n').map((s) => s.trim()).filter(Boolean);
}

async function cmdCollect(args: Args, logger: Logger): Promise<number> {
  const idsFile = args.ids as string | undefined;
  const expected: number | string[] = idsFile ? await readIds(idsFile) : (args.expected as number | undefined) ?? -1;
  if (expected === -1) throw new CoordinatorConfigError('collect needs to know what to wait for', 'give --expected N or --ids FILE (as written by ewms publish --ids)');
  if (typeof expected === 'number') wholeCount('--expected', expected);
  const wf = await openWorkflow(args, logger);
  const results = new LineWriter(args.output as string | undefined, { append: args.append as boolean });
  const dead = args['dead-letters'] ? new LineWriter(args['dead-letters'] as string, { append: args.append as boolean }) : undefined;
  try {
    await results.ready();
    await dead?.ready();
    for await (const o of wf.collect({ expected, idleTimeoutMs: (args['idle-timeout'] as number) * 1000, keepDeadLetters: true })) {
      if (o.kind === 'result') await results.write(outcomeLine(o));
      else await dead?.write(outcomeLine(o));
    }
    const s = wf.collectStats;
    process.stderr.write(`${s.results} results, ${s.deadLetters} dead letters, ${s.duplicates} duplicates dropped\n`);
    return s.deadLetters > 0 ? EXIT.deadLetters : EXIT.ok;
  } finally {
    await results.close();
    await dead?.close();
    await wf.close();
  }
}

async function cmdSubmit(args: Args, logger: Logger): Promise<number> {
  const request = pilotRequestFromArgs(args);
  if (request.backend === 'local') {
    throw new CoordinatorConfigError('submit starts pilots that outlive this command: use --backend condor or ewms', 'for local pilots use ewms run, or the library (Workflow.startPilots)');
  }
  // ewms: the WMS makes the queues and starts the pilots; local/condor: declared on our broker, pilots started here.
  const wf = await openWorkflow(args, logger, request);
  try {
    const cluster = await wf.startPilots(request);
    process.stdout.write(`${JSON.stringify({ workflow: wf.id, backend: cluster.backend, cluster: cluster.id, queues: wf.queues })}\n`);
    return EXIT.ok;
  } finally {
    await wf.close();
  }
}

async function attachCluster(args: Args): Promise<PilotCluster> {
  const backend = args.backend as string;
  const id = args.cluster as string;
  if (backend === 'condor') {
    const { attachCondorCluster } = await import('./backends/condor.js');
    return attachCondorCluster(id, condorFromArgs(args));
  }
  if (backend === 'ewms') {
    const { attachEwmsWorkflow } = await import('./backends/ewms.js');
    return attachEwmsWorkflow(id, ewmsFromArgs(args));
  }
  throw new CoordinatorConfigError(`status and rm work with --backend condor or ewms, not ${backend}`, 'local pilots belong to the process that started them');
}

async function cmdStatus(args: Args): Promise<number> {
  const status = await (await attachCluster(args)).status();
  process.stdout.write(`${JSON.stringify(status)}\n`);
  return EXIT.ok;
}

async function cmdRm(args: Args): Promise<number> {
  // Stopping a workflow by hand is an abort (the WMS records it as ABORTED, not FINISHED).
  await (await attachCluster(args)).remove({ reason: 'aborted' });
  process.stderr.write(`removed ${args.backend} ${args.cluster}\n`);
  return EXIT.ok;
}

async function cmdDlqList(args: Args, logger: Logger): Promise<number> {
  const wf = await openWorkflow(args, logger);
  const out = new LineWriter(args.output as string | undefined);
  try {
    const n = await wf.deadLetters().export((line) => out.write(line), { limit: args.limit as number });
    process.stderr.write(`${n} dead letters in ${wf.queues.deadLetter}\n`);
    return EXIT.ok;
  } finally {
    await out.close();
    await wf.close();
  }
}

async function cmdDlqRequeue(args: Args, logger: Logger): Promise<number> {
  const wf = await openWorkflow(args, logger);
  try {
    const ids = args.ids as string[] | undefined;
    const requeued = await wf.deadLetters().requeue(defined({ ids, limit: args.limit as number }));
    const idsOut = args['write-ids'] as string | undefined;
    if (idsOut) await writeFile(idsOut, requeued.map((id) => `${id}\n`).join(''));
    process.stdout.write(`${JSON.stringify({ workflow: wf.id, requeued: requeued.length, ids: requeued })}\n`);
    // By id: a count would also take the dead letters still in the queue for these events' outcomes.
    process.stderr.write(`requeued ${requeued.length} to ${wf.queues.incoming}; collect them with: ewms run --workflow ${wf.id} --also-expect-ids ${idsOut ?? '<file of the ids above>'} ...\n`);
    return EXIT.ok;
  } finally {
    await wf.close();
  }
}

// ---------------------------------------------------------------------------------------------------------

type Handler = (args: Args, logger: Logger) => Promise<number>;

/** Parse `argv` and run the command; resolves with the exit code. */
export async function main(argv: string[]): Promise<number> {
  let code: number = EXIT.ok;
  let logger: Logger | undefined;
  const handle = (fn: Handler) => async (args: Args) => {
    logger = makeLogger(args['log-level'] as string);
    code = await fn(args, logger);
  };
  const parser = yargs(argv)
    .scriptName('ewms')
    .usage('ewms <command> [options]\n\nFeed, run and drain event workflows: publish events, start pilots, collect results.')
    .command('run', 'Publish events, start pilots, collect every outcome, stop the pilots', (y) =>
      collectOptions(pilotOptions(brokerOptions(y, false)))
        .option('events', { type: 'string', describe: 'Events: a .jsonl file (one JSON value per line) or a directory (one event per file)' })
        .option('also-expect', { type: 'number', describe: 'How many outcomes to await besides --events (dead letters still queued count too: prefer --also-expect-ids)' })
        .option('also-expect-ids', { type: 'string', conflicts: 'also-expect', describe: 'File of event ids to await besides --events (e.g. from ewms dlq requeue --write-ids)' })
        .option('keep-queues', { type: 'boolean', default: false, describe: 'Keep the queues at the end (they are kept anyway while dead letters remain)' })
        .option('monitor', { type: 'string', describe: 'Serve the live page and /metrics during the run on this port (default 9464; 0: a free one)', group: 'Monitor:' })
        .option('monitor-host', { type: 'string', default: '127.0.0.1', describe: 'Address the monitor binds (anything but loopback needs EWMS_MONITOR_TOKEN)', group: 'Monitor:' })
        .option('monitor-linger', { type: 'number', default: 0, describe: 'Keep serving the final state this many seconds after the run (Ctrl-C ends it sooner)', group: 'Monitor:' }),
      handle(cmdRun))
    .command('monitor', 'Serve a live page, /metrics (Prometheus) and /api/status for a running workflow', (y) =>
      brokerOptions(y, true)
        .option('port', { type: 'number', default: 9464, describe: 'Port to serve on (0: a free one)', group: 'Monitor:' })
        .option('host', { type: 'string', default: '127.0.0.1', describe: 'Address to bind; anything but loopback needs EWMS_MONITOR_TOKEN', group: 'Monitor:' }),
      handle(cmdMonitor))
    .command('publish', 'Publish events to a workflow\'s incoming queue', (y) =>
      brokerOptions(y, false)
        .option('events', { type: 'string', demandOption: true, describe: 'A .jsonl file or a directory of event files' })
        .option('ids', { type: 'string', describe: 'Write the event ids here, one per line (for collect --ids)' }),
      handle(cmdPublish))
    .command('collect', 'Collect outcomes until the expected number have settled', (y) =>
      collectOptions(brokerOptions(y, true))
        .option('expected', { type: 'number', describe: 'How many outcomes to wait for' })
        .option('ids', { type: 'string', describe: 'File of event ids to wait for (from publish --ids)' }),
      handle(cmdCollect))
    .command('submit', 'Start pilots for a workflow (condor or ewms) and print the cluster id', (y) => pilotOptions(brokerOptions(y, true)), handle(cmdSubmit))
    .command('status', 'Show a pilot cluster\'s status (JSON)', (y) =>
      pilotOptions(y).epilog(EPILOG).option('cluster', { type: 'string', demandOption: true, describe: 'Condor cluster id or EWMS workflow id' }).option('log-level', { type: 'string', default: 'warn', hidden: true }),
      handle((a) => cmdStatus(a)))
    .command('rm', 'Stop a pilot cluster', (y) =>
      pilotOptions(y).epilog(EPILOG).option('cluster', { type: 'string', demandOption: true, describe: 'Condor cluster id or EWMS workflow id' }).option('log-level', { type: 'string', default: 'warn', hidden: true }),
      handle((a) => cmdRm(a)))
    .command('dlq', 'Inspect or requeue dead letters', (y) =>
      y
        .command('list', 'Write the dead letters as JSON lines (they stay in the queue)', (z) =>
          brokerOptions(z, true)
            .option('output', { type: 'string', describe: 'File to write (default stdout)' })
            .option('limit', { type: 'number', default: 10_000, describe: 'Read at most this many' }),
          handle(cmdDlqList))
        .command('requeue', 'Put dead letters back on the incoming queue, same event ids', (z) =>
          brokerOptions(z, true)
            .option('ids', { type: 'string', array: true, describe: 'Only these event ids (default: all)' })
            .option('limit', { type: 'number', default: 10_000, describe: 'Requeue at most this many' })
            .option('write-ids', { type: 'string', describe: 'Write the requeued ids here, one per line (for run --also-expect-ids)' }),
          handle(cmdDlqRequeue))
        .demandCommand(1, 'name a dlq command: list or requeue'),
    )
    .demandCommand(1, 'name a command')
    .epilog(EPILOG)
    .strict()
    .help()
    .wrap(Math.min(120, process.stdout.columns ?? 120))
    .exitProcess(false)
    .fail((msg, err) => {
      throw err ?? new CoordinatorConfigError(msg, 'see ewms --help');
    });
  try {
    await parser.parseAsync();
    return code;
  } catch (err) {
    const known = err instanceof EwmsError;
    const text = redact(known ? err.toString() : describeError(err), secrets());
    process.stderr.write(`ewms: ${text}\n`);
    logger?.flush();
    return err instanceof CoordinatorConfigError ? EXIT.usage : EXIT.failure;
  }
}

function isMain(): boolean {
  try {
    return !!process.argv[1] && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url);
  } catch {
    return false;
  }
}

// Run when executed (also through the npm bin link), not when imported by tests.
if (isMain()) {
  main(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  }, (err: unknown) => {
    process.stderr.write(`ewms: ${redact(describeError(err), secrets())}\n`);
    process.exitCode = EXIT.failure;
  });
}
