/**
 * `ewms status` and `ewms rm`: a pilot cluster started earlier (condor cluster, EWMS workflow). One that has
 * nothing (no job in the schedd's queue, no taskforce at the WMS) is said so, with exit 2.
 */
import type { Argv } from 'yargs';
import type { ClusterStatus, PilotCluster } from '../types.js';
import { UsageError } from './input.js';
import { clusterOptions, condorFromArgs, ewmsFromArgs } from './pilot-options.js';
import { EPILOG, EXIT, type Args, type CommandContext, type EwmsCommand } from './shared.js';

async function attachCluster(args: Args): Promise<PilotCluster> {
  const id = args.cluster as string;
  if (args.backend === 'condor') {
    const { attachCondorCluster } = await import('../backends/condor.js');
    return attachCondorCluster(id, condorFromArgs(args));
  }
  const { attachEwmsWorkflow } = await import('../backends/ewms.js');
  return attachEwmsWorkflow(id, ewmsFromArgs(args));
}

/** The cluster's status; exit 2 when it has nothing to show. */
async function existingStatus(cluster: PilotCluster, args: Args, command: string): Promise<ClusterStatus> {
  const status = await cluster.status();
  if (status.total === 0) {
    const problem =
      args.backend === 'condor'
        ? `has no job in the queue of ${args['condor-schedd'] ? `schedd ${String(args['condor-schedd'])}` : 'the local schedd'} (never submitted there, finished, or removed: condor_history shows finished jobs)`
        : `has no taskforce at the WMS (an unknown workflow id, or none made yet)`;
    throw new UsageError([{ where: `--cluster ${String(args.cluster)}`, problem, fix: 'check the id ewms submit printed (and --condor-schedd / --wms-url)' }], command);
  }
  return status;
}

export async function cmdStatus(args: Args): Promise<number> {
  const status = await existingStatus(await attachCluster(args), args, 'ewms status');
  process.stdout.write(`${JSON.stringify(status)}\n`);
  return EXIT.ok;
}

export async function cmdRm(args: Args, _logger: unknown, context: CommandContext): Promise<number> {
  const cluster = await attachCluster(args);
  await existingStatus(cluster, args, 'ewms rm');
  context.changing();
  // Stopping a workflow by hand is an abort (the WMS records it as ABORTED, not FINISHED).
  await cluster.remove({ reason: 'aborted' });
  process.stderr.write(`removed ${String(args.backend)} ${String(args.cluster)}\n`);
  return EXIT.ok;
}

function options(y: Argv): Argv {
  return clusterOptions(y).epilog(EPILOG).option('log-level', { type: 'string', default: 'warn', hidden: true });
}

export const statusCommand: EwmsCommand = {
  name: 'status',
  describe: "Show a pilot cluster's status (JSON)",
  options,
  run: (args) => cmdStatus(args),
};

export const rmCommand: EwmsCommand = {
  name: 'rm',
  describe: 'Stop a pilot cluster',
  options,
  run: (args, logger, context) => cmdRm(args, logger, context),
};
