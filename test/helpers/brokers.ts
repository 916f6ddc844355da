/**
 * Brokers for the tests: the shared RabbitMQ and NATS every machine of this project runs, and private
 * instances on free ports for tests that stop, restart or reconfigure a broker (the shared ones are never
 * touched).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { createServer, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface Target {
  name: 'rabbitmq' | 'nats' | 'pulsar';
  url: string | undefined;
  /** Why the target is skipped, when it is. */
  skipReason?: string;
}

/** The brokers the conformance suite runs against. Pulsar only when a URL is given. */
export function sharedTargets(): Target[] {
  const pulsar = process.env.EWMS_TEST_PULSAR_URL;
  return [
    { name: 'rabbitmq', url: process.env.EWMS_TEST_RABBITMQ_URL ?? 'amqp://guest:guest@127.0.0.1:5672' },
    { name: 'nats', url: process.env.EWMS_TEST_NATS_URL ?? 'nats://127.0.0.1:4222' },
    {
      name: 'pulsar',
      url: pulsar,
      ...(pulsar ? {} : { skipReason: 'no Pulsar broker on this machine (set EWMS_TEST_PULSAR_URL to run)' }),
    },
  ];
}

/** A free TCP port on 127.0.0.1. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

async function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = new Socket();
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
    s.connect(port, '127.0.0.1');
  });
}

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs: number, logTail: () => string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${what} did not become ready within ${timeoutMs} ms\n--- log tail ---\n${logTail()}`);
}

export interface PrivateBroker {
  url: string;
  port: number;
  /** Stop gracefully (SIGTERM); data stays. */
  stop(): Promise<void>;
  /** Start again on the same port with the same data. */
  start(): Promise<void>;
  /** Stop and remove everything. */
  dispose(): Promise<void>;
}

const disposers = new Set<() => void>();
process.once('exit', () => {
  for (const d of disposers) d();
});

/** A private nats-server with JetStream; `extraConfig` lines go into its config file. */
export async function startPrivateNats(options: { token?: string; maxPayloadBytes?: number } = {}): Promise<PrivateBroker> {
  const dir = mkdtempSync(join(tmpdir(), 'ewms-nats-'));
  const port = await freePort();
  const conf = join(dir, 'nats.conf');
  writeFileSync(
    conf,
    [
      `listen: 127.0.0.1:${port}`,
      `jetstream { store_dir: "${join(dir, 'js')}" }`,
      options.maxPayloadBytes ? `max_payload: ${options.maxPayloadBytes}` : '',
      options.token ? `authorization { token: "${options.token}" }` : '',
    ].join('\n'),
  );
  let child: ChildProcess | undefined;
  const logFile = join(dir, 'nats.log');
  const start = async () => {
    child = spawn('nats-server', ['-c', conf, '-l', logFile], { stdio: 'ignore' });
    await waitFor('private nats-server', () => portOpen(port), 10_000, () => tail(logFile));
    // JetStream answers a moment after the port opens.
    await new Promise((r) => setTimeout(r, 100));
  };
  const stop = async () => {
    const c = child;
    child = undefined;
    if (!c || c.exitCode !== null) return;
    await new Promise<void>((resolve) => {
      c.once('exit', () => resolve());
      c.kill('SIGINT');
    });
  };
  const kill = () => child?.kill('SIGKILL');
  disposers.add(kill);
  await start();
  return {
    url: `nats://127.0.0.1:${port}`,
    port,
    start,
    stop,
    dispose: async () => {
      await stop();
      disposers.delete(kill);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * A private RabbitMQ node (its own node name, ports, Erlang cookie and data dir), as ENVIRONMENT.md
 * describes. ~5 s to start.
 */
export async function startPrivateRabbitMQ(): Promise<PrivateBroker> {
  const dir = mkdtempSync(join(tmpdir(), 'ewms-rabbit-'));
  const port = await freePort();
  const distPort = await freePort();
  const node = `ewmstest${port}@localhost`;
  writeFileSync(join(dir, 'enabled_plugins'), '[].\n');
  writeFileSync(join(dir, '.erlang.cookie'), `EWMSTESTCOOKIE${port}`, { mode: 0o400 });
  const env = {
    ...process.env,
    HOME: dir,
    RABBITMQ_NODENAME: node,
    RABBITMQ_NODE_IP_ADDRESS: '127.0.0.1',
    RABBITMQ_NODE_PORT: String(port),
    RABBITMQ_DIST_PORT: String(distPort),
    RABBITMQ_MNESIA_BASE: join(dir, 'mnesia'),
    RABBITMQ_LOG_BASE: join(dir, 'log'),
    RABBITMQ_ENABLED_PLUGINS_FILE: join(dir, 'enabled_plugins'),
    RABBITMQ_CONFIG_FILE: join(dir, 'rabbitmq'),
    RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS: '-kernel inet_dist_use_interface {127,0,0,1}',
  };
  const logTail = () => {
    const logDir = join(dir, 'log');
    if (!existsSync(logDir)) return '(no log yet)';
    return readdirSync(logDir)
      .map((f) => tail(join(logDir, f)))
      .join('\n');
  };
  const pidFile = () => join(dir, 'mnesia', `${node}.pid`);
  const start = async () => {
    const r = spawnSync('/usr/lib/rabbitmq/bin/rabbitmq-server', ['-detached'], { env, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`private rabbitmq-server failed to start: ${r.stderr}`);
    await waitFor('private RabbitMQ', async () => (await portOpen(port)) && (await amqpHandshake(port)), 60_000, logTail);
  };
  const pid = (): number | undefined => {
    try {
      return Number(readFileSync(pidFile(), 'utf8').trim()) || undefined;
    } catch {
      return undefined;
    }
  };
  const stop = async () => {
    const p = pid();
    if (!p) return;
    try {
      process.kill(p, 'SIGTERM');
    } catch {
      return;
    }
    await waitFor('private RabbitMQ to stop', async () => !alive(p), 30_000, logTail);
  };
  const kill = () => {
    const p = pid();
    if (p) {
      try {
        process.kill(p, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
  };
  disposers.add(kill);
  await start();
  return {
    url: `amqp://guest:guest@127.0.0.1:${port}`,
    port,
    start,
    stop,
    dispose: async () => {
      await stop().catch(kill);
      disposers.delete(kill);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A full AMQP handshake through amqplib, not just an open port (the port opens before boot finishes). */
async function amqpHandshake(port: number): Promise<boolean> {
  const { default: amqplib } = await import('amqplib');
  try {
    const c = await amqplib.connect(`amqp://guest:guest@127.0.0.1:${port}`, { timeout: 2000 });
    await c.close();
    return true;
  } catch {
    return false;
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function tail(file: string, lines = 30): string {
  try {
    return readFileSync(file, 'utf8').split('\n').slice(-lines).join('\n');
  } catch {
    return `(cannot read ${file})`;
  }
}
