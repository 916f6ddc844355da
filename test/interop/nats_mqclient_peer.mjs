#!/usr/bin/env node
/**
 * A stand-in for the Python MQClient on NATS, for interop tests (Debian has no python3-nats): it lays
 * JetStream out exactly as MQClient's NATS client does — `add_stream(name="<q>-stream",
 * subjects=["<q>-subject"])` with server defaults, a durable pull consumer `psub` with nats.py's defaults
 * (explicit ack, no delivery limit), bodies in the v2 wire format (zstd level 3 of
 * {"headers": {}, "data": …}) and no NATS headers at all — and it is a separate client process that shares
 * no code with the adapters under test.
 *
 *   nats_mqclient_peer.mjs produce NATS_URL QUEUE             # JSON values on stdin, one per line
 *   nats_mqclient_peer.mjs consume NATS_URL QUEUE N TIMEOUT_S # {"headers":..,"data":..} per line on stdout
 */
import { connect } from '@nats-io/transport-node';
import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager } from '@nats-io/jetstream';
import { compress, decompress } from 'zstd-napi';

async function open(url, queue) {
  const nc = await connect({ servers: url });
  const jsm = await jetstreamManager(nc);
  const stream = `${queue}-stream`;
  const subject = `${queue}-subject`;
  try {
    await jsm.streams.info(stream);
  } catch {
    await jsm.streams.add({ name: stream, subjects: [subject] });
  }
  return { nc, jsm, js: jetstream(nc), stream, subject };
}

async function produce(url, queue) {
  const { nc, js, subject } = await open(url, queue);
  let input = '';
  for await (const chunk of process.stdin) input += chunk;
  let count = 0;
  for (const line of input.split('\n')) {
    if (!line.trim()) continue;
    const body = compress(Buffer.from(JSON.stringify({ headers: {}, data: JSON.parse(line) })), { compressionLevel: 3 });
    await js.publish(subject, body);
    count += 1;
  }
  await nc.drain();
  process.stderr.write(`produced ${count}\n`);
  return 0;
}

async function consume(url, queue, n, timeoutS) {
  const { nc, jsm, js, stream, subject } = await open(url, queue);
  try {
    await jsm.consumers.info(stream, 'psub');
  } catch {
    await jsm.consumers.add(stream, { durable_name: 'psub', ack_policy: AckPolicy.Explicit, deliver_policy: DeliverPolicy.All, filter_subject: subject });
  }
  const consumer = await js.consumers.get(stream, 'psub');
  const deadline = Date.now() + timeoutS * 1000;
  let got = 0;
  while (got < n && Date.now() < deadline) {
    const batch = await consumer.fetch({ max_messages: Math.min(100, n - got), expires: 1000 });
    for await (const m of batch) {
      process.stdout.write(`${JSON.stringify(JSON.parse(Buffer.from(decompress(m.data)).toString('utf8')))}\n`);
      m.ack();
      got += 1;
    }
  }
  await nc.drain();
  return got >= n ? 0 : 1;
}

const [, , command, url, queue, n, timeout] = process.argv;
const run = command === 'produce' && url && queue ? produce(url, queue) : command === 'consume' && url && queue && n && timeout ? consume(url, queue, Number(n), Number(timeout)) : null;
if (!run) {
  process.stderr.write('usage: nats_mqclient_peer.mjs produce URL QUEUE | consume URL QUEUE N TIMEOUT_S\n');
  process.exit(2);
}
run.then((code) => process.exit(code), (err) => {
  process.stderr.write(`${err?.stack ?? err}\n`);
  process.exit(1);
});
