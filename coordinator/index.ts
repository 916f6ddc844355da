/// <reference types="node" preserve="true" />
// The published declarations use Node's types (Buffer, NodeJS.ProcessEnv): a user's project gets them from the
// `@types/node` this package depends on, also with `"types": []` in its tsconfig.
/**
 * The coordinator: what an event generator imports to feed a workflow's queues, drain its results, inspect
 * its dead letters and start the pilots that do the work (locally, on HTCondor, or through an EWMS WMS).
 *
 * ```ts
 * import { Workflow } from 'ewms-pilot/coordinator';
 * const wf = await Workflow.create({ broker: { address: 'nats://localhost:4222' } });
 * const ids = await wf.publish(events);
 * const pilots = await wf.startPilots({ backend: 'local', count: 4, task: { args: 'my-task {{INFILE}} {{OUTFILE}}' } });
 * for await (const o of wf.collect({ expected: ids })) console.log(o.kind, o.inputEventId);
 * await pilots.remove();
 * await wf.close({ deleteQueues: true });
 * ```
 */
export * from './types.js';
export * from './errors.js';
export { Workflow, workflowQueues } from './workflow.js';
export { checkGraph, parseWorkflowDescription, readWorkflowFile, workflowFileFormat, type WorkflowFileFormat, WorkflowGraphError, type CheckedGraph, type GraphProblem } from './graph.js';
export { WorkflowPilots } from './backends/workflow-pilots.js';
export { LocalPilotBudget } from './backends/local-budget.js';
export { PROVENANCE_HEADERS } from '../common/provenance.js';
export { DeadLetters, type DeadLetter, type DeadLetterReadOptions, type RequeueOptions } from './dead-letters.js';
export { buildPilotEnv, pilotBrokerAddress, type PilotEnvironment, type WorkflowTarget } from './pilot-env.js';
export { LocalPilotCluster } from './backends/local.js';
export { targetPilots } from './autoscale.js';
export { encodeEvent, decodeEvent } from './codec.js';
export { EwmsError } from '../common/errors.js';
export { runWorkflow, type RunWorkflowOptions, type WorkflowReport } from './run-workflow.js';
export { ProgressDisplay, progressLine, type ProgressOptions, type ProgressSnapshot } from './progress.js';
export { readEvents, outcomeLine } from './event-files.js';
export { CondorPilotCluster, attachCondorCluster, prepareSubmission, type CondorSubmission } from './backends/condor.js';
export { shellQuote } from './condor/submit-description.js';
export { EwmsPilotCluster, WmsClient, attachEwmsWorkflow, provisionEwmsWorkflow, workflowRequestBody, type MqProfile, type WorkflowRequestBody } from './backends/ewms.js';
export { pilotBackend, type PilotBackend, type Provisioned, type ProvisionRequest } from './backends/index.js';
export { singleTaskPlan, QUEUE_ALIASES, type PlannedTask, type PlannedWorkflow } from './backends/plan.js';
export { wmsAuthFromEnv, wmsTokenSource, type WmsTokenSource, type WmsAuthOptions, type ClientCredentials } from './wms-auth.js';
