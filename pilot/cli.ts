#!/usr/bin/env -S node --max-semi-space-size=2 --optimize-for-size
/**
 * `ewms-pilot`: what every HTCondor job runs. Configured by `EWMS_PILOT_*` variables (as the Python
 * ewms-pilot is) or the matching flags; `ewms-pilot --help` lists them all.
 *
 * Exit codes (`EXIT_CODES`, also in `--help`): 0 done (queue drained or wall time reached), 1 task failure
 * (fail-fast) or broker failure, 2 bad configuration or an unusable runtime/image, 128+N stopped by signal N.
 * A broker that cannot be reached at start is exit 1 (HTCondor may simply run the job again).
 */
import { EwmsError } from '../common/errors.js';
import { PACKAGE_VERSION } from '../common/version.js';
import { describeError, redact } from '../common/redact.js';
import { defaultLabel, flagOf, typeLabel, VARIABLES } from './config-table.js';
import { resolveAddress } from '../mq-adapters/address.js';
import { BrokerAuthError } from '../mq-adapters/errors.js';
import { ConfigError, loadConfig, type FlagValues, type PilotConfig } from './config.js';
import { createPilotLogger, type Logger } from './logger.js';
import { runConfiguredPilot } from './assemble.js';
import { RuntimeSetupError } from './runtime/types.js';

const EXIT_CONFIG = 2;

/** What `ewms-pilot --help` says about exit codes (HTCondor's retry policies key on them). */
const EXIT_CODES = `Exit codes:
  0      done: the queue drained (idle timeouts), or the wall-time budget (MAX_WORKER_RUNTIME) ran out
  1      fail-fast after a task error (after QUARANTINE_TIME), a failed init command, or a broker failure
         (unreachable at start, lost for longer than the reconnect window)
  2      bad configuration, or an unusable container runtime or image: nothing was taken from the queue
  128+N  stopped by signal N (143: SIGTERM, e.g. condor_rm or eviction; 130: SIGINT); events in hand were released

Secrets (EWMS_PILOT_QUEUE_*_AUTH_TOKEN, passwords in broker addresses) are read from the environment only:
a command line is visible to every user of the machine.`;

/** This package's version, as the `--version` flag and dead-letter headers report it. */
export const PILOT_VERSION: string = PACKAGE_VERSION;

/**
 * Parse flags; `--help`/`--version` print and exit here. A pilot configured by its environment alone (as
 * HTCondor runs it) has no arguments: the parser, a sizeable module, is then not loaded at all.
 */
async function parseFlags(argv: string[]): Promise<FlagValues> {
  if (argv.length === 0) return {};
  const { default: yargs } = await import('yargs');
  let parser = yargs(argv)
    .scriptName('ewms-pilot')
    .usage(
      'ewms-pilot [options]\n\n' +
        'Pull events from a queue, run a task on each, publish its output, ack the input.\n' +
        'Every option is also an environment variable (--task-args ⇔ EWMS_PILOT_TASK_ARGS); options win.',
    )
    .version(PILOT_VERSION)
    .epilog(EXIT_CODES)
    .help()
    .strict()
    .fail((message: string | undefined, err: Error | undefined) => {
      throw new ConfigError(message ?? err?.message ?? 'bad command line', 'ewms-pilot --help lists every option');
    })
    .wrap(Math.min(120, process.stdout.columns ?? 120));
  for (const variable of VARIABLES) {
    parser = parser.option(flagOf(variable.name), {
      type: variable.type === 'boolean' ? 'boolean' : 'string',
      describe: `${variable.description} [${variable.name}${variable.type === 'secret' ? ', environment only' : ''}; ${typeLabel(variable)}; default ${defaultLabel(variable).replace(/`/g, '')}]`,
      group: variable.origin === 'python' ? 'Python ewms-pilot variables:' : 'This pilot\'s own:',
    });
  }
  const parsed = await parser.parseAsync();
  return parsed as unknown as FlagValues;
}

/** The environment tasks start from: the pilot's, minus its own variables (which carry broker secrets). */
function taskBaseEnv(env: NodeJS.ProcessEnv): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(env)) {
    if (value !== undefined && !key.startsWith('EWMS_PILOT_') && !key.startsWith('_EWMS_PILOT_')) out[key] = value;
  }
  return out;
}

async function main(): Promise<number> {
  let config: PilotConfig;
  try {
    // Host tasks run with this process's PATH and working directory: a missing program is found here, at start.
    config = loadConfig(process.env, await parseFlags(process.argv.slice(2)), process.cwd(), { hostCommands: { path: process.env.PATH } });
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`ewms-pilot: ${err.toString()}\n`);
      return EXIT_CONFIG;
    }
    throw err;
  }
  const logger = createPilotLogger(config.logLevel);
  for (const warning of config.warnings) logger.warn({}, warning);
  try {
    return await start(config, logger);
  } catch (err) {
    const text = err instanceof EwmsError ? `${err.name}: ${err.message}\n  hint: ${hintFor(err, config)}` : describeError(err);
    logger.fatal({ err: redact(text, config.secrets) }, 'the pilot could not start');
    process.stderr.write(`ewms-pilot: ${redact(text, config.secrets)}\n`);
    // An unusable runtime or image is the job's configuration; anything else (a broker down) is not.
    return err instanceof RuntimeSetupError ? EXIT_CONFIG : 1;
  }
}

/** The error's hint, naming the variable of this configuration where the generic hint names a pattern. */
function hintFor(err: EwmsError, config: PilotConfig): string {
  if (!(err instanceof BrokerAuthError)) return err.hint;
  const { incoming, outgoing } = config.settings;
  // The outgoing side takes the incoming token unless it has its own: name the variable the token came from.
  const side = resolveAddress(incoming.broker).display !== err.displayAddress && resolveAddress(outgoing.broker).display === err.displayAddress ? 'OUTGOING' : 'INCOMING';
  return `check EWMS_PILOT_QUEUE_${side}_AUTH_TOKEN (or the user in EWMS_PILOT_QUEUE_${side}_BROKER_ADDRESS) and that the token has not expired`;
}

async function start(config: PilotConfig, logger: Logger): Promise<number> {
  const outcome = await runConfiguredPilot(config, { logger, version: PILOT_VERSION, baseEnv: taskBaseEnv(process.env) });
  process.stderr.write(`ewms-pilot: ${redact(outcome.summary, config.secrets)}\n`);
  return outcome.exitCode;
}

// Exit explicitly: a task's stray handle or a library timer must not keep a finished job in the slot.
// (stdout/stderr are synchronous on Linux pipes and files, so nothing written is lost.)
main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`ewms-pilot: unexpected failure: ${describeError(err)}\n`);
    process.exit(1);
  },
);
