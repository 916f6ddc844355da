/**
 * The `condor` backend: pilots as one HTCondor job cluster.
 *
 * Submitting writes three files into a work directory — the pilot env file (mode 0600: it holds the broker
 * token), the job wrapper for the vanilla universe (the pilot image's own entrypoint script: it sources the
 * env file and starts the pilot), and the submit description filled from a template — then runs
 * `condor_submit -terse`. Status comes from `condor_q -json` (jobs per JobStatus and
 * per chirped `HTChirpEWMSPilotStatus`); `condor_rm` stops the cluster. Scaling up submits another cluster
 * from the same description; scaling down removes idle jobs first, then the most recent running ones.
 */
import { copyFile, chmod, mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { AdapterLogger } from '../../mq-adapters/types.js';
import { CondorError, CoordinatorConfigError } from '../errors.js';
import { pilotSecrets, type PilotEnvironment, type WorkflowTarget } from '../pilot-env.js';
import { ENTRYPOINT_SCRIPT, fillTemplate, templateValues, TEMPLATE_DIR, WRAPPER_NAME, writeEnvFile } from '../condor/submit-description.js';
import { JOB_STATUS, parseCondorQ, parseTerseSubmit, runCondorTool, type CondorToolOptions } from '../condor/tools.js';
import type { ClusterStatus, CondorOptions, PilotCluster, PilotRequest } from '../types.js';

/** What a submission leaves behind, for inspection and re-submission. */
export interface CondorSubmission {
  /** The filled submit description (with `queue N` last). */
  submitFile: string;
  envFile: string;
  workDir: string;
}

function toolOptions(condor: CondorOptions, secrets: string[] = []): CondorToolOptions {
  const o: CondorToolOptions = { secrets };
  if (condor.binDir) o.binDir = condor.binDir;
  if (condor.schedd) o.schedd = condor.schedd;
  if (condor.pool) o.pool = condor.pool;
  return o;
}

/**
 * The pilots' environment under a job wall-time limit: `EWMS_PILOT_MAX_WORKER_RUNTIME` is the limit unless
 * set lower, so a pilot stops taking events in time to finish inside it. Refused here, at submit, what
 * every pilot would refuse at start.
 */
export function withWallTime(pilot: PilotEnvironment, condor: CondorOptions): PilotEnvironment {
  const limit = condor.maxRuntimeSeconds;
  if (limit === undefined) return pilot;
  const env = { ...pilot.env };
  const own = env.EWMS_PILOT_MAX_WORKER_RUNTIME;
  if (own !== undefined && Number(own) > limit) {
    throw new CoordinatorConfigError(
      `EWMS_PILOT_MAX_WORKER_RUNTIME (${own} s) is longer than the job's wall-time limit (condor.maxRuntimeSeconds, ${limit} s)`,
      'leave EWMS_PILOT_MAX_WORKER_RUNTIME unset (it follows the limit) or set it lower',
    );
  }
  env.EWMS_PILOT_MAX_WORKER_RUNTIME = own ?? String(limit);
  const taskTimeout = env.EWMS_PILOT_TASK_TIMEOUT;
  if (taskTimeout !== undefined && Number(taskTimeout) >= Number(env.EWMS_PILOT_MAX_WORKER_RUNTIME)) {
    throw new CoordinatorConfigError(
      `the task timeout (${taskTimeout} s) leaves no room for one task in the pilots' wall time (${env.EWMS_PILOT_MAX_WORKER_RUNTIME} s)`,
      'raise condor.maxRuntimeSeconds (--condor-max-runtime) or lower the task timeout',
    );
  }
  return { ...pilot, env };
}

/** Write the env file, wrapper and submit description for `count` pilots; returns their paths. */
export async function prepareSubmission(pilot: PilotEnvironment, workflowId: string, condor: CondorOptions, count: number): Promise<CondorSubmission> {
  const timed = withWallTime(pilot, condor);
  const workDir = resolve(condor.workDir ?? (await mkdtemp(join(tmpdir(), 'ewms-condor-'))));
  await mkdir(join(workDir, 'logs'), { recursive: true });
  const envFile = await writeEnvFile(workDir, timed);
  const wrapper = join(workDir, WRAPPER_NAME);
  await copyFile(ENTRYPOINT_SCRIPT, wrapper);
  await chmod(wrapper, 0o755);
  const templatePath = condor.template ?? join(TEMPLATE_DIR, `${condor.universe ?? 'vanilla'}.sub`);
  let template: string;
  try {
    template = await readFile(templatePath, 'utf8');
  } catch (err) {
    throw new CoordinatorConfigError(`cannot read the submit template '${templatePath}'`, 'give condor.template as a readable .sub file, or leave it unset for the built-in ones', { cause: err });
  }
  const text = fillTemplate(template, templateValues({ condor, workflowId, count, envFile, wrapper, logDir: join(workDir, 'logs'), pilotEnv: timed.env }));
  const submitFile = join(workDir, `pilots-${count}.sub`);
  await writeFile(submitFile, text);
  return { submitFile, envFile, workDir };
}

/** Submit pilots for `target` as `request` describes. */
export async function submitCondorCluster(pilot: PilotEnvironment, target: WorkflowTarget, request: PilotRequest, logger?: AdapterLogger): Promise<PilotCluster> {
  const condor = request.condor ?? {};
  const cluster = new CondorPilotCluster(condor, pilotSecrets(pilot), logger, { pilot, workflowId: target.id });
  if (request.count > 0) await cluster.submit(request.count);
  return cluster;
}

/** A cluster submitted earlier (by id), for `status` and `remove`. */
export function attachCondorCluster(clusterId: string, condor: CondorOptions = {}): PilotCluster {
  if (!/^\d+$/.test(clusterId)) throw new CoordinatorConfigError(`'${clusterId}' is not a condor cluster id`, 'give the number condor_submit printed, e.g. 1234');
  const cluster = new CondorPilotCluster(condor, [], undefined, undefined);
  cluster.clusterIds.push(clusterId);
  return cluster;
}

/** Pilots in one or more HTCondor clusters. */
export class CondorPilotCluster implements PilotCluster {
  readonly backend = 'condor';
  /** Every cluster submitted (scaling up adds one). */
  readonly clusterIds: string[] = [];
  /** The last submission's files. */
  lastSubmission: CondorSubmission | undefined;

  constructor(
    private readonly condor: CondorOptions,
    private readonly secrets: string[],
    private readonly logger: AdapterLogger | undefined,
    /** What new submissions are made from (absent for an attached cluster). */
    private readonly source: { pilot: PilotEnvironment; workflowId: string } | undefined,
  ) {}

  get id(): string {
    return this.clusterIds[0] ?? '';
  }

  /** Submit `count` more pilots as a new cluster. */
  async submit(count: number): Promise<string> {
    if (!this.source) throw new CoordinatorConfigError('cannot add pilots to a cluster that was not submitted here', 'submit a new cluster with ewms submit');
    const submission = await prepareSubmission(this.source.pilot, this.source.workflowId, this.condor, count);
    this.lastSubmission = submission;
    const stdout = await runCondorTool('condor_submit', ['-terse', submission.submitFile], toolOptions(this.condor, this.secrets));
    const { clusterId, jobs } = parseTerseSubmit(stdout);
    this.clusterIds.push(clusterId);
    this.logger?.info({ clusterId, jobs, submitFile: submission.submitFile }, 'condor pilots submitted');
    return clusterId;
  }

  private async jobs() {
    if (this.clusterIds.length === 0) return [];
    const stdout = await runCondorTool(
      'condor_q',
      [...this.clusterIds, '-json', '-attributes', 'ClusterId,ProcId,JobStatus,HTChirpEWMSPilotStatus'],
      toolOptions(this.condor, this.secrets),
    );
    return parseCondorQ(stdout);
  }

  async status(): Promise<ClusterStatus> {
    const byState: Record<string, number> = {};
    const byPilotStatus: Record<string, number> = {};
    const jobs = await this.jobs();
    for (const job of jobs) {
      const state = JOB_STATUS[job.JobStatus] ?? `status-${job.JobStatus}`;
      byState[state] = (byState[state] ?? 0) + 1;
      const pilot = job.HTChirpEWMSPilotStatus ?? 'unreported';
      byPilotStatus[pilot] = (byPilotStatus[pilot] ?? 0) + 1;
    }
    return { backend: this.backend, id: this.id, total: jobs.length, byState, byPilotStatus };
  }

  async scale(count: number): Promise<void> {
    if (!Number.isInteger(count) || count < 0) throw new CoordinatorConfigError(`cannot scale to ${count} pilots`, 'give a whole number >= 0');
    const live = (await this.jobs()).filter((j) => j.JobStatus === 1 || j.JobStatus === 2 || j.JobStatus === 7);
    if (count > live.length) {
      await this.submit(count - live.length);
      return;
    }
    if (count === live.length) return;
    // Idle ones cost nothing to remove; among running ones, the newest have done the least.
    const order = [...live].sort((a, b) => (a.JobStatus === 1 ? 0 : 1) - (b.JobStatus === 1 ? 0 : 1) || b.ClusterId - a.ClusterId || b.ProcId - a.ProcId);
    const victims = order.slice(0, live.length - count).map((j) => `${j.ClusterId}.${j.ProcId}`);
    await runCondorTool('condor_rm', victims, toolOptions(this.condor, this.secrets));
    this.logger?.info({ removed: victims.length, to: count }, 'condor pilots scaled down');
  }

  async remove(): Promise<void> {
    if (this.clusterIds.length === 0) return;
    try {
      await runCondorTool('condor_rm', [...this.clusterIds], toolOptions(this.condor, this.secrets));
    } catch (err) {
      // Jobs that already left the queue are not an error when the point is that they are gone.
      if (err instanceof CondorError && /couldn't find|not found|no jobs/i.test(err.stderr)) return;
      throw err;
    }
    this.logger?.info({ clusters: this.clusterIds }, 'condor pilots removed');
  }
}
