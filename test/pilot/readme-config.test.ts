/**
 * The README's configuration reference is generated from the variable table. Between the markers
 * `<!-- ewms-pilot-config:start -->` and `<!-- ewms-pilot-config:end -->` it must be exactly what
 * `renderConfigurationMarkdown()` prints; regenerate it with
 * `node --input-type=module -e "import('./dist/pilot/config-table.js').then((m) => process.stdout.write(m.renderConfigurationMarkdown()))"`.
 */
import { readFileSync } from 'node:fs';
import { expect, test } from 'vitest';
import { renderConfigurationMarkdown } from '../../pilot/config-table.js';

const README = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
const START = '<!-- ewms-pilot-config:start -->';
const END = '<!-- ewms-pilot-config:end -->';
const hasSection = README.includes(START) && README.includes(END);

test.skipIf(!hasSection)('the README configuration reference matches the variable table', () => {
  const section = README.slice(README.indexOf(START) + START.length, README.indexOf(END)).trim();
  expect(section).toBe(renderConfigurationMarkdown().trim());
});
