/**
 * What a run's logs tell: each delivery's stay in a pilot (when it came, when it was let go, or held when the
 * log ends), so the suite can say which deliveries were ended by a SIGKILLed holder or cut by a broker
 * disruption — both count as attempts — and whether a secret appears in any file a pilot wrote.
 */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';

/** Log lines that end a delivery's stay in a pilot (the broker has it back, or it is settled). */
const LET_GO = new Set(['event settled', 'delivery dropped: its channel died', 'delivery over the limit dead-lettered']);

/** One delivery of an event in one pilot. Times are epoch ms from the log's `time` (NaN when absent). */
export interface DeliveryStay {
  eventId: string;
  from: number;
  /** When it was let go; undefined when the pilot still held it as its log ends. */
  until: number | undefined;
}

/**
 * Every delivery a pilot's log shows, in order. Counts the adapter's `delivery received` debug lines — every
 * delivery in hand, one still in the prefetch buffer too — or, in the log of a pilot without them, the event
 * loop's `event received`; a delivery is let go by `event settled`, or dropped with its dead channel (the
 * broker took it back then), or dead-lettered over the limit. Several deliveries of one event (it can come
 * back to the same pilot) are let go oldest first.
 */
export function deliveryStays(logText: string): DeliveryStay[] {
  const received = logText.includes('"delivery received"') ? 'delivery received' : 'event received';
  const stays: DeliveryStay[] = [];
  const open = new Map<string, DeliveryStay[]>();
  for (const line of logText.split('\n')) {
    if (!line.includes('"msg":"')) continue;
    let record: { msg?: unknown; eventId?: unknown; time?: unknown };
    try {
      record = JSON.parse(line) as typeof record;
    } catch {
      continue; // a line cut by the kill
    }
    const { eventId, msg } = record;
    if (typeof eventId !== 'string' || typeof msg !== 'string') continue;
    const time = typeof record.time === 'string' ? Date.parse(record.time) : typeof record.time === 'number' ? record.time : Number.NaN;
    if (msg === received) {
      const stay: DeliveryStay = { eventId, from: time, until: undefined };
      stays.push(stay);
      open.set(eventId, [...(open.get(eventId) ?? []), stay]);
    } else if (LET_GO.has(msg)) {
      const oldest = open.get(eventId)?.shift();
      if (oldest) oldest.until = time;
    }
  }
  return stays;
}

/** A span of time in which the broker (or the queue's leader) went down and deliveries in hand were cut. */
export interface CutWindow {
  /** Just before the signal. */
  from: number;
  /** When the node was down (and, on a cluster, a new leader elected): nothing received later was cut. */
  until: number;
}

/** Per event: deliveries ended by a SIGKILLed holder, and deliveries cut by a broker disruption while held. */
export interface EndedDeliveries {
  killed: number;
  cut: number;
}

/**
 * Count, per event, the deliveries the run ended: one still held when its pilot's log ends, for a pilot the
 * suite SIGKILLed (`killed`); else one held at some moment of a disruption's window — received before the
 * window closed, not let go before it opened (`cut`). Each delivery counts once, as `killed` first.
 */
export function endedDeliveries(logs: Array<{ text: string; sigkilled: boolean }>, windows: CutWindow[]): Map<string, EndedDeliveries> {
  const ended = new Map<string, EndedDeliveries>();
  const entry = (id: string) => {
    let e = ended.get(id);
    if (!e) ended.set(id, (e = { killed: 0, cut: 0 }));
    return e;
  };
  for (const log of logs) {
    for (const stay of deliveryStays(log.text)) {
      if (log.sigkilled && stay.until === undefined) entry(stay.eventId).killed += 1;
      else if (windows.some((w) => stay.from < w.until && (stay.until ?? Number.POSITIVE_INFINITY) > w.from)) entry(stay.eventId).cut += 1;
    }
  }
  return ended;
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
