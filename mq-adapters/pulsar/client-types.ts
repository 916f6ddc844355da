/**
 * The part of `pulsar-client` (the Node binding of the Pulsar C++ client) this adapter uses, typed here so
 * the package can stay an optional dependency: it needs the native libpulsar, which cannot be installed
 * everywhere (and not on this project's CI machines).
 */
export interface PulsarMessageId {
  toString(): string;
}

export interface PulsarMessage {
  getData(): Buffer;
  getProperties(): Record<string, string>;
  getRedeliveryCount(): number;
  getMessageId(): PulsarMessageId;
}

export interface PulsarProducer {
  send(message: { data: Buffer; properties?: Record<string, string> }): Promise<PulsarMessageId>;
  flush(): Promise<null>;
  close(): Promise<null>;
}

export interface PulsarConsumer {
  receive(timeoutMs?: number): Promise<PulsarMessage>;
  acknowledge(message: PulsarMessage): Promise<null>;
  negativeAcknowledge(message: PulsarMessage): void;
  close(): Promise<null>;
}

export interface PulsarClient {
  createProducer(config: { topic: string; sendTimeoutMs?: number; batchingEnabled?: boolean }): Promise<PulsarProducer>;
  subscribe(config: {
    topic: string;
    subscription: string;
    subscriptionType: 'Shared';
    subscriptionInitialPosition?: 'Earliest' | 'Latest';
    receiverQueueSize?: number;
    ackTimeoutMs?: number;
    nAckRedeliverTimeoutMs?: number;
    deadLetterPolicy?: { deadLetterTopic: string; maxRedeliverCount: number; initialSubscriptionName?: string };
  }): Promise<PulsarConsumer>;
  close(): Promise<null>;
}

export interface PulsarModule {
  Client: new (config: {
    serviceUrl: string;
    authentication?: unknown;
    operationTimeoutSeconds?: number;
    connectionTimeoutMs?: number;
  }) => PulsarClient;
  AuthenticationToken: new (config: { token: string }) => unknown;
}
