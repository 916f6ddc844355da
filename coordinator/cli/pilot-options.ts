/**
 * The options that describe pilots (run, submit, status, rm), and the pilot request they add up to.
 */
import type { Argv, Options } from 'yargs';
import { CoordinatorConfigError } from '../errors.js';
import type { CondorOptions, EwmsWmsOptions, JsonValue, PilotRequest } from '../types.js';
import { wmsAuthFromEnv } from '../wms-auth.js';
import { defined, managementUrlFromArgs, passwordOf, type Args } from './shared.js';

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

export function condorFromArgs(args: Args): CondorOptions {
  const options: Record<string, unknown> = {};
  for (const [field, flag] of CONDOR_FLAGS) if (args[flag] !== undefined) options[field] = args[flag];
  return options as CondorOptions;
}

export function ewmsFromArgs(args: Args): EwmsWmsOptions {
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

export function pilotOptions<T>(y: Argv<T>): Argv<T> {
  let out = y;
  for (const [name, option] of PILOT_OPTIONS) out = out.option(name, option) as unknown as Argv<T>;
  return out;
}
