/**
 * Placeholders in task args and the `EWMS_TASK_*` variables, the same names as the Python ewms-pilot.
 * Every runtime calls these with the paths as the task will see them (host paths for `none`, paths inside
 * the container otherwise), so a task finds its files wherever it runs.
 */

/** Paths as seen by the task. `infile`/`outfile` are absent for the init command. */
export interface VisiblePaths {
  infile?: string;
  outfile?: string;
  dataHub: string;
}

const PLACEHOLDERS: ReadonlyArray<[RegExp, keyof VisiblePaths]> = [
  [/\{\{(?:INFILE|IN_FILE)\}\}/g, 'infile'],
  [/\{\{(?:OUTFILE|OUT_FILE)\}\}/g, 'outfile'],
  [/\{\{(?:DATA_HUB|DATAHUB)\}\}/g, 'dataHub'],
];

/**
 * Replace `{{INFILE}}`/`{{IN_FILE}}`, `{{OUTFILE}}`/`{{OUT_FILE}}` and `{{DATA_HUB}}`/`{{DATAHUB}}` inside
 * each argument. A placeholder whose path is absent (init has no infile) is left as it is.
 * Substitution works on the argument vector, after splitting, so a path can never inject an argument.
 */
export function substitutePlaceholders(args: readonly string[], paths: VisiblePaths): string[] {
  return args.map((arg) => {
    let out = arg;
    for (const [pattern, key] of PLACEHOLDERS) {
      const value = paths[key];
      if (value !== undefined) out = out.replace(pattern, () => value);
    }
    return out;
  });
}

/** The `EWMS_TASK_*` variables a task (or init) gets. */
export function taskEnvVars(paths: VisiblePaths): Record<string, string> {
  const env: Record<string, string> = { EWMS_TASK_DATA_HUB_DIR: paths.dataHub };
  if (paths.infile !== undefined) env.EWMS_TASK_INFILE = paths.infile;
  if (paths.outfile !== undefined) env.EWMS_TASK_OUTFILE = paths.outfile;
  return env;
}
