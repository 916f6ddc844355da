/**
 * Evaluating pixels the EWMS way: one event per pixel on the workflow's incoming queue, pilots run the
 * task on each, and the results come back from the outgoing queue — matched to their pixel by the event id
 * `publish` returned, with a live progress line while they arrive.
 */
import { EwmsError } from '../../common/errors.js';
import type { JsonValue, PilotCluster, Workflow, WorkflowTask } from '../../coordinator/index.js';
import { parentNest } from './healpix.js';
import { ProgressDisplay, type ProgressOptions } from '../../coordinator/progress.js';
import type { NeutrinoEvent } from './likelihood.js';
import { IncompleteScanError, type EvaluatePixels, type PixelRef, type PixelResult, type ScanRound } from './scan.js';
import type { PixelTaskInput, RefineTaskInput } from './task.js';

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

/** The demo's workflow graph: two tasks, each with its own queues (aliases) — the whole-sky pass and the refinement. */
export const SKYSCAN_QUEUES = { sky: 'sky-pixels', coarse: 'coarse-results', refine: 'refine-requests', refined: 'refined-results' } as const;

/**
 * The tasks of the scan, in the WMS request's shape: `coarse` evaluates one whole-sky pixel per event;
 * `refine` takes a coarse pixel's result (one the scan selected around the best fit) and evaluates the
 * finer pixels inside it, one event per coarse pixel.
 */
export function skyscanTasks(commands: { coarse: string; refine: string }): WorkflowTask[] {
  return [
    { task_name: 'coarse', task_args: commands.coarse, input_queue_aliases: [SKYSCAN_QUEUES.sky], output_queue_aliases: [SKYSCAN_QUEUES.coarse] },
    { task_name: 'refine', task_args: commands.refine, input_queue_aliases: [SKYSCAN_QUEUES.refine], output_queue_aliases: [SKYSCAN_QUEUES.refined] },
  ];
}

/**
 * An `EvaluatePixels` that publishes each pixel (with the event) to `workflow` and collects the results.
 * Pilots must already be running on the workflow. A pixel whose event is dead-lettered fails the round
 * with the pilot's reason. On the two-task graph (`skyscanTasks`), the whole-sky round goes to the `coarse`
 * task one pixel per event, and the later rounds to the `refine` task, one event per coarse pixel carrying
 * that pixel's coarse result and the finer pixels inside it.
 */
export function pilotEvaluator(workflow: Workflow, event: NeutrinoEvent, options: PilotEvaluatorOptions = {}): EvaluatePixels {
  const graph = workflow.layout.isGraph;
  const coarseResults = new Map<string, PixelResult>();
  return async (pixels, round) => {
    if (graph && round.kind !== 'sky') return refineRound(workflow, event, pixels, round, coarseResults, options);
    const results = await evaluateRound(workflow, options, round, pixels.length, pixels.map((pixel) => ({ pixel, event })), graph ? SKYSCAN_QUEUES.sky : undefined, (data, i) => [asPixelResult(data, pixels[i] as PixelRef)]);
    if (graph) for (const r of results) coarseResults.set(`${r.nside}/${r.pix}`, r);
    return results;
  };
}

/** A refinement round on the graph: the finer pixels grouped by the coarse pixel they lie in, one event each. */
async function refineRound(workflow: Workflow, event: NeutrinoEvent, pixels: PixelRef[], round: ScanRound, coarse: ReadonlyMap<string, PixelResult>, options: PilotEvaluatorOptions): Promise<PixelResult[]> {
  const byParent = new Map<string, RefineTaskInput>();
  for (const pixel of pixels) {
    const parent = [...coarse.values()].find((c) => pixel.nside >= c.nside && parentNest(pixel.nside, pixel.pix, c.nside) === c.pix);
    if (!parent) throw new IncompleteScanError(`pixel ${pixel.nside}/${pixel.pix} lies in no coarse pixel of the whole-sky pass`, 'refine only inside pixels the coarse pass evaluated');
    const key = `${parent.nside}/${parent.pix}`;
    const request = byParent.get(key) ?? { coarse: parent, pixels: [], event };
    request.pixels.push(pixel);
    byParent.set(key, request);
  }
  const requests = [...byParent.values()];
  const results = await evaluateRound(workflow, options, round, pixels.length, requests, SKYSCAN_QUEUES.refine, (data, i) => {
    const asked = requests[i]!.pixels;
    if (!Array.isArray(data) || data.length !== asked.length) {
      throw new IncompleteScanError(`the refinement of coarse pixel ${requests[i]!.coarse.nside}/${requests[i]!.coarse.pix} returned ${Array.isArray(data) ? data.length : 'no list of'} results for ${asked.length} pixels`, 'the refine task writes one result per pixel it was given, in order');
    }
    return data.map((d, j) => asPixelResult(d, asked[j] as PixelRef));
  });
  return results;
}

/**
 * Publish `inputs` (to `queue`, or the only public input) and collect a result for each, turned into pixel
 * results by `toResults`; a dead letter fails the round with the pilot's reason.
 */
async function evaluateRound(
  workflow: Workflow,
  options: PilotEvaluatorOptions,
  round: ScanRound,
  pixelCount: number,
  inputs: ReadonlyArray<PixelTaskInput | RefineTaskInput>,
  queue: string | undefined,
  toResults: (data: JsonValue, index: number) => PixelResult[],
): Promise<PixelResult[]> {
  options.onRound?.({ ...round, pixels: pixelCount });
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
    const ids = await workflow.publish(inputs as unknown as JsonValue[], queue !== undefined ? { queue } : {});
    expected = ids.length;
    const indexOf = new Map(ids.map((id, i) => [id, i]));
    const results: PixelResult[] = [];
    const failures: string[] = [];
    for await (const outcome of workflow.collect({
      expected: ids,
      idleTimeoutMs: options.idleTimeoutMs ?? 120_000,
      signal,
    })) {
      const index = indexOf.get(outcome.inputEventId) as number;
      const input = inputs[index]!;
      const what = 'pixel' in input ? `pixel ${input.pixel.nside}/${input.pixel.pix}` : `refinement of coarse pixel ${input.coarse.nside}/${input.coarse.pix}`;
      if (outcome.kind === 'result') results.push(...toResults(outcome.data, index));
      else failures.push(`${what}${outcome.task ? ` (task ${outcome.task})` : ''}: ${outcome.reason}`);
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
}
