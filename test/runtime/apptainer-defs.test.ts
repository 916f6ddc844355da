/**
 * The definition files in apptainer/ are checked without Apptainer: header keywords and section names
 * against the Apptainer documentation, build-argument templates declared, %files sources present, every
 * shell section parsed by `sh -n`, and the example task run on a sample event.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, test } from 'vitest';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const DEFS = ['apptainer/pilot.def', 'apptainer/task-example.def'];

/** Bootstrap agents and header keywords (Apptainer user docs, "Definition Files" and its appendix). */
const AGENTS = new Set(['docker', 'oras', 'localimage', 'scratch', 'library', 'shub', 'yum', 'dnf', 'debootstrap', 'oci', 'oci-archive', 'docker-daemon', 'docker-archive', 'arch', 'busybox', 'zypper']);
const HEADER_KEYS = new Set(['Bootstrap', 'From', 'Stage', 'Fingerprints', 'OSVersion', 'MirrorURL', 'Include', 'IncludeCmd', 'Registry', 'Namespace', 'UpdateURL', 'SetOpt']);
const SECTIONS = new Set(['arguments', 'setup', 'files', 'environment', 'post', 'runscript', 'startscript', 'test', 'labels', 'help', 'appinstall', 'apprun', 'appenv', 'applabels', 'appfiles', 'apphelp', 'apptest', 'appstart']);
const SHELL_SECTIONS = new Set(['setup', 'environment', 'post', 'runscript', 'startscript', 'test']);

interface DefFile {
  header: Map<string, string>;
  sections: Map<string, string[]>;
}

/** Split a definition file into its header and sections, refusing what Apptainer would refuse. */
function parseDef(text: string): DefFile {
  const header = new Map<string, string>();
  const sections = new Map<string, string[]>();
  let current: string[] | undefined;
  for (const [index, line] of text.split('\n').entries()) {
    const where = `line ${index + 1}`;
    const section = /^%(\S+)(?:\s+(.*))?$/.exec(line);
    if (section) {
      const name = section[1]!;
      if (!SECTIONS.has(name)) throw new Error(`${where}: unknown section %${name}`);
      current = sections.get(name) ?? [];
      sections.set(name, current);
      continue;
    }
    if (current) {
      current.push(line);
      continue;
    }
    if (line.trim() === '' || line.startsWith('#')) continue;
    const keyword = /^(\w+):\s*(.+)$/.exec(line);
    if (!keyword) throw new Error(`${where}: not a header line: ${line}`);
    if (!HEADER_KEYS.has(keyword[1]!)) throw new Error(`${where}: unknown header keyword ${keyword[1]}`);
    if (header.size === 0 && keyword[1] !== 'Bootstrap') throw new Error(`${where}: Bootstrap must be the first header keyword`);
    header.set(keyword[1]!, keyword[2]!.trim());
  }
  return { header, sections };
}

/** `%arguments` defaults, applied to `{{ NAME }}` templates as `apptainer build` does. */
function applyArguments(def: DefFile, text: string): string {
  const defaults = new Map(
    (def.sections.get('arguments') ?? []).filter((l) => l.trim()).map((l) => l.trim().split('=', 2) as [string, string]),
  );
  return text.replace(/\{\{\s*(\w+)\s*\}\}/g, (_m, name: string) => {
    const value = defaults.get(name);
    if (value === undefined) throw new Error(`{{ ${name} }} has no default in %arguments`);
    return value;
  });
}

describe.each(DEFS)('%s', (path) => {
  const text = readFileSync(join(REPO, path), 'utf8');
  const def = parseDef(text);

  test('header: a known Bootstrap agent first, with From', () => {
    expect(AGENTS.has(def.header.get('Bootstrap') ?? '')).toBe(true);
    expect(def.header.get('From')).toBeTruthy();
  });

  test('has a runscript, a test, labels and help', () => {
    for (const name of ['runscript', 'test', 'labels', 'help']) expect(def.sections.get(name)?.join('').trim(), name).toBeTruthy();
    for (const label of def.sections.get('labels')!.filter((l) => l.trim())) expect(label.trim()).toMatch(/^\S+\s+\S/);
  });

  test('every {{ template }} has a default, and every shell section parses', () => {
    const resolved = parseDef(applyArguments(def, text));
    for (const [name, lines] of resolved.sections) {
      if (!SHELL_SECTIONS.has(name)) continue;
      const check = spawnSync('sh', ['-n'], { input: lines.join('\n'), encoding: 'utf8' });
      expect(check.status, `%${name}: ${check.stderr}`).toBe(0);
    }
  });

  test('%files sources exist (build-argument paths are made by the build steps in the README)', () => {
    for (const line of (def.sections.get('files') ?? []).filter((l) => l.trim() && !l.trim().startsWith('#'))) {
      const source = line.trim().split(/\s+/)[0]!;
      if (/\{\{/.test(source)) continue;
      expect(existsSync(join(REPO, source)), source).toBe(true);
    }
  });
});

const python = spawnSync('python3', ['--version']).status === 0;
if (!python) console.warn('SKIPPED running the example task: python3 is not installed');

test.skipIf(!python)('the example task reverses each line of its infile into its outfile, and refuses to run without them', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ewms-task-example-'));
  writeFileSync(join(dir, 'in.txt'), 'abc\nxyz\n');
  const script = join(REPO, 'apptainer/task-example/reverse_lines.py');
  const ok = spawnSync('python3', [script], {
    env: { PATH: process.env.PATH, EWMS_TASK_INFILE: join(dir, 'in.txt'), EWMS_TASK_OUTFILE: join(dir, 'out.txt') },
    encoding: 'utf8',
  });
  expect(ok.status, ok.stderr).toBe(0);
  expect(readFileSync(join(dir, 'out.txt'), 'utf8')).toBe('cba\nzyx\n');
  const missing = spawnSync('python3', [script], { env: { PATH: process.env.PATH }, encoding: 'utf8' });
  expect(missing.status).toBe(2);
  expect(missing.stderr).toMatch(/EWMS_TASK_INFILE/);
});

/** Dockerfile instructions (Dockerfile reference); anything else is refused as Docker/Buildah refuse it. */
const INSTRUCTIONS = new Set(['FROM', 'ARG', 'ENV', 'RUN', 'COPY', 'ADD', 'LABEL', 'ENTRYPOINT', 'CMD', 'WORKDIR', 'USER', 'EXPOSE', 'VOLUME', 'SHELL', 'STOPSIGNAL', 'HEALTHCHECK', 'ONBUILD']);

/** The Containerfile's instructions, continuation lines joined, comments dropped. */
function parseContainerfile(text: string): Array<{ keyword: string; args: string }> {
  const logical = text.replace(/\\\n/g, ' ').split('\n').filter((l) => l.trim() && !l.trim().startsWith('#'));
  return logical.map((line) => {
    const m = /^\s*([A-Za-z]+)\s+(.*)$/.exec(line);
    if (!m || !INSTRUCTIONS.has(m[1]!.toUpperCase())) throw new Error(`not a Dockerfile instruction: ${line}`);
    return { keyword: m[1]!.toUpperCase(), args: m[2]!.trim() };
  });
}

describe('apptainer/Containerfile (the OCI image) and pilot.def build the same image', () => {
  const containerfile = parseContainerfile(readFileSync(join(REPO, 'apptainer/Containerfile'), 'utf8'));
  const def = parseDef(readFileSync(join(REPO, 'apptainer/pilot.def'), 'utf8'));
  const argDefaults = new Map(containerfile.filter((i) => i.keyword === 'ARG').map((i) => i.args.split('=', 2) as [string, string]));
  const substitute = (s: string) => s.replace(/\$\{(\w+)\}/g, (m, name: string) => argDefaults.get(name) ?? m);

  test('FROM a fully qualified base first; every RUN parses as shell', () => {
    expect(containerfile[0]!.keyword).toBe('FROM');
    expect(containerfile[0]!.args).toMatch(/^docker\.io\/library\/node:20-bookworm-slim$/);
    for (const run of containerfile.filter((i) => i.keyword === 'RUN')) {
      const check = spawnSync('sh', ['-n'], { input: substitute(run.args), encoding: 'utf8' });
      expect(check.status, `${run.args}: ${check.stderr}`).toBe(0);
    }
  });

  test('COPY sources exist in the build context (apptainer/), except the package npm pack writes there', () => {
    for (const copy of containerfile.filter((i) => i.keyword === 'COPY')) {
      const [source] = copy.args.split(/\s+/);
      if (source!.includes('PILOT_TGZ')) continue;
      expect(existsSync(join(REPO, 'apptainer', source!)), source).toBe(true);
    }
  });

  test('ENTRYPOINT is the TMS-job entrypoint (exec form), CMD the pilot; pilot.def runs the same script', () => {
    const entrypoint = JSON.parse(containerfile.find((i) => i.keyword === 'ENTRYPOINT')!.args) as string[];
    expect(entrypoint).toEqual(['/usr/local/bin/ewms-pilot-entrypoint']);
    expect(JSON.parse(containerfile.find((i) => i.keyword === 'CMD')!.args)).toEqual(['ewms-pilot']);
    expect(containerfile.some((i) => i.keyword === 'COPY' && i.args === 'ewms-pilot-entrypoint.sh /usr/local/bin/ewms-pilot-entrypoint')).toBe(true);
    expect(def.sections.get('files')!.map((l) => l.trim())).toContain('apptainer/ewms-pilot-entrypoint.sh /usr/local/bin/ewms-pilot-entrypoint');
    expect(def.sections.get('runscript')!.join('\n').trim()).toBe('exec /usr/local/bin/ewms-pilot-entrypoint "$@"');
    const check = spawnSync('sh', ['-n', join(REPO, 'apptainer/ewms-pilot-entrypoint.sh')], { encoding: 'utf8' });
    expect(check.status, check.stderr).toBe(0);
  });

  test('the same base, Apptainer version and container platform in both', () => {
    expect(def.header.get('From')).toBe('node:20-bookworm-slim');
    const defArgs = new Map((def.sections.get('arguments') ?? []).filter((l) => l.trim()).map((l) => l.trim().split('=', 2) as [string, string]));
    expect(argDefaults.get('APPTAINER_VERSION')).toBe(defArgs.get('APPTAINER_VERSION'));
    expect(containerfile.some((i) => i.keyword === 'ENV' && i.args === '_EWMS_PILOT_CONTAINER_PLATFORM=apptainer')).toBe(true);
    expect(def.sections.get('environment')!.map((l) => l.trim())).toContain('export _EWMS_PILOT_CONTAINER_PLATFORM=apptainer');
  });
});
