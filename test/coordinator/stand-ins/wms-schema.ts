/**
 * The parts of the EWMS WMS's request schema this coordinator sends, transcribed from the upstream definition
 * (Observation-Management-Service/ewms-workflow-management-service, `wms/schema/openapi.json` at
 * 17d15bf2add14bcd85675be5020f7265c121aafc: `POST /v1/workflows` → requestBody, with the `$ref`s it names
 * inlined — `TaskDirectiveObject.properties.{cluster_locations, task_image, task_args, task_env, init_*}`,
 * `TaskforceObject.properties.{pilot_config, worker_config, n_workers}` — and `FindObject` for the
 * `/v1/query/*` routes). Kept as the upstream states it: required fields, types, enums, patterns and
 * `additionalProperties: false`, so the stand-in refuses what the real WMS refuses.
 *
 * Checks the handler makes beyond the schema (`wms/rest_handlers/workflow_handlers.py`,
 * `task_directive_handlers.py`) are in `WMS_HANDLER_CHECKS` below.
 */

const stringList = (minItems: number) => ({ type: 'array', uniqueItems: true, items: { type: 'string' }, minItems });
const stringEnv = { type: 'object', additionalProperties: { type: 'string' }, minProperties: 0 };

/** `TaskforceObject.properties.pilot_config`. */
const PILOT_CONFIG = {
  type: 'object',
  properties: {
    tag: { type: 'string', pattern: '^([0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3})|(latest)|([a-z0-9._-]+-[a-z0-9]{1,128})$' },
    image_source: { type: 'string', enum: ['cvmfs', 'auto'] },
    environment: {
      type: 'object',
      additionalProperties: { anyOf: [{ type: 'string' }, { type: 'integer' }, { type: 'array', items: { type: 'string' }, minItems: 1 }] },
      minProperties: 0,
    },
    input_files: stringList(0),
  },
  additionalProperties: false,
  required: ['tag', 'image_source', 'environment', 'input_files'],
} as const;

/** `TaskforceObject.properties.worker_config`. */
const WORKER_CONFIG = {
  type: 'object',
  properties: {
    do_transfer_worker_stdouterr: { type: 'boolean' },
    max_worker_runtime: { type: 'integer' },
    n_cores: { type: 'integer' },
    priority: { type: 'integer' },
    worker_disk: { anyOf: [{ type: 'string' }, { type: 'integer' }] },
    worker_memory: { anyOf: [{ type: 'string' }, { type: 'integer' }] },
    condor_requirements: { type: 'string' },
  },
  additionalProperties: false,
  required: ['do_transfer_worker_stdouterr', 'max_worker_runtime', 'n_cores', 'priority', 'worker_disk', 'worker_memory', 'condor_requirements'],
} as const;

/** `POST /v1/workflows` request body. */
export const WORKFLOW_REQUEST_SCHEMA = {
  type: 'object',
  properties: {
    tasks: {
      type: 'array',
      uniqueItems: true,
      items: {
        type: 'object',
        properties: {
          cluster_locations: stringList(1),
          task_image: { type: 'string' },
          task_args: { type: 'string' },
          task_env: stringEnv,
          init_image: { type: 'string' },
          init_args: { type: 'string' },
          init_env: stringEnv,
          input_queue_aliases: stringList(0),
          output_queue_aliases: stringList(0),
          pilot_config: PILOT_CONFIG,
          worker_config: WORKER_CONFIG,
          n_workers: { anyOf: [{ type: 'integer' }, { type: 'null' }] },
        },
        required: ['cluster_locations', 'task_image', 'task_args', 'input_queue_aliases', 'output_queue_aliases', 'worker_config'],
        additionalProperties: false,
      },
      minItems: 1,
    },
    public_queue_aliases: stringList(0),
    priority: { type: 'integer' },
  },
  required: ['tasks', 'public_queue_aliases'],
  additionalProperties: false,
} as const;

/** `FindObject`: the body of `POST /v1/query/{workflows,task-directives,taskforces}`. */
export const FIND_OBJECT_SCHEMA = {
  type: 'object',
  properties: {
    query: { type: 'object' },
    projection: { type: 'array', uniqueItems: true, items: { type: 'string' }, minItems: 1 },
    after: { type: 'string' },
  },
  required: ['query'],
  additionalProperties: false,
} as const;

/**
 * What `WorkflowHandler.post` checks beyond the schema, and what it reads without a default (so that leaving
 * it out fails there, not with a 400): returns the 400 reason, or undefined.
 */
export function WMS_HANDLER_CHECKS(body: { tasks: Array<Record<string, unknown>> }, knownLocations: readonly string[]): string | undefined {
  for (const [i, task] of body.tasks.entries()) {
    const env = ((task.pilot_config ?? {}) as { environment?: Record<string, unknown> }).environment ?? {};
    for (const forbidden of ['EWMS_PILOT_TASK_IMAGE', 'EWMS_PILOT_TASK_ARGS', 'EWMS_PILOT_TASK_ENV_JSON', 'EWMS_PILOT_INIT_IMAGE', 'EWMS_PILOT_INIT_ARGS', 'EWMS_PILOT_INIT_ENV_JSON']) {
      if (forbidden in env) return `tasks[${i}].pilot_config.environment cannot include the attribute '${forbidden}'. Use the top-level equivalent attribute instead.`;
    }
    // `task_input["n_workers"]`: a KeyError (500) upstream when absent; refused here so a test notices.
    if (!('n_workers' in task)) return `tasks[${i}].n_workers is read by the WMS without a default`;
    for (const location of task.cluster_locations as string[]) {
      if (!knownLocations.includes(location)) return `condor location not found: ${location}`;
    }
  }
  return undefined;
}
