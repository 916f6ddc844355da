/**
 * `npm run chaos`: the chaos suite on private brokers it starts and removes itself — RabbitMQ, then NATS
 * (or one of them), single nodes or, with `--cluster`, 3-node clusters. Prints each run's counts and exits
 * non-zero on any loss, duplicate delivered to the user, orphaned task process, secret leak or wrong outcome.
 */
import { hideBin } from 'yargs/helpers';
import yargs from 'yargs';
import { describeError } from '../common/redact.js';
import { formatReport } from './report.js';
import { runChaos, type ChaosReport } from './run.js';
import type { ChaosBrokerType } from './targets.js';

const argv = await yargs(hideBin(process.argv))
  .scriptName('npm run chaos --')
  .usage('$0 [options]\n\nSeeded chaos runs of pilots on private brokers; see the README section "Chaos suite".')
  .option('seed', { type: 'number', default: 1, describe: 'Seed of the event mix and the action schedule' })
  .option('events', { type: 'number', default: 10_000, describe: 'Events per broker' })
  .option('pilots', { type: 'number', default: 4, describe: 'Pilots kept running' })
  .option('broker', { choices: ['rabbitmq', 'nats', 'both'] as const, default: 'both' as const, describe: 'Which broker(s)' })
  .option('cluster', { type: 'boolean', default: false, describe: '3-node clusters (quorum queues, R3 streams); the queue leader is stopped and killed' })
  .option('sigkills', { type: 'number', describe: 'Pilots SIGKILLed per run (default 45 per 10,000 events)' })
  .option('sigterms', { type: 'number', describe: 'Pilots SIGTERMed per run (default 50 per 10,000 events)' })
  .option('broker-restarts', { type: 'boolean', default: true, describe: 'Kill (SIGKILL) and stop (SIGTERM) the broker (or the queue leader) once each, bringing it back' })
  .option('keep', { type: 'boolean', default: false, describe: 'Keep the run directories (pilot logs) even when a run passes' })
  .strict()
  .help()
  .parse();

const brokers: ChaosBrokerType[] = argv.broker === 'both' ? ['rabbitmq', 'nats'] : [argv.broker];
const reports: ChaosReport[] = [];
let broken = false;
for (const broker of brokers) {
  try {
    const report = await runChaos({
      broker,
      cluster: argv.cluster,
      seed: argv.seed,
      events: argv.events,
      pilots: argv.pilots,
      sigkills: argv.sigkills,
      sigterms: argv.sigterms,
      brokerDisruptions: argv['broker-restarts'],
      keepFiles: argv.keep,
      log: (line) => process.stderr.write(`${line}\n`),
    });
    reports.push(report);
    process.stdout.write(`${formatReport(report)}\n`);
  } catch (err) {
    broken = true;
    process.stdout.write(`== ${broker}${argv.cluster ? ' cluster' : ''}: the run broke off: ${describeError(err)}\n`);
  }
}
const failed = broken || reports.some((r) => r.failures.length > 0);
process.stdout.write(`${failed ? 'FAIL' : 'PASS'}: ${reports.length} run(s), seed ${argv.seed}\n`);
process.exitCode = failed ? 1 : 0;
