/**
 * The pilots' settings, checked by `ewms` before anything changes, with the pilot's own rules: the very
 * environment a pilot would get (`buildPilotEnv`) goes through the pilot's `loadConfig`, and each problem is
 * reported under the `ewms` flag that set it. `--pilot-env` names are checked against the pilot's table.
 *
 * Local runs also get their workstation defaults here, and relative paths in the task command are taken from
 * where `ewms` runs (a local pilot runs its tasks in a scratch directory of its own).
 */
import { existsSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import { ConfigError, loadConfig } from '../../pilot/config.js';
import { closestVariable, DEPRECATED_ALIASES, VARIABLES } from '../../pilot/config-table.js';
import { ShellWordsError, splitShellWords } from '../../pilot/shell-words.js';
import { shellQuote } from '../condor/submit-description.js';
import { buildPilotEnv, type WorkflowTarget } from '../pilot-env.js';
import type { PilotRequest } from '../types.js';
import type { InputProblems } from './input.js';

const KNOWN = new Map(VARIABLES.map((v) => [v.name, v]));

/** Pilot variables `ewms` sets from flags of its own: `--pilot-env` may not set them behind those flags' backs. */
const SET_BY_FLAG: Readonly<Record<string, string>> = {
  EWMS_PILOT_TASK_ARGS: '--task-args',
  EWMS_PILOT_TASK_IMAGE: '--task-image',
  EWMS_PILOT_TASK_ENV_JSON: '--task-env',
  EWMS_PILOT_TASK_TIMEOUT: '--task-timeout',
  EWMS_PILOT_SUBPROC_TIMEOUT: '--task-timeout',
  EWMS_PILOT_INIT_ARGS: '--init-args',
  EWMS_PILOT_INIT_IMAGE: '--init-image',
  EWMS_PILOT_INIT_ENV_JSON: '--init-env',
  EWMS_PILOT_INIT_TIMEOUT: '--init-timeout',
  EWMS_PILOT_QUEUE_INCOMING: '--workflow',
  EWMS_PILOT_QUEUE_OUTGOING: '--workflow',
  EWMS_PILOT_QUEUE_DEAD_LETTER: '--workflow',
  EWMS_PILOT_QUEUE_MONITOR: '--workflow',
  EWMS_PILOT_QUEUE_INCOMING_BROKER_TYPE: '--pilot-broker',
  EWMS_PILOT_QUEUE_OUTGOING_BROKER_TYPE: '--pilot-broker',
  EWMS_PILOT_QUEUE_INCOMING_BROKER_ADDRESS: '--pilot-broker',
  EWMS_PILOT_QUEUE_OUTGOING_BROKER_ADDRESS: '--pilot-broker',
  EWMS_PILOT_QUEUE_INCOMING_BROKER_MANAGEMENT_URL: '--broker-management-url',
  EWMS_PILOT_QUEUE_OUTGOING_BROKER_MANAGEMENT_URL: '--broker-management-url',
  EWMS_PILOT_MAX_DELIVERIES: '--max-deliveries',
  EWMS_PILOT_WIRE_FORMAT: '--wire-format',
};

/** Where a pilot variable came from on the `ewms` command line, for messages. */
function origin(name: string, fromPilotEnv: ReadonlySet<string>): string {
  if (fromPilotEnv.has(name)) return `--pilot-env ${name}`;
  if (name.endsWith('_AUTH_TOKEN')) return `EWMS_BROKER_TOKEN (the pilots' ${name})`;
  const flag = SET_BY_FLAG[name];
  return flag ? `${flag} (${name})` : name;
}

/** Check `--pilot-env` names; returns the settings that may be passed on. */
function checkPilotEnvNames(p: InputProblems, pilotEnv: Readonly<Record<string, string>>): Record<string, string> {
  const kept: Record<string, string> = {};
  for (const [name, value] of Object.entries(pilotEnv)) {
    const variable = KNOWN.get(name);
    const flag = SET_BY_FLAG[name] ?? (DEPRECATED_ALIASES[name] ? SET_BY_FLAG[DEPRECATED_ALIASES[name]] : undefined);
    if (flag) {
      p.add(`--pilot-env ${name}`, `is set by ewms from ${flag}`, `give ${flag} instead`);
    } else if (name.endsWith('_AUTH_TOKEN') || variable?.type === 'secret') {
      p.add(`--pilot-env ${name}`, 'is a secret, and a command line is visible to every user of the machine (ps)', "set EWMS_BROKER_TOKEN in ewms's environment: the pilots get it from there");
    } else if (!variable) {
      const meant = closestVariable(name);
      p.add(`--pilot-env ${name}`, 'is not a setting the pilot knows', meant ? `did you mean ${meant}? (ewms-pilot --help lists them all)` : 'ewms-pilot --help lists every EWMS_PILOT_* setting');
    } else {
      kept[name] = value;
    }
  }
  return kept;
}

/** What the pilot check found besides problems. */
export interface PilotCheck {
  /** The request to start, with the local defaults applied and relative task paths resolved. */
  request: PilotRequest;
  /** Things to say before starting: warnings from the pilot's rules, paths resolved, defaults chosen. */
  notes: string[];
}

/**
 * Check the pilots `request` would start on `target`, with the pilot's own configuration rules; problems go to
 * `p`. `cwd` is where `ewms` runs (local runs resolve relative task paths against it); `hostPath` is the
 * `PATH` host tasks run with (local pilots: ours), so a missing program is found now.
 */
export function checkPilots(p: InputProblems, request: PilotRequest, target: WorkflowTarget, options: { cwd: string; workDir: string }): PilotCheck {
  const notes: string[] = [];
  const pilotEnv = checkPilotEnvNames(p, request.pilotEnv ?? {});
  let checked: PilotRequest = { ...request, pilotEnv };
  if (request.backend === 'local' && !request.task.image) {
    const task = resolveRelativePaths(p, '--task-args', request.task.args, options.cwd, notes);
    const init = request.init && resolveRelativePaths(p, '--init-args', request.init.args, options.cwd, notes);
    checked = { ...checked, task: { ...checked.task, args: task }, ...(checked.init && init !== undefined ? { init: { ...checked.init, args: init } } : {}) };
  }
  // The WMS builds the pilots' environment itself (and checks what may go in it): nothing to run through here.
  if (request.backend === 'ewms') return { request: checked, notes };
  // Without a task (already reported) the other settings are still checked, with a stand-in command.
  const noTask = !request.task.args.trim();
  const fromPilotEnv = new Set(Object.keys(pilotEnv));
  let env: Record<string, string>;
  try {
    env = buildPilotEnv(target, noTask ? { ...checked, task: { ...checked.task, args: 'true {{INFILE}} {{OUTFILE}}' } } : checked).env;
  } catch (err) {
    p.absorb('--broker', () => {
      throw err;
    });
    return { request: checked, notes };
  }
  try {
    // Local pilots run here, with our PATH: their programs are looked up now. Condor pilots run elsewhere.
    const config = loadConfig(env, {}, join(options.workDir, 'pilot-0'), request.backend === 'local' ? { hostCommands: { path: process.env.PATH } } : {});
    if (!noTask) for (const warning of config.warnings) notes.push(`warning: ${warning}`);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    for (const problem of err.problems) p.add(origin(problem.name, fromPilotEnv), problem.problem, problem.fix);
  }
  return { request: checked, notes };
}

/** A word that needs no quoting for the pilot's shell-word splitter. */
const PLAIN_WORD = /^[A-Za-z0-9_@%+=:,./{}-]+$/;

/**
 * The command line with each relative path that exists under `cwd` made absolute: a local pilot runs its
 * tasks in its own scratch directory, where `pixel.py` would not be found. Only words that name an existing
 * file or directory here change (not options, not placeholders, not a program looked up on PATH); quoting
 * inside a word (`sh -c '…'`) is left alone.
 */
export function resolveRelativePaths(p: InputProblems, flag: string, line: string, cwd: string, notes: string[]): string {
  let words: string[];
  try {
    words = splitShellWords(line);
  } catch (err) {
    if (err instanceof ShellWordsError) return p.add(flag, err.message, err.hint) ?? line;
    throw err;
  }
  let changed = false;
  const out = words.map((word, index) => {
    const program = index === 0;
    const candidate = word !== '' && !isAbsolute(word) && !word.startsWith('-') && !word.includes('{{') && (!program || word.includes('/'));
    if (!candidate || !existsSync(resolve(cwd, word))) return word;
    changed = true;
    const absolute = resolve(cwd, word);
    notes.push(`${flag}: '${word}' is taken from ${cwd}: ${absolute}`);
    return absolute;
  });
  return changed ? out.map((w) => (PLAIN_WORD.test(w) ? w : shellQuote(w))).join(' ') : line;
}
