/**
 * `ewms submit`: start pilots (condor or ewms) that outlive the command, and print the cluster id. The pilots'
 * settings are checked with the pilot's own rules before any queue is declared or job submitted.
 */
import type { Logger } from 'pino';
import { Workflow } from '../workflow.js';
import { InputProblems, wholeNumber } from './input.js';
import { readBrokerWorkflow } from './open.js';
import { checkPilots } from './pilot-check.js';
import { pilotOptions, readPilotRequest } from './pilot-options.js';
import { brokerOptions, defined, EXIT, type Args, type CommandContext, type EwmsCommand } from './shared.js';

export async function cmdSubmit(args: Args, logger: Logger, context: CommandContext): Promise<number> {
  const p = new InputProblems('ewms submit');
  let request = readPilotRequest(p, args);
  if (request.backend === 'local') {
    p.add('--backend local', 'submit starts pilots that outlive this command', 'use --backend condor or ewms; for local pilots use ewms run, or the library (Workflow.startPilots)');
  }
  const ewms = request.backend === 'ewms';
  // ewms: the WMS makes the queues and starts the pilots; condor: declared on our broker, pilots submitted here.
  const workflow = ewms ? undefined : readBrokerWorkflow(p, args);
  const maxDeliveries = workflow?.maxDeliveries ?? wholeNumber(p, args, 'max-deliveries', { min: 1, example: '3' });
  if (workflow && request.backend === 'condor') {
    const checked = checkPilots(p, request, { ...workflow, depth: async () => 0 }, { cwd: process.cwd(), workDir: '.' });
    request = checked.request;
    for (const note of checked.notes) process.stderr.write(`ewms: ${note}\n`);
  }
  p.check();
  context.changing();
  const wf = await Workflow.create(
    defined({ broker: workflow?.broker, pilots: request, id: (args.workflow as string | undefined) ?? workflow?.id, maxDeliveries, wireFormat: args['wire-format'] as 'mqclient' | 'raw', logger }),
  );
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
