import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/helpers/global-setup.ts'],
    // Integration tests share two real brokers; files run in parallel, each on its own queue names.
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // Most files wait on brokers and task processes, not on the CPU: vitest's default (cores - 1, one file at
    // a time on a 2-core machine) leaves the machine idle most of the run. EWMS_TEST_WORKERS overrides.
    maxWorkers: Number(process.env.EWMS_TEST_WORKERS ?? 3),
    reporters: ['default'],
  },
});
