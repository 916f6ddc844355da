/**
 * The package as a user installs it: `npm pack`, unpacked into a fresh project's node_modules beside the
 * dependencies it declares, then the project type-checked without `skipLibCheck` (and with `"types": []`, so
 * nothing global comes for free) and the `ewms` bin asked for its version from inside that project, whose own
 * package.json has another.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const MANIFEST = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string; dependencies: Record<string, string> };
const project = mkdtempSync(join(tmpdir(), 'ewms-user-project-'));
const modules = join(project, 'node_modules');
afterAll(() => rmSync(project, { recursive: true, force: true }));

beforeAll(() => {
  const tarball = execFileSync('npm', ['pack', '--ignore-scripts', '--silent', '--pack-destination', project], { cwd: ROOT, encoding: 'utf8' }).trim().split('\n').pop()!;
  const installed = join(modules, 'ewms-pilot');
  mkdirSync(installed, { recursive: true });
  execFileSync('tar', ['-xzf', join(project, tarball), '-C', installed, '--strip-components=1']);
  // What npm would install beside it: this checkout's node_modules hold the same locked versions.
  for (const entry of readdirSync(join(ROOT, 'node_modules'))) {
    if (entry === '.bin' || entry === 'ewms-pilot' || entry.startsWith('.')) continue;
    symlinkSync(join(ROOT, 'node_modules', entry), join(modules, entry));
  }
  mkdirSync(join(modules, '.bin'));
  symlinkSync('../ewms-pilot/dist/coordinator/cli.js', join(modules, '.bin', 'ewms'));
  chmodSync(join(installed, 'dist', 'coordinator', 'cli.js'), 0o755); // as npm does for a bin
  writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'user-project', version: '9.9.9', type: 'module', private: true }));
}, 120_000);

describe('the published package in a user project', () => {
  test('declares @types/node, which its declarations need', () => {
    expect(MANIFEST.dependencies['@types/node']).toBeDefined();
  });

  test('its .d.ts files type-check without skipLibCheck, with no global types of the project', () => {
    writeFileSync(
      join(project, 'tsconfig.json'),
      JSON.stringify({ compilerOptions: { target: 'ES2022', module: 'nodenext', moduleResolution: 'nodenext', strict: true, noEmit: true, skipLibCheck: false, types: [] }, include: ['main.ts'] }),
    );
    writeFileSync(
      join(project, 'main.ts'),
      [
        "import { Workflow, runWorkflow, DeadLetters, buildPilotEnv, type WorkflowOutcome } from 'ewms-pilot/coordinator';",
        "import { connect, type Broker } from 'ewms-pilot/mq-adapters';",
        "export async function scan(events: string[]): Promise<WorkflowOutcome[]> {",
        "  const wf = await Workflow.create({ broker: { address: 'nats://127.0.0.1:4222' } });",
        '  const ids = await wf.publish(events);',
        '  const out: WorkflowOutcome[] = [];',
        '  for await (const o of wf.collect({ expected: ids })) out.push(o);',
        '  await wf.close({ deleteQueues: true });',
        '  return out;',
        '}',
        'export const used = [runWorkflow, DeadLetters, buildPilotEnv, connect] as const;',
        'export type B = Broker;',
      ].join('\n'),
    );
    const tsc = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
    let output = '';
    try {
      execFileSync(process.execPath, [tsc, '-p', project], { cwd: project, encoding: 'utf8' });
    } catch (err) {
      output = String((err as { stdout?: string }).stdout ?? err);
    }
    expect(output).toBe('');
  }, 120_000);

  test('ewms --version is this package\'s version, not the project\'s', () => {
    const bin = join(modules, '.bin', 'ewms');
    expect(existsSync(bin)).toBe(true);
    expect(execFileSync(bin, ['--version'], { cwd: project, encoding: 'utf8' }).trim()).toBe(MANIFEST.version);
    expect(execFileSync(process.execPath, [join(modules, 'ewms-pilot', 'dist', 'pilot', 'cli.js'), '--version'], { cwd: project, encoding: 'utf8' }).trim()).toBe(MANIFEST.version);
  });
});
