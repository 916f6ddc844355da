/** The `ewms-pilot` command line itself: help, version, flags, and exit 2 for what it cannot accept. */
import { readFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { describe, expect, test } from 'vitest';
import { VARIABLES, flagOf } from '../../pilot/config-table.js';
import { pilotEnv, startPilot } from './run-pilot.js';

const VERSION = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

async function run(args: string[], env: Record<string, string> = {}) {
  const pilot = startPilot(env, args);
  const { code } = await pilot.exited;
  return { code, out: pilot.stdout(), err: pilot.stderr() };
}

describe('ewms-pilot', () => {
  test('--help lists every variable with its flag', async () => {
    const { code, out } = await run(['--help']);
    expect(code).toBe(0);
    for (const v of VARIABLES) {
      expect(out).toContain(`--${flagOf(v.name)}`);
      expect(out).toContain(v.name);
    }
  });

  test('--version prints the package version', async () => {
    const { code, out } = await run(['--version']);
    expect(code).toBe(0);
    expect(out.trim()).toBe(VERSION);
  });

  test('an unknown flag is exit 2 with a pointer to --help', async () => {
    const { code, err } = await run(['--task-argz', 'true']);
    expect(code).toBe(2);
    expect(err).toMatch(/Unknown argument.*task-argz[\s\S]*--help/);
  });

  test('a flag wins over its variable (a bad flag value is reported under the variable name)', async () => {
    const env = pilotEnv('rabbitmq', { incoming: 'cli-in', outgoing: 'cli-out' }, { EWMS_PILOT_TASK_ARGS: 'true', EWMS_PILOT_MAX_DELIVERIES: '3' });
    const { code, err } = await run(['--max-deliveries', 'zero'], env);
    expect(code).toBe(2);
    expect(err).toMatch(/EWMS_PILOT_MAX_DELIVERIES: 'zero' is not a whole number/);
  });

  test('--help lists the exit codes', async () => {
    const { out } = await run(['--help']);
    expect(out).toMatch(/Exit codes:\n\s+0\s+done[\s\S]*\n\s+1\s+fail-fast[\s\S]*\n\s+2\s+bad configuration[\s\S]*128\+N\s+stopped by signal N/);
  });

  test('a secret given as a flag is refused (exit 2), never echoed; a missing program is exit 2 at start', async () => {
    const env = pilotEnv('rabbitmq', { incoming: 'cli-in', outgoing: 'cli-out' }, { EWMS_PILOT_TASK_ARGS: 'true {{INFILE}} {{OUTFILE}}' });
    const secret = await run(['--queue-incoming-auth-token', 'hunter2-flag'], env);
    expect(secret.code).toBe(2);
    expect(secret.err).toMatch(/EWMS_PILOT_QUEUE_INCOMING_AUTH_TOKEN: was given as the flag --queue-incoming-auth-token/);
    expect(secret.err + secret.out).not.toContain('hunter2-flag');
    const missing = await run([], { ...env, EWMS_PILOT_TASK_ARGS: 'pyhton3 pixel.py {{INFILE}} {{OUTFILE}}' });
    expect(missing.code).toBe(2);
    expect(missing.err).toMatch(/EWMS_PILOT_TASK_ARGS: runs 'pyhton3', which is not a program on this host's PATH/);
  });

  test.each(['rabbitmq', 'nats'] as const)('%s: a broker address where nothing listens is exit 1 at once, saying so (no connect timeout spent)', async (name) => {
    const port = await closedPort();
    const env = pilotEnv(name, { incoming: 'cli-in', outgoing: 'cli-out' }, { EWMS_PILOT_TASK_ARGS: 'true {{INFILE}} {{OUTFILE}}' });
    env.EWMS_PILOT_QUEUE_INCOMING_BROKER_ADDRESS = env.EWMS_PILOT_QUEUE_INCOMING_BROKER_ADDRESS!.replace(/:\d+$/, `:${port}`);
    env.EWMS_PILOT_QUEUE_OUTGOING_BROKER_ADDRESS = env.EWMS_PILOT_QUEUE_INCOMING_BROKER_ADDRESS;
    const { code, err } = await run([], env);
    expect(code).toBe(1);
    expect(err).toMatch(new RegExp(`BrokerUnreachableError: cannot reach ${name} broker at .*:${port}: .*(refused|ECONNREFUSED)`));
    expect(err).not.toMatch(/gave up after/);
  });
});

/** A local port nothing listens on (bound once for a number, then closed). */
function closedPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      server.close(() => resolve(port));
    });
  });
}
