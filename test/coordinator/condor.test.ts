/**
 * The condor backend against stand-in condor_submit / condor_q / condor_rm (test/coordinator/stand-ins/):
 * they validate each submit description as HTCondor reads it (the commands of the HTCondor manual or
 * +Attr / MY.Attr, quoting, an executable outside the container universe, `queue` last, the env file
 * private) and record every call. Golden files pin each template's output, and are what the EWMS TMS
 * submits (tms/scalar/starter.py): container universe without an executable, `should_transfer_container
 * = no` for a path image, the nested-Apptainer requirements, `+OriginalTime`.
 */
import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, statSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeEach, describe, expect, test } from 'vitest';
import { buildPilotEnv, CondorError, CoordinatorConfigError, type WorkflowTarget } from '../../coordinator/index.js';
import { CondorPilotCluster, attachCondorCluster, prepareSubmission, submitCondorCluster } from '../../coordinator/backends/condor.js';
import { condorArguments, envFileText, fillTemplate, RETRY_UNTIL_PILOT_EXIT, templateValues, TEMPLATE_DIR } from '../../coordinator/condor/submit-description.js';
import { parseTerseSubmit } from '../../coordinator/condor/tools.js';
import type { PilotRequest } from '../../coordinator/types.js';

const STAND_INS = fileURLToPath(new URL('./stand-ins/', import.meta.url));
const GOLDEN = fileURLToPath(new URL('./golden/', import.meta.url));
const CLI = fileURLToPath(new URL('../../dist/coordinator/cli.js', import.meta.url));
const TOKEN = 'tok-Very-Secret-123';

const target: WorkflowTarget = {
  id: 'wf42',
  queues: { incoming: 'ewms-wf42-in', outgoing: 'ewms-wf42-out', deadLetter: 'ewms-wf42-in.dlq' },
  broker: { address: 'amqp://pilot@broker.example.org:5672/science', authToken: TOKEN },
  maxDeliveries: 3,
  wireFormat: 'mqclient',
  depth: async () => 0,
};

function request(extra: Partial<PilotRequest> = {}): PilotRequest {
  return { backend: 'condor', count: 3, task: { args: 'python scan.py {{INFILE}} {{OUTFILE}}', image: '/cvmfs/images/scan.sif', env: { NSIDE: '8' } }, condor: { binDir: STAND_INS }, ...extra };
}

let standinDir: string;
beforeEach(() => {
  standinDir = mkdtempSync(join(tmpdir(), 'ewms-condor-standin-'));
  process.env.EWMS_CONDOR_STANDIN_DIR = standinDir;
  delete process.env.EWMS_CONDOR_STANDIN_REFUSE;
});

function calls(): Array<{ tool: string; args: string[]; submit?: string; errors?: string[]; location: Record<string, string> }> {
  const file = join(standinDir, 'calls.jsonl');
  return existsSync(file) ? readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l)) : [];
}

function setJobs(update: (jobs: Array<Record<string, unknown>>) => void): void {
  const file = join(standinDir, 'queue.json');
  const state = JSON.parse(readFileSync(file, 'utf8')) as { jobs: Array<Record<string, unknown>> };
  update(state.jobs);
  writeFileSync(file, JSON.stringify(state));
}

describe('submit templates (golden files)', () => {
  const fixed = { workflowId: 'wf42', count: 10, envFile: '/ap/ewms/wf42/ewms_htcondor_envfile.sh', wrapper: '/ap/ewms/wf42/ewms-pilot-entrypoint.sh', logDir: '/ap/ewms/wf42/logs' };
  const CVMFS_PILOT = '/cvmfs/icecube.opensciencegrid.org/containers/ewms/observation-management-service/ewms-pilot:1.0';
  const cases = {
    'vanilla.sub': { template: 'vanilla.sub', condor: { pilotImage: '/cvmfs/images/ewms-pilot.sif', cpus: 2, memory: '4 GB', disk: '10GB', requirements: 'HAS_CVMFS_icecube_opensciencegrid_org && has_avx2', maxRuntimeSeconds: 7200, extra: { accounting_group: 'icecube.sim', '+ProjectName': '"skyscan"' } }, pilotEnv: {} },
    'vanilla-minimal.sub': { template: 'vanilla.sub', condor: {}, pilotEnv: {} },
    // As the TMS submits a SkyDriver scan: the CVMFS pilot image, tasks in a CVMFS image under Apptainer.
    'container.sub': {
      template: 'container.sub',
      condor: { universe: 'container' as const, pilotImage: CVMFS_PILOT, memory: '2048', maxRetries: 5, maxRuntimeSeconds: 95487, requirements: 'has_avx && has_avx2' },
      pilotEnv: { EWMS_PILOT_TASK_IMAGE: '/cvmfs/icecube.opensciencegrid.org/containers/realtime/skymap_scanner:4' },
    },
    'container-docker.sub': {
      template: 'container.sub',
      condor: { universe: 'container' as const, pilotImage: 'docker://ghcr.io/org/ewms-pilot:1.0', defaultRequirements: false, requirements: 'OpSysMajorVer >= 9' },
      pilotEnv: { EWMS_PILOT_TASK_IMAGE: 'docker.io/org/task:1', EWMS_PILOT_CONTAINER_RUNTIME: 'podman' },
    },
  };
  for (const [golden, c] of Object.entries(cases)) {
    test(`${golden}, which condor_submit (stand-in) accepts`, () => {
      const text = fillTemplate(readFileSync(join(TEMPLATE_DIR, c.template), 'utf8'), templateValues({ ...fixed, condor: c.condor, pilotEnv: c.pilotEnv }));
      const path = join(GOLDEN, golden);
      if (process.env.EWMS_UPDATE_GOLDEN === '1' || !existsSync(path)) writeFileSync(path, text);
      expect(text).toBe(readFileSync(path, 'utf8'));
      expect(text.trim().split('\n').at(-1)).toBe('queue 10');
      expect(text).not.toContain('{{');
      execFileSync(join(STAND_INS, 'condor_submit'), ['-terse', path], { env: { ...process.env, EWMS_CONDOR_STANDIN_SKIP_FILES: '1' } });
      expect(calls().at(-1)?.errors).toEqual([]);
    });
  }

  test('the container universe is submitted as the TMS does: no executable, a path image not transferred, nested-Apptainer requirements, +OriginalTime', () => {
    const text = readFileSync(join(GOLDEN, 'container.sub'), 'utf8');
    expect(text).not.toMatch(/^(executable|arguments|transfer_executable)\s*=/m);
    expect(text).toMatch(/^should_transfer_container\s+= no$/m);
    expect(text).toMatch(
      /^requirements\s+= ifthenelse\(!isUndefined\(HAS_SINGULARITY\), HAS_SINGULARITY, HasSingularity\) && HasUserNamespaces =\?= true && HAS_CVMFS_icecube_opensciencegrid_org && \(has_avx && has_avx2\)$/m,
    );
    expect(text).toMatch(/^\+OriginalTime\s+= 95487$/m);
    expect(text).toMatch(/^\+WantIOProxy\s+= true$/m);
    // docker:// images are never transferred by HTCondor: no should_transfer_container line; own requirements only.
    const docker = readFileSync(join(GOLDEN, 'container-docker.sub'), 'utf8');
    expect(docker).not.toMatch(/should_transfer_container/);
    expect(docker).toMatch(/^requirements\s+= OpSysMajorVer >= 9$/m);
  });

  test('default requirements follow what the pilot needs: none on the host; Apptainer, user namespaces and CVMFS for Apptainer tasks', () => {
    const req = (condor: Parameters<typeof templateValues>[0]['condor'], pilotEnv: Record<string, string>) => templateValues({ ...fixed, condor, pilotEnv }).REQUIREMENTS;
    expect(req({}, {})).toBeUndefined();
    expect(req({}, { EWMS_PILOT_TASK_IMAGE: '/data/img' })).toBe('ifthenelse(!isUndefined(HAS_SINGULARITY), HAS_SINGULARITY, HasSingularity) && HasUserNamespaces =?= true');
    expect(req({}, { EWMS_PILOT_TASK_IMAGE: 'img:1', EWMS_PILOT_CONTAINER_RUNTIME: 'docker' })).toBeUndefined();
    expect(req({ pilotImage: '/cvmfs/unpacked.cern.ch/registry.hub.docker.com/org/ewms-pilot:1' }, {})).toBe(
      'ifthenelse(!isUndefined(HAS_SINGULARITY), HAS_SINGULARITY, HasSingularity) && HAS_CVMFS_unpacked_cern_ch',
    );
    expect(req({ requirements: 'Memory > 1000' }, {})).toBe('Memory > 1000');
    expect(req({ defaultRequirements: false }, { EWMS_PILOT_TASK_IMAGE: '/data/img' })).toBeUndefined();
  });

  test('retries: a pilot exiting 1 (fail-fast after its quarantine) or 2 (bad configuration) is not run again; a killed one is', () => {
    for (const golden of ['vanilla.sub', 'container.sub']) {
      const line = readFileSync(join(GOLDEN, golden), 'utf8').split('\n').find((l) => l.startsWith('retry_until'));
      expect(line?.split('=').slice(1).join('=').trim()).toBe(RETRY_UNTIL_PILOT_EXIT);
    }
    // The expression as the schedd evaluates it on the exited job's ad (=?= is "is identical to", false on UNDEFINED).
    const stopRetrying = (ad: { ExitCode?: number }) =>
      new Function('ExitCode', `return ${RETRY_UNTIL_PILOT_EXIT.replace(/=\?=/g, '===')};`)(ad.ExitCode) as boolean;
    expect(stopRetrying({ ExitCode: 1 })).toBe(true);
    expect(stopRetrying({ ExitCode: 2 })).toBe(true);
    expect(stopRetrying({ ExitCode: 137 })).toBe(false);
    expect(stopRetrying({})).toBe(false); // killed by a signal: no ExitCode
  });

  test('pilotCommand is refused in the container universe, where the image\'s entrypoint starts the pilot', () => {
    expect(() => templateValues({ ...fixed, condor: { universe: 'container', pilotImage: CVMFS_PILOT, pilotCommand: 'node cli.js' } })).toThrow(/does not apply to the container universe/);
  });

  test('quoting: arguments in the new syntax, sizes normalised, bad input refused', () => {
    expect(condorArguments(['ewms-pilot'])).toBe('"ewms-pilot"');
    expect(condorArguments(['sh', '-c', `echo "it's"`])).toBe(`"sh -c 'echo ""it''s""'"`);
    expect(() => templateValues({ ...fixed, condor: { memory: 'lots' } })).toThrow(CoordinatorConfigError);
    expect(() => templateValues({ ...fixed, condor: { universe: 'container' } })).toThrow(/needs a pilot image/);
    expect(() => templateValues({ ...fixed, condor: { extra: { queue: '5' } } })).toThrow(CoordinatorConfigError);
    expect(() => fillTemplate('x = {{NOPE}}\nqueue 1\n', {})).toThrow(/unknown variable/);
    expect(parseTerseSubmit('1234.0 - 1234.9\n')).toEqual({ clusterId: '1234', jobs: 10 });
    expect(() => parseTerseSubmit('Submitting job(s).\n')).toThrow(CondorError);
  });

  test('the env file exports every pilot variable, shell-quoted', () => {
    const env = buildPilotEnv(target, request()).env;
    const text = envFileText(env);
    expect(text).toContain(`export EWMS_PILOT_QUEUE_INCOMING_AUTH_TOKEN='${TOKEN}'`);
    expect(text).toContain(`export EWMS_PILOT_TASK_ARGS='python scan.py {{INFILE}} {{OUTFILE}}'`);
    expect(text).toContain(`export EWMS_PILOT_TASK_ENV_JSON='{"NSIDE":"8"}'`);
    expect(text).toContain(`export EWMS_PILOT_QUEUE_INCOMING_BROKER_ADDRESS='pilot@broker.example.org:5672/science'`);
    expect(text).not.toMatch(/set -x/);
  });
});

describe('condor backend with stand-in tools', () => {
  test('submit → status → scale up/down → remove; the token only in the 0600 env file', async () => {
    const workDir = mkdtempSync(join(tmpdir(), 'ewms-condor-work-'));
    const req = request({ condor: { binDir: STAND_INS, workDir, schedd: 'sub-1.example.org', maxRuntimeSeconds: 3600 } });
    const cluster = (await submitCondorCluster(buildPilotEnv(target, req), target, req)) as CondorPilotCluster;
    expect(cluster.id).toBe('100');
    const [submit] = calls();
    expect(submit?.tool).toBe('condor_submit');
    expect(submit?.errors).toEqual([]);
    expect(submit?.location).toEqual({ name: 'sub-1.example.org' });
    expect(submit?.submit).toMatch(/\nqueue 3\n$/);
    expect(submit?.submit).not.toContain(TOKEN);
    expect(submit?.args.join(' ')).not.toContain(TOKEN);
    const envFile = join(workDir, 'ewms_htcondor_envfile.sh');
    expect(statSync(envFile).mode & 0o777).toBe(0o600);
    expect(readFileSync(envFile, 'utf8')).toContain(TOKEN);
    expect(readFileSync(envFile, 'utf8')).toContain("EWMS_PILOT_HTCHIRP='True'");
    // The wall-time limit reaches both HTCondor and the pilots.
    expect(readFileSync(envFile, 'utf8')).toContain("EWMS_PILOT_MAX_WORKER_RUNTIME='3600'");
    expect(submit?.submit).toMatch(/^\+OriginalTime\s+= 3600$/m);
    // The job's executable is the image entrypoint, copied next to the env file it loads.
    expect(readFileSync(join(workDir, 'ewms-pilot-entrypoint.sh'), 'utf8')).toBe(readFileSync(fileURLToPath(new URL('../../apptainer/ewms-pilot-entrypoint.sh', import.meta.url)), 'utf8'));

    setJobs((jobs) => {
      jobs[0]!.JobStatus = 2;
      jobs[0]!.HTChirpEWMSPilotStatus = 'Tasking';
    });
    expect(await cluster.status()).toEqual({ backend: 'condor', id: '100', total: 3, byState: { running: 1, idle: 2 }, byPilotStatus: { Tasking: 1, unreported: 2 } });

    await cluster.scale(5);
    expect(cluster.clusterIds).toEqual(['100', '101']);
    expect(calls().filter((c) => c.tool === 'condor_submit').at(-1)?.submit).toMatch(/\nqueue 2\n$/);
    await cluster.scale(2);
    // The idle ones go first; the running pilot stays.
    const rm = calls().filter((c) => c.tool === 'condor_rm').at(-1);
    expect(rm?.args).not.toContain('100.0');
    expect((await cluster.status()).byState).toEqual({ running: 1, idle: 1 });

    await cluster.remove();
    expect(calls().at(-1)).toMatchObject({ tool: 'condor_rm', args: ['-name', 'sub-1.example.org', '100', '101'] });
    expect((await cluster.status()).total).toBe(0);
    // Removing again (jobs already gone) is not an error.
    await cluster.remove();
  });

  test('the wall-time limit becomes the pilots\' budget unless they have a shorter one; a budget that cannot fit is refused at submit', async () => {
    const workDir = () => mkdtempSync(join(tmpdir(), 'ewms-condor-work-'));
    const env = (extra: Record<string, string>) => buildPilotEnv(target, request({ pilotEnv: extra }));
    const budget = async (pilotEnv: Record<string, string>) => {
      const dir = workDir();
      await prepareSubmission(env(pilotEnv), 'wf42', { maxRuntimeSeconds: 3600, workDir: dir }, 1);
      return /EWMS_PILOT_MAX_WORKER_RUNTIME='(\d+)'/.exec(readFileSync(join(dir, 'ewms_htcondor_envfile.sh'), 'utf8'))?.[1];
    };
    expect(await budget({})).toBe('3600');
    expect(await budget({ EWMS_PILOT_MAX_WORKER_RUNTIME: '3000' })).toBe('3000');
    await expect(budget({ EWMS_PILOT_MAX_WORKER_RUNTIME: '7200' })).rejects.toThrow(/longer than the job's wall-time limit/);
    await expect(budget({ EWMS_PILOT_TASK_TIMEOUT: '3600' })).rejects.toThrow(/leaves no room for one task/);
    await expect(prepareSubmission(env({}), 'wf42', { maxRuntimeSeconds: 0.5, workDir: workDir() }, 1)).rejects.toThrow(CoordinatorConfigError);
  });

  test('container universe submits with container_image unquoted', async () => {
    const req = request({ condor: { binDir: STAND_INS, universe: 'container', pilotImage: 'docker://ghcr.io/org/ewms-pilot:1.0' } });
    await submitCondorCluster(buildPilotEnv(target, req), target, req);
    const [submit] = calls();
    expect(submit?.errors).toEqual([]);
    expect(submit?.submit).toMatch(/^container_image\s+= docker:\/\/ghcr.io\/org\/ewms-pilot:1.0$/m);
  });

  test('missing tools and refusals become CondorErrors that never carry the token', async () => {
    const empty = mkdtempSync(join(tmpdir(), 'ewms-no-condor-'));
    const req = request({ condor: { binDir: empty } });
    const missing = await submitCondorCluster(buildPilotEnv(target, req), target, req).catch((e: unknown) => e);
    expect(missing).toBeInstanceOf(CondorError);
    expect(String(missing)).toMatch(/condor_submit not found/);

    process.env.EWMS_CONDOR_STANDIN_REFUSE = `schedd rejected credential ${TOKEN}`;
    const req2 = request();
    const refused = await submitCondorCluster(buildPilotEnv(target, req2), target, req2).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(CondorError);
    expect(String(refused)).toMatch(/condor_submit failed \(exit 1\)/);
    expect(String(refused)).not.toContain(TOKEN);
    expect((refused as CondorError).stderr).not.toContain(TOKEN);
  });

  test('attach by id for status and rm; a non-numeric id is refused', async () => {
    expect(() => attachCondorCluster('abc')).toThrow(CoordinatorConfigError);
    const req = request();
    await submitCondorCluster(buildPilotEnv(target, req), target, req);
    const attached = attachCondorCluster('100', { binDir: STAND_INS });
    expect((await attached.status()).total).toBe(3);
    await attached.remove();
    expect((await attached.status()).total).toBe(0);
  });

  test('ewms submit / status / rm from the CLI with the stand-ins on PATH', async () => {
    const env = { PATH: `${STAND_INS}:${process.env.PATH}`, HOME: process.env.HOME, EWMS_CONDOR_STANDIN_DIR: standinDir, EWMS_BROKER_URL: 'nats://127.0.0.1:4222' };
    const run = (args: string[]) =>
      new Promise<{ code: number; stdout: string; stderr: string }>((resolve) =>
        execFile(process.execPath, [CLI, ...args], { env }, (err, stdout, stderr) => resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr })),
      );
    const workflow = `cnd${Date.now().toString(36)}`;
    const submitted = await run(['submit', '--workflow', workflow, '--backend', 'condor', '--pilots', '2', '--task-args', 'echo hi', '--condor-memory', '2 GB']);
    expect(submitted.code, submitted.stderr).toBe(0);
    expect(JSON.parse(submitted.stdout)).toMatchObject({ workflow, backend: 'condor', cluster: '100' });
    expect(calls()[0]?.errors).toEqual([]);
    const status = await run(['status', '--backend', 'condor', '--cluster', '100']);
    expect(JSON.parse(status.stdout)).toMatchObject({ total: 2, byState: { idle: 2 } });
    const rm = await run(['rm', '--backend', 'condor', '--cluster', '100']);
    expect(rm.code, rm.stderr).toBe(0);
    // rm looks first (condor_q), so a cluster that is not there is said so instead of "removed".
    expect(calls().map((c) => c.tool)).toEqual(['condor_submit', 'condor_q', 'condor_q', 'condor_rm']);
    // The workflow's queues were declared on the broker; remove them.
    const { Workflow } = await import('../../coordinator/index.js');
    await (await Workflow.create({ broker: { address: 'nats://127.0.0.1:4222' }, id: workflow })).close({ deleteQueues: true });
    expect(readdirSync(standinDir)).toContain('calls.jsonl');
  });
});

describe('a workflow graph on the condor backend', () => {
  test('one pilot cluster per task, each on its own queues, with the workflow priority as the job priority', async () => {
    const { Workflow } = await import('../../coordinator/index.js');
    const workDir = mkdtempSync(join(tmpdir(), 'ewms-condor-graph-'));
    const wf = await Workflow.create({
      broker: { address: 'amqp://guest@127.0.0.1:5672', authToken: 'guest' },
      id: `cg${Date.now().toString(36)}`,
      tasks: [
        { task_name: 'reco', task_args: 'reco {{INFILE}} {{OUTFILE}}', task_image: '/cvmfs/img/reco.sif', input_queue_aliases: ['in'], output_queue_aliases: ['hits'], n_workers: 2 },
        { task_name: 'fit', task_args: 'fit {{INFILE}} {{OUTFILE}}', task_image: '/cvmfs/img/fit.sif', input_queue_aliases: ['hits'], output_queue_aliases: ['out'], n_workers: 4, pilot_config: { environment: { EWMS_PILOT_MAX_CONCURRENT_TASKS: 2 } } },
      ],
      publicQueues: ['in', 'out'],
      priority: 5,
      pilots: { backend: 'condor', condor: { binDir: STAND_INS, workDir } },
    });
    try {
      const pilots = await wf.startPilots();
      const submits = calls().filter((c) => c.tool === 'condor_submit');
      expect(submits).toHaveLength(2);
      for (const s of submits) {
        expect(s.errors).toEqual([]);
        expect(s.submit).toMatch(/^priority\s+= 5$/m);
      }
      expect(submits[0]?.submit).toMatch(/\nqueue 2\n$/);
      expect(submits[1]?.submit).toMatch(/\nqueue 4\n$/);
      const reco = readFileSync(join(workDir, 'reco', 'ewms_htcondor_envfile.sh'), 'utf8');
      const fit = readFileSync(join(workDir, 'fit', 'ewms_htcondor_envfile.sh'), 'utf8');
      expect(reco).toContain(`EWMS_PILOT_QUEUE_INCOMING='${wf.layout.queue('in')}'`);
      expect(reco).toContain(`EWMS_PILOT_QUEUE_OUTGOING='${wf.layout.queue('hits')}'`);
      expect(reco).toContain("EWMS_PILOT_TASK_NAME='reco'");
      expect(fit).toContain(`EWMS_PILOT_QUEUE_INCOMING='${wf.layout.queue('hits')}'`);
      expect(fit).toContain("EWMS_PILOT_MAX_CONCURRENT_TASKS='2'");
      expect(fit).toContain("EWMS_PILOT_FILTER_MARKERS='true'");
      expect((await pilots.status()).total).toBe(6);
      await pilots.remove();
    } finally {
      await wf.close({ deleteQueues: true });
    }
  });
});
