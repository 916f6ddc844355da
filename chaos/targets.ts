/**
 * The brokers a chaos run owns: a private RabbitMQ node or nats-server, or a private 3-node cluster of
 * either, each on free ports with its data in a temporary directory (test/helpers/). Each with a password
 * drawn per run (a RabbitMQ or NATS user's, a NATS cluster's token), so the run can search every file the
 * pilots wrote for it.
 */
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ConnectOptions } from '../mq-adapters/types.js';
import type { CutWindow } from './pilot-logs.js';
import { startPrivateNats, startPrivateRabbitMQ, type PrivateBroker } from '../test/helpers/brokers.js';
import { startNatsCluster, startRabbitMQCluster, type BrokerCluster } from '../test/helpers/clusters.js';

export type ChaosBrokerType = 'rabbitmq' | 'nats';

/** How a broker disruption stops the broker (or the queue's leading node). */
export type DisruptionSignal = 'SIGTERM' | 'SIGKILL';

/** A broker the suite may disrupt. */
export interface ChaosTarget {
  readonly type: ChaosBrokerType;
  readonly cluster: boolean;
  /** What it is, for the report (`private RabbitMQ node`, `3-node NATS cluster (R3 streams)`). */
  readonly label: string;
  /** How coordinator and pilots connect (with the suite's credentials). */
  readonly broker: ConnectOptions;
  /** The password to look for in the pilots' files; undefined where the broker runs without one. */
  readonly secret: string | undefined;
  /** The broker's message size limit, when the suite set one (oversize events need it). */
  readonly maxMessageBytes: number | undefined;
  /**
   * Stop the broker (single) or the node leading `queue` (cluster) with `signal`, keep it down `downMs`,
   * start it again; resolves once it serves again with what was done and the window in which deliveries in
   * hand were cut.
   */
  disrupt(signal: DisruptionSignal, queue: string, downMs: number): Promise<Disruption>;
  dispose(): Promise<void>;
}

/** A disruption done. */
export interface Disruption {
  description: string;
  /**
   * From just before the signal until the broker (or node) serves again: a pilot losing its connection or
   * channel in it lost it to the disruption, and the deliveries it held then count as attempts.
   */
  cut: CutWindow;
}

/** The limit the suite gives its single brokers: small enough that oversize events are cheap. */
export const SINGLE_BROKER_MAX_MESSAGE_BYTES = 512 * 1024;
/** A NATS server's own default `max_payload` (the cluster helper keeps it). */
const NATS_DEFAULT_MAX_PAYLOAD = 1024 * 1024;
const USER = 'chaos';

/** Start the broker(s) of one target. */
export async function startTarget(type: ChaosBrokerType, cluster: boolean): Promise<ChaosTarget> {
  // Hex: no character a URL or a config file would need escaped.
  const password = `chaos-${randomBytes(12).toString('hex')}`;
  if (!cluster) return type === 'rabbitmq' ? singleRabbitMQ(password) : singleNats(password);
  return type === 'rabbitmq' ? rabbitMQCluster(password) : natsCluster(password);
}

async function singleRabbitMQ(password: string): Promise<ChaosTarget> {
  const node = await startPrivateRabbitMQ({ maxMessageBytes: SINGLE_BROKER_MAX_MESSAGE_BYTES });
  try {
    await addRabbitMQUser(node.managementUrl!, password);
  } catch (err) {
    await node.dispose();
    throw err;
  }
  return single(node, 'private RabbitMQ node', {
    address: `amqp://${USER}@127.0.0.1:${node.port}`,
    authToken: password,
    managementUrl: node.managementUrl!,
  }, password);
}

async function singleNats(password: string): Promise<ChaosTarget> {
  // A user and password here; the cluster takes a token (as EWMS gives its NATS queues): both kinds reach pilots.
  const server = await startPrivateNats({ user: { name: USER, password }, maxPayloadBytes: SINGLE_BROKER_MAX_MESSAGE_BYTES });
  return single(server, 'private nats-server (JetStream)', { address: `nats://${USER}@127.0.0.1:${server.port}`, authToken: password }, password);
}

function single(broker: PrivateBroker, label: string, options: ConnectOptions, password: string): ChaosTarget {
  return {
    type: broker.type as ChaosBrokerType,
    cluster: false,
    label,
    broker: options,
    secret: password,
    maxMessageBytes: SINGLE_BROKER_MAX_MESSAGE_BYTES,
    disrupt: async (signal, _queue, downMs) => {
      const t0 = Date.now();
      await (signal === 'SIGKILL' ? broker.kill() : broker.stop());
      await sleep(downMs);
      await broker.start();
      const cut = { from: t0, until: Date.now() };
      const description = `broker ${signal === 'SIGKILL' ? 'SIGKILLed' : 'stopped (SIGTERM)'} and restarted: down ${((Date.now() - t0) / 1000).toFixed(1)} s`;
      return { description, cut };
    },
    dispose: () => broker.dispose(),
  };
}

async function rabbitMQCluster(password: string): Promise<ChaosTarget> {
  const cluster = await startRabbitMQCluster({ management: true });
  const managementUrl = cluster.nodes[0]!.managementUrl!;
  try {
    await addRabbitMQUser(managementUrl, password);
  } catch (err) {
    await cluster.dispose();
    throw err;
  }
  const ports = cluster.nodes.map((n) => `127.0.0.1:${n.port}`).join(',');
  // RabbitMQ's default max_message_size (128 MiB) stays: no oversize events on this target.
  return clustered(cluster, '3-node RabbitMQ cluster (quorum queues)', { address: `amqp://${USER}@${ports}`, authToken: password, managementUrl }, password, undefined);
}

async function natsCluster(token: string): Promise<ChaosTarget> {
  const cluster = await startNatsCluster({ token });
  return clustered(cluster, '3-node NATS cluster (R3 streams)', { address: cluster.address, authToken: token }, token, NATS_DEFAULT_MAX_PAYLOAD);
}

function clustered(cluster: BrokerCluster, label: string, options: ConnectOptions, secret: string | undefined, maxMessageBytes: number | undefined): ChaosTarget {
  return {
    type: cluster.type,
    cluster: true,
    label,
    broker: options,
    secret,
    maxMessageBytes,
    disrupt: async (signal, queue, downMs) => {
      const leader = await cluster.leaderOf(queue);
      const t0 = Date.now();
      await (signal === 'SIGKILL' ? leader.kill() : leader.stop());
      const successor = await cluster.leaderOf(queue, 60_000).catch(() => undefined);
      const electedMs = Date.now() - t0;
      await sleep(Math.max(0, downMs - electedMs));
      await leader.start();
      const cut = { from: t0, until: Date.now() };
      const description =
        `leader ${leader.name} of the queue ${signal === 'SIGKILL' ? 'SIGKILLed' : 'stopped (SIGTERM)'}; new leader ${successor?.name ?? 'none'} ` +
        `after ${(electedMs / 1000).toFixed(1)} s; ${leader.name} back after ${((Date.now() - t0) / 1000).toFixed(1)} s`;
      return { description, cut };
    },
    dispose: () => cluster.dispose(),
  };
}

/** The suite's own user, allowed everything on `/` (the pilots install their dead-letter policy with it). */
async function addRabbitMQUser(managementUrl: string, password: string): Promise<void> {
  const auth = `Basic ${Buffer.from('guest:guest').toString('base64')}`;
  const put = async (path: string, body: object) => {
    const res = await fetch(`${managementUrl}${path}`, {
      method: 'PUT',
      headers: { authorization: auth, 'content-type': 'application/json' },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(15_000),
    });
    if (!res.ok) throw new Error(`management API PUT ${path}: HTTP ${res.status} ${await res.text()}`);
  };
  // The management plugin may still be starting right after the AMQP port opened.
  for (let tries = 1; ; tries++) {
    try {
      await put(`/api/users/${USER}`, { password, tags: 'administrator' });
      break;
    } catch (err) {
      if (tries >= 60) throw err;
      await sleep(500);
    }
  }
  await put(`/api/permissions/%2F/${USER}`, { configure: '.*', write: '.*', read: '.*' });
}
