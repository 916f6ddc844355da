/**
 * The sky-scan tasks: what a pilot runs once per event. The coarse task (`runTask`) reads one pixel and the
 * neutrino event from the infile (JSON), evaluates the profile likelihood at the pixel's centre, writes the
 * result to the outfile. The refinement task (`runRefineTask`) reads a coarse pixel's result and the finer
 * pixels inside it, and writes the results of all of them.
 *
 *     node task.js <infile.json> <outfile.json>
 *
 * Exit codes: 0 done; 2 unusable input (the pilot retries, then dead-letters the event with the message
 * printed on stderr).
 *
 * The demo's pilots call `runTask` through a `node -e` line instead (see `taskCommandLine`): an empty or
 * half-written task.js (dist/ being rebuilt as a task starts) then fails the attempt, where `node task.js`
 * would exit 0 without an outfile — a success with no result, which the scan would wait for forever.
 */
import { readFileSync, realpathSync, writeFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { EwmsError } from '../../common/errors.js';
import { parentNest, pix2angNest } from './healpix.js';
import { profileLikelihood, validateEvent, type NeutrinoEvent } from './likelihood.js';
import type { PixelRef, PixelResult } from './scan.js';
import { angToVec } from './sky.js';

/** One task's input: which pixel, and the event to evaluate it for. */
export interface PixelTaskInput {
  pixel: PixelRef;
  event: NeutrinoEvent;
}

/**
 * One refinement task's input: a coarse pixel's result (the coarse task's output the scan selected), the
 * finer pixels inside it to evaluate, and the event.
 */
export interface RefineTaskInput {
  coarse: PixelResult;
  pixels: PixelRef[];
  event: NeutrinoEvent;
}

/** Evaluate the finer pixels of one coarse pixel: the pure part of the refinement task. */
export function evaluateRefinement(input: RefineTaskInput): PixelResult[] {
  if (typeof input?.coarse !== 'object' || input.coarse === null || !Array.isArray(input.pixels)) {
    throw new EwmsError('the infile is not a refinement request', 'publish {"coarse": {…pixel result…}, "pixels": [{"nside", "pix"}, …], "event": {...}}');
  }
  const event = validateEvent(input.event);
  return input.pixels.map((pixel) => {
    if (parentNest(pixel.nside, pixel.pix, input.coarse.nside) !== input.coarse.pix) {
      throw new EwmsError(`pixel ${pixel.nside}/${pixel.pix} is not inside coarse pixel ${input.coarse.nside}/${input.coarse.pix}`, 'a refinement request lists the finer pixels of its own coarse pixel');
    }
    return evaluatePixel({ pixel, event });
  });
}

/** Evaluate one pixel: the pure part of the task. */
export function evaluatePixel(input: PixelTaskInput): PixelResult {
  const { nside, pix } = input.pixel;
  const event = validateEvent(input.event);
  const { theta, phi } = pix2angNest(nside, pix);
  return { nside, pix, ...profileLikelihood(event, angToVec(theta, phi)) };
}

/** Run the task on `[infile, outfile]`; returns the exit code. */
export function runTask(argv: readonly string[]): number {
  return runOnFiles(argv, 'task.js', (input: PixelTaskInput) => {
    if (typeof input?.pixel !== 'object' || input.pixel === null) {
      throw new EwmsError('the infile has no pixel', 'publish {"pixel": {"nside": 8, "pix": 0}, "event": {...}}');
    }
    return evaluatePixel(input);
  });
}

/** Run the refinement task on `[infile, outfile]`: every finer pixel of one coarse pixel; returns the exit code. */
export function runRefineTask(argv: readonly string[]): number {
  return runOnFiles(argv, 'runRefineTask', evaluateRefinement);
}

/** Read the JSON infile, write `evaluate`'s answer as the JSON outfile; 0, or 2 with the reason on stderr. */
function runOnFiles<I, O>(argv: readonly string[], name: string, evaluate: (input: I) => O): number {
  const [infile, outfile] = argv;
  if (!infile || !outfile) {
    process.stderr.write(`usage: ${name} <infile.json> <outfile.json>\n`);
    return 2;
  }
  try {
    writeFileSync(outfile, JSON.stringify(evaluate(JSON.parse(readFileSync(infile, 'utf8')) as I)));
    return 0;
  } catch (err) {
    process.stderr.write(`${err instanceof EwmsError ? err.toString() : String(err)}\n`);
    return 2;
  }
}

/** Whether this module is the script Node was started with (not when imported, nor under `node -e`). */
function isMainScript(): boolean {
  try {
    return process.argv[1] !== undefined && import.meta.url === pathToFileURL(realpathSync(process.argv[1])).href;
  } catch {
    return false; // argv[1] is not a file (e.g. `node -e '…' <infile>` with a missing infile)
  }
}

// Run only as a script, so tests can import evaluatePixel.
if (isMainScript()) {
  process.exitCode = runTask(process.argv.slice(2));
}
