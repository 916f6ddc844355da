/**
 * The demo's task command line, run the way a pilot runs it (split into words, placeholders substituted):
 * the compiled task gives a pixel result, and a task.js caught half-written while dist/ is rebuilt fails
 * the attempt instead of exiting 0 without an outfile — which the pilot takes for a success with no
 * output, leaving the scan to wait for a result that never comes.
 */
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, describe, expect, test } from 'vitest';
import { taskCommandLine } from '../../examples/skyscan/task-command.js';
import { simulateEvent } from '../../examples/skyscan/likelihood.js';
import { splitShellWords } from '../../pilot/shell-words.js';
import { substitutePlaceholders } from '../../pilot/runtime/placeholders.js';

const compiledTask = join(import.meta.dirname, '..', '..', 'dist', 'examples', 'skyscan', 'task.js');
const scratch = mkdtempSync(join(tmpdir(), 'skyscan-task-command-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

let runs = 0;
/** Run `taskCommandLine(taskModule)` on one pixel as a pilot would; exit code, stderr and the outfile. */
async function runLikeAPilot(taskModule: string) {
  const dir = join(scratch, `run-${++runs}`);
  const infile = join(dir, 'infile.json');
  const outfile = join(dir, 'outfile.json');
  mkdirSync(dir, { recursive: true });
  writeFileSync(infile, JSON.stringify({ pixel: { nside: 4, pix: 7 }, event: simulateEvent(1).event }));
  const [file, ...args] = substitutePlaceholders(splitShellWords(taskCommandLine(taskModule)), { infile, outfile, dataHub: dir });
  const result = await execa(file!, args, { reject: false, cwd: dir });
  return { exitCode: result.exitCode, stderr: String(result.stderr), outfile: existsSync(outfile) ? readFileSync(outfile, 'utf8') : undefined };
}

/**
 * The compiled skyscan example copied into the scratch directory (with the common modules it imports), so a
 * damaged task.js can sit beside its real imports without touching dist/.
 */
const copiedTaskDir = join(scratch, 'dist', 'examples', 'skyscan');
cpSync(join(compiledTask, '..'), copiedTaskDir, { recursive: true });
cpSync(join(compiledTask, '..', '..', '..', 'common'), join(scratch, 'dist', 'common'), { recursive: true });

/** A task module beside the copied imports, with `content` as its code. */
function taskCopy(name: string, content: string): string {
  const path = join(copiedTaskDir, `${name}.js`);
  writeFileSync(path, content);
  return path;
}

describe('the demo task command line', () => {
  test('runs the compiled task: exit 0 and the pixel result in the outfile', async () => {
    const run = await runLikeAPilot(compiledTask);
    expect(run.stderr).toBe('');
    expect(run.exitCode).toBe(0);
    const result = JSON.parse(run.outfile ?? 'null') as { nside: number; pix: number; llh: number };
    expect(result).toMatchObject({ nside: 4, pix: 7 });
    expect(Number.isFinite(result.llh)).toBe(true);
  });

  test('an empty task.js (truncated by a rebuild) fails the attempt instead of succeeding without output', async () => {
    const run = await runLikeAPilot(taskCopy('empty', ''));
    expect(run.exitCode).not.toBe(0);
    expect(run.outfile).toBeUndefined();
    expect(run.stderr).toContain('has no runTask export');
  });

  test('a task.js cut short in the middle fails the attempt', async () => {
    const code = readFileSync(compiledTask, 'utf8');
    const run = await runLikeAPilot(taskCopy('half', code.slice(0, Math.floor(code.length / 2))));
    expect(run.exitCode).not.toBe(0);
    expect(run.outfile).toBeUndefined();
  });

  test('a task.js whose code is all there but whose last lines (the export) are missing fails the attempt', async () => {
    // Parsable, does nothing when run as a script: exactly what `node task.js` would have taken for a success.
    const code = readFileSync(compiledTask, 'utf8');
    const upToRun = code.slice(0, code.indexOf('export function runTask'));
    const run = await runLikeAPilot(taskCopy('cut', upToRun));
    expect(run.exitCode).not.toBe(0);
    expect(run.outfile).toBeUndefined();
  });
});
