/**
 * The README's configuration reference is generated from the variable table: between the markers
 * `<!-- ewms-pilot-config:start -->` and `<!-- ewms-pilot-config:end -->` it must be exactly what
 * `renderConfigurationMarkdown()` prints. After changing `pilot/config-table.ts`, run `npm run docs:config`.
 */
import { readFileSync } from 'node:fs';
import { expect, test } from 'vitest';
import { renderConfigurationMarkdown } from '../../pilot/config-table.js';

const START = '<!-- ewms-pilot-config:start -->';
const END = '<!-- ewms-pilot-config:end -->';

test('the README configuration reference matches the variable table (npm run docs:config)', () => {
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
  const from = readme.indexOf(START);
  const to = readme.indexOf(END);
  expect(from, `README.md has no ${START} section`).toBeGreaterThanOrEqual(0);
  expect(to).toBeGreaterThan(from);
  expect(readme.slice(from + START.length, to).trim()).toBe(renderConfigurationMarkdown().trim());
});
