/**
 * Brokers for integration tests: the shared ones every session starts (never stopped or reconfigured by a
 * test), and private ones a test may stop, restart or kill — a RabbitMQ node or a nats-server of its own,
 * on free ports, with all state in a temporary directory that `dispose()` removes.
 *
 * Private brokers are killed when the test process exits, however it exits short of SIGKILL, so an aborted
 * run does not leave Erlang nodes behind; brokers of a test process that was SIGKILLed are reaped by the
 * next start of a private broker (their directory names the dead owner).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, connect as tcpConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import amqplib from 'amqplib';
import { connect as natsConnect } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import type { BrokerType } from '../../mq-adapters/types.js';

// ---------------------------------------------------------------------------------------------------------
// Shared brokers
// ---------------------------------------------------------------------------------------------------------

/** A shared broker the tests may use, or why there is none. */
export type SharedTarget =
  | { type: BrokerType; available: true; url: string }
  | { type: BrokerType; available: false; reason: string };

/**
 * The shared brokers: RabbitMQ and NATS run on every project machine (URLs overridable through
 * `EWMS_TEST_RABBITMQ_URL` / `EWMS_TEST_NATS_URL`); Pulsar only where `EWMS_TEST_PULSAR_URL` names one.
 */
export function sharedTargets(env: NodeJS.ProcessEnv = process.env): SharedTarget[] {
  const pulsar = env.EWMS_TEST_PULSAR_URL;
  return [
    { type: 'rabbitmq', available: true, url: env.EWMS_TEST_RABBITMQ_URL || 'amqp://guest:guest@127.0.0.1:5672' },
    { type: 'nats', available: true, url: env.EWMS_TEST_NATS_URL || 'nats://127.0.0.1:4222' },
    pulsar
      ? { type: 'pulsar', available: true, url: pulsar }
      : { type: 'pulsar', available: false, reason: 'no broker here (set EWMS_TEST_PULSAR_URL)' },
  ];
}

// ---------------------------------------------------------------------------------------------------------
// Private brokers
// ---------------------------------------------------------------------------------------------------------

/** A broker owned by one test file: stop, start, kill it at will. */
export interface PrivateBroker {
  readonly type: BrokerType;
  /** Connect URL (credentials included only where the broker needs them and they are not under test). */
  readonly url: string;
  /** The client port; the same across `stop()`/`start()`. */
  readonly port: number;
  /** Where the broker keeps its data and logs; survives `stop()`/`kill()`, removed by `dispose()`. */
  readonly dataDir: string;
  /** RabbitMQ only: the private node's management API (so adapters install policies there, not on the shared node). */
  readonly managementUrl: string | undefined;
  /** Graceful shutdown (SIGTERM / SIGINT); resolves when the process is gone. */
  stop(): Promise<void>;
  /** Start again on the same port with the same data; resolves when it accepts clients. */
  start(): Promise<void>;
  /** SIGKILL, as a crashed machine would; resolves when the process is gone. */
  kill(): Promise<void>;
  /** Kill if running and remove the data directory. Safe to call twice. */
  dispose(): Promise<void>;
  /** The last lines of the broker's log, for failure messages. */
  logTail(lines?: number): string;
}

/** Options for a private nats-server. */
export interface PrivateNatsOptions {
  /** Require this token (`--auth`). */
  token?: string;
  /** Require this user and password (`--user`/`--pass`). */
  user?: { name: string; password: string };
  /** Raise or lower the server's `max_payload` (default 1 MiB). */
  maxPayloadBytes?: number;
  /** Give up waiting for readiness after this long (default 15 s). */
  readyTimeoutMs?: number;
}

/** Options for a private RabbitMQ node. */
export interface PrivateRabbitMQOptions {
  /** Give up waiting for readiness after this long (default 45 s: ~5 s normally, slower on a busy CI box). */
  readyTimeoutMs?: number;
  /** The node's `max_message_size` (RabbitMQ 3.10's default is 128 MiB). */
  maxMessageBytes?: number;
}

export const RABBITMQ_SERVER = '/usr/lib/rabbitmq/bin/rabbitmq-server';
export const NATS_SERVER = 'nats-server';

/** Processes to kill and directories to remove if the test process exits with brokers still up. */
const live = new Map<string, { pid(): number | undefined; dir: string }>();
let exitHooked = false;

export function track(id: string, entry: { pid(): number | undefined; dir: string }): void {
  live.set(id, entry);
  if (exitHooked) return;
  exitHooked = true;
  const cleanup = () => {
    for (const { pid, dir } of live.values()) {
      const p = pid();
      if (p !== undefined) {
        try {
          process.kill(p, 'SIGKILL');
        } catch {
          // already gone
        }
      }
      rmSync(dir, { recursive: true, force: true });
    }
    live.clear();
  };
  process.once('exit', cleanup);
  // A signal skips 'exit'; clean up, then let the signal do what it would have done.
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(signal, () => {
      cleanup();
      process.kill(process.pid, signal);
    });
  }
}

/** A `dispose()` that kills the broker, forgets it and removes its directory, once however often it is called. */
export function disposeOnce(id: string, dir: string, killNow: () => Promise<void>): () => Promise<void> {
  let disposed = false;
  return async () => {
    if (disposed) return;
    disposed = true;
    await killNow();
    live.delete(id);
    rmSync(dir, { recursive: true, force: true });
  };
}

/** Start a new private broker; if it does not come up, leave nothing behind. */
async function firstStart(broker: PrivateBroker): Promise<PrivateBroker> {
  try {
    await broker.start();
  } catch (err) {
    await broker.dispose();
    throw err;
  }
  return broker;
}

/** Files in a private broker's directory that let a later run clean up after a test process that was SIGKILLed. */
const OWNER_FILE = 'owner.pid';
const BROKER_PID_FILE = 'broker.pid';
const DIR_PREFIXES = ['ewms-rabbitmq-', 'ewms-nats-'];

export function recordPids(dir: string, brokerPid: number | undefined): void {
  writeFileSync(join(dir, OWNER_FILE), String(process.pid));
  if (brokerPid !== undefined) writeFileSync(join(dir, BROKER_PID_FILE), String(brokerPid));
}

/**
 * Kill brokers left behind by test processes that died without running their exit hook (SIGKILL, OOM):
 * their directory names a dead owner. A broker pid is killed only if it still is a broker process.
 */
export function reapOrphans(): void {
  for (const name of readdirSync(tmpdir())) {
    if (!DIR_PREFIXES.some((prefix) => name.startsWith(prefix))) continue;
    const dir = join(tmpdir(), name);
    const owner = readPid(join(dir, OWNER_FILE));
    if (owner === undefined || isAlive(owner)) continue;
    const broker = readPid(join(dir, BROKER_PID_FILE));
    if (broker !== undefined && isAlive(broker) && /beam|nats-server|epmd/.test(readCmdline(broker))) {
      try {
        process.kill(broker, 'SIGKILL');
      } catch {
        // gone meanwhile
      }
    }
    rmSync(dir, { recursive: true, force: true });
  }
}

function readPid(file: string): number | undefined {
  try {
    const pid = Number(readFileSync(file, 'utf8').trim());
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

function readCmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8');
  } catch {
    return '';
  }
}

/**
 * A TCP port nothing listens on right now, for a private broker that binds it a moment later. Picked at
 * random below the kernel's ephemeral range (32768-60999 here): a port the kernel handed out and took back
 * is soon reused for the next outgoing connection or listen(0) of a test running in parallel, and the
 * broker's bind then fails with "address already in use".
 */
export async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < 100; attempt++) {
    const port = 20_000 + Math.floor(Math.random() * 12_000);
    if (await canListen(port)) return port;
  }
  throw new Error('no free TCP port found in 20000-31999');
}

function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.unref();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: exists but is not ours — still alive.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Send `signal` to a process that is not our child (a daemonized node) and wait for it; SIGKILL after `timeoutMs`. */
export async function signalPidAndWait(pid: number, signal: NodeJS.Signals, timeoutMs: number): Promise<void> {
  try {
    process.kill(pid, signal);
  } catch {
    // gone already
  }
  if (!(await waitForExit(pid, timeoutMs))) {
    process.kill(pid, 'SIGKILL');
    await waitForExit(pid, 5_000);
  }
}

export async function waitForExit(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (isAlive(pid)) {
    if (Date.now() > deadline) return false;
    await sleep(25);
  }
  return true;
}

export function tail(file: string, lines: number): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return `(no log at ${file})`;
  }
}

export function portAccepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = tcpConnect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** The environment without any RABBITMQ_ or ERL_ setting of the caller's that could leak into a private node. */
export function cleanEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (!/^(RABBITMQ_|ERL_|CONF_ENV_FILE$)/.test(key)) env[key] = value;
  }
  return env;
}

/**
 * A private RabbitMQ node (with the management plugin, like the shared one) on free ports.
 *
 * Isolation from the shared node: its own node name, distribution port, config file, enabled-plugins file,
 * env file (the system one names `rabbit@localhost` and port 5672), data and log dirs, and `HOME` set to
 * the temp dir so Erlang makes it its own cookie — it can never cluster with or talk to the shared node.
 * Only epmd is shared, which is what epmd is for. It runs as root; nothing here needs the rabbitmq user.
 */
export async function startPrivateRabbitMQ(options: PrivateRabbitMQOptions = {}): Promise<PrivateBroker> {
  const readyTimeoutMs = options.readyTimeoutMs ?? 45_000;
  reapOrphans();
  const dir = mkdtempSync(join(tmpdir(), 'ewms-rabbitmq-'));
  recordPids(dir, undefined);
  const [port, distPort, managementPort] = [await freePort(), await freePort(), await freePort()];
  const node = `ewms-test-${randomUUID().slice(0, 8)}@localhost`;
  writeFileSync(
    join(dir, 'rabbitmq.conf'),
    [
      `listeners.tcp.default = 127.0.0.1:${port}`,
      `management.tcp.ip = 127.0.0.1`,
      `management.tcp.port = ${managementPort}`,
      // Keep a nearly full test disk from blocking publishers.
      `disk_free_limit.absolute = 50MB`,
      ...(options.maxMessageBytes !== undefined ? [`max_message_size = ${options.maxMessageBytes}`] : []),
      '',
    ].join('\n'),
  );
  writeFileSync(join(dir, 'enabled_plugins'), '[rabbitmq_management].\n');
  writeFileSync(join(dir, 'rabbitmq-env.conf'), '');
  const env: NodeJS.ProcessEnv = {
    ...cleanEnv(),
    HOME: dir,
    RABBITMQ_CONF_ENV_FILE: join(dir, 'rabbitmq-env.conf'),
    RABBITMQ_CONFIG_FILE: join(dir, 'rabbitmq.conf'),
    RABBITMQ_ENABLED_PLUGINS_FILE: join(dir, 'enabled_plugins'),
    RABBITMQ_NODENAME: node,
    RABBITMQ_NODE_IP_ADDRESS: '127.0.0.1',
    RABBITMQ_NODE_PORT: String(port),
    RABBITMQ_DIST_PORT: String(distPort),
    RABBITMQ_MNESIA_BASE: join(dir, 'mnesia'),
    RABBITMQ_LOG_BASE: join(dir, 'log'),
    ERL_EPMD_ADDRESS: '127.0.0.1',
    RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS: '-kernel inet_dist_use_interface {127,0,0,1}',
  };
  const pidFile = join(dir, 'mnesia', `${node}.pid`);
  const logFile = join(dir, 'log', `${node}.log`);
  const url = `amqp://guest:guest@127.0.0.1:${port}`;
  let pid: number | undefined;
  let launcherOutput = '';

  const logTail = (lines = 30) => `${tail(logFile, lines)}${launcherOutput ? `\n(launcher) ${launcherOutput.trim()}` : ''}`;

  const start = async () => {
    if (pid !== undefined && isAlive(pid)) throw new Error(`private RabbitMQ ${node} is already running (pid ${pid})`);
    rmSync(pidFile, { force: true });
    launcherOutput = '';
    // -detached: the launcher exits at once and the node daemonizes; its pid lands in the pid file.
    const launcher = spawn(RABBITMQ_SERVER, ['-detached'], { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] });
    launcher.stdout.on('data', (b: Buffer) => (launcherOutput += b.toString()));
    launcher.stderr.on('data', (b: Buffer) => (launcherOutput += b.toString()));
    const launched = await new Promise<number | null>((resolve, reject) => {
      launcher.once('error', reject);
      launcher.once('exit', (code) => resolve(code));
    });
    if (launched !== 0) throw new Error(`${RABBITMQ_SERVER} -detached exited with ${launched}:\n${logTail()}`);

    const deadline = Date.now() + readyTimeoutMs;
    for (;;) {
      if (pid === undefined && existsSync(pidFile)) {
        const read = Number(readFileSync(pidFile, 'utf8').trim());
        if (Number.isInteger(read) && read > 0) {
          pid = read;
          recordPids(dir, pid);
        }
      }
      if (pid !== undefined && !isAlive(pid)) {
        pid = undefined;
        throw new Error(`private RabbitMQ ${node} died while starting; log tail:\n${logTail()}`);
      }
      if (pid !== undefined && (await portAccepts(port)) && (await amqpHandshake(url))) return;
      if (Date.now() > deadline) {
        throw new Error(`private RabbitMQ ${node} not ready on 127.0.0.1:${port} within ${readyTimeoutMs} ms; log tail:\n${logTail()}`);
      }
      await sleep(100);
    }
  };

  const signalAndWait = async (signal: NodeJS.Signals, timeoutMs: number) => {
    if (pid !== undefined) await signalPidAndWait(pid, signal, timeoutMs);
    pid = undefined;
  };

  const broker: PrivateBroker = {
    type: 'rabbitmq',
    url,
    port,
    dataDir: dir,
    managementUrl: `http://127.0.0.1:${managementPort}`,
    start,
    stop: () => signalAndWait('SIGTERM', 20_000),
    kill: () => signalAndWait('SIGKILL', 5_000),
    logTail,
    dispose: disposeOnce(node, dir, () => signalAndWait('SIGKILL', 5_000)),
  };
  track(node, { pid: () => pid, dir });
  return firstStart(broker);
}

/** Can we complete an AMQP handshake (the port alone opens before the node is fully booted)? */
export async function amqpHandshake(url: string): Promise<boolean> {
  try {
    const conn = await amqplib.connect(url, { timeout: 2_000 });
    conn.on('error', () => undefined);
    await conn.close();
    return true;
  } catch {
    return false;
  }
}

/**
 * A private nats-server with JetStream. The first start lets the server pick a free port (`-p -1`, read
 * back from its ports file, so there is no window for another process to take it); restarts reuse it.
 */
export async function startPrivateNats(options: PrivateNatsOptions = {}): Promise<PrivateBroker> {
  const readyTimeoutMs = options.readyTimeoutMs ?? 15_000;
  reapOrphans();
  const dir = mkdtempSync(join(tmpdir(), 'ewms-nats-'));
  const logFile = join(dir, 'nats.log');
  const id = `nats-${randomUUID()}`;
  const auth: string[] = [];
  if (options.token !== undefined) auth.push('--auth', options.token);
  if (options.user !== undefined) auth.push('--user', options.user.name, '--pass', options.user.password);
  const config: string[] = [];
  if (options.maxPayloadBytes !== undefined) {
    // No command-line flag for this one.
    writeFileSync(join(dir, 'nats.conf'), `max_payload: ${options.maxPayloadBytes}\n`);
    config.push('-c', join(dir, 'nats.conf'));
  }
  let port = -1;
  let child: ChildProcess | undefined;

  const logTail = (lines = 30) => tail(logFile, lines);

  const start = async () => {
    if (child && child.exitCode === null && child.signalCode === null) throw new Error(`private nats-server is already running on port ${port}`);
    const args = [...config, '-a', '127.0.0.1', '-p', String(port), '-js', '-sd', join(dir, 'jetstream'), '--ports_file_dir', dir, '-l', logFile, ...auth];
    const proc = spawn(NATS_SERVER, args, { cwd: dir, stdio: 'ignore' });
    child = proc;
    recordPids(dir, proc.pid);
    let exited: string | undefined;
    proc.once('exit', (code, signal) => (exited = `exited with ${code ?? signal}`));
    proc.once('error', (err) => (exited = `failed to start: ${err.message}`));

    const deadline = Date.now() + readyTimeoutMs;
    for (;;) {
      if (exited) throw new Error(`private nats-server ${exited}; log tail:\n${logTail()}`);
      const found = port === -1 ? readPortsFile(dir, proc.pid) : port;
      if (found !== undefined && found > 0) {
        port = found;
        if (await jetStreamReady(port, options)) return;
      }
      if (Date.now() > deadline) {
        throw new Error(`private nats-server not ready (port ${port}) within ${readyTimeoutMs} ms; log tail:\n${logTail()}`);
      }
      await sleep(20);
    }
  };

  const signalAndWait = async (signal: NodeJS.Signals, timeoutMs: number) => {
    const proc = child;
    if (!proc || proc.pid === undefined || proc.exitCode !== null || proc.signalCode !== null) return;
    const gone = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
    proc.kill(signal);
    const timer = setTimeout(() => proc.kill('SIGKILL'), timeoutMs);
    await gone;
    clearTimeout(timer);
  };

  const broker: PrivateBroker = {
    type: 'nats',
    get url() {
      return `nats://127.0.0.1:${port}`;
    },
    get port() {
      return port;
    },
    dataDir: dir,
    managementUrl: undefined,
    start,
    // SIGINT is nats-server's clean shutdown (exit 0); SIGTERM exits 1.
    stop: () => signalAndWait('SIGINT', 10_000),
    kill: () => signalAndWait('SIGKILL', 5_000),
    logTail,
    dispose: disposeOnce(id, dir, () => signalAndWait('SIGKILL', 5_000)),
  };
  track(id, { pid: () => (child && child.exitCode === null && child.signalCode === null ? child.pid : undefined), dir });
  return firstStart(broker);
}

/** The client port from `nats-server_<pid>.ports`, once the server has written it. */
function readPortsFile(dir: string, pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  const file = readdirSync(dir).find((f) => f === `nats-server_${pid}.ports`);
  if (!file) return undefined;
  try {
    const ports = JSON.parse(readFileSync(join(dir, file), 'utf8')) as { nats?: unknown };
    const first = Array.isArray(ports.nats) ? ports.nats[0] : undefined;
    return typeof first === 'string' ? Number(new URL(first).port) : undefined;
  } catch {
    return undefined; // written but not complete yet
  }
}

/** Does the server accept a client and answer a JetStream API request? */
async function jetStreamReady(port: number, options: PrivateNatsOptions): Promise<boolean> {
  try {
    const nc = await natsConnect({
      servers: `nats://127.0.0.1:${port}`,
      timeout: 1_000,
      reconnect: false,
      token: options.token,
      user: options.user?.name,
      pass: options.user?.password,
    });
    try {
      const jsm = await jetstreamManager(nc, { timeout: 1_000 });
      await jsm.getAccountInfo();
      return true;
    } finally {
      await nc.close();
    }
  } catch {
    return false;
  }
}
