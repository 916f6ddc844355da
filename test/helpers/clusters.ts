/**
 * Private broker clusters on 127.0.0.1 for failover tests and chaos runs: a RabbitMQ 3.10 cluster (quorum
 * queues replicate across its nodes by themselves) and a NATS JetStream cluster joined by routes (streams
 * replicated as their creator asks, e.g. R3). Each runs beside the shared brokers on free ports, with all
 * state in temporary directories, and never touches the shared ones.
 *
 * ```ts
 * const cluster = await startRabbitMQCluster();          // or startNatsCluster()
 * try {
 *   const broker = await connect({ address: cluster.address });   // every node, one address list
 *   ...
 *   const leader = await cluster.leaderOf('my-queue');
 *   await leader.kill();                                 // SIGKILL, as a crashed machine
 *   ...
 *   await leader.start();                                // back with its data; rejoins the cluster
 * } finally {
 *   await cluster.dispose();                             // kills every node, removes every directory
 * }
 * ```
 *
 * Isolation (measured recipes in ENVIRONMENT.md): RabbitMQ nodes get their own Erlang cookie (a `HOME` of
 * the cluster's), their own epmd on a free port, and an empty env file so `/etc/rabbitmq/rabbitmq-env.conf`
 * stays out; NATS servers get their own cluster name and route ports. Nodes are killed when the test
 * process exits, and nodes of a SIGKILLed test process are reaped by the next private broker or cluster
 * started (as in brokers.ts).
 *
 * Costs here (2 cores): a RabbitMQ cluster of 3 is ready in ~10–15 s (nodes boot in parallel, then two
 * joins through `rabbitmqctl`), ~140 MB per node; a NATS cluster of 3 in well under a second, ~15 MB per node.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect as natsConnect } from '@nats-io/transport-node';
import { streamName } from '../../mq-adapters/nats/names.js';
import {
  NATS_SERVER,
  RABBITMQ_SERVER,
  amqpHandshake,
  cleanEnv,
  disposeOnce,
  freePort,
  isAlive,
  portAccepts,
  reapOrphans,
  recordPids,
  signalPidAndWait,
  tail,
  track,
} from './brokers.js';

const run = promisify(execFile);
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** One node of a private cluster. */
export interface ClusterNode {
  /** `n1`, `n2`, … (the NATS `server_name`; the RabbitMQ node is `<cluster id>-n1@localhost`). */
  readonly name: string;
  /** This node alone, as a connect URL (RabbitMQ: with the `guest` credentials). */
  readonly url: string;
  /** The client port (AMQP / NATS); the same across stop/start. */
  readonly port: number;
  /** RabbitMQ with `management: true`: this node's management API. */
  readonly managementUrl: string | undefined;
  /** Is the node's process running? */
  readonly isRunning: boolean;
  /** Graceful shutdown (RabbitMQ SIGTERM, NATS SIGINT); resolves when the process is gone. */
  stop(): Promise<void>;
  /** SIGKILL, as a crashed machine would; resolves when the process is gone. */
  kill(): Promise<void>;
  /** Start again with the same ports and data; resolves once it serves clients as a cluster member. */
  start(): Promise<void>;
  /** The last lines of the node's log, for failure messages. */
  logTail(lines?: number): string;
}

/** A private cluster of brokers of one type. */
export interface BrokerCluster {
  readonly type: 'rabbitmq' | 'nats';
  readonly nodes: readonly ClusterNode[];
  /**
   * Every node as one address list — `amqp://guest:guest@127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3` or
   * `nats://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3` — the form `ConnectOptions.address`, the pilot's
   * `EWMS_PILOT_QUEUE_*_BROKER_ADDRESS` and `ewms --broker` take.
   */
  readonly address: string;
  /**
   * The running node that leads the queue's replicas now: RabbitMQ the quorum queue's leader, NATS the
   * leader of the queue's stream. Waits (up to `timeoutMs`, default 30 s) while a leader is being elected,
   * e.g. right after the old one was killed.
   */
  leaderOf(queue: string, timeoutMs?: number): Promise<ClusterNode>;
  /** Kill every node and remove every directory. Safe to call twice. */
  dispose(): Promise<void>;
}

/** Options for `startRabbitMQCluster`. */
export interface RabbitMQClusterOptions {
  /** Nodes (default 3). */
  size?: number;
  /** Enable the management plugin on every node (default false: ~2 s more per node, ~40 MB more each). */
  management?: boolean;
  /** Give up waiting for a node after this long (default 90 s: ~5 s normally, slower on a busy box). */
  readyTimeoutMs?: number;
}

/** Options for `startNatsCluster`. */
export interface NatsClusterOptions {
  /** Servers (default 3). */
  size?: number;
  /** Require this token from clients (`authorization { token }`; routes stay open between the servers). */
  token?: string;
  /** Give up waiting for the cluster after this long (default 30 s). */
  readyTimeoutMs?: number;
}

// ---------------------------------------------------------------------------------------------------------
// RabbitMQ
// ---------------------------------------------------------------------------------------------------------

const RABBITMQCTL = '/usr/lib/rabbitmq/bin/rabbitmqctl';
const EPMD = 'epmd';
const LOOPBACK_DIST = '-kernel inet_dist_use_interface {127,0,0,1}';

/**
 * A RabbitMQ cluster of private nodes: all nodes boot at once, then node 2… join node 1. Quorum queues
 * declared on it get a member on every node (RabbitMQ's default group size, up to 5 nodes).
 */
export async function startRabbitMQCluster(options: RabbitMQClusterOptions = {}): Promise<BrokerCluster> {
  const size = options.size ?? 3;
  const readyTimeoutMs = options.readyTimeoutMs ?? 90_000;
  reapOrphans();
  const id = `ewms-c${randomUUID().slice(0, 8)}`;
  // The shared part: HOME (with the cluster's cookie) and the cluster's own epmd. Its name starts like a
  // private node's, so the orphan reaper of brokers.ts handles it (broker.pid names the epmd).
  const base = mkdtempSync(join(tmpdir(), 'ewms-rabbitmq-cluster-'));
  recordPids(base, undefined);
  const home = join(base, 'home');
  mkdirSync(home);
  writeFileSync(join(home, '.erlang.cookie'), randomBytes(15).toString('hex').toUpperCase().slice(0, 20));
  chmodSync(join(home, '.erlang.cookie'), 0o400);
  writeFileSync(join(base, 'rabbitmq-env.conf'), '');
  const epmdPort = await freePort();
  const ctlPort = await freePort();

  const epmd = spawn(EPMD, ['-port', String(epmdPort), '-address', '127.0.0.1'], { stdio: 'ignore' });
  recordPids(base, epmd.pid);
  const stopEpmd = async () => {
    if (epmd.exitCode !== null || epmd.signalCode !== null) return;
    const gone = new Promise<void>((resolve) => epmd.once('exit', () => resolve()));
    epmd.kill('SIGKILL');
    await gone;
  };
  track(`${id}-epmd`, { pid: () => (epmd.exitCode === null && epmd.signalCode === null ? epmd.pid : undefined), dir: base });
  const nodes: RabbitNode[] = [];
  const disposeAll = disposeOnce(`${id}-epmd`, base, async () => {
    await Promise.all(nodes.map((n) => n.dispose()));
    await stopEpmd();
  });

  try {
    const deadline = Date.now() + 5_000;
    while (!(await portAccepts(epmdPort))) {
      if (Date.now() > deadline) throw new Error(`the cluster's epmd did not listen on 127.0.0.1:${epmdPort}`);
      await sleep(20);
    }
    for (let i = 1; i <= size; i++) {
      nodes.push(
        await RabbitNode.create({
          name: `n${i}`,
          erlangNode: `${id}-n${i}@localhost`,
          shared: { home, envFile: join(base, 'rabbitmq-env.conf'), epmdPort, ctlPort },
          management: options.management ?? false,
          readyTimeoutMs,
        }),
      );
    }
    await Promise.all(nodes.map((n) => n.launch()));
    const [first, ...rest] = nodes;
    // One join at a time: concurrent joins to one node can fail with a Mnesia lock timeout.
    for (const node of rest) await node.join(first!.erlangNode);
    await first!.waitForMembers(nodes.map((n) => n.erlangNode), readyTimeoutMs);
  } catch (err) {
    await disposeAll();
    throw err;
  }

  const user = 'guest:guest';
  return {
    type: 'rabbitmq',
    nodes,
    address: `amqp://${user}@${nodes.map((n) => `127.0.0.1:${n.port}`).join(',')}`,
    leaderOf: async (queue, timeoutMs = 30_000) => {
      const end = Date.now() + timeoutMs;
      let last = 'no answer yet';
      for (;;) {
        const asker = nodes.find((n) => n.isRunning);
        if (asker) {
          try {
            const leader = await asker.queueLeader(queue);
            const node = nodes.find((n) => n.erlangNode === leader);
            if (node?.isRunning) return node;
            last = `leader reported as ${leader ?? 'none'}`;
          } catch (err) {
            last = err instanceof Error ? err.message : String(err);
          }
        }
        if (Date.now() > end) throw new Error(`no running leader for queue '${queue}' within ${timeoutMs} ms (${last})`);
        await sleep(250);
      }
    },
    dispose: disposeAll,
  };
}

interface RabbitNodeSpec {
  name: string;
  erlangNode: string;
  shared: { home: string; envFile: string; epmdPort: number; ctlPort: number };
  management: boolean;
  readyTimeoutMs: number;
}

class RabbitNode implements ClusterNode {
  readonly url: string;
  readonly managementUrl: string | undefined;
  private pid: number | undefined;
  private readonly env: NodeJS.ProcessEnv;
  private readonly pidFile: string;
  private readonly logFile: string;
  private launcherOutput = '';
  readonly dispose: () => Promise<void>;

  private constructor(
    private readonly spec: RabbitNodeSpec,
    private readonly dir: string,
    readonly port: number,
    distPort: number,
    managementPort: number | undefined,
  ) {
    this.url = `amqp://guest:guest@127.0.0.1:${port}`;
    this.managementUrl = managementPort === undefined ? undefined : `http://127.0.0.1:${managementPort}`;
    this.pidFile = join(dir, 'mnesia', `${spec.erlangNode}.pid`);
    this.logFile = join(dir, 'log', `${spec.erlangNode}.log`);
    this.env = {
      ...cleanEnv(),
      HOME: spec.shared.home,
      ERL_EPMD_PORT: String(spec.shared.epmdPort),
      ERL_EPMD_ADDRESS: '127.0.0.1',
      RABBITMQ_CONF_ENV_FILE: spec.shared.envFile,
      RABBITMQ_CONFIG_FILE: join(dir, 'rabbitmq.conf'),
      RABBITMQ_ENABLED_PLUGINS_FILE: join(dir, 'enabled_plugins'),
      RABBITMQ_NODENAME: spec.erlangNode,
      RABBITMQ_NODE_IP_ADDRESS: '127.0.0.1',
      RABBITMQ_NODE_PORT: String(port),
      RABBITMQ_DIST_PORT: String(distPort),
      RABBITMQ_MNESIA_BASE: join(dir, 'mnesia'),
      RABBITMQ_LOG_BASE: join(dir, 'log'),
      RABBITMQ_CTL_DIST_PORT_MIN: String(spec.shared.ctlPort),
      RABBITMQ_CTL_DIST_PORT_MAX: String(spec.shared.ctlPort + 10),
      RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS: LOOPBACK_DIST,
      RABBITMQ_CTL_ERL_ARGS: LOOPBACK_DIST,
    };
    this.dispose = disposeOnce(`${spec.erlangNode}`, dir, () => this.signalAndWait('SIGKILL', 5_000));
    track(spec.erlangNode, { pid: () => this.pid, dir });
  }

  static async create(spec: RabbitNodeSpec): Promise<RabbitNode> {
    const dir = mkdtempSync(join(tmpdir(), 'ewms-rabbitmq-node-'));
    recordPids(dir, undefined);
    const [port, distPort] = [await freePort(), await freePort()];
    const managementPort = spec.management ? await freePort() : undefined;
    writeFileSync(
      join(dir, 'rabbitmq.conf'),
      [
        `listeners.tcp.default = 127.0.0.1:${port}`,
        ...(managementPort !== undefined ? ['management.tcp.ip = 127.0.0.1', `management.tcp.port = ${managementPort}`] : []),
        'disk_free_limit.absolute = 50MB',
        '',
      ].join('\n'),
    );
    writeFileSync(join(dir, 'enabled_plugins'), spec.management ? '[rabbitmq_management].\n' : '[].\n');
    return new RabbitNode(spec, dir, port, distPort, managementPort);
  }

  get name(): string {
    return this.spec.name;
  }

  get erlangNode(): string {
    return this.spec.erlangNode;
  }

  get isRunning(): boolean {
    return this.pid !== undefined && isAlive(this.pid);
  }

  logTail(lines = 30): string {
    return `${tail(this.logFile, lines)}${this.launcherOutput ? `\n(launcher) ${this.launcherOutput.trim()}` : ''}`;
  }

  /** Boot the node and wait for an AMQP handshake (not yet a cluster member if it never joined). */
  async launch(): Promise<void> {
    if (this.isRunning) throw new Error(`cluster node ${this.spec.erlangNode} is already running (pid ${this.pid})`);
    rmSync(this.pidFile, { force: true });
    this.pid = undefined;
    this.launcherOutput = '';
    const launcher = spawn(RABBITMQ_SERVER, ['-detached'], { cwd: this.dir, env: this.env, stdio: ['ignore', 'pipe', 'pipe'] });
    launcher.stdout.on('data', (b: Buffer) => (this.launcherOutput += b.toString()));
    launcher.stderr.on('data', (b: Buffer) => (this.launcherOutput += b.toString()));
    const code = await new Promise<number | null>((resolve, reject) => {
      launcher.once('error', reject);
      launcher.once('exit', (c) => resolve(c));
    });
    if (code !== 0) throw new Error(`${RABBITMQ_SERVER} -detached (${this.spec.erlangNode}) exited with ${code}:\n${this.logTail()}`);
    const deadline = Date.now() + this.spec.readyTimeoutMs;
    for (;;) {
      if (this.pid === undefined && existsSync(this.pidFile)) {
        const read = Number(readFileSync(this.pidFile, 'utf8').trim());
        if (Number.isInteger(read) && read > 0) {
          this.pid = read;
          recordPids(this.dir, read);
        }
      }
      if (this.pid !== undefined && !isAlive(this.pid)) {
        this.pid = undefined;
        throw new Error(`cluster node ${this.spec.erlangNode} died while starting; log tail:\n${this.logTail()}`);
      }
      if (this.pid !== undefined && (await portAccepts(this.port)) && (await amqpHandshake(this.url))) return;
      if (Date.now() > deadline) {
        throw new Error(`cluster node ${this.spec.erlangNode} not ready on 127.0.0.1:${this.port} within ${this.spec.readyTimeoutMs} ms; log tail:\n${this.logTail()}`);
      }
      await sleep(100);
    }
  }

  /** A node that was a member before comes back into the cluster by itself once booted. */
  async start(): Promise<void> {
    await this.launch();
    await this.ctl(['await_startup'], 60_000);
  }

  async join(leader: string): Promise<void> {
    await this.ctl(['stop_app']);
    await this.ctl(['join_cluster', leader]);
    await this.ctl(['start_app']);
  }

  /** Wait until this node sees every one of `members` running. */
  async waitForMembers(members: string[], timeoutMs: number): Promise<void> {
    const end = Date.now() + timeoutMs;
    let seen: string[] = [];
    for (;;) {
      try {
        const out = await this.ctl(['cluster_status', '--formatter', 'json']);
        seen = (JSON.parse(out) as { running_nodes?: string[] }).running_nodes ?? [];
        if (members.every((m) => seen.includes(m))) return;
      } catch {
        // not answering yet
      }
      if (Date.now() > end) throw new Error(`cluster of ${members.join(', ')} not formed within ${timeoutMs} ms (running: ${seen.join(', ')})`);
      await sleep(250);
    }
  }

  /** The Erlang node leading the quorum queue `queue`, as this node knows it. */
  async queueLeader(queue: string): Promise<string | undefined> {
    const out = await this.ctl(['list_queues', '--quiet', '--formatter', 'json', 'name', 'leader']);
    const rows = JSON.parse(out) as Array<{ name?: string; leader?: string }>;
    const row = rows.find((r) => r.name === queue);
    if (!row) throw new Error(`queue '${queue}' not found on the cluster`);
    return row.leader || undefined;
  }

  async stop(): Promise<void> {
    await this.signalAndWait('SIGTERM', 30_000);
  }

  async kill(): Promise<void> {
    await this.signalAndWait('SIGKILL', 5_000);
  }

  private async ctl(args: string[], timeout = 30_000): Promise<string> {
    try {
      const { stdout } = await run(RABBITMQCTL, ['-n', this.spec.erlangNode, ...args], { env: this.env, timeout });
      return stdout;
    } catch (err) {
      const e = err as { stderr?: string; stdout?: string; message?: string };
      throw new Error(`rabbitmqctl ${args[0]} on ${this.spec.erlangNode} failed: ${(e.stderr || e.stdout || e.message || '').trim()}`);
    }
  }

  private async signalAndWait(signal: NodeJS.Signals, timeoutMs: number): Promise<void> {
    if (this.pid !== undefined) await signalPidAndWait(this.pid, signal, timeoutMs);
    this.pid = undefined;
  }
}

// ---------------------------------------------------------------------------------------------------------
// NATS
// ---------------------------------------------------------------------------------------------------------

/** A NATS JetStream cluster joined by routes; every server also serves JetStream. */
export async function startNatsCluster(options: NatsClusterOptions = {}): Promise<BrokerCluster> {
  const size = options.size ?? 3;
  const readyTimeoutMs = options.readyTimeoutMs ?? 30_000;
  reapOrphans();
  const clusterName = `ewms-c${randomUUID().slice(0, 8)}`;
  const ports: Array<{ client: number; route: number; http: number }> = [];
  for (let i = 0; i < size; i++) ports.push({ client: await freePort(), route: await freePort(), http: await freePort() });
  const nodes = ports.map((p, i) => new NatsNode(`n${i + 1}`, clusterName, p, ports.filter((_, j) => j !== i).map((o) => o.route), readyTimeoutMs, options.token));
  const address = `nats://${nodes.map((n) => `127.0.0.1:${n.port}`).join(',')}`;
  const dispose = async () => {
    await Promise.all(nodes.map((n) => n.dispose()));
  };
  try {
    await Promise.all(nodes.map((n) => n.launch()));
    // Every server healthy means routes are up and a JetStream meta leader was elected.
    await Promise.all(nodes.map((n) => n.waitHealthy()));
  } catch (err) {
    await dispose();
    throw err;
  }
  return {
    type: 'nats',
    nodes,
    address,
    leaderOf: async (queue, timeoutMs = 30_000) => {
      const end = Date.now() + timeoutMs;
      let last = 'no answer yet';
      for (;;) {
        const running = nodes.filter((n) => n.isRunning);
        if (running.length > 0) {
          try {
            const nc = await natsConnect({ servers: running.map((n) => `127.0.0.1:${n.port}`), timeout: 2_000, reconnect: false, token: options.token });
            try {
              const jsm = await jetstreamManager(nc, { timeout: 2_000 });
              const info = await jsm.streams.info(streamName(queue));
              const leader = info.cluster?.leader;
              const node = nodes.find((n) => n.name === leader);
              if (node?.isRunning) return node;
              last = `leader reported as ${leader ?? 'none'}`;
            } finally {
              await nc.close();
            }
          } catch (err) {
            last = err instanceof Error ? err.message : String(err);
          }
        }
        if (Date.now() > end) throw new Error(`no running leader for the stream of '${queue}' within ${timeoutMs} ms (${last})`);
        await sleep(250);
      }
    },
    dispose,
  };
}

class NatsNode implements ClusterNode {
  readonly url: string;
  readonly managementUrl = undefined;
  private readonly dir: string;
  private readonly logFile: string;
  private child: ChildProcess | undefined;
  readonly dispose: () => Promise<void>;

  constructor(
    readonly name: string,
    clusterName: string,
    private readonly ports: { client: number; route: number; http: number },
    peerRoutes: number[],
    private readonly readyTimeoutMs: number,
    token: string | undefined,
  ) {
    this.dir = mkdtempSync(join(tmpdir(), 'ewms-nats-node-'));
    recordPids(this.dir, undefined);
    this.url = `nats://127.0.0.1:${ports.client}`;
    this.logFile = join(this.dir, 'nats.log');
    writeFileSync(
      join(this.dir, 'nats.conf'),
      [
        `server_name: ${name}`,
        `listen: 127.0.0.1:${ports.client}`,
        `http: 127.0.0.1:${ports.http}`,
        `jetstream { store_dir: "${join(this.dir, 'js')}", max_memory_store: 256MB, max_file_store: 2GB }`,
        ...(token !== undefined ? [`authorization { token: "${token}" }`] : []),
        // Route URLs in an array need commas (measured: space-separated is a parse error).
        `cluster { name: ${clusterName}, listen: 127.0.0.1:${ports.route}, routes: [${peerRoutes.map((p) => `nats://127.0.0.1:${p}`).join(',')}] }`,
        '',
      ].join('\n'),
    );
    const id = `nats-cluster-${clusterName}-${name}`;
    this.dispose = disposeOnce(id, this.dir, () => this.signalAndWait('SIGKILL', 5_000));
    track(id, { pid: () => (this.isRunning ? this.child?.pid : undefined), dir: this.dir });
  }

  get port(): number {
    return this.ports.client;
  }

  get isRunning(): boolean {
    const c = this.child;
    return c !== undefined && c.exitCode === null && c.signalCode === null;
  }

  logTail(lines = 30): string {
    return tail(this.logFile, lines);
  }

  async launch(): Promise<void> {
    if (this.isRunning) throw new Error(`cluster server ${this.name} is already running on port ${this.port}`);
    const proc = spawn(NATS_SERVER, ['-c', join(this.dir, 'nats.conf'), '-l', this.logFile], { cwd: this.dir, stdio: 'ignore' });
    this.child = proc;
    recordPids(this.dir, proc.pid);
    let exited: string | undefined;
    proc.once('exit', (code, signal) => (exited = `exited with ${code ?? signal}`));
    proc.once('error', (err) => (exited = `failed to start: ${err.message}`));
    const deadline = Date.now() + this.readyTimeoutMs;
    while (!(await portAccepts(this.port))) {
      if (exited) throw new Error(`cluster server ${this.name} ${exited}; log tail:\n${this.logTail()}`);
      if (Date.now() > deadline) throw new Error(`cluster server ${this.name} not listening on ${this.port} within ${this.readyTimeoutMs} ms; log tail:\n${this.logTail()}`);
      await sleep(20);
    }
  }

  /** `/healthz` answers ok: routes up, JetStream meta leader known, this server's streams current. */
  async waitHealthy(): Promise<void> {
    const deadline = Date.now() + this.readyTimeoutMs;
    let last = '';
    for (;;) {
      try {
        const res = await fetch(`http://127.0.0.1:${this.ports.http}/healthz`, { signal: AbortSignal.timeout(2_000) });
        last = await res.text();
        if (res.ok) return;
      } catch (err) {
        last = err instanceof Error ? err.message : String(err);
      }
      if (!this.isRunning) throw new Error(`cluster server ${this.name} exited; log tail:\n${this.logTail()}`);
      if (Date.now() > deadline) throw new Error(`cluster server ${this.name} not healthy within ${this.readyTimeoutMs} ms (${last}); log tail:\n${this.logTail()}`);
      await sleep(50);
    }
  }

  async start(): Promise<void> {
    await this.launch();
    await this.waitHealthy();
  }

  /** SIGINT is nats-server's clean shutdown. */
  async stop(): Promise<void> {
    await this.signalAndWait('SIGINT', 10_000);
  }

  async kill(): Promise<void> {
    await this.signalAndWait('SIGKILL', 5_000);
  }

  private async signalAndWait(signal: NodeJS.Signals, timeoutMs: number): Promise<void> {
    const proc = this.child;
    if (!proc || !this.isRunning) return;
    const gone = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
    proc.kill(signal);
    const timer = setTimeout(() => proc.kill('SIGKILL'), timeoutMs);
    await gone;
    clearTimeout(timer);
  }
}
