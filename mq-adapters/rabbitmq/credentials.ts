/**
 * Which user and password we present to RabbitMQ, for AMQP and the management API alike.
 *
 * The Python MQClient passes a token as `PlainCredentials("", token)`: an empty user name with the token as
 * the password (RabbitMQ's OAuth2 backend ignores the user name). We follow it so one
 * `EWMS_PILOT_QUEUE_*_AUTH_TOKEN` works with both clients.
 */
import type { BrokerAddress } from '../address.js';

/** The PLAIN credentials for one broker. `password` is a secret. */
export interface RabbitCredentials {
  username: string;
  password: string;
}

/**
 * User: the URL's, else `''` when a token is given (the Python convention), else `guest`.
 * Password: the token, else the URL's password, else `guest` (RabbitMQ's default account).
 */
export function rabbitCredentials(address: BrokerAddress, authToken: string | undefined): RabbitCredentials {
  const username = address.username ?? (authToken ? '' : 'guest');
  const password = authToken || address.password || 'guest';
  return { username, password };
}
