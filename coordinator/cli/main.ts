/**
 * The `ewms` command line: every command registered on one yargs parser, run, and its exit code returned.
 * Each command lives in a module of its own (`run.ts`, `dlq.ts`, …) and exports an `EwmsCommand`; what they
 * share is in `shared.ts`.
 */
import type { Logger } from 'pino';
import yargs, { type Argv } from 'yargs';
import { EwmsError } from '../../common/errors.js';
import { PACKAGE_VERSION } from '../../common/version.js';
import { BrokerAuthError } from '../../mq-adapters/errors.js';
import { describeError, redact } from '../../common/redact.js';
import { CoordinatorConfigError } from '../errors.js';
import { rmCommand, statusCommand } from './cluster.js';
import { collectCommand } from './collect.js';
import { deleteCommand } from './delete.js';
import { dlqCommand } from './dlq.js';
import { monitorCommand } from './monitor.js';
import { publishCommand } from './publish.js';
import { runCommand } from './run.js';
import { EPILOG, EXIT, makeLogger, secrets, type Args, type EwmsCommand } from './shared.js';
import { submitCommand } from './submit.js';
import { UsageError } from './input.js';

/** Every command, in the order `ewms --help` lists them. */
export const COMMANDS: readonly EwmsCommand[] = [runCommand, monitorCommand, publishCommand, collectCommand, submitCommand, statusCommand, rmCommand, dlqCommand, deleteCommand];

/** The error's hint, naming what a user of `ewms` sets where the adapters' hint names the pilots' variables. */
function hintFor(err: EwmsError): string {
  if (err instanceof BrokerAuthError) {
    return 'check EWMS_BROKER_TOKEN (or the password in EWMS_BROKER_URL) and the user in the broker URL (--broker / EWMS_BROKER_URL), and that the token has not expired';
  }
  return err.hint;
}

/** An option that takes one value, given twice, is refused rather than silently joined or overridden. */
function refuseRepeated(args: Args, repeatable: ReadonlySet<string>, command: string): void {
  // yargs keeps each option under its own name and a camelCase copy: look at the names as typed.
  const problems = Object.entries(args)
    .filter(([name, value]) => Array.isArray(value) && name !== '_' && !/[A-Z]/.test(name) && !repeatable.has(name))
    .map(([name, value]) => ({ where: `--${name}`, problem: `was given ${(value as unknown[]).length} times`, fix: `give --${name} once` }));
  if (problems.length > 0) throw new UsageError(problems, command);
}

/** Parse `argv` and run the command; resolves with the exit code. */
export async function main(argv: string[]): Promise<number> {
  let code: number = EXIT.ok;
  let logger: Logger | undefined;
  let changed = false;
  const context = { changing: () => void (changed = true) };
  const register = (parser: Argv, command: EwmsCommand): Argv =>
    parser.command(
      command.name,
      command.describe,
      (y) => (command.subcommands ?? []).reduce(register, command.options(y)),
      async (args: Args) => {
        if (!command.run) return;
        refuseRepeated(args, new Set(['pilot-env', 'wms-location', ...(command.repeatable ?? [])]), `ewms ${command.name}`);
        logger = makeLogger(args['log-level'] as string);
        code = await command.run(args, logger, context);
      },
    );
  const parser = COMMANDS.reduce(
    register,
    yargs(argv)
      .scriptName('ewms')
      .usage('ewms <command> [options]\n\nFeed, run and drain event workflows: publish events, start pilots, collect results.')
      .version(PACKAGE_VERSION),
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
    const text = redact(err instanceof EwmsError ? `${err.name}: ${err.message}\n  hint: ${hintFor(err)}` : describeError(err), secrets());
    process.stderr.write(`ewms: ${text}\n`);
    logger?.flush();
    // Exit 2 promises that nothing was changed: once a command has begun changing things, any error is 1.
    return err instanceof CoordinatorConfigError && !changed ? EXIT.usage : EXIT.failure;
  }
}
