#!/usr/bin/env node
// Rewrites the README's configuration reference from the pilot's variable table (pilot/config-table.ts),
// so the documentation cannot drift from the code. Run through `npm run docs:config` (builds first).
import { readFileSync, writeFileSync } from 'node:fs';
import { renderConfigurationMarkdown } from '../dist/pilot/config-table.js';

const START = '<!-- ewms-pilot-config:start -->';
const END = '<!-- ewms-pilot-config:end -->';
const path = new URL('../README.md', import.meta.url);
const readme = readFileSync(path, 'utf8');
const from = readme.indexOf(START);
const to = readme.indexOf(END);
if (from < 0 || to < from) {
  console.error(`README.md has no ${START} … ${END} section to fill`);
  process.exit(1);
}
const updated = `${readme.slice(0, from + START.length)}\n${renderConfigurationMarkdown().trim()}\n${readme.slice(to)}`;
if (updated === readme) console.log('README.md configuration reference is up to date');
else {
  writeFileSync(path, updated);
  console.log('README.md configuration reference updated');
}
