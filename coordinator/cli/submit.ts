/**
 * `ewms submit`: start pilots (condor or ewms) that outlive the command, and print the cluster id.
 */
import type { Logger } from 'pino';
import { CoordinatorConfigError } from '../errors.js';
import { openWorkflow } from './open.js';
import { pilotOptions, pilotRequestFromArgs } from './pilot-options.js';
import { brokerOptions, EXIT, type Args, type EwmsCommand } from './shared.js';

export async function cmdSubmit(args: Args, logger: Logger): Promise<number> {
  const request = pilotRequestFromArgs(args);
  if (request.backend === 'local') {
    throw new CoordinatorConfigError('submit starts pilots that outlive this command: use --backend condor or ewms', 'for local pilots use ewms run, or the library (Workflow.startPilots)');
  }
  // ewms: the WMS makes the queues and starts the pilots; local/condor: declared on our broker, pilots started here.
  const wf = await openWorkflow(args, logger, request);
  try {
    const cluster = await wf.startPilots(request);
    process.stdout.write(`${JSON.stringify({ workflow: wf.id, backend: cluster.backend, cluster: cluster.id, queues: wf.queues })}\n`);
    return EXIT.ok;
  } finally {
    await wf.close();
  }
}

export const submitCommand: EwmsCommand = {
  name: 'submit',
  describe: 'Start pilots for a workflow (condor or ewms) and print the cluster id',
  options: (y) => pilotOptions(brokerOptions(y, true)),
  run: cmdSubmit,
};
