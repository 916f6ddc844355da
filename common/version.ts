/**
 * This package's version, read from its own `package.json` — found by walking up from this file, so it is
 * right from `dist/` and from the sources, and never the `package.json` of a project that installed us (which
 * is what a lookup from the working directory or the running script would find).
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const PACKAGE_NAME = 'ewms-pilot';

function findVersion(start: string): string {
  for (let dir = start; ; dir = dirname(dir)) {
    try {
      const manifest = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: string; version?: string };
      if (manifest.name === PACKAGE_NAME && manifest.version) return manifest.version;
    } catch {
      // no package.json here: keep walking up
    }
    if (dirname(dir) === dir) return '0.0.0-unknown';
  }
}

/** The version of this package (`ewms --version`, `ewms-pilot --version`, dead-letter headers). */
export const PACKAGE_VERSION: string = findVersion(dirname(fileURLToPath(import.meta.url)));
