/** `ewms monitor` as a command: serves until SIGINT, refuses unsafe binds and bad ports before touching anything. */
import { spawn, spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { connect } from '../../mq-adapters/index.js';

const CLI = fileURLToPath(new URL('../../dist/coordinator/cli.js', import.meta.url));
const ENV = { ...process.env, EWMS_BROKER_URL: 'amqp://guest@127.0.0.1:5672', EWMS_BROKER_TOKEN: 'guest', EWMS_MONITOR_TOKEN: '' };

describe('ewms monitor', () => {
  it('serves a workflow until SIGINT, then exits 0', async () => {
    const workflow = `cli-${randomUUID().slice(0, 8)}`;
    const child = spawn(process.execPath, [CLI, 'monitor', '--workflow', workflow, '--port', '0'], { env: ENV, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    try {
      const url = await new Promise<string>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no URL: ${stderr}`)), 20_000);
        child.stderr!.on('data', () => {
          const m = /monitor: (http:\/\/127\.0\.0\.1:\d+\/)/.exec(stderr);
          if (m) {
            clearTimeout(timer);
            resolve(m[1]!);
          }
        });
      });
      const status = (await (await fetch(`${url}api/status`)).json()) as { workflow: string; tasks: Array<{ name: string; queue: string }> };
      expect(status.workflow).toBe(workflow);
      expect(status.tasks).toEqual([expect.objectContaining({ name: 'task-0', queue: `ewms-${workflow}-in` })]);
      expect((await fetch(`${url}metrics`)).headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
      child.kill('SIGINT');
      expect(await exited).toBe(0);
    } finally {
      child.kill('SIGKILL');
      const broker = await connect({ address: 'amqp://guest@127.0.0.1:5672', authToken: 'guest' });
      await broker.deleteQueue(`ewms-${workflow}-monitor`, { deadLetterQueue: false }).catch(() => undefined);
      await broker.close();
    }
  });

  it('refuses a non-loopback address without EWMS_MONITOR_TOKEN, and a bad --monitor port (exit 2)', () => {
    const open = spawnSync(process.execPath, [CLI, 'monitor', '--workflow', 'x', '--host', '0.0.0.0'], { env: ENV, encoding: 'utf8' });
    expect(open.status).toBe(2);
    expect(open.stderr).toContain('EWMS_MONITOR_TOKEN');
    const port = spawnSync(process.execPath, [CLI, 'run', '--events', '/dev/null', '--pilots', '0', '--monitor', 'http'], { env: ENV, encoding: 'utf8' });
    expect(port.status).toBe(2);
    expect(port.stderr).toContain("--monitor 'http' is not a port");
  });
});
