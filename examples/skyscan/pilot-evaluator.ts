/**
 * Evaluating pixels the EWMS way: one event per pixel on the workflow's incoming queue, pilots run the
 * task on each, and the results come back from the outgoing queue — matched to their pixel by the event id
 * `publish` returned, with a live progress line while they arrive.
 */
import { EwmsError } from '../../common/errors.js';
import type { JsonValue, PilotCluster, Workflow } from '../../coordinator/index.js';
import { ProgressDisplay, type ProgressOptions } from '../../coordinator/progress.js';
import type { NeutrinoEvent } from './likelihood.js';
import { IncompleteScanError, type EvaluatePixels, type PixelRef, type PixelResult, type ScanRound } from './scan.js';
import type { PixelTaskInput } from './task.js';

/** Options for `pilotEvaluator`. */
export interface PilotEvaluatorOptions {
  /** Stops collecting (Ctrl-C). */
  signal?: AbortSignal;
  /** Give up when no result arrives for this long (default 120 s: pilots died, broker gone). */
  idleTimeoutMs?: number;
  /** Progress display settings, or false for none. */
  progress?: ProgressOptions | false;
  /** Told when a round starts publishing. */
  onRound?: (round: ScanRound & { pixels: number }) => void;
  /**
   * The pilots doing the work: when none is left running, the round fails at once with what they said,
   * instead of waiting out `idleTimeoutMs` for results nobody will produce.
   */
  pilots?: { cluster: PilotCluster; logHint: string };
}

/** Every pilot exited while events were still waiting. */
export class PilotsGoneError extends EwmsError {}

/** Abort `controller` as soon as no pilot of `cluster` runs any more; returns the stop function. */
function watchPilots(cluster: PilotCluster, logHint: string, controller: AbortController): () => void {
  const timer = setInterval(() => {
    cluster
      .status()
      .then((status) => {
        if ((status.byState.running ?? 0) > 0 || controller.signal.aborted) return;
        const how = Object.entries(status.byPilotStatus).map(([what, n]) => `${n}× ${what}`).join(', ') || 'no exit status';
        controller.abort(new PilotsGoneError(`all ${status.total} pilot(s) have exited (${how}) while events were still waiting`, logHint));
      })
      .catch(() => undefined);
  }, 1_000);
  timer.unref();
  return () => clearInterval(timer);
}

/** Check that a task's output is a result for the pixel it was asked about. */
function asPixelResult(data: JsonValue, asked: PixelRef): PixelResult {
  const r = data as Partial<PixelResult> | null;
  const numbers = r && [r.llh, r.noiseFraction, r.resolutionScale].every((x) => typeof x === 'number' && Number.isFinite(x));
  if (!r || !numbers || r.nside !== asked.nside || r.pix !== asked.pix) {
    throw new IncompleteScanError(
      `the result for pixel ${asked.nside}/${asked.pix} is not a pixel result: ${JSON.stringify(data).slice(0, 200)}`,
      'the task must write {"nside", "pix", "llh", "noiseFraction", "resolutionScale"} for the pixel it was given',
    );
  }
  return { nside: asked.nside, pix: asked.pix, llh: r.llh as number, noiseFraction: r.noiseFraction as number, resolutionScale: r.resolutionScale as number };
}

/**
 * An `EvaluatePixels` that publishes each pixel (with the event) to `workflow` and collects the results.
 * Pilots must already be running on the workflow. A pixel whose event is dead-lettered fails the round
 * with the pilot's reason.
 */
export function pilotEvaluator(workflow: Workflow, event: NeutrinoEvent, options: PilotEvaluatorOptions = {}): EvaluatePixels {
  return async (pixels, round) => {
    options.onRound?.({ ...round, pixels: pixels.length });
    // The workflow's counters add up every round: this round's progress is what was added since it started.
    const publishedBefore = workflow.publishedCount;
    const resultsBefore = workflow.collectStats.results;
    const deadLettersBefore = workflow.collectStats.deadLetters;
    let expected: number | undefined;
    const display =
      options.progress === false
        ? undefined
        : new ProgressDisplay(
            () => ({
              published: workflow.publishedCount - publishedBefore,
              expected,
              results: workflow.collectStats.results - resultsBefore,
              deadLetters: workflow.collectStats.deadLetters - deadLettersBefore,
            }),
            options.progress ?? {},
          );
    const controller = new AbortController();
    const signal = options.signal ? AbortSignal.any([options.signal, controller.signal]) : controller.signal;
    const stopWatching = options.pilots ? watchPilots(options.pilots.cluster, options.pilots.logHint, controller) : () => undefined;
    try {
      const inputs: PixelTaskInput[] = pixels.map((pixel) => ({ pixel, event }));
      const ids = await workflow.publish(inputs as unknown as JsonValue[]);
      expected = ids.length;
      const pixelOf = new Map(ids.map((id, i) => [id, pixels[i] as PixelRef]));
      const results: PixelResult[] = [];
      const failures: string[] = [];
      for await (const outcome of workflow.collect({
        expected: ids,
        idleTimeoutMs: options.idleTimeoutMs ?? 120_000,
        signal,
      })) {
        const asked = pixelOf.get(outcome.inputEventId) as PixelRef;
        if (outcome.kind === 'result') results.push(asPixelResult(outcome.data, asked));
        else failures.push(`pixel ${asked.nside}/${asked.pix}: ${outcome.reason}`);
      }
      if (failures.length > 0) {
        throw new IncompleteScanError(
          `round ${round.index}: ${failures.length} pixel(s) failed, e.g. ${failures[0]}`,
          'the task failed on those events; the pilots\' logs and the dead-letter details say why',
        );
      }
      return results;
    } catch (err) {
      // The watcher's verdict says more than the abort it caused.
      throw controller.signal.aborted ? controller.signal.reason : err;
    } finally {
      stopWatching();
      display?.stop();
    }
  };
}
