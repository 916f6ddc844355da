// A consumer that takes messages and never settles them, then waits to be SIGKILLed: the "pilot dies
// mid-task" of the conformance suite. It runs the built adapter (dist/) in its own process, exactly as a
// pilot would, so the broker sees a real connection drop rather than a polite close.
//
// usage: node consume-and-hold.mjs '<json>'  with {"connect": ConnectOptions, "queue": string,
//        "take": number, "consume": ConsumeOptions}
// stdout: one line per held delivery, `held <json {eventId, deliveryCount}>`, then `holding`.
//         On failure: `error <message>` and exit code 1.
import { connect } from '../../dist/mq-adapters/index.js';

try {
  const { connect: connectOptions, queue, take, consume } = JSON.parse(process.argv[2] ?? '{}');
  const broker = await connect(connectOptions);
  const sub = await broker.consume(queue, consume);
  const iterator = sub[Symbol.asyncIterator]();
  // Iterate by hand: leaving a for-await loop would end the subscription, which is not what a crash does.
  for (let held = 0; held < take; held++) {
    const { value, done } = await iterator.next();
    if (done) throw new Error(`the subscription ended after ${held} deliveries`);
    process.stdout.write(`held ${JSON.stringify({ eventId: value.eventId, deliveryCount: value.deliveryCount })}\n`);
  }
  process.stdout.write('holding\n');
  setInterval(() => undefined, 1 << 30);
} catch (err) {
  process.stdout.write(`error ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
}
