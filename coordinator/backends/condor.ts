import type { AdapterLogger } from '../../mq-adapters/types.js';
import { PilotBackendError } from '../errors.js';
import type { PilotEnvironment, WorkflowTarget } from '../pilot-env.js';
import type { PilotCluster, PilotRequest } from '../types.js';

/** Submit a condor cluster of pilots. */
export async function submitCondorCluster(_env: PilotEnvironment, _t: WorkflowTarget, _r: PilotRequest, _l?: AdapterLogger): Promise<PilotCluster> {
  throw new PilotBackendError('the condor backend is not available in this build', 'use the local backend');
}
