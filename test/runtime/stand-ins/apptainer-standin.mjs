#!/usr/bin/env node
/**
 * A stand-in for the `apptainer` CLI, for machines where Apptainer cannot be installed.
 *
 * It checks the argument vector the way Apptainer's CLI does (global flags before the command; only the
 * documented flags of `run` and `build`; `--mount` and `--env` parsed with Apptainer's rules; the image
 * must exist) and refuses anything else with exit code 255, as Apptainer does. Then it does the work for
 * real:
 * - `build --sandbox DIR SOURCE` makes DIR an Apptainer sandbox (`.singularity.d/` with a runscript that
 *   execs its arguments, plus `dev/ proc/ sys/`), from a file or a `docker://`/`oras://`/`library://`
 *   reference; references on the host `unreachable.invalid` fail like an unreachable registry.
 * - `run --containall IMAGE ARGS` runs the image's runscript with bubblewrap: a fresh tmpfs root with the
 *   host's /usr /etc /bin /lib* read-only (standing in for the image's OS), `--dev /dev --proc /proc
 *   --tmpfs /tmp`, a new PID and IPC namespace, a clean environment (the `--env` values and
 *   `APPTAINERENV_*` variables only) and the `--mount` binds at their container paths.
 * Only `--containall` runs are emulated; a run without it is refused rather than emulated wrongly.
 *
 * APPTAINER_STANDIN_LOG, when set, receives one JSON line per invocation: the argv and the
 * APPTAINERENV_* variables it was given.
 */
import { spawn } from 'node:child_process';
import { appendFileSync, chmodSync, existsSync, lstatSync, mkdirSync, readlinkSync, statSync, writeFileSync } from 'node:fs';
import { basename, isAbsolute, join, resolve } from 'node:path';

const VERSION = 'apptainer version 1.3.6 (stand-in)';

const GLOBAL_BOOLEAN = ['debug', 'd', 'quiet', 'q', 'silent', 's', 'verbose', 'v', 'nocolor'];
const GLOBAL_VALUED = ['config', 'c'];

// Flags of `run` (cmd/internal/cli/action_flags.go); `valued` ones take an argument.
const RUN_BOOLEAN = [
  'boot', 'fakeroot', 'f', 'cleanenv', 'e', 'compat', 'contain', 'c', 'containall', 'C', 'nv', 'nvccli', 'rocm',
  'writable', 'w', 'writable-tmpfs', 'no-home', 'no-init', 'no-umask', 'no-eval', 'no-privs', 'keep-privs',
  'allow-setuid', 'pid', 'p', 'ipc', 'i', 'net', 'n', 'uts', 'userns', 'u', 'disable-cache', 'unsquash',
  'underlay', 'vm', 'vm-err', 'oom-kill-disable', 'no-https', 'nohttps', 'docker-login',
];
const RUN_VALUED = [
  'app', 'bind', 'B', 'mount', 'home', 'H', 'overlay', 'o', 'scratch', 'S', 'workdir', 'W', 'cwd', 'pwd',
  'hostname', 'network', 'network-args', 'dns', 'security', 'apply-cgroups', 'vm-ram', 'vm-cpu', 'vm-ip',
  'fusemount', 'env', 'env-file', 'no-mount', 'add-caps', 'drop-caps', 'blkio-weight', 'blkio-weight-device',
  'cpu-shares', 'cpus', 'cpuset-cpus', 'cpuset-mems', 'memory', 'memory-reservation', 'memory-swap',
  'pids-limit', 'dmtcp-launch', 'dmtcp-restart', 'docker-host', 'docker-username', 'docker-password', 'pem-path',
];
// What this stand-in actually emulates; other documented flags are refused as "not emulated".
const RUN_EMULATED = new Set(['containall', 'C', 'no-eval', 'nv', 'mount', 'env', 'cleanenv', 'e', 'contain', 'c', 'pid', 'p', 'ipc', 'i']);

// Flags of `build` (cmd/internal/cli/build.go).
const BUILD_BOOLEAN = [
  'sandbox', 's', 'json', 'update', 'u', 'notest', 'T', 'disable-cache', 'no-cleanup', 'fakeroot', 'f', 'encrypt',
  'e', 'fix-perms', 'nv', 'nvccli', 'rocm', 'writable-tmpfs', 'userns', 'force', 'F', 'no-https', 'nohttps',
  'docker-login', 'warn-unused-build-args', 'passphrase',
];
const BUILD_VALUED = [
  'section', 'library', 'bind', 'B', 'mount', 'tmpdir', 'docker-host', 'docker-username', 'docker-password',
  'pem-path', 'build-arg', 'build-arg-file',
];

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const URI = /^(docker|oras|library|shub|docker-daemon|docker-archive|oci|oci-archive|http|https):\/\//;

function fatal(message, code = 255) {
  process.stderr.write(`FATAL:   ${message}\n`);
  process.exit(code);
}

/**
 * Parse flags the way cobra/pflag does: `--name value`, `--name=value`, `-x value`; with
 * `interspersed` false (Apptainer's action commands) parsing stops at the first positional argument.
 */
function parseFlags(argv, booleans, valued, interspersed) {
  const flags = [];
  const positionals = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--') {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (!arg.startsWith('-') || arg === '-') {
      if (!interspersed) {
        positionals.push(...argv.slice(i));
        break;
      }
      positionals.push(arg);
      continue;
    }
    const long = arg.startsWith('--');
    const body = arg.slice(long ? 2 : 1);
    const eq = body.indexOf('=');
    const name = eq >= 0 ? body.slice(0, eq) : body;
    if (!long && name.length !== 1) fatal(`unknown shorthand flag: '${name[0]}' in ${arg}`);
    if (booleans.includes(name)) {
      if (eq >= 0 && !['true', 'false'].includes(body.slice(eq + 1))) fatal(`invalid argument "${body.slice(eq + 1)}" for "${arg}" flag`);
      flags.push({ name, value: eq >= 0 ? body.slice(eq + 1) : 'true' });
    } else if (valued.includes(name)) {
      let value;
      if (eq >= 0) value = body.slice(eq + 1);
      else if (i + 1 < argv.length) value = argv[++i];
      else fatal(`flag needs an argument: ${arg}`);
      flags.push({ name, value });
    } else {
      fatal(`unknown flag: ${arg}`);
    }
  }
  return { flags, positionals };
}

/** Split one CSV record (RFC 4180 quoting, as Go's encoding/csv reads it). */
function csvFields(text) {
  const fields = [];
  let field = '';
  let quoted = false;
  let atStart = true;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (quoted) {
      if (ch === '"' && text[i + 1] === '"') {
        field += '"';
        i++;
      } else if (ch === '"') {
        quoted = false;
        if (i + 1 < text.length && text[i + 1] !== ',') throw new Error(`extraneous or missing " in quoted-field: ${text}`);
      } else field += ch;
      continue;
    }
    if (ch === '"' && atStart) {
      quoted = true;
      atStart = false;
    } else if (ch === '"') {
      throw new Error(`bare " in non-quoted-field: ${text}`);
    } else if (ch === ',') {
      fields.push(field);
      field = '';
      atStart = true;
    } else if (ch === '\n' || ch === '\r') {
      throw new Error(`line break outside quotes ends the record early: ${JSON.stringify(text)}`);
    } else {
      field += ch;
      atStart = false;
    }
  }
  if (quoted) throw new Error(`extraneous or missing " in quoted-field: ${text}`);
  fields.push(field);
  return fields;
}

/** `--mount` spec → { src, dst, ro } (Apptainer: only type=bind; src/source, dst/destination/target, ro/readonly). */
function parseMount(spec) {
  let fields;
  try {
    fields = csvFields(spec);
  } catch (err) {
    fatal(`while parsing mount "${spec}": ${err.message}`);
  }
  const mount = { type: 'bind', src: undefined, dst: undefined, ro: false };
  for (const field of fields) {
    const eq = field.indexOf('=');
    const key = eq >= 0 ? field.slice(0, eq) : field;
    const value = eq >= 0 ? field.slice(eq + 1) : undefined;
    switch (key) {
      case 'type':
        if (value !== 'bind') fatal(`while parsing mount "${spec}": only 'type=bind' is supported`);
        break;
      case 'source':
      case 'src':
        mount.src = value;
        break;
      case 'destination':
      case 'dst':
      case 'target':
        mount.dst = value;
        break;
      case 'ro':
      case 'readonly':
        mount.ro = value === undefined || value === 'true';
        break;
      case 'image-src':
      case 'id':
        fatal(`while parsing mount "${spec}": image mounts are not emulated by this stand-in`);
        break;
      default:
        fatal(`while parsing mount "${spec}": invalid key '${key}' in mount specification`);
    }
  }
  if (!mount.src) fatal(`while parsing mount "${spec}": mount source must be specified`);
  if (!mount.dst) fatal(`while parsing mount "${spec}": mount destination must be specified`);
  if (!isAbsolute(mount.dst)) fatal(`while parsing mount "${spec}": destination ${mount.dst} must be an absolute path`);
  if (!existsSync(mount.src)) fatal(`container creation failed: mount hook function failure: mount ${mount.src}->${mount.dst} error: while mounting ${mount.src}: mount source ${mount.src} doesn't exist`);
  return mount;
}

/** `--env` value → [[name, value]], with pflag's StringToString rules (what Apptainer's --env uses). */
function parseEnvFlag(text) {
  const equals = (text.match(/=/g) ?? []).length;
  let items;
  if (equals === 0) fatal(`invalid argument "${text}" for "--env" flag: ${text} must be formatted as key=value`);
  else if (equals === 1) items = [text.replace(/^"+|"+$/g, '')];
  else {
    try {
      items = csvFields(text);
    } catch (err) {
      fatal(`invalid argument "${text}" for "--env" flag: ${err.message}`);
    }
  }
  return items.map((item) => {
    const eq = item.indexOf('=');
    if (eq < 0) fatal(`invalid argument "${text}" for "--env" flag: ${item} must be formatted as key=value`);
    const name = item.slice(0, eq);
    if (!ENV_NAME.test(name)) fatal(`invalid environment variable name ${JSON.stringify(name)} in --env ${text}`);
    return [name, item.slice(eq + 1)];
  });
}

function isSandbox(path) {
  try {
    return statSync(join(path, '.singularity.d')).isDirectory();
  } catch {
    return false;
  }
}

function debug(enabled, message) {
  if (enabled) process.stderr.write(`DEBUG   [U=${process.getuid()},P=${process.pid}]  ${message}\n`);
}

function run(argv, globals) {
  const { flags, positionals } = parseFlags(argv, RUN_BOOLEAN, RUN_VALUED, false);
  const has = (name) => flags.some((f) => f.name === name && f.value === 'true');
  for (const flag of flags) {
    if (!RUN_EMULATED.has(flag.name)) fatal(`--${flag.name} is a valid flag but this stand-in does not emulate it`);
  }
  if (!has('containall') && !has('C')) fatal('this stand-in only emulates --containall runs');
  const [image, ...args] = positionals;
  if (image === undefined) fatal('requires at least 1 arg(s), only received 0');
  const imagePath = resolve(image);
  if (!existsSync(imagePath)) fatal(`could not open image ${imagePath}: failed to retrieve path for ${image}: lstat ${imagePath}: no such file or directory`);
  if (!isSandbox(imagePath)) fatal(`${image} is not a sandbox directory; this stand-in runs sandboxes only (EP nodes without FUSE cannot mount SIF files either)`);
  if (has('nv')) process.stderr.write('WARNING: Could not find any nv files on this host!\n');

  const mounts = flags.filter((f) => f.name === 'mount').map((f) => parseMount(f.value));
  const targets = new Set();
  for (const m of mounts) {
    if (targets.has(m.dst)) fatal(`container creation failed: duplicate mount destination ${m.dst}`);
    targets.add(m.dst);
  }
  const env = new Map();
  const home = process.env.HOME ?? '/root';
  env.set('HOME', home);
  env.set('PATH', '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin');
  env.set('LANG', 'C');
  for (const [name, value] of Object.entries(process.env)) {
    if (name.startsWith('APPTAINERENV_')) env.set(name.slice('APPTAINERENV_'.length), value);
  }
  for (const flag of flags.filter((f) => f.name === 'env')) for (const [name, value] of parseEnvFlag(flag.value)) env.set(name, value);
  env.set('APPTAINER_COMMAND', 'run');
  env.set('APPTAINER_CONTAINER', imagePath);
  env.set('APPTAINER_NAME', basename(imagePath));

  const bwrap = ['--die-with-parent', '--unshare-pid', '--unshare-ipc', '--tmpfs', '/'];
  for (const dir of ['/usr', '/etc', '/bin', '/sbin', '/lib', '/lib32', '/lib64', '/libx32']) {
    if (!existsSync(dir)) continue;
    if (lstatSync(dir).isSymbolicLink()) bwrap.push('--symlink', readlinkSync(dir), dir);
    else bwrap.push('--ro-bind', dir, dir);
  }
  bwrap.push('--dev', '/dev', '--proc', '/proc', '--tmpfs', '/tmp', '--dir', home);
  bwrap.push('--ro-bind', join(imagePath, '.singularity.d'), '/.singularity.d');
  for (const m of mounts) bwrap.push(m.ro ? '--ro-bind' : '--bind', m.src, m.dst);
  bwrap.push('--clearenv');
  for (const [name, value] of env) bwrap.push('--setenv', name, value);
  bwrap.push('--chdir', home, '--', '/.singularity.d/runscript', ...args);
  debug(globals.debug, `bwrap ${JSON.stringify(bwrap)}`);

  const child = spawn('bwrap', bwrap, { stdio: 'inherit' });
  for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP']) process.on(signal, () => child.kill(signal));
  child.once('error', (err) => fatal(`could not start bubblewrap: ${err.message}`));
  child.once('exit', (code, signal) => {
    debug(globals.debug, `container exited: code=${code} signal=${signal}`);
    process.exit(code ?? 128 + ({ SIGTERM: 15, SIGINT: 2, SIGKILL: 9, SIGHUP: 1 }[signal] ?? 1));
  });
}

function build(argv, globals) {
  const { flags, positionals } = parseFlags(argv, BUILD_BOOLEAN, BUILD_VALUED, true);
  const has = (name) => flags.some((f) => f.name === name && f.value === 'true');
  if (positionals.length !== 2) fatal(`accepts 2 arg(s), received ${positionals.length}`);
  const [target, source] = positionals;
  if (!has('sandbox') && !has('s')) fatal('this stand-in only builds sandboxes (--sandbox)');
  if (existsSync(target) && !has('force') && !has('F')) fatal(`build target '${basename(target)}' already exists. Use --force if you want to overwrite it`);
  if (URI.test(source)) {
    if (source.includes('unreachable.invalid')) {
      fatal(`While performing build: conveyor failed to get: error fetching image: Get "https://unreachable.invalid/v2/": dial tcp: lookup unreachable.invalid: no such host`);
    }
  } else if (!existsSync(source)) {
    fatal(`While performing build: unable to get conveyorpacker: unable to build from ${source}: stat ${source}: no such file or directory`);
  }
  debug(globals.debug, `building sandbox ${target} from ${source}`);
  process.stderr.write(`INFO:    Starting build...\n`);
  for (const dir of ['.singularity.d/env', '.singularity.d/libs', 'dev', 'proc', 'sys', 'tmp']) mkdirSync(join(target, dir), { recursive: true });
  writeFileSync(join(target, '.singularity.d', 'runscript'), '#!/bin/sh\nexec "$@"\n');
  chmodSync(join(target, '.singularity.d', 'runscript'), 0o755);
  writeFileSync(join(target, '.singularity.d', 'labels.json'), JSON.stringify({ 'org.label-schema.usage.apptainer.source': source }, null, 2));
  process.stderr.write(`INFO:    Creating sandbox directory...\nINFO:    Build complete: ${target}\n`);
}

const argv = process.argv.slice(2);
if (process.env.APPTAINER_STANDIN_LOG) {
  const apptainerEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => k.startsWith('APPTAINERENV_')));
  appendFileSync(process.env.APPTAINER_STANDIN_LOG, `${JSON.stringify({ argv, apptainerEnv })}\n`);
}
let i = 0;
const globals = { debug: false };
for (; i < argv.length && argv[i].startsWith('-'); i++) {
  const name = argv[i].replace(/^--?/, '');
  if (name === 'version') {
    process.stdout.write(`${VERSION}\n`);
    process.exit(0);
  }
  if (GLOBAL_BOOLEAN.includes(name)) {
    if (name === 'debug' || name === 'd') globals.debug = true;
  } else if (GLOBAL_VALUED.includes(name)) i++;
  else fatal(`unknown flag: ${argv[i]}`);
}
const command = argv[i];
const rest = argv.slice(i + 1);
switch (command) {
  case 'version':
    process.stdout.write(`${VERSION}\n`);
    break;
  case 'run':
    run(rest, globals);
    break;
  case 'build':
    build(rest, globals);
    break;
  case undefined:
    fatal('no command given');
    break;
  default:
    fatal(`command "${command}" is not emulated by this stand-in (run, build, version)`);
}
