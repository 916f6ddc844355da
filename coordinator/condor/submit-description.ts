/**
 * Filling an HTCondor submit template (`condor-templates/*.sub`) and writing the env file the pilots source.
 *
 * Templates use `{{NAME}}` placeholders. A line whose placeholders are all filled is kept; a line with an
 * unset (or empty) placeholder is dropped whole, which is how optional commands (`+OriginalTime`,
 * `should_transfer_container`, `+SingularityImage`, …) come and go. Values are rendered here, already
 * quoted the way each submit command wants them; the variables are documented in `condor-templates/README.md`.
 *
 * What the EWMS Task Management Service submits (tms/scalar/starter.py) is the model: the pilot image in
 * the container universe with no executable (the image's entrypoint sources the env file), not transferred
 * when it is a path (`should_transfer_container = no`: CVMFS sandboxes), requirements that nested Apptainer
 * needs, and the wall-time limit as `+OriginalTime`.
 */
import { chmod, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CoordinatorConfigError } from '../errors.js';
import type { PilotEnvironment } from '../pilot-env.js';
import type { CondorOptions } from '../types.js';

/** Where the templates shipped with this package live (found upward from here: works from source and dist/). */
export const TEMPLATE_DIR = findTemplateDir(dirname(fileURLToPath(import.meta.url)));
/** The pilot image's entrypoint, which is also the vanilla universe's job wrapper (one script, one behaviour). */
export const ENTRYPOINT_SCRIPT = join(dirname(TEMPLATE_DIR), 'apptainer', 'ewms-pilot-entrypoint.sh');

function findTemplateDir(start: string): string {
  for (let dir = start; ; dir = dirname(dir)) {
    const candidate = join(dir, 'condor-templates');
    if (existsSync(join(candidate, 'vanilla.sub'))) return candidate;
    if (dirname(dir) === dir) return join(start, 'condor-templates');
  }
}
/** The env file's name in the job's sandbox (the name the EWMS TMS uses). */
export const ENV_FILE_NAME = 'ewms_htcondor_envfile.sh';
/** The vanilla universe's executable in the work dir: a copy of the image entrypoint (sources the env file, starts the pilot). */
export const WRAPPER_NAME = 'ewms-pilot-entrypoint.sh';
/** Job-ad attributes the pilot chirps, copied to the job event log as well. */
export const CHIRP_ATTRIBUTES = [
  'HTChirpEWMSPilotStartedTimestamp',
  'HTChirpEWMSPilotLastUpdatedTimestamp',
  'HTChirpEWMSPilotStatus',
  'HTChirpEWMSPilotTasksTotal',
  'HTChirpEWMSPilotTasksFailed',
  'HTChirpEWMSPilotTasksSuccess',
  'HTChirpEWMSPilotError',
  'HTChirpEWMSPilotErrorTraceback',
] as const;

/** A ClassAd string literal: quoted, with `\` and `"` escaped. */
export function classAdString(value: string): string {
  if (/[\n\r]/.test(value)) throw new CoordinatorConfigError('a ClassAd string cannot span lines', 'remove the newline from the value');
  return `"${value.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
}

/**
 * `arguments` in the submit file's new syntax: the whole list in double quotes, a word with spaces or quotes
 * in single quotes (`'` doubled inside), `"` doubled.
 */
export function condorArguments(words: readonly string[]): string {
  const rendered = words.map((w) => {
    if (/[\n\r]/.test(w)) throw new CoordinatorConfigError('a pilot argument cannot contain a newline', 'pass it through the environment instead');
    const escaped = w.replace(/"/g, '""');
    return w === '' || /[\s']/.test(w) ? `'${escaped.replace(/'/g, "''")}'` : escaped;
  });
  return `"${rendered.join(' ')}"`;
}

/**
 * A POSIX-shell single-quoted word: for the env file a job sources, and for task args (split as
 * `shlex.split` does, so a path with spaces or quotes stays one argument).
 */
export function shellQuote(value: string): string {
  return `'${value.replace(/'/g, `'\\''`)}'`;
}

/**
 * `request_memory` / `request_disk` values: a bare number keeps HTCondor's unit (MB for memory, KB for
 * disk); `2 GB`, `512M`, `1.5GiB` are normalised to `<n><unit>` with K/M/G/T (binary, as HTCondor reads them).
 */
export function condorSize(value: string, what: string): string {
  // A unit letter may be followed by B or iB; a lone B (bytes) is no unit condor_submit knows.
  const m = /^\s*(\d+(?:\.\d+)?)\s*(?:([KMGT])(?:i?B)?)?\s*$/i.exec(value);
  if (!m) throw new CoordinatorConfigError(`${what} '${value}' is not a size`, 'use e.g. 2048 (the default unit), 512MB, 2 GB or 4GiB');
  return `${m[1]}${(m[2] ?? '').toUpperCase()}`;
}

/** The values for the template's placeholders. */
export type TemplateValues = Record<string, string | undefined>;

/** Placeholders a template may use; anything else is a typo and refused. */
export const TEMPLATE_VARIABLES = [
  'WRAPPER',
  'PILOT_ARGUMENTS',
  'PILOT_IMAGE',
  'SINGULARITY_IMAGE',
  'ENV_FILE',
  'TRANSFER_INPUT_FILES',
  'CPUS',
  'MEMORY',
  'DISK',
  'REQUIREMENTS',
  'MAX_RETRIES',
  'RETRY_UNTIL',
  'ORIGINAL_TIME',
  'SHOULD_TRANSFER_CONTAINER',
  'INFO_ATTRS',
  'WORKFLOW_ID',
  'BATCH_NAME',
  'LOG_DIR',
  'EXTRA',
  'COUNT',
] as const;

/** Fill `template` with `values` (see the module comment for the line-dropping rule). */
export function fillTemplate(template: string, values: TemplateValues): string {
  const known = new Set<string>(TEMPLATE_VARIABLES);
  const out: string[] = [];
  for (const line of template.split('\n')) {
    let dropped = false;
    const filled = line.replace(/\{\{([A-Z_]+)\}\}/g, (_m, name: string) => {
      if (!known.has(name)) throw new CoordinatorConfigError(`the submit template uses an unknown variable {{${name}}}`, `known variables: ${TEMPLATE_VARIABLES.join(', ')}`);
      const value = values[name];
      if (value === undefined || value === '') dropped = true;
      return value ?? '';
    });
    if (!dropped) out.push(filled);
  }
  const text = out.join('\n').replace(/\n{3,}/g, '\n\n');
  return text.endsWith('\n') ? text : `${text}\n`;
}

/** The env file's text: one `export KEY='value'` per variable, sorted, no tracing (values hold secrets). */
export function envFileText(env: Record<string, string>): string {
  const lines = ['#!/bin/sh', '# Pilot environment, sourced by the ewms-pilot entrypoint in the job sandbox. Holds secrets: mode 0600.', ''];
  for (const key of Object.keys(env).sort()) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(key)) throw new CoordinatorConfigError(`'${key}' is not a valid environment variable name`, 'use letters, digits and _');
    // Single quotes keep newlines as they are: the job gets the same value a local pilot gets.
    lines.push(`export ${key}=${shellQuote(env[key]!)}`);
  }
  return `${lines.join('\n')}\n`;
}

/** Write the env file into `dir` with mode 0600; returns its path. */
export async function writeEnvFile(dir: string, pilot: PilotEnvironment): Promise<string> {
  const path = join(dir, ENV_FILE_NAME);
  await writeFile(path, envFileText(pilot.env), { mode: 0o600 });
  await chmod(path, 0o600); // in case it existed with wider rights
  return path;
}

/** A URL-like image reference (`docker://`, `oras://`, `http://`): HTCondor fetches it itself, never from the AP. */
const IMAGE_URI = /^[a-z][a-z0-9+.-]*:\/\//i;

/** Apptainer present on the execute point, however the pool advertises it (the TMS's expression). */
export const HAS_APPTAINER = 'ifthenelse(!isUndefined(HAS_SINGULARITY), HAS_SINGULARITY, HasSingularity)';
/** Unprivileged user namespaces: what Apptainer nested in the pilot's container needs (the TMS's expression). */
export const HAS_USER_NAMESPACES = 'HasUserNamespaces =?= true';

/** The OSG machine attribute that says a CVMFS repository is mounted, for an image path on CVMFS. */
export function cvmfsRequirement(image: string | undefined): string | undefined {
  const repo = /^\/cvmfs\/([^/]+)\//.exec(image ?? '')?.[1];
  return repo ? `HAS_CVMFS_${repo.replace(/[^A-Za-z0-9]/g, '_')}` : undefined;
}

/**
 * The requirements every pilot of this request needs: Apptainer when the pilot runs in an image or runs its
 * tasks with Apptainer, user namespaces for Apptainer tasks (nested in the pilot's container, unprivileged),
 * and the CVMFS repositories the images live in. Empty when nothing is needed.
 */
export function defaultRequirements(condor: CondorOptions, pilotEnv: Record<string, string>): string[] {
  const universe = condor.universe ?? 'vanilla';
  const pilotInImage = universe === 'container' || condor.pilotImage !== undefined;
  const taskImage = pilotEnv.EWMS_PILOT_TASK_IMAGE;
  const runtime = pilotEnv.EWMS_PILOT_CONTAINER_RUNTIME ?? (taskImage ? 'apptainer' : 'none');
  const apptainerTasks = !!taskImage && runtime === 'apptainer';
  const parts: string[] = [];
  if (pilotInImage || apptainerTasks) parts.push(HAS_APPTAINER);
  if (apptainerTasks) parts.push(HAS_USER_NAMESPACES);
  for (const image of [condor.pilotImage, taskImage, pilotEnv.EWMS_PILOT_INIT_IMAGE]) {
    const cvmfs = cvmfsRequirement(image);
    if (cvmfs && !parts.includes(cvmfs)) parts.push(cvmfs);
  }
  return parts;
}

/**
 * `retry_until` for pilots: no retry after exit 1 (fail-fast after its quarantine, a failed init, a broker
 * failure) or exit 2 (bad configuration). Re-running such a pilot would undo the quarantine (the job would
 * go back to idle and could land on the same broken node) or fail the same way again; other failures
 * (killed by a signal, a node that crashed) are retried up to `max_retries`.
 */
export const RETRY_UNTIL_PILOT_EXIT = '(ExitCode =?= 1) || (ExitCode =?= 2)';

/** The template values for a request (paths already known; `pilotEnv` is what the pilots are given). */
export function templateValues(options: {
  condor: CondorOptions;
  workflowId: string;
  count: number;
  envFile: string;
  wrapper: string;
  logDir: string;
  pilotEnv?: Record<string, string>;
}): TemplateValues {
  const { condor } = options;
  const universe = condor.universe ?? 'vanilla';
  const pilotCommand = (condor.pilotCommand ?? 'ewms-pilot').trim().split(/\s+/);
  if (!Number.isInteger(options.count) || options.count < 1) throw new CoordinatorConfigError(`cannot submit ${options.count} pilots`, 'submit at least 1');
  if (universe === 'container' && !condor.pilotImage) {
    throw new CoordinatorConfigError('the container universe needs a pilot image', 'set condor.pilotImage (--condor-pilot-image), e.g. /cvmfs/…/ewms-pilot:1.0 or docker://ghcr.io/org/ewms-pilot:1.0');
  }
  if (universe === 'container' && condor.pilotCommand !== undefined) {
    throw new CoordinatorConfigError(
      'condor.pilotCommand does not apply to the container universe: the job runs the pilot image\'s entrypoint, which loads the env file and starts the pilot (as the EWMS TMS submits it)',
      'drop --condor-pilot-command, or use the vanilla universe (with +SingularityImage) to run a command of your own',
    );
  }
  const maxRuntime = condor.maxRuntimeSeconds;
  if (maxRuntime !== undefined && (!Number.isInteger(maxRuntime) || maxRuntime < 1)) {
    throw new CoordinatorConfigError(`a wall-time limit of ${maxRuntime} s is not a whole number of seconds >= 1`, 'set condor.maxRuntimeSeconds (--condor-max-runtime) to e.g. 7200');
  }
  const extra = Object.entries(condor.extra ?? {}).map(([k, v]) => {
    if (!/^([A-Za-z_][A-Za-z0-9_.]*|\+[A-Za-z_][A-Za-z0-9_]*|MY\.[A-Za-z_][A-Za-z0-9_]*)$/.test(k) || /^queue$/i.test(k)) {
      throw new CoordinatorConfigError(`'${k}' is not a submit command this template can add`, 'use a submit command name, +Attr or MY.Attr (queue is set by the coordinator)');
    }
    if (/[\n\r]/.test(v)) throw new CoordinatorConfigError(`the value of ${k} spans lines`, 'one line per submit command');
    return `${k} = ${v}`;
  });
  const defaults = condor.defaultRequirements === false ? [] : defaultRequirements(condor, options.pilotEnv ?? {});
  const own = condor.requirements?.trim();
  const requirements = [...defaults, ...(own ? [defaults.length > 0 ? `(${own})` : own] : [])].join(' && ');
  return {
    WRAPPER: universe === 'vanilla' ? options.wrapper : undefined,
    PILOT_ARGUMENTS: universe === 'vanilla' ? condorArguments(pilotCommand) : undefined,
    PILOT_IMAGE: universe === 'container' ? condor.pilotImage : undefined,
    // A path image (a CVMFS sandbox, a .sif on shared storage) is read where it is, never shipped per job.
    SHOULD_TRANSFER_CONTAINER: universe === 'container' && condor.pilotImage && !IMAGE_URI.test(condor.pilotImage) ? 'no' : undefined,
    SINGULARITY_IMAGE: universe === 'vanilla' && condor.pilotImage ? classAdString(condor.pilotImage) : undefined,
    ENV_FILE: options.envFile,
    TRANSFER_INPUT_FILES: options.envFile,
    CPUS: String(condor.cpus ?? 1),
    MEMORY: condorSize(condor.memory ?? '1 GB', 'request_memory'),
    DISK: condorSize(condor.disk ?? '1 GB', 'request_disk'),
    REQUIREMENTS: requirements || undefined,
    MAX_RETRIES: String(condor.maxRetries ?? 3),
    RETRY_UNTIL: RETRY_UNTIL_PILOT_EXIT,
    ORIGINAL_TIME: maxRuntime !== undefined ? String(maxRuntime) : undefined,
    INFO_ATTRS: CHIRP_ATTRIBUTES.join(', '),
    WORKFLOW_ID: classAdString(options.workflowId),
    // Plain text (the workflow id is [A-Za-z0-9_-]): condor_submit takes batch_name verbatim.
    BATCH_NAME: `ewms-${options.workflowId}`,
    LOG_DIR: options.logDir,
    EXTRA: extra.length > 0 ? extra.join('\n') : undefined,
    COUNT: String(options.count),
  };
}
