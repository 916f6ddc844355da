/**
 * Queue names → JetStream names, as the Python MQClient lays them out: stream `<name>-stream`, subject
 * `<name>-subject`, durable pull consumer `psub`.
 *
 * NATS forbids `.`, `*`, `>`, whitespace, `/` and `\` in stream names (and `*`/`>` are wildcards in
 * subjects). Each such character, and `~` itself, becomes `~` plus two hex digits, so the mapping is
 * reversible and a name without them (every EWMS queue id) maps to exactly what Python uses.
 */
const ESCAPED = /[~.*>/\\\s]/g;

export function escapeQueueName(queue: string): string {
  return queue.replace(ESCAPED, (c) => `~${c.charCodeAt(0).toString(16).padStart(2, '0').toUpperCase()}`);
}

export function unescapeQueueName(escaped: string): string {
  return escaped.replace(/~([0-9A-Fa-f]{2})/g, (_m, hex: string) => String.fromCharCode(parseInt(hex, 16)));
}

export function streamName(queue: string): string {
  return `${escapeQueueName(queue)}-stream`;
}

export function subjectName(queue: string): string {
  return `${escapeQueueName(queue)}-subject`;
}

/** The Python MQClient's durable consumer name, shared by every pilot of a queue. */
export const CONSUMER_NAME = 'psub';
