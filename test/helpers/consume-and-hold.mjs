// A consumer that takes messages and never settles them, then waits to be killed: the "pilot dies
// mid-task" of the conformance suite. Runs the built adapter exactly as a pilot process would.
// usage: node consume-and-hold.mjs URL QUEUE COUNT
import { connect } from '../../dist/mq-adapters/index.js';

const [url, queue, count] = process.argv.slice(2);
const broker = await connect({ address: url });
const sub = await broker.consume(queue, { prefetch: Number(count) });
let held = 0;
for await (const delivery of sub) {
  held += 1;
  process.stdout.write(`held ${delivery.eventId}\n`);
  if (held === Number(count)) break;
}
process.stdout.write('holding\n');
setInterval(() => {}, 1 << 30);
