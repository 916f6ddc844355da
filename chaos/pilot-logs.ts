/**
 * What a run's logs tell: which events a pilot held when its log ends (read for the pilots the suite
 * SIGKILLed: their held deliveries count as attempts), and whether a secret appears in any file a pilot wrote.
 */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';

/** Log lines that end a delivery's stay in a pilot (the broker has it back, or it is settled). */
const LET_GO = new Set(['event settled', 'delivery dropped: its channel died', 'delivery over the limit dead-lettered']);

/**
 * Events a pilot had received and not let go of when its log ends, with how many such deliveries each (an
 * event can come back to the same pilot). Counts the adapter's `delivery received` debug lines — every
 * delivery in hand, one still in the prefetch buffer too — or, in the log of a pilot without them, the event
 * loop's `event received`; a delivery is let go by `event settled`, or dropped with its dead channel (the
 * broker took it back then, not because the pilot died), or dead-lettered over the limit.
 */
export function heldAtEnd(logText: string): Map<string, number> {
  const received = logText.includes('"delivery received"') ? 'delivery received' : 'event received';
  const held = new Map<string, number>();
  for (const line of logText.split('\n')) {
    if (!line.includes('"msg":"')) continue;
    let record: { msg?: unknown; eventId?: unknown };
    try {
      record = JSON.parse(line) as { msg?: unknown; eventId?: unknown };
    } catch {
      continue; // a line cut by the kill
    }
    if (typeof record.eventId !== 'string' || typeof record.msg !== 'string') continue;
    const n = held.get(record.eventId) ?? 0;
    if (record.msg === received) held.set(record.eventId, n + 1);
    else if (LET_GO.has(record.msg) && n > 0) held.set(record.eventId, n - 1);
  }
  for (const [id, n] of held) if (n === 0) held.delete(id);
  return held;
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
