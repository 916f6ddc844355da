import { EwmsError } from '../../common/errors.js';

export { AdapterUnavailableError, BrokerUnreachableError } from '../errors.js';

/** An operation this adapter cannot do over Pulsar's binary protocol. */
export class PulsarUnsupportedError extends EwmsError {}
