#!/usr/bin/env node
/**
 * `ewms`: run and inspect workflows from the shell.
 *
 *   ewms run --events pixels.jsonl --output results.jsonl --pilots 4 --task-args 'scan {{INFILE}} {{OUTFILE}}'
 *
 * The broker comes from `--broker URL` or `EWMS_BROKER_URL`; its password/token only from `EWMS_BROKER_TOKEN`
 * (or inside `EWMS_BROKER_URL`), never from a flag, so it cannot show up in `ps`. The WMS token likewise only
 * from `EWMS_WMS_TOKEN`. Secrets are never printed. The commands live in `cli/`.
 */
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describeError, redact } from '../common/redact.js';
import { main } from './cli/main.js';
import { EXIT, secrets } from './cli/shared.js';

export { main } from './cli/main.js';
export { pilotRequestFromArgs } from './cli/pilot-options.js';
export { brokerFromArgs, EXIT } from './cli/shared.js';

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
