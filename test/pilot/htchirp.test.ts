/** HTChirp: the latest value of each attribute reaches HTCondor, and a hung condor_chirp cannot hold the exit. */
import { chmodSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, test } from 'vitest';
import { HTChirp } from '../../pilot/htchirp.js';

function standIn(sleepSeconds: number): { command: string; calls: () => string[] } {
  const dir = mkdtempSync(join(tmpdir(), 'ewms-chirp-'));
  const log = join(dir, 'log');
  writeFileSync(join(dir, 'condor_chirp'), `#!/bin/sh\necho "$*" >> ${log}\nexec sleep ${sleepSeconds}\n`);
  chmodSync(join(dir, 'condor_chirp'), 0o755);
  return { command: join(dir, 'condor_chirp'), calls: () => readFileSync(log, 'utf8').trim().split('\n') };
}

test('a value set while an earlier attribute is being sent is the one sent, not the older one', async () => {
  const chirp = standIn(0.3);
  const c = new HTChirp({ enabled: true, destination: 'JOB_ATTR', rateLimitSeconds: 60, command: chirp.command });
  c.set('A', 1);
  c.set('Status', 'connecting');
  await new Promise((r) => setTimeout(r, 100)); // A is being sent now; Status waits in the same batch
  c.set('Status', 'done');
  await c.flush();
  expect(chirp.calls().filter((l) => l.includes('Status')).at(-1)).toBe('set_job_attr Status "done"');
});

test('flush gives up after its budget when condor_chirp hangs', async () => {
  const chirp = standIn(100);
  const c = new HTChirp({ enabled: true, destination: 'JOB_ATTR', rateLimitSeconds: 60, command: chirp.command });
  for (const a of ['A', 'B', 'C']) c.set(a, 1);
  const started = Date.now();
  await c.flush(1000);
  expect(Date.now() - started).toBeLessThan(3000);
}, 20_000);
