/**
 * `ewms status` and `ewms rm`: a pilot cluster started earlier (condor cluster, EWMS workflow).
 */
import { CoordinatorConfigError } from '../errors.js';
import type { PilotCluster } from '../types.js';
import type { Argv } from 'yargs';
import { condorFromArgs, ewmsFromArgs, pilotOptions } from './pilot-options.js';
import { EPILOG, EXIT, type Args, type EwmsCommand } from './shared.js';

async function attachCluster(args: Args): Promise<PilotCluster> {
  const backend = args.backend as string;
  const id = args.cluster as string;
  if (backend === 'condor') {
    const { attachCondorCluster } = await import('../backends/condor.js');
    return attachCondorCluster(id, condorFromArgs(args));
  }
  if (backend === 'ewms') {
    const { attachEwmsWorkflow } = await import('../backends/ewms.js');
    return attachEwmsWorkflow(id, ewmsFromArgs(args));
  }
  throw new CoordinatorConfigError(`status and rm work with --backend condor or ewms, not ${backend}`, 'local pilots belong to the process that started them');
}

export async function cmdStatus(args: Args): Promise<number> {
  const status = await (await attachCluster(args)).status();
  process.stdout.write(`${JSON.stringify(status)}\n`);
  return EXIT.ok;
}

export async function cmdRm(args: Args): Promise<number> {
  // Stopping a workflow by hand is an abort (the WMS records it as ABORTED, not FINISHED).
  await (await attachCluster(args)).remove({ reason: 'aborted' });
  process.stderr.write(`removed ${args.backend} ${args.cluster}\n`);
  return EXIT.ok;
}

function clusterOptions(y: Argv): Argv {
  return pilotOptions(y)
    .epilog(EPILOG)
    .option('cluster', { type: 'string', demandOption: true, describe: 'Condor cluster id or EWMS workflow id' })
    .option('log-level', { type: 'string', default: 'warn', hidden: true });
}

export const statusCommand: EwmsCommand = {
  name: 'status',
  describe: "Show a pilot cluster's status (JSON)",
  options: clusterOptions,
  run: (args) => cmdStatus(args),
};

export const rmCommand: EwmsCommand = {
  name: 'rm',
  describe: 'Stop a pilot cluster',
  options: clusterOptions,
  run: (args) => cmdRm(args),
};
