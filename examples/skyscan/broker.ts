/**
 * Which broker the demo uses, so that it runs on a fresh machine with whatever is there:
 *
 * 1. the URL given explicitly (`--broker`), else `EWMS_BROKER_URL`;
 * 2. else a RabbitMQ on 127.0.0.1:5672 (guest/guest) that accepts a connection;
 * 3. else a NATS on 127.0.0.1:4222 that accepts a connection;
 * 4. else a throwaway `nats-server -js` of our own on a free port, data in a temporary directory, both
 *    gone when the demo ends (normally, on error, or on Ctrl-C);
 * 5. else one clear error that says what to install or set.
 *
 * The probes are injectable so the choice itself is unit-tested without brokers.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { connect as natsConnect } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { EwmsError } from '../../common/errors.js';
import { redact } from '../../common/redact.js';
import { connect, resolveAddress } from '../../mq-adapters/index.js';

/** The broker a fresh project machine runs: RabbitMQ with its default account. */
export const LOCAL_RABBITMQ_URL = 'amqp://guest:guest@127.0.0.1:5672';
/** The NATS (with JetStream) a fresh project machine runs. */
export const LOCAL_NATS_URL = 'nats://127.0.0.1:4222';

/** Where the chosen broker came from. */
export type BrokerSource = 'option' | 'env' | 'local-rabbitmq' | 'local-nats' | 'throwaway-nats';

/** The broker the demo will use. */
export interface ChosenBroker {
  /** Connect URL (may hold credentials: print `description`, never this). */
  url: string;
  source: BrokerSource;
  /** One line for the user, without credentials. */
  description: string;
  /** Stop what we started (the throwaway server); a no-op for a broker we only use. */
  stop(): Promise<void>;
}

/** A running throwaway nats-server. */
export interface ThrowawayNats {
  url: string;
  /** Its temporary directory (JetStream store, ports file, log). */
  dir: string;
  pid: number | undefined;
  stop(): Promise<void>;
}

/** How the choice looks at the machine; every member can be replaced in tests. */
export interface BrokerProbes {
  /** Does a broker accept a client at this URL (within a second or two)? */
  isReachable(url: string): Promise<boolean>;
  /** The absolute path of an executable on PATH, or undefined. */
  findExecutable(name: string): string | undefined;
  /** Start a private JetStream-enabled nats-server. */
  startNats(executable: string): Promise<ThrowawayNats>;
}

/** No broker given, none running, and no nats-server to start. */
export class NoBrokerError extends EwmsError {}

/** The throwaway nats-server would not start. */
export class ThrowawayBrokerError extends EwmsError {}

/** Options for `chooseBroker`. */
export interface ChooseBrokerOptions {
  /** A URL given on the command line; wins over everything. */
  url?: string;
  /** Where `EWMS_BROKER_URL` is read (default `process.env`). */
  env?: NodeJS.ProcessEnv;
  probes?: Partial<BrokerProbes>;
}

/** Pick the broker, starting a throwaway nats-server when nothing else is there. */
export async function chooseBroker(options: ChooseBrokerOptions = {}): Promise<ChosenBroker> {
  const probes: BrokerProbes = { isReachable, findExecutable, startNats: startThrowawayNats, ...options.probes };
  const env = options.env ?? process.env;
  const keep = async () => undefined;

  const given = options.url?.trim() || undefined;
  if (given) return { url: given, source: 'option', description: `${redact(given)} (from --broker)`, stop: keep };
  const fromEnv = env.EWMS_BROKER_URL?.trim() || undefined;
  if (fromEnv) return { url: fromEnv, source: 'env', description: `${redact(fromEnv)} (from EWMS_BROKER_URL)`, stop: keep };

  if (await probes.isReachable(LOCAL_RABBITMQ_URL)) {
    return { url: LOCAL_RABBITMQ_URL, source: 'local-rabbitmq', description: `the local RabbitMQ at ${redact(LOCAL_RABBITMQ_URL)}`, stop: keep };
  }
  if (await probes.isReachable(LOCAL_NATS_URL)) {
    return { url: LOCAL_NATS_URL, source: 'local-nats', description: `the local NATS at ${LOCAL_NATS_URL}`, stop: keep };
  }
  const natsServer = probes.findExecutable('nats-server');
  if (natsServer) {
    const server = await probes.startNats(natsServer);
    return {
      url: server.url,
      source: 'throwaway-nats',
      description: `a throwaway nats-server at ${server.url}, data in ${server.dir} (both removed at the end)`,
      stop: () => server.stop(),
    };
  }
  throw new NoBrokerError(
    `no message broker: EWMS_BROKER_URL is not set, nothing answers on ${redact(LOCAL_RABBITMQ_URL)} or ${LOCAL_NATS_URL}, and there is no nats-server on PATH`,
    'install NATS and run again (the demo starts it by itself): apt-get install -y nats-server — ' +
      'or point the demo at a broker: EWMS_BROKER_URL=amqp://user:password@host:5672 npm run demo',
  );
}

/** Does anything listen on host:port? Fails fast on a refused connection, unlike a client's retries. */
function portOpen(host: string, port: number, timeoutMs = 1_000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = netConnect({ host, port });
    const done = (open: boolean) => {
      socket.destroy();
      resolve(open);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

/**
 * Does a broker accept a client at `url`? A TCP check first (instant when nothing listens), then a real
 * connection through the project's own adapters (a RabbitMQ that refuses guest/guest does not count).
 */
export async function isReachable(url: string): Promise<boolean> {
  try {
    const { endpoints } = resolveAddress({ address: url });
    const open = await Promise.all(endpoints.map(({ host, port }) => portOpen(host, port)));
    if (!open.includes(true)) return false;
    const broker = await connect({ address: url, connectTimeoutMs: 1_500, reconnectWindowMs: 0 });
    await broker.close().catch(() => undefined);
    return true;
  } catch {
    return false;
  }
}

/** The first executable file called `name` on `PATH`. */
export function findExecutable(name: string, path = process.env.PATH ?? ''): string | undefined {
  for (const dir of path.split(delimiter)) {
    if (!dir) continue;
    const candidate = join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The client port a nats-server wrote to its ports file (`nats-server_<pid>.ports`), once it has. */
function readPortsFile(dir: string, pid: number): number | undefined {
  if (!readdirSync(dir).includes(`nats-server_${pid}.ports`)) return undefined;
  try {
    const ports = JSON.parse(readFileSync(join(dir, `nats-server_${pid}.ports`), 'utf8')) as { nats?: unknown };
    const first = Array.isArray(ports.nats) ? ports.nats[0] : undefined;
    return typeof first === 'string' ? Number(new URL(first).port) : undefined;
  } catch {
    return undefined; // being written
  }
}

/** Does the server answer a JetStream API request (the workflow's queues are JetStream streams)? */
async function jetStreamAnswers(url: string): Promise<boolean> {
  try {
    const nc = await natsConnect({ servers: url, timeout: 1_000, reconnect: false });
    try {
      await (await jetstreamManager(nc, { timeout: 1_000 })).getAccountInfo();
      return true;
    } finally {
      await nc.close();
    }
  } catch {
    return false;
  }
}

/**
 * Start `nats-server -js` on a free port chosen by the server itself (`-p -1`, read back from its ports
 * file), its store in a fresh temporary directory. The server runs in its own process group, so a Ctrl-C
 * at the terminal reaches only the demo, which then stops the server after it has cleaned its queues.
 * Should the demo die without stopping it, an exit hook kills it and removes the directory.
 */
export async function startThrowawayNats(executable: string, options: { readyTimeoutMs?: number } = {}): Promise<ThrowawayNats> {
  const readyTimeoutMs = options.readyTimeoutMs ?? 10_000;
  const dir = mkdtempSync(join(tmpdir(), 'ewms-demo-nats-'));
  const args = ['-a', '127.0.0.1', '-p', '-1', '-js', '-sd', join(dir, 'jetstream'), '--ports_file_dir', dir, '-l', join(dir, 'nats.log')];
  const child: ChildProcess = spawn(executable, args, { cwd: dir, stdio: 'ignore', detached: true });
  let exited: string | undefined;
  const gone = new Promise<void>((resolve) => {
    child.once('exit', (code, signal) => {
      exited = `exited with ${code ?? signal}`;
      resolve();
    });
    child.once('error', (err) => {
      exited = `could not start (${err.message})`;
      resolve();
    });
  });
  const killNow = () => {
    try {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    } catch {
      // already gone
    }
    rmSync(dir, { recursive: true, force: true });
  };
  process.once('exit', killNow);

  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    process.removeListener('exit', killNow);
    if (!exited) {
      child.kill('SIGINT'); // nats-server's clean shutdown
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await gone;
      clearTimeout(timer);
    }
    rmSync(dir, { recursive: true, force: true });
  };

  const deadline = Date.now() + readyTimeoutMs;
  for (;;) {
    if (exited) {
      const log = (() => {
        try {
          return readFileSync(join(dir, 'nats.log'), 'utf8').trim().split('\n').slice(-5).join('\n');
        } catch {
          return '';
        }
      })();
      await stop();
      throw new ThrowawayBrokerError(`the throwaway nats-server ${exited}${log ? `:\n${log}` : ''}`, `run '${executable} -js -p -1' by hand to see why, or set EWMS_BROKER_URL`);
    }
    const port = child.pid === undefined ? undefined : readPortsFile(dir, child.pid);
    if (port && (await jetStreamAnswers(`nats://127.0.0.1:${port}`))) {
      return { url: `nats://127.0.0.1:${port}`, dir, pid: child.pid, stop };
    }
    if (Date.now() > deadline) {
      await stop();
      throw new ThrowawayBrokerError(`the throwaway nats-server was not ready within ${readyTimeoutMs} ms`, 'the machine may be overloaded; try again, or set EWMS_BROKER_URL');
    }
    await sleep(20);
  }
}
