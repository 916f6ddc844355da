import type { AdapterLogger } from '../../mq-adapters/types.js';
import { PilotBackendError } from '../errors.js';
import type { WorkflowTarget } from '../pilot-env.js';
import type { PilotCluster, PilotRequest } from '../types.js';

/** Start pilots through an EWMS WMS. */
export async function startEwmsWorkflow(_t: WorkflowTarget, _r: PilotRequest, _l?: AdapterLogger): Promise<PilotCluster> {
  throw new PilotBackendError('the ewms backend is not available in this build', 'use the local backend');
}
