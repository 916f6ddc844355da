/**
 * What a run's logs tell: each delivery's stay in a pilot (when it came, when it was let go, or held when the
 * log ends) and when the pilot lost a broker connection or channel, so the suite can say which deliveries were
 * ended by a SIGKILLed holder or cut by a broker disruption — both count as attempts — and whether a secret
 * appears in any file a pilot wrote.
 */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';

/** Log lines that end a delivery's stay in a pilot (the broker has it back, or it is settled). */
const LET_GO = new Set(['event settled', 'delivery dropped: its channel died', 'delivery over the limit dead-lettered']);
/** The adapters' lines for a lost broker connection or consumer channel: what the pilot held then was cut. */
const LOST = new Set([
  'rabbitmq connection lost; reconnecting',
  'rabbitmq consumer channel closed by the broker',
  'rabbitmq consumer channel lost; its deliveries go back to the broker',
  'nats connection lost; reconnecting',
]);

/** One delivery of an event in one pilot. Times are epoch ms from the log's `time` (NaN when absent). */
export interface DeliveryStay {
  eventId: string;
  from: number;
  /** When it was let go; undefined when the pilot still held it as its log ends. */
  until: number | undefined;
  /** The broker's count of this message's deliveries, this one included (starts again at 1 on a copy). */
  brokerDeliveries: number | undefined;
}

/** What one pilot's log shows: its deliveries, and when it lost a broker connection or consumer channel. */
export interface PilotLog {
  stays: DeliveryStay[];
  /** Epoch ms of each lost connection or channel. */
  losses: number[];
}

/**
 * Read a pilot's log. Deliveries are the adapter's `delivery received` debug lines — every delivery in hand,
 * one still in the prefetch buffer too — or, in the log of a pilot without them, the event loop's `event
 * received`; a delivery is let go by `event settled`, or dropped with its dead channel (the broker took it back
 * then), or dead-lettered over the limit. Several deliveries of one event (it can come back to the same pilot)
 * are let go oldest first. A line cut by a kill is skipped.
 */
export function readPilotLog(logText: string): PilotLog {
  const received = logText.includes('"delivery received"') ? 'delivery received' : 'event received';
  const stays: DeliveryStay[] = [];
  const losses: number[] = [];
  const open = new Map<string, DeliveryStay[]>();
  for (const line of logText.split('\n')) {
    if (!line.includes('"msg":"')) continue;
    let record: { msg?: unknown; eventId?: unknown; time?: unknown; brokerDeliveries?: unknown };
    try {
      record = JSON.parse(line) as typeof record;
    } catch {
      continue;
    }
    const { eventId, msg } = record;
    if (typeof msg !== 'string') continue;
    const time = typeof record.time === 'string' ? Date.parse(record.time) : typeof record.time === 'number' ? record.time : Number.NaN;
    if (LOST.has(msg)) losses.push(time);
    if (typeof eventId !== 'string') continue;
    if (msg === received) {
      const brokerDeliveries = typeof record.brokerDeliveries === 'number' ? record.brokerDeliveries : undefined;
      const stay: DeliveryStay = { eventId, from: time, until: undefined, brokerDeliveries };
      stays.push(stay);
      open.set(eventId, [...(open.get(eventId) ?? []), stay]);
    } else if (LET_GO.has(msg)) {
      const oldest = open.get(eventId)?.shift();
      if (oldest) oldest.until = time;
    }
  }
  return { stays, losses };
}

/** A broker disruption, from just before the signal to the broker (or leader node) until it serves again. */
export interface CutWindow {
  from: number;
  until: number;
}

/** Per event: deliveries ended by a SIGKILLed holder, and deliveries cut by a broker disruption while held. */
export interface EndedDeliveries {
  killed: number;
  cut: number;
}

/**
 * Count, per event, the deliveries the run ended: one still held when its pilot's log ends, for a pilot the
 * suite SIGKILLed (`killed`); else one its pilot held when it lost a broker connection or consumer channel
 * during a disruption's window — received by then, not let go before (`cut`). Each delivery counts once, as
 * `killed` first. A loss outside every window (none is expected) excuses nothing.
 *
 * Also `cut`: deliveries the broker counted that reached no pilot's log — a gap in `brokerDeliveries` between
 * two deliveries of one message — when the time between them (from the earlier one's end to the later one's
 * arrival) overlaps a disruption's window: a delivery on its way over a connection that died with the node.
 */
export function endedDeliveries(logs: Array<{ text: string; sigkilled: boolean }>, windows: CutWindow[]): Map<string, EndedDeliveries> {
  const ended = new Map<string, EndedDeliveries>();
  const entry = (id: string) => {
    let e = ended.get(id);
    if (!e) ended.set(id, (e = { killed: 0, cut: 0 }));
    return e;
  };
  const byEvent = new Map<string, DeliveryStay[]>();
  for (const log of logs) {
    const { stays, losses } = readPilotLog(log.text);
    const cuts = losses.filter((t) => windows.some((w) => w.from <= t && t <= w.until));
    for (const stay of stays) {
      byEvent.set(stay.eventId, [...(byEvent.get(stay.eventId) ?? []), stay]);
      if (log.sigkilled && stay.until === undefined) entry(stay.eventId).killed += 1;
      else if (cuts.some((t) => stay.from <= t && (stay.until ?? Number.POSITIVE_INFINITY) >= t)) entry(stay.eventId).cut += 1;
    }
  }
  for (const [eventId, stays] of byEvent) {
    const unseen = unseenDuringDisruptions(stays, windows);
    if (unseen > 0) entry(eventId).cut += unseen;
  }
  return ended;
}

/** Deliveries of one event the broker counted, no log shows, and that fell in a disruption (see above). */
function unseenDuringDisruptions(stays: DeliveryStay[], windows: CutWindow[]): number {
  const ordered = stays.filter((s) => s.brokerDeliveries !== undefined && !Number.isNaN(s.from)).sort((a, b) => a.from - b.from);
  let unseen = 0;
  ordered.forEach((later, i) => {
    const n = later.brokerDeliveries!;
    if (n <= 1) return;
    // The latest earlier delivery of the same message (a copy starts again at 1): the one just before the gap.
    const earlier = ordered.slice(0, i).reverse().find((s) => s.brokerDeliveries! < n);
    const gap = n - 1 - (earlier?.brokerDeliveries ?? 0);
    if (gap <= 0) return;
    const from = earlier ? (earlier.until ?? earlier.from) : Number.NEGATIVE_INFINITY;
    if (windows.some((w) => from <= w.until && later.from >= w.from)) unseen += gap;
  });
  return unseen;
}

/** A file that contains the secret, and how often. */
export interface Leak {
  file: string;
  occurrences: number;
}

/** Every regular file under `dir` (recursively) and the extra `files` that contain `secret`. */
export function findLeaks(dir: string, secret: string, files: string[] = []): Leak[] {
  const leaks: Leak[] = [];
  const needle = Buffer.from(secret);
  const check = (file: string) => {
    let bytes: Buffer;
    try {
      bytes = readFileSync(file);
    } catch {
      return; // removed meanwhile
    }
    let occurrences = 0;
    for (let at = bytes.indexOf(needle); at !== -1; at = bytes.indexOf(needle, at + 1)) occurrences += 1;
    if (occurrences > 0) leaks.push({ file: relative(dir, file) || file, occurrences });
  };
  const walk = (d: string) => {
    let entries: string[];
    try {
      entries = readdirSync(d);
    } catch {
      return;
    }
    for (const name of entries) {
      const path = join(d, name);
      let st;
      try {
        st = statSync(path);
      } catch {
        continue;
      }
      if (st.isDirectory()) walk(path);
      else if (st.isFile()) check(path);
    }
  };
  walk(dir);
  for (const f of files) check(f);
  return leaks;
}
