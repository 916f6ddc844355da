/**
 * Filling an HTCondor submit template (`condor-templates/*.sub`) and writing the env file the pilots source.
 *
 * Templates use `{{NAME}}` placeholders. A line whose placeholders are all filled is kept; a line with an
 * unset (or empty) placeholder is dropped whole, which is how optional commands (`requirements`,
 * `periodic_remove`, `+SingularityImage`, …) come and go. Values are rendered here, already quoted the way
 * each submit command wants them; the variables are documented in `condor-templates/README.md`.
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

function findTemplateDir(start: string): string {
  for (let dir = start; ; dir = dirname(dir)) {
    const candidate = join(dir, 'condor-templates');
    if (existsSync(join(candidate, 'vanilla.sub'))) return candidate;
    if (dirname(dir) === dir) return join(start, 'condor-templates');
  }
}
/** The env file's name in the job's sandbox (the name the EWMS TMS uses). */
export const ENV_FILE_NAME = 'ewms_htcondor_envfile.sh';
/** The script that sources the env file and starts the pilot. */
export const WRAPPER_NAME = 'ewms-pilot-wrapper.sh';
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
  'PERIODIC_REMOVE',
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
  const lines = ['#!/bin/sh', '# Pilot environment, sourced by ewms-pilot-wrapper.sh in the job sandbox. Holds secrets: mode 0600.', ''];
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

/** The template values for a request (paths already known). */
export function templateValues(options: {
  condor: CondorOptions;
  workflowId: string;
  count: number;
  envFile: string;
  wrapper: string;
  logDir: string;
}): TemplateValues {
  const { condor } = options;
  const universe = condor.universe ?? 'vanilla';
  const pilotCommand = (condor.pilotCommand ?? 'ewms-pilot').trim().split(/\s+/);
  if (!Number.isInteger(options.count) || options.count < 1) throw new CoordinatorConfigError(`cannot submit ${options.count} pilots`, 'submit at least 1');
  if (universe === 'container' && !condor.pilotImage) {
    throw new CoordinatorConfigError('the container universe needs a pilot image', 'set condor.pilotImage (--condor-pilot-image), e.g. docker://ghcr.io/org/ewms-pilot:1.0');
  }
  const extra = Object.entries(condor.extra ?? {}).map(([k, v]) => {
    if (!/^([A-Za-z_][A-Za-z0-9_.]*|\+[A-Za-z_][A-Za-z0-9_]*|MY\.[A-Za-z_][A-Za-z0-9_]*)$/.test(k) || /^queue$/i.test(k)) {
      throw new CoordinatorConfigError(`'${k}' is not a submit command this template can add`, 'use a submit command name, +Attr or MY.Attr (queue is set by the coordinator)');
    }
    if (/[\n\r]/.test(v)) throw new CoordinatorConfigError(`the value of ${k} spans lines`, 'one line per submit command');
    return `${k} = ${v}`;
  });
  return {
    WRAPPER: options.wrapper,
    PILOT_ARGUMENTS: condorArguments(pilotCommand),
    PILOT_IMAGE: universe === 'container' ? condor.pilotImage : undefined,
    SINGULARITY_IMAGE: universe === 'vanilla' && condor.pilotImage ? classAdString(condor.pilotImage) : undefined,
    ENV_FILE: options.envFile,
    TRANSFER_INPUT_FILES: options.envFile,
    CPUS: String(condor.cpus ?? 1),
    MEMORY: condorSize(condor.memory ?? '1 GB', 'request_memory'),
    DISK: condorSize(condor.disk ?? '1 GB', 'request_disk'),
    REQUIREMENTS: condor.requirements?.trim() || undefined,
    MAX_RETRIES: String(condor.maxRetries ?? 3),
    PERIODIC_REMOVE:
      condor.maxRuntimeSeconds !== undefined ? `(JobStatus == 2) && ((time() - EnteredCurrentStatus) > ${Math.floor(condor.maxRuntimeSeconds)})` : undefined,
    INFO_ATTRS: CHIRP_ATTRIBUTES.join(', '),
    WORKFLOW_ID: classAdString(options.workflowId),
    // Plain text (the workflow id is [A-Za-z0-9_-]): condor_submit takes batch_name verbatim.
    BATCH_NAME: `ewms-${options.workflowId}`,
    LOG_DIR: options.logDir,
    EXTRA: extra.length > 0 ? extra.join('\n') : undefined,
    COUNT: String(options.count),
  };
}
