/// <reference types="node" preserve="true" />
// The published declarations use Node's types (Buffer, NodeJS.ProcessEnv): a user's project gets them from the
// `@types/node` this package depends on, also with `"types": []` in its tsconfig.
/**
 * One broker API over RabbitMQ, NATS JetStream and Apache Pulsar.
 *
 * ```ts
 * import { connect } from 'ewms-pilot/mq-adapters';
 * const broker = await connect({ address: 'amqp://guest@localhost:5672', authToken: 'guest' });
 * await broker.declareQueue({ name: 'jobs' });
 * await broker.publish('jobs', { body: new TextEncoder().encode('hi') });
 * ```
 *
 * Each implementation is imported only when its broker is used, so a missing optional client library
 * (Pulsar's native one) never breaks the others.
 */
import { resolveAddress } from './address.js';
import type { Broker, ConnectOptions } from './types.js';

export * from './types.js';
export * from './errors.js';
export {
  parseBrokerAddress,
  formatBrokerAddress,
  resolveAddress,
  sameBroker,
  endpointUrl,
  isBrokerType,
  BROKER_TYPES,
  type BrokerAddress,
  type BrokerEndpoint,
} from './address.js';
export { EwmsError } from '../common/errors.js';

/** Connect to the broker named by `options.address` (and `options.type`). */
export async function connect(options: ConnectOptions): Promise<Broker> {
  const address = resolveAddress(options);
  switch (address.type) {
    case 'rabbitmq': {
      const { connectRabbitMQ } = await import('./rabbitmq/index.js');
      return connectRabbitMQ(address, options);
    }
    case 'nats': {
      const { connectNats } = await import('./nats/index.js');
      return connectNats(address, options);
    }
    case 'pulsar': {
      const { connectPulsar } = await import('./pulsar/index.js');
      return connectPulsar(address, options);
    }
  }
}
