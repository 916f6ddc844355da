export { AdapterUnavailableError, BrokerUnreachableError, QueueNotFoundError } from '../errors.js';
