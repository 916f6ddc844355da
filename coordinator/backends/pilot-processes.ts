/**
 * Finding every process a local pilot left, so stopping it can end them all: its tasks, their children,
 * and its spawn helper. A pilot started detached leads its own session, and the tasks its spawn helper starts
 * stay in that session (each in a process group of its own); tasks started without the helper lead sessions of
 * their own, so each pilot is also given a marker variable that its tasks inherit. Linux only (`/proc`);
 * elsewhere nothing is found and the process-group kill alone applies.
 */
import { readdirSync, readFileSync } from 'node:fs';

/** The variable that marks a local pilot's processes (not `EWMS_PILOT_*`, which pilots keep from tasks). */
export const LOCAL_PILOT_MARKER = '_EWMS_LOCAL_PILOT';

/** Pids (never this process's) in session `sessionId`, or whose environment has `marker=value`. */
export function pilotProcesses(sessionId: number, markerValue: string): number[] {
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return [];
  }
  const needle = Buffer.from(`${LOCAL_PILOT_MARKER}=${markerValue}\0`);
  const found: number[] = [];
  for (const entry of entries) {
    const pid = Number(entry);
    if (!Number.isInteger(pid) || pid === process.pid) continue;
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      // Fields after the command name (which may hold spaces): state ppid pgrp session …
      const [state, , , session] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (state === 'Z') continue; // dead, waiting to be reaped
      if (Number(session) === sessionId) {
        found.push(pid);
        continue;
      }
      const environ = readFileSync(`/proc/${pid}/environ`);
      const at = environ.indexOf(needle);
      if (at === 0 || (at > 0 && environ[at - 1] === 0)) found.push(pid);
    } catch {
      // gone meanwhile, or not ours to read
    }
  }
  return found;
}
