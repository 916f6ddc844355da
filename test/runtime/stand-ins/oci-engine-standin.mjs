#!/usr/bin/env node
/**
 * A stand-in for the `docker` / `podman` CLI in tests of `prepare()` and `stop()` (the image store and the
 * container list, not running containers: the real Podman test does that).
 *
 * - `image inspect REF`: exit 0 when REF is in OCI_STANDIN_IMAGES (comma-separated) or was pulled, else
 *   exit 1 with the engine's "No such image" message.
 * - `pull REF`: succeeds when REF is in OCI_STANDIN_PULLABLE, else fails like a registry refusal.
 * - `stop -t N NAME`, `rm -f [--time N] NAME`, `container inspect NAME`: a container list kept in OCI_STANDIN_STATE/containers
 *   (names listed in OCI_STANDIN_CONTAINERS at start); `stop` removes the name (as `--rm` would) unless
 *   it is listed in OCI_STANDIN_STUCK; `rm -f` removes it.
 * Every invocation is appended to OCI_STANDIN_LOG as a JSON line (engine, argv).
 * Any other command is refused, so a test notices an unexpected call.
 */
import { appendFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const [engine, ...argv] = process.argv.slice(2);
const env = process.env;
const list = (text) => (text ?? '').split(',').filter(Boolean);
if (env.OCI_STANDIN_LOG) appendFileSync(env.OCI_STANDIN_LOG, `${JSON.stringify({ engine, argv })}\n`);

const state = env.OCI_STANDIN_STATE;
function load(name, initial) {
  const file = state && join(state, name);
  return file && existsSync(file) ? list(readFileSync(file, 'utf8')) : initial;
}
function save(name, items) {
  if (state) writeFileSync(join(state, name), items.join(','));
}

const images = load('images', list(env.OCI_STANDIN_IMAGES));
const containers = load('containers', list(env.OCI_STANDIN_CONTAINERS));
const key = argv.slice(0, 2).join(' ');

if (key === 'image inspect') {
  const ref = argv[2];
  if (images.includes(ref)) {
    process.stdout.write(`[{"Id":"sha256:standin","RepoTags":["${ref}"]}]\n`);
    process.exit(0);
  }
  process.stderr.write(engine === 'docker' ? `Error response from daemon: No such image: ${ref}\n` : `Error: ${ref}: image not known\n`);
  process.exit(1);
} else if (argv[0] === 'pull') {
  const ref = argv[1];
  if (list(env.OCI_STANDIN_PULLABLE).includes(ref)) {
    save('images', [...images, ref]);
    process.stdout.write(`Status: Downloaded newer image for ${ref}\n`);
    process.exit(0);
  }
  process.stderr.write(
    engine === 'docker'
      ? `Error response from daemon: pull access denied for ${ref}, repository does not exist or may require 'docker login'\n`
      : `Error: initializing source docker://${ref}: reading manifest latest in docker.io/${ref}: requested access to the resource is denied\n`,
  );
  process.exit(engine === 'docker' ? 1 : 125);
} else if (argv[0] === 'stop') {
  // stop -t SECONDS NAME: the container stops (and --rm removes it) unless OCI_STANDIN_STUCK names it.
  const name = argv[argv.length - 1];
  if (!containers.includes(name)) {
    process.stderr.write(`Error: no container with name or ID "${name}" found: no such container\n`);
    process.exit(engine === 'docker' ? 1 : 125);
  }
  if (!list(env.OCI_STANDIN_STUCK).includes(name)) save('containers', containers.filter((c) => c !== name));
  process.stdout.write(`${name}\n`);
  process.exit(0);
} else if (key === 'rm -f') {
  // podman: rm -f --time 0 NAME
  const name = argv[argv.length - 1];
  if (containers.includes(name)) {
    save('containers', containers.filter((c) => c !== name));
    process.stdout.write(`${name}\n`);
  } else if (engine === 'docker') {
    process.stderr.write(`Error response from daemon: No such container: ${name}\n`);
    process.exit(1);
  }
  process.exit(0);
} else if (key === 'container inspect') {
  const name = argv[2];
  if (containers.includes(name)) {
    process.stdout.write(`[{"Name":"${name}"}]\n`);
    process.exit(0);
  }
  process.stderr.write(`Error: no such container ${name}\n`);
  process.exit(1);
} else {
  process.stderr.write(`${engine} stand-in: not emulated: ${argv.join(' ')}\n`);
  process.exit(125);
}
