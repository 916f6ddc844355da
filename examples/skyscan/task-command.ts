/**
 * The command line the demo's pilots run for each event.
 */
import { fileURLToPath, pathToFileURL } from 'node:url';
import { shellQuote } from '../../coordinator/index.js';

/**
 * The task command line the pilots run: this Node calls the compiled task's `runTask` on the pilot's files.
 *
 * Not `node task.js`: Node runs an empty or truncated-but-parsable file as a script that does nothing and
 * exits 0, and the pilot takes "no outfile" for a success without output — so a task started while dist/
 * is being rewritten would settle its event with no result, and the round would wait for it until the idle
 * timeout. Importing the module and calling its export fails such an attempt instead, and it is retried.
 */
export function taskCommandLine(taskModule: string = fileURLToPath(new URL('./task.js', import.meta.url)), entry: 'runTask' | 'runRefineTask' = 'runTask'): string {
  const url = JSON.stringify(pathToFileURL(taskModule).href);
  const script =
    `const task = await import(${url}); ` +
    `if (typeof task.${entry} !== 'function') throw new Error(${JSON.stringify(`${taskModule} has no ${entry} export: is it being rebuilt?`)}); ` +
    `process.exitCode = task.${entry}(process.argv.slice(1));`;
  return `${shellQuote(process.execPath)} --input-type=module -e ${shellQuote(script)} {{INFILE}} {{OUTFILE}}`;
}
