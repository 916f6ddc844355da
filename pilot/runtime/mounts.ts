/**
 * What a task container may see of the host, checked before any container starts: the same refusals as
 * the Python ewms-pilot (absolute paths only; kernel and boot filesystems never; system directories
 * read-only only; one mount per target; portable env names), so a misconfigured pilot stops at start
 * with a reason instead of handing a task the host's `/dev` or a writable `/usr`.
 */
import { stat, realpath } from 'node:fs/promises';
import { posix } from 'node:path';
import { RuntimeSetupError } from './types.js';

/** One host directory bound into a container. */
export interface BindMount {
  /** Host path (absolute). */
  source: string;
  /** Path inside the container (absolute). */
  target: string;
  readOnly: boolean;
}

/** Never mounted, not even read-only, neither from the host nor over the container's own. */
export const FORBIDDEN_DIRS: readonly string[] = ['/proc', '/dev', '/sys', '/run', '/boot'];

/** Host directories that may only be bound read-only. */
export const HOST_READ_ONLY_DIRS: readonly string[] = [
  '/etc', '/usr', '/lib', '/lib32', '/lib64', '/libx32', '/bin', '/sbin', '/opt', '/root', '/var',
];

/**
 * Scratch locations under a read-only-only directory that a pilot legitimately writes to: `/var/tmp`,
 * and HTCondor's default execute directory (`$(LOCAL_DIR)/execute` = `/var/lib/condor/execute`), which
 * is where a job's scratch directory — and therefore the pilot's data dir — lives on most EPs.
 */
export const HOST_WRITABLE_EXCEPTIONS: readonly string[] = ['/var/tmp', '/var/lib/condor/execute'];

/** Container paths a writable mount must never cover (the image's system tree). */
export const CONTAINER_READ_ONLY_DIRS: readonly string[] = [
  '/etc', '/usr', '/lib', '/lib32', '/lib64', '/libx32', '/bin', '/sbin', '/root', '/var',
];

/** Env names every shell and every runtime accepts (the Python pilot's rule). */
export const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** `--mount` specs are comma-separated fields; these characters in a path would change their meaning. */
const UNSAFE_PATH_CHARS = /[,"\n\r\0]/;

function isUnder(path: string, dir: string): boolean {
  return path === dir || path.startsWith(`${dir}/`);
}

function firstRootContaining(path: string, roots: readonly string[]): string | undefined {
  return roots.find((root) => isUnder(path, root));
}

/**
 * A path as the mount checks compare it: absolute, normalised (`/a/./b/../c` → `/a/c`), no trailing
 * slash, and free of characters that would break a `--mount` spec.
 */
export function checkMountPath(path: string, role: 'source' | 'target'): string {
  if (!posix.isAbsolute(path)) {
    throw new RuntimeSetupError(
      `bind mount ${role} must be an absolute path: ${JSON.stringify(path)}`,
      'Give absolute paths (e.g. in EWMS_PILOT_EXTERNAL_DIRECTORIES and EWMS_PILOT_DATA_DIR_PARENT_PATH_ON_HOST).',
    );
  }
  if (UNSAFE_PATH_CHARS.test(path)) {
    throw new RuntimeSetupError(
      `bind mount ${role} contains a comma, double quote, newline or NUL: ${JSON.stringify(path)}`,
      'Rename the directory: container mount specs are comma-separated and cannot carry these characters safely.',
    );
  }
  const normalised = posix.normalize(path);
  return normalised.length > 1 && normalised.endsWith('/') ? normalised.slice(0, -1) : normalised;
}

/**
 * Check a set of binds and return them with normalised paths. Pure: it looks at the paths only (see
 * `checkHostDirectories` for the checks that need the filesystem). Throws `RuntimeSetupError` on the
 * first refusal.
 */
export function validateBindMounts(binds: readonly BindMount[]): BindMount[] {
  const seenTargets = new Map<string, string>();
  return binds.map((bind) => {
    const source = checkMountPath(bind.source, 'source');
    const target = checkMountPath(bind.target, 'target');
    for (const [path, side] of [[source, 'host'], [target, 'container']] as const) {
      const forbidden = firstRootContaining(path, FORBIDDEN_DIRS);
      if (forbidden !== undefined || path === '/') {
        throw new RuntimeSetupError(
          `refusing to bind ${side} path ${path}: ${path === '/' ? 'the whole filesystem' : `${forbidden} is a kernel or boot filesystem`}`,
          `Bind a directory of your own; ${FORBIDDEN_DIRS.join(' ')} and the root itself are never mounted.`,
        );
      }
    }
    if (!bind.readOnly) {
      const hostRoot = firstRootContaining(source, HOST_READ_ONLY_DIRS);
      if (hostRoot !== undefined && !HOST_WRITABLE_EXCEPTIONS.some((ok) => isUnder(source, ok))) {
        throw new RuntimeSetupError(
          `refusing a writable bind of host path ${source}: ${hostRoot} may only be mounted read-only`,
          `Put the pilot's data dir (EWMS_PILOT_DATA_DIR_PARENT_PATH_ON_HOST) under a scratch directory, e.g. the job's working directory, /tmp or ${HOST_WRITABLE_EXCEPTIONS.join(' or ')}.`,
        );
      }
      const containerRoot = firstRootContaining(target, CONTAINER_READ_ONLY_DIRS);
      if (containerRoot !== undefined) {
        throw new RuntimeSetupError(
          `refusing a writable bind onto container path ${target}: ${containerRoot} belongs to the image`,
          'Mount writable directories outside the image\'s system tree.',
        );
      }
    }
    const previous = seenTargets.get(target);
    if (previous !== undefined) {
      throw new RuntimeSetupError(
        `two bind mounts target the same container path ${target} (from ${previous} and ${source})`,
        'Remove the duplicate from EWMS_PILOT_EXTERNAL_DIRECTORIES, or move it off the pilot\'s own container paths.',
      );
    }
    seenTargets.set(target, source);
    return { source, target, readOnly: bind.readOnly };
  });
}

/**
 * Check that each host directory exists, is a directory, and does not lead into a forbidden directory
 * through a symlink (the Python pilot resolves paths before checking them). Returns the resolved paths
 * in the same order; the caller binds the resolved path so the container sees what was checked.
 */
export async function checkHostDirectories(dirs: readonly string[]): Promise<string[]> {
  const resolved: string[] = [];
  for (const dir of dirs) {
    const path = checkMountPath(dir, 'source');
    let real: string;
    try {
      real = await realpath(path);
      if (!(await stat(real)).isDirectory()) throw Object.assign(new Error('not a directory'), { code: 'ENOTDIR' });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      throw new RuntimeSetupError(
        `directory to bind into the container ${code === 'ENOTDIR' ? 'is not a directory' : 'does not exist or is unreadable'}: ${path}`,
        'Check EWMS_PILOT_EXTERNAL_DIRECTORIES: every entry must be an existing directory on this node.',
        { cause: err },
      );
    }
    const forbidden = firstRootContaining(real, FORBIDDEN_DIRS);
    if (forbidden !== undefined) {
      throw new RuntimeSetupError(
        `refusing to bind ${path}: it resolves to ${real}, under ${forbidden}`,
        `Bind a directory of your own; ${FORBIDDEN_DIRS.join(' ')} are never mounted.`,
      );
    }
    resolved.push(checkMountPath(real, 'source'));
  }
  return resolved;
}

/**
 * Check a task environment: names must be portable (`^[A-Za-z_][A-Za-z0-9_]*$`) and values must be
 * strings without NUL (which no process environment can hold). Returns a copy.
 */
export function validateTaskEnv(env: Readonly<Record<string, string>>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(env)) {
    if (!ENV_NAME.test(name)) {
      throw new RuntimeSetupError(
        `invalid environment variable name for the task: ${JSON.stringify(name)}`,
        'Names in EWMS_PILOT_TASK_ENV_JSON / EWMS_PILOT_INIT_ENV_JSON must match ^[A-Za-z_][A-Za-z0-9_]*$.',
      );
    }
    if (typeof value !== 'string' || value.includes('\0')) {
      throw new RuntimeSetupError(
        `invalid value for task environment variable ${name}: ${typeof value !== 'string' ? `a ${typeof value}, not a string` : 'contains a NUL byte'}`,
        'Give every value in the task env JSON as a string without NUL bytes.',
      );
    }
    out[name] = value;
  }
  return out;
}
