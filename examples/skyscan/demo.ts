/**
 * `npm run demo`: IceCube's realtime sky scan in miniature, run end to end on this machine.
 *
 * A neutrino event is simulated (a fixed seed by default). The workflow is a graph of two tasks, each with
 * local pilots of its own: `coarse` computes the likelihood of the event coming from one whole-sky HEALPix
 * pixel per event; `refine` takes a coarse pixel's result and evaluates the finer pixels inside it. The
 * generator publishes the whole sky to `coarse`, collects, sends the most likely coarse pixels' results to
 * `refine` (growing the refined region until its 90% border is resolved), collects again, and reports the
 * best-fit direction with its 90% region next to the simulated truth. The sky map is written as SVG and JSON.
 */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { EwmsError } from '../../common/errors.js';
import { describeError, redact } from '../../common/redact.js';
import { InputProblems, wholeNumber } from '../../coordinator/cli/input.js';
import { Workflow, type PilotCluster } from '../../coordinator/index.js';
import { resolveAddress } from '../../mq-adapters/index.js';
import { chooseBroker, type ChosenBroker } from './broker.js';
import { nside2npix } from './healpix.js';
import { simulateEvent } from './likelihood.js';
import { pilotEvaluator, SKYSCAN_QUEUES, skyscanTasks } from './pilot-evaluator.js';
import { skyMapDocument, summaryLines } from './report.js';
import { checkScanOptions, runScan } from './scan.js';
import { renderSkyMapSvg } from './svg.js';
import { taskCommandLine } from './task-command.js';

/** Exit codes. */
export const DEMO_EXIT = { ok: 0, failure: 1, usage: 2, interrupted: 130 } as const;

/** Bad command-line values. */
export class DemoUsageError extends EwmsError {}

/** The demo's options, after parsing. */
export interface DemoOptions {
  seed: number;
  nside: number;
  refineNside: number;
  pilots: number;
  tasksPerPilot: number;
  out: string;
  broker: string | undefined;
}

/** Parse the command line (`--help` prints and exits). */
export async function parseDemoArgs(argv: string[]): Promise<DemoOptions> {
  const parsed = await yargs(argv)
    .scriptName('npm run demo --')
    .usage(
      'npm run demo [-- options]\n\n' +
        'A sky scan in miniature: simulate a neutrino event, scan the sky for its direction with one event per\n' +
        'HEALPix pixel, processed by local pilots through a message broker, refine around the best region, and\n' +
        'report the best fit with its 90% region. Writes skymap.svg and skymap.json to --out.',
    )
    .option('seed', { type: 'string', default: '1', describe: 'Seed of the simulated event, a whole number (same seed, same event, same answer)' })
    .option('nside', { type: 'string', default: '8', describe: 'HEALPix nside of the whole-sky pass (12·nside² pixels; a power of two)' })
    .option('refine-nside', { type: 'string', default: '64', describe: 'nside of the refinement around the best coarse pixels, grown until the 90% region\'s border is refined (= nside: none)' })
    .option('pilots', { type: 'string', default: '2', describe: 'Local pilots to start' })
    .option('tasks-per-pilot', { type: 'string', default: '2', describe: 'Tasks each pilot runs at once (EWMS_PILOT_MAX_CONCURRENT_TASKS)' })
    .option('out', { type: 'string', default: './skyscan-output', describe: 'Directory for skymap.svg, skymap.json and the pilots\' logs' })
    .option('broker', {
      type: 'string',
      describe: 'Broker URL (amqp://user:pass@host:5672, nats://host:4222). Default: EWMS_BROKER_URL, else the local RabbitMQ, else the local NATS, else a throwaway nats-server',
    })
    .epilog('Exit codes: 0 done, 1 failed, 2 bad options, 130 interrupted (queues, pilots and any throwaway broker are cleaned up).')
    .version(false)
    .strict()
    .help()
    .wrap(Math.min(110, process.stdout.columns ?? 110))
    .exitProcess(true)
    .fail((msg, err) => {
      throw err ?? new DemoUsageError(msg, 'see npm run demo -- --help');
    })
    .parseAsync();
  // Read from the text typed, so a bad value is named with it ('--seed: 'abc' is not a whole number').
  const problems = new InputProblems('npm run demo --');
  const read = (flag: string, min: number, example: string) => wholeNumber(problems, parsed, flag, { min, example }) ?? min;
  const options: DemoOptions = {
    seed: read('seed', 0, '7'),
    nside: read('nside', 1, '8'),
    refineNside: read('refine-nside', 1, '64'),
    pilots: read('pilots', 1, '2'),
    tasksPerPilot: read('tasks-per-pilot', 1, '2'),
    out: resolve(parsed.out),
    broker: parsed.broker,
  };
  try {
    problems.check();
  } catch (err) {
    throw new DemoUsageError((err as EwmsError).message, (err as EwmsError).hint);
  }
  try {
    checkScanOptions(options);
  } catch (err) {
    throw new DemoUsageError((err as EwmsError).message, (err as EwmsError).hint);
  }
  return options;
}

/** The password or token inside a broker URL, to keep out of anything printed. */
function brokerSecrets(url: string | undefined): string[] {
  if (!url) return [];
  try {
    const password = resolveAddress({ address: url }).password;
    return password ? [password, url] : [url];
  } catch {
    return [url];
  }
}

const say = (line = '') => process.stdout.write(`${line}\n`);

/** Run the demo; resolves with the exit code. */
export async function runDemo(options: DemoOptions): Promise<number> {
  const started = Date.now();
  const { event, truth } = simulateEvent(options.seed);
  say(`Sky scan, seed ${options.seed}: a simulated neutrino event with ${event.hits.length} hits (per-hit resolution ${event.sigmaHitDeg}°).`);

  const controller = new AbortController();
  let interrupted = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (interrupted) process.exit(DEMO_EXIT.interrupted); // second Ctrl-C: leave now
    interrupted = true;
    process.stderr.write(`\n${signal}: stopping the pilots and removing the queues (Ctrl-C again to quit at once)…\n`);
    controller.abort(new EwmsError(`interrupted by ${signal}`, 'run the demo again'));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  let broker: ChosenBroker | undefined;
  let workflow: Workflow | undefined;
  let pilots: PilotCluster | undefined;
  try {
    broker = await chooseBroker({ url: options.broker });
    say(`broker: ${broker.description}`);
    controller.signal.throwIfAborted();
    const pilotDir = join(options.out, 'pilots');
    rmSync(pilotDir, { recursive: true, force: true });
    mkdirSync(pilotDir, { recursive: true });
    // Two tasks, each with pilots of its own: the whole-sky pass, and the refinement reading coarse results.
    const tasks = skyscanTasks({ coarse: taskCommandLine(), refine: taskCommandLine(undefined, 'runRefineTask') }).map((t) => ({
      ...t,
      pilot_config: { environment: { EWMS_PILOT_TASK_TIMEOUT: 60 } },
    }));
    workflow = await Workflow.create({
      broker: { address: broker.url },
      tasks,
      publicQueues: Object.values(SKYSCAN_QUEUES),
      pilots: {
        backend: 'local',
        count: options.pilots,
        pilotEnv: {
          EWMS_PILOT_INFILE_EXT: '.json',
          EWMS_PILOT_OUTFILE_EXT: '.json',
          EWMS_PILOT_MAX_CONCURRENT_TASKS: String(options.tasksPerPilot),
          EWMS_PILOT_PREFETCH: 'auto',
          // The pilots serve both rounds: they must not take the short pause between them for the end.
          EWMS_PILOT_TIMEOUT_QUEUE_WAIT_FOR_FIRST_MESSAGE: '600',
          EWMS_PILOT_TIMEOUT_QUEUE_INCOMING: '600',
          EWMS_PILOT_LOG_LEVEL: 'warn',
          // A failed task is retried by any pilot (and dead-lettered after 3 attempts, which fails the scan
          // with the task's message); one bad attempt must not take a pilot out of a two-pilot demo.
          EWMS_PILOT_STOP_LISTENING_ON_TASK_ERROR: 'false',
        },
        local: { workDir: pilotDir },
      },
    });
    controller.signal.throwIfAborted();
    pilots = await workflow.startPilots();
    say(`workflow ${workflow.id}: tasks coarse and refine, ${options.pilots} local pilot(s) each, ${options.tasksPerPilot} task(s) per pilot; pilot logs in ${pilotDir}/<task>`);

    let roundStarted = Date.now();
    const evaluate = pilotEvaluator(workflow, event, {
      signal: controller.signal,
      progress: { logIntervalMs: 2_000 },
      pilots: { cluster: pilots, logHint: `read the pilots' logs: ${join(pilotDir, '*', 'pilot-*', 'pilot.err')}` },
      onRound: (round) => {
        roundStarted = Date.now();
        const parents = round.pixels / (round.nside / options.nside) ** 2;
        const what =
          round.kind === 'sky'
            ? `the whole sky, ${round.pixels} pixels at nside ${round.nside}`
            : round.kind === 'refine'
              ? `refinement, ${round.pixels} pixels at nside ${round.nside} (children of the ${parents} best coarse pixels)`
              : `growing the refinement, ${round.pixels} pixels at nside ${round.nside} (children of ${parents} coarse pixel${parents === 1 ? '' : 's'} touching the 90% region)`;
        say(`round ${round.index}: ${what}`);
      },
    });
    const timed: typeof evaluate = async (pixels, round) => {
      const results = await evaluate(pixels, round);
      say(`round ${round.index}: ${results.length} results in ${((Date.now() - roundStarted) / 1000).toFixed(1)} s`);
      return results;
    };
    const outcome = await runScan(timed, { nside: options.nside, refineNside: options.refineNside }, truth.direction);

    say();
    for (const line of summaryLines(outcome.summary)) say(line);
    mkdirSync(options.out, { recursive: true });
    const svgPath = join(options.out, 'skymap.svg');
    const jsonPath = join(options.out, 'skymap.json');
    writeFileSync(svgPath, renderSkyMapSvg(outcome.map, outcome.summary, { title: `Sky scan of a simulated neutrino event (seed ${options.seed}, nside ${options.nside} → ${options.refineNside})` }));
    const doc = skyMapDocument(outcome, { seed: options.seed, nside: options.nside, refineNside: options.refineNside, truth });
    writeFileSync(jsonPath, `${JSON.stringify(doc, null, 1)}\n`);
    say();
    say(`wrote ${svgPath} and ${jsonPath}`);
    const total = outcome.rounds.reduce((n, r) => n + r.pixels, 0);
    say(`${total} pixels (${nside2npix(options.nside)} + ${total - nside2npix(options.nside)}) evaluated in ${workflow.publishedCount} events (coarse: one per pixel; refine: one per coarse pixel) in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    return DEMO_EXIT.ok;
  } catch (err) {
    if (interrupted) {
      process.stderr.write('interrupted.\n');
      return DEMO_EXIT.interrupted;
    }
    process.stderr.write(`\n${redact(err instanceof EwmsError ? err.toString() : describeError(err), brokerSecrets(broker?.url ?? options.broker ?? process.env.EWMS_BROKER_URL))}\n`);
    return DEMO_EXIT.failure;
  } finally {
    // Clean up whatever happened: pilots first (they hold the queues), then the queues, then the broker.
    await pilots?.remove().catch(() => undefined);
    await workflow?.close({ deleteQueues: true }).catch(() => undefined);
    await broker?.stop().catch(() => undefined);
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
  }
}

async function main(): Promise<void> {
  let options: DemoOptions;
  try {
    options = await parseDemoArgs(hideBin(process.argv));
  } catch (err) {
    process.stderr.write(`${err instanceof EwmsError ? err.toString() : describeError(err)}\n`);
    process.exitCode = DEMO_EXIT.usage;
    return;
  }
  process.exitCode = await runDemo(options);
}

await main();
