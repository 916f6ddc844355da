/**
 * Puts a pilot together from its checked configuration: data directory, container runtime and image,
 * init command, task processor, and the lifecycle. The command line and the benchmark both start pilots
 * through here, so they run the same thing.
 */
import type { PilotConfig } from './config.js';
import type { Logger } from './logger.js';
import { runPilot, type PilotOutcome } from './pilot.js';
import { DEFAULT_TASK_NAME } from '../common/heartbeat.js';
import { runInit, TaskProcessor } from './processor.js';
import { withProvenance } from './provenance.js';
import { createRuntime } from './runtime/index.js';
import { createSpawner, type SpawnerChoice } from './spawn/index.js';
import { TaskFiles } from './task-files.js';

/** What the caller provides besides the configuration. */
export interface AssembleOptions {
  logger: Logger;
  version: string;
  /** The environment tasks start from (the pilot's own secrets already removed). */
  baseEnv: Record<string, string>;
  /** How task processes start (default `auto`: the posix_spawn helper when Python can run it). */
  spawner?: SpawnerChoice;
}

/**
 * Prepare everything, then run the pilot to its end. A runtime that cannot be used or an image that
 * cannot be prepared throws (a start-up error: no event is taken on a node that cannot run any).
 */
export async function runConfiguredPilot(config: PilotConfig, options: AssembleOptions): Promise<PilotOutcome> {
  const { logger, version } = options;
  const files = new TaskFiles(config.dataDir, config.infileExt, config.outfileExt);
  await files.prepare();
  const runtime = await createRuntime(config.runtime, {
    externalDirectories: config.externalDirectories,
    debug: config.containerDebug,
    gpus: config.containerGpus,
    workDir: config.imageWorkDir,
    convertImages: config.convertImages,
    ...(config.shmSize ? { shmSize: config.shmSize } : {}),
    killGraceSeconds: config.settings.killGraceSeconds,
    baseEnv: options.baseEnv,
    logger,
  });
  const taskImage = await runtime.prepare(config.task.image);
  const init = config.init;
  const initImage = init && init.image !== config.task.image ? await runtime.prepare(init.image) : taskImage;
  const killGraceSeconds = config.settings.killGraceSeconds;
  // Started once, before init: tasks never fork the pilot, and they end with it however it ends.
  const spawner = await createSpawner(options.spawner ?? 'auto', { killGraceMs: killGraceSeconds * 1000, logger });

  try {
    return await runPilot(config.settings, {
      logger,
      version,
      runInit: init ? (signal) => runInit({ init, runtime, image: initImage, files, killGraceSeconds, keepFiles: config.keepAllTaskFiles, logger, signal, spawner }) : undefined,
      makeProcessor: () =>
        withProvenance(new TaskProcessor({
          task: config.task,
          runtime,
          image: taskImage,
          files,
          wireFormat: config.wireFormat,
          infileExt: config.infileExt,
          outfileExt: config.outfileExt,
          outfileEvents: config.outfileEvents,
          killGraceSeconds,
          okayErrors: config.okayErrors,
          keepAllTaskFiles: config.keepAllTaskFiles,
          dumpTaskOutput: config.dumpTaskOutput,
          version,
          logger,
          spawner,
        }), { taskName: config.settings.taskName ?? DEFAULT_TASK_NAME, version, image: config.task.image, imageDigest: taskImage.digest, wireFormat: config.wireFormat, filterMarkers: config.settings.filterMarkers ?? false }),
    });
  } finally {
    await spawner.close();
  }
}
