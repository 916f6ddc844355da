/**
 * The options that describe pilots (run, submit) and the pilot clusters status/rm address, and the pilot
 * request they add up to, read in one pass (`readPilotRequest`) that collects every problem.
 */
import type { Argv, Options } from 'yargs';
import type { CondorOptions, EwmsWmsOptions, JsonValue, PilotDefaults, PilotRequest } from '../types.js';
import { wmsAuthFromEnv } from '../wms-auth.js';
import { InputProblems, number, seconds, wholeNumber } from './input.js';
import { defined, managementUrlFromArgs, passwordOf, type Args } from './shared.js';

function jsonObject(p: InputProblems, text: string | undefined, flag: string): Record<string, string> | undefined {
  const parsed = jsonRecord(p, text, flag, '{"KEY": "value"}');
  return parsed && Object.fromEntries(Object.entries(parsed).map(([k, v]) => [k, typeof v === 'string' ? v : JSON.stringify(v)]));
}

/** A JSON object whose values keep their JSON types (worker_config takes integers and booleans). */
function jsonRecord(p: InputProblems, text: string | undefined, flag: string, example: string): Record<string, JsonValue> | undefined {
  if (text === undefined) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return p.add(flag, 'is not valid JSON', `${flag} takes a JSON object, e.g. '${example}'`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return p.add(flag, 'must be a JSON object', `e.g. '${example}'`);
  return parsed as Record<string, JsonValue>;
}

/** `--pilot-env KEY=VALUE …` as given (names and values are checked against the pilot's own rules later). */
function keyValues(p: InputProblems, list: unknown, flag: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const item of (list as string[] | undefined) ?? []) {
    const at = item.indexOf('=');
    if (at <= 0) {
      p.add(flag, `'${item.split('=')[0]}…' is not KEY=VALUE`, `e.g. ${flag} EWMS_PILOT_MAX_CONCURRENT_TASKS=2`);
      continue;
    }
    out[item.slice(0, at)] = item.slice(at + 1);
  }
  return out;
}

function condorFrom(p: InputProblems, args: Args): CondorOptions {
  const options: Record<string, unknown> = {};
  for (const [field, flag] of [
    ['universe', 'condor-universe'],
    ['template', 'condor-template'],
    ['pilotImage', 'condor-pilot-image'],
    ['pilotCommand', 'condor-pilot-command'],
    ['memory', 'condor-memory'],
    ['disk', 'condor-disk'],
    ['requirements', 'condor-requirements'],
    ['defaultRequirements', 'condor-default-requirements'],
    ['workDir', 'condor-work-dir'],
    ['schedd', 'condor-schedd'],
    ['pool', 'condor-pool'],
  ] as const) {
    if (args[flag] !== undefined) options[field] = args[flag];
  }
  options.cpus = wholeNumber(p, args, 'condor-cpus', { min: 1, example: '2' });
  options.maxRuntimeSeconds = seconds(p, args, 'condor-max-runtime', { example: '86400' });
  options.maxRetries = wholeNumber(p, args, 'condor-max-retries', { min: 0, example: '3' });
  return defined(options) as CondorOptions;
}

/** The condor settings of the flags (throws `UsageError`). */
export function condorFromArgs(args: Args): CondorOptions {
  const p = new InputProblems('ewms');
  const options = condorFrom(p, args);
  p.check();
  return options;
}

function ewmsFrom(p: InputProblems, args: Args): EwmsWmsOptions | undefined {
  const url = args['wms-url'] as string | undefined;
  if (!url) return p.add('--wms-url', 'is required with --backend ewms', 'e.g. --wms-url https://ewms.example.org');
  const locations: string[] = [];
  for (const item of (args['wms-location'] as string[] | undefined) ?? []) {
    if (item.includes('=') || item.includes(',')) {
      p.add('--wms-location', `'${item}' is not a location name`, 'give the name the WMS knows (e.g. --wms-location sub-2): the WMS looks up the collector and schedd itself');
    } else {
      locations.push(item);
    }
  }
  const options: EwmsWmsOptions = { url, locations, ...(p.absorb('EWMS_WMS_*', () => wmsAuthFromEnv()) ?? {}) };
  const worker = jsonRecord(p, args['wms-worker-config'] as string | undefined, '--wms-worker-config', '{"n_cores": 2, "worker_memory": "4GB"}');
  if (worker) options.workerConfig = worker;
  if (args['wms-image-source'] !== undefined) options.imageSource = args['wms-image-source'] as 'auto' | 'cvmfs';
  if (args['wms-pilot-tag'] !== undefined) options.pilotTag = args['wms-pilot-tag'] as string;
  const priority = number(p, args, 'wms-priority', '10');
  if (priority !== undefined) options.priority = priority;
  const poll = seconds(p, args, 'wms-poll-seconds', { example: '15' });
  if (poll !== undefined) options.pollSeconds = poll;
  return options;
}

/** The WMS settings of the flags (throws `UsageError`). */
export function ewmsFromArgs(args: Args): EwmsWmsOptions {
  const p = new InputProblems('ewms');
  const options = ewmsFrom(p, args);
  p.check();
  return options!;
}

function localCommand(p: InputProblems, text: string | undefined): string[] | undefined {
  if (text === undefined) return undefined;
  if (text.trim().startsWith('[')) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      return p.add('--local-command', 'is not valid JSON', 'e.g. \'["node", "dist/pilot/cli.js"]\', or a plain command line');
    }
    if (Array.isArray(parsed) && parsed.length > 0 && parsed.every((x) => typeof x === 'string')) return parsed as string[];
    return p.add('--local-command', 'as JSON must be an array of strings', 'e.g. \'["node", "dist/pilot/cli.js"]\'');
  }
  const words = text.trim().split(/\s+/).filter(Boolean);
  return words.length > 0 ? words : p.add('--local-command', 'is empty', 'give the pilot command, or leave the option out');
}

/**
 * The pilot request the flags describe, every problem added to `p` (the request is only usable when `p` has
 * none). `--pilots 0` is refused unless autoscaling may start pilots later.
 */
export function readPilotRequest(p: InputProblems, args: Args): PilotRequest {
  const taskArgs = args['task-args'] as string | undefined;
  if (!taskArgs?.trim()) p.add('--task-args', 'is required: no task given', "give the task's command line, e.g. --task-args 'python3 scan.py {{INFILE}} {{OUTFILE}}'");
  const autoscaling = args['autoscale-max'] !== undefined;
  const count = wholeNumber(p, args, 'pilots', { min: autoscaling ? 0 : 1, example: '4' });
  const request: PilotRequest = {
    ...readPilotDefaults(p, args),
    count: count ?? 1,
    task: defined({
      args: taskArgs ?? '',
      image: args['task-image'] as string | undefined,
      env: jsonObject(p, args['task-env'] as string | undefined, '--task-env'),
      // The value itself is checked by the pilot's own rules (EWMS_PILOT_TASK_TIMEOUT).
      timeoutSeconds: number(p, args, 'task-timeout', '600'),
    }),
  };
  if (args['init-args'] !== undefined) {
    request.init = defined({
      args: args['init-args'] as string,
      image: args['init-image'] as string | undefined,
      env: jsonObject(p, args['init-env'] as string | undefined, '--init-env'),
      timeoutSeconds: number(p, args, 'init-timeout', '300'),
    });
  } else {
    for (const flag of ['init-image', 'init-env', 'init-timeout']) {
      if (args[flag] !== undefined) p.add(`--${flag}`, 'is given without --init-args', `add --init-args (the init command), or leave --${flag} out`);
    }
  }
  if (autoscaling) {
    const max = wholeNumber(p, args, 'autoscale-max', { min: 1, example: '20' });
    const min = wholeNumber(p, args, 'autoscale-min', { min: 0, example: '1' }) ?? 0;
    if (max !== undefined && min > max) p.add('--autoscale-min', `${min} is more than --autoscale-max ${max}`, 'give 0 <= --autoscale-min <= --autoscale-max');
    if (max !== undefined && count !== undefined && count > max) p.add('--pilots', `${count} is more than --autoscale-max ${max}`, 'start at most --autoscale-max pilots');
    if (request.backend === 'ewms') p.add('--autoscale-max', 'is not available with --backend ewms', 'the WMS sizes its taskforces itself; use --backend local or condor');
    request.autoscale = defined({ min, max: max ?? 1, eventsPerPilot: wholeNumber(p, args, 'autoscale-events-per-pilot', { min: 1, example: '100' }) });
  } else {
    for (const flag of ['autoscale-min', 'autoscale-events-per-pilot']) {
      if (args[flag] !== undefined) p.add(`--${flag}`, 'is given without --autoscale-max', `add --autoscale-max N to autoscale, or leave --${flag} out`);
    }
  }
  return request;
}

/**
 * What every pilot shares, whatever its task: backend, `--pilots` (a graph task's default `n_workers`),
 * `--pilot-env`, the pilots' broker, and the backend's own settings.
 */
export function readPilotDefaults(p: InputProblems, args: Args): PilotDefaults {
  const backend = args.backend as PilotRequest['backend'];
  const defaults: PilotDefaults = { backend, pilotEnv: keyValues(p, args['pilot-env'], '--pilot-env') };
  if (args['pilot-broker']) {
    const address = args['pilot-broker'] as string;
    if (passwordOf(address)) p.add('--pilot-broker', 'must not contain a password (it would be visible in ps)', 'the pilots get the token from EWMS_BROKER_TOKEN');
    else defaults.pilotBroker = { address, ...(process.env.EWMS_BROKER_TOKEN ? { authToken: process.env.EWMS_BROKER_TOKEN } : {}), ...(p.absorb('--broker-management-url', () => managementUrlFromArgs(args, process.env)) ?? {}) };
  }
  if (backend === 'local') defaults.local = defined({ workDir: args['local-work-dir'] as string | undefined, pilotCommand: localCommand(p, args['local-command'] as string | undefined) });
  if (backend === 'condor') defaults.condor = condorFrom(p, args);
  if (backend === 'ewms') {
    const ewms = ewmsFrom(p, args);
    if (ewms) defaults.ewms = ewms;
  }
  return defaults;
}

/** The pilot request the flags describe (throws `UsageError` listing every problem). */
export function pilotRequestFromArgs(args: Args): PilotRequest {
  const p = new InputProblems('ewms');
  const request = readPilotRequest(p, args);
  p.check();
  return request;
}

const PILOTS = 'Pilots:';
const CONDOR = 'HTCondor (--backend condor):';
const WMS = 'EWMS WMS (--backend ewms):';

/** Local pilots' defaults, as `--help` states them. */
export const LOCAL_DEFAULTS_NOTE =
  'local: pilots run here with workstation defaults: a failed task does not stop its pilot (EWMS_PILOT_STOP_LISTENING_ON_TASK_ERROR=false; ' +
  'the event is retried and dead-lettered after --max-deliveries), so the run reaches every event\'s outcome; relative paths in --task-args ' +
  'that exist where you run ewms are made absolute; their scratch directory is removed after a finished run (--keep-pilot-files keeps it)';

/** The options that describe pilots (run, submit). */
const PILOT_OPTIONS: ReadonlyArray<readonly [string, Options]> = [
  ['backend', { choices: ['local', 'condor', 'ewms'] as const, default: 'local' as const, describe: `Where pilots run. ${LOCAL_DEFAULTS_NOTE}`, group: PILOTS }],
  ['pilots', { type: 'string', default: '1', describe: 'How many pilots (a whole number >= 1; 0 only with --autoscale-max)', group: PILOTS }],
  ['task-args', { type: 'string', describe: 'Task command line; {{INFILE}} {{OUTFILE}} {{DATA_HUB}} are substituted', group: PILOTS }],
  ['task-image', { type: 'string', describe: 'Task container image (unset: the task runs on the pilot host)', group: PILOTS }],
  ['task-env', { type: 'string', describe: 'Task environment, JSON object', group: PILOTS }],
  ['task-timeout', { type: 'string', describe: 'Task timeout, seconds (at least 1; unset: no limit)', group: PILOTS }],
  ['init-args', { type: 'string', describe: 'Init command, run once per pilot before any event', group: PILOTS }],
  ['init-image', { type: 'string', describe: 'Init container image', group: PILOTS }],
  ['init-env', { type: 'string', describe: 'Init environment, JSON object', group: PILOTS }],
  ['init-timeout', { type: 'string', describe: 'Init timeout, seconds (at least 1; unset: no limit)', group: PILOTS }],
  ['pilot-env', { type: 'string', array: true, describe: 'Extra pilot setting KEY=VALUE (an EWMS_PILOT_* variable, checked by the pilot\'s own rules; see ewms-pilot --help); repeatable', group: PILOTS }],
  ['pilot-broker', { type: 'string', describe: 'Broker URL as the pilots must use it (default: --broker)', group: PILOTS }],
  ['local-work-dir', { type: 'string', describe: 'local: directory for the pilots\' scratch dirs and logs (kept after the run)', group: PILOTS }],
  ['keep-pilot-files', { type: 'boolean', default: false, describe: 'local: keep the pilots\' scratch directory (logs, task files) after a finished run', group: PILOTS }],
  ['local-command', { type: 'string', describe: 'local: pilot command (default: node <this package>/dist/pilot/cli.js)', group: PILOTS }],
  ['autoscale-min', { type: 'string', describe: 'Autoscaling: fewest pilots', group: PILOTS }],
  ['autoscale-max', { type: 'string', describe: 'Autoscaling: most pilots (enables autoscaling)', group: PILOTS }],
  ['autoscale-events-per-pilot', { type: 'string', describe: 'Autoscaling: queue depth per pilot (default 100)', group: PILOTS }],
  ['condor-universe', { choices: ['vanilla', 'container'] as const, describe: 'Job universe (default vanilla)', group: CONDOR }],
  ['condor-template', { type: 'string', describe: 'Submit template of your own', group: CONDOR }],
  ['condor-pilot-image', { type: 'string', describe: 'Pilot image (container_image / +SingularityImage)', group: CONDOR }],
  ['condor-pilot-command', { type: 'string', describe: 'Pilot command on the execute node, vanilla universe (default ewms-pilot; the container universe runs the image entrypoint)', group: CONDOR }],
  ['condor-cpus', { type: 'string', describe: 'request_cpus', group: CONDOR }],
  ['condor-memory', { type: 'string', describe: 'request_memory, e.g. "2 GB"', group: CONDOR }],
  ['condor-disk', { type: 'string', describe: 'request_disk, e.g. "4 GB"', group: CONDOR }],
  ['condor-requirements', { type: 'string', describe: 'requirements (ClassAd expression), ANDed with the defaults', group: CONDOR }],
  ['condor-default-requirements', { type: 'boolean', describe: 'Add what pilots need (Apptainer, user namespaces, CVMFS repositories); --no-condor-default-requirements: only --condor-requirements', group: CONDOR }],
  ['condor-max-runtime', { type: 'string', describe: 'Wall-time limit in seconds: +OriginalTime, and EWMS_PILOT_MAX_WORKER_RUNTIME for the pilots', group: CONDOR }],
  ['condor-max-retries', { type: 'string', describe: 'max_retries (default 3)', group: CONDOR }],
  ['condor-work-dir', { type: 'string', describe: 'Where submit file, env file and logs go', group: CONDOR }],
  ['condor-schedd', { type: 'string', describe: 'Schedd name (-name)', group: CONDOR }],
  ['condor-pool', { type: 'string', describe: 'Collector (-pool)', group: CONDOR }],
  ['wms-url', { type: 'string', describe: 'WMS base URL (credentials: EWMS_WMS_TOKEN_URL/_CLIENT_ID/_CLIENT_SECRET or EWMS_WMS_TOKEN)', group: WMS }],
  ['wms-location', { type: 'string', array: true, describe: 'Cluster location by the name the WMS knows (e.g. sub-2); repeatable', group: WMS }],
  ['wms-image-source', { choices: ['auto', 'cvmfs'] as const, describe: 'Where the TMS takes the pilot image from (pilot_config.image_source; default auto)', group: WMS }],
  ['wms-pilot-tag', { type: 'string', describe: 'Pilot image tag (pilot_config.tag): latest (default) or X.Y.Z', group: WMS }],
  ['wms-priority', { type: 'string', describe: "The workflow's priority (default: the WMS's)", group: WMS }],
  ['wms-worker-config', { type: 'string', describe: 'worker_config overrides, JSON object (e.g. {"n_cores": 2, "worker_memory": "4GB"})', group: WMS }],
  ['wms-poll-seconds', { type: 'string', describe: 'How often to ask the WMS whether the queues are activated (default 15)', group: WMS }],
];

/** Only the options that name a cluster started earlier (status, rm). */
const CLUSTER_OPTIONS: ReadonlyArray<readonly [string, Options]> = [
  ['backend', { choices: ['condor', 'ewms'] as const, demandOption: true, describe: 'Where the pilots run', group: PILOTS }],
  ['cluster', { type: 'string', demandOption: true, describe: 'Condor cluster id (condor_submit printed it) or EWMS workflow id', group: PILOTS }],
  ['condor-schedd', { type: 'string', describe: 'Schedd name (-name)', group: CONDOR }],
  ['condor-pool', { type: 'string', describe: 'Collector (-pool)', group: CONDOR }],
  ['wms-url', { type: 'string', describe: 'WMS base URL (credentials: EWMS_WMS_TOKEN_URL/_CLIENT_ID/_CLIENT_SECRET or EWMS_WMS_TOKEN)', group: WMS }],
];

function withOptions(y: Argv, options: ReadonlyArray<readonly [string, Options]>): Argv {
  return options.reduce((out, [name, option]) => out.option(name, option), y);
}

/** The options that describe pilots (run, submit). */
export function pilotOptions(y: Argv): Argv {
  return withOptions(y, PILOT_OPTIONS);
}

/** The options that address a pilot cluster (status, rm). */
export function clusterOptions(y: Argv): Argv {
  return withOptions(y, CLUSTER_OPTIONS);
}
