/** The pilot's Node flags are the same wherever a pilot is started: its `#!` line and the local backend. */
import { readFileSync } from 'node:fs';
import { describe, expect, test } from 'vitest';
import { PILOT_NODE_FLAGS } from '../../common/pilot-node-flags.js';

describe('pilot Node flags', () => {
  test("pilot/cli.ts's #! line carries exactly PILOT_NODE_FLAGS", () => {
    const first = readFileSync(new URL('../../pilot/cli.ts', import.meta.url), 'utf8').split('\n')[0];
    expect(first).toBe(`#!/usr/bin/env -S node ${PILOT_NODE_FLAGS.join(' ')}`);
  });
});
