/**
 * A TCP proxy in front of a broker that lets a client's first `allow` publishes through and holds everything
 * the client sends after that (the broker never sees it), while the broker's replies flow freely. A pilot whose
 * outgoing broker address is the gate has published exactly `allow` messages when it stalls waiting for the
 * next confirm: killing it then is a pilot that died after publishing some of an event's outputs, before its ack.
 *
 * It reads just enough of each protocol to count publishes: AMQP 0-9-1 frames (`basic.publish`, class 60
 * method 40) and NATS protocol lines (`PUB`/`HPUB` to a subject outside the `$JS.` API).
 */
import { createServer, connect, type Server, type Socket } from 'node:net';

export interface PublishGate {
  port: number;
  /** Publishes let through so far. */
  published(): number;
  /** Resolves once a publish beyond `allow` was held back. */
  holding: Promise<void>;
  close(): Promise<void>;
}

type Protocol = 'amqp' | 'nats';

/** The length of the next whole unit in `buf` and whether it is a publish; undefined when incomplete. */
function nextUnit(protocol: Protocol, buf: Buffer, started: boolean): { length: number; publish: boolean } | undefined {
  if (protocol === 'amqp') {
    // The protocol header ("AMQP" 0 0 9 1) comes first, then frames: type, channel, size, payload, 0xCE.
    if (!started) return buf.length >= 8 ? { length: 8, publish: false } : undefined;
    if (buf.length < 7) return undefined;
    const length = 7 + buf.readUInt32BE(3) + 1;
    if (buf.length < length) return undefined;
    return { length, publish: buf[0] === 1 && buf.readUInt16BE(7) === 60 && buf.readUInt16BE(9) === 40 };
  }
  const eol = buf.indexOf('\r\n');
  if (eol < 0) return undefined;
  const words = buf.subarray(0, eol).toString('latin1').trim().split(/\s+/);
  const op = words[0]?.toUpperCase();
  if (op !== 'PUB' && op !== 'HPUB') return { length: eol + 2, publish: false };
  const length = eol + 2 + Number(words.at(-1)) + 2;
  if (buf.length < length) return undefined;
  return { length, publish: !(words[1] ?? '').startsWith('$JS.') };
}

export async function startPublishGate(protocol: Protocol, target: { host: string; port: number }, allow: number): Promise<PublishGate> {
  let published = 0;
  let onHold: () => void = () => undefined;
  const holding = new Promise<void>((resolve) => (onHold = resolve));
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const upstream = connect(target.port, target.host);
    sockets.add(client).add(upstream);
    let buf = Buffer.alloc(0);
    let started = false;
    let held = false;
    client.on('data', (chunk: Buffer) => {
      if (held) return;
      buf = Buffer.concat([buf, chunk]);
      for (let unit = nextUnit(protocol, buf, started); unit; unit = nextUnit(protocol, buf, started)) {
        if (unit.publish && published >= allow) {
          held = true;
          onHold();
          return;
        }
        upstream.write(buf.subarray(0, unit.length));
        buf = buf.subarray(unit.length);
        started = true;
        if (unit.publish) published += 1;
      }
    });
    upstream.on('data', (chunk: Buffer) => client.write(chunk));
    const end = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('close', end).on('error', end);
    upstream.on('close', end).on('error', end);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('the gate has no port');
  return {
    port: address.port,
    published: () => published,
    holding,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
