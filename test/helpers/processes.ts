/** Process checks shared by the tests that assert a task's process tree is gone. */
import { readFileSync } from 'node:fs';

/**
 * Is a process with this pid still running? A zombie (dead, waiting for its new parent to reap it, which
 * on a loaded machine takes a moment) is not running.
 */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}
