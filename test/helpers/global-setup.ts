/**
 * Builds `dist/` once before the suite: integration tests run the real command lines (`node dist/...`)
 * in child processes, exactly as an HTCondor job would, rather than importing TypeScript in-process.
 */
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export default function setup(): void {
  // For quick unit-test loops while developing; CI always builds.
  if (process.env.EWMS_TEST_SKIP_BUILD === '1') return;
  const root = fileURLToPath(new URL('../../', import.meta.url));
  execFileSync(process.execPath, [`${root}node_modules/typescript/bin/tsc`, '-p', `${root}tsconfig.json`], {
    cwd: root,
    stdio: 'inherit',
  });
}
