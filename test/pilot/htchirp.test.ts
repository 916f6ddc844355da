/**
 * HTChirp against a stand-in of the starter's chirp proxy (test/pilot/stand-ins/chirp-starter.mjs) that
 * checks what the real one checks: the cookie, the 1024-byte line limit, Chirp word escaping, ClassAd
 * expressions for set_job_attr, and the 127 bytes a generic event keeps. Values are read back the way the
 * EWMS TMS watcher and condor_q read them.
 */
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, test } from 'vitest';
import { ChirpProtocolClient, CondorChirpTool, chirpRequest, findChirpTransport, type ChirpTransport } from '../../pilot/chirp-client.js';
import { CHIRP_ATTRS, HTChirp, ULOG_TEXT_MAX, chirpCommand, classAdString, type ChirpOptions } from '../../pilot/htchirp.js';
// @ts-expect-error -- a plain .mjs test stand-in without types
import { chirpWords, parseClassAdExpression, startChirpStarter } from './stand-ins/chirp-starter.mjs';

interface ClassAdValue {
  type: string;
  value?: unknown;
}
interface Starter {
  configPath: string;
  ad: Map<string, ClassAdValue>;
  events: string[];
  requests: string[];
  close(): Promise<void>;
}

const starters: Starter[] = [];
afterEach(async () => {
  while (starters.length > 0) await starters.pop()!.close();
});

async function starter(): Promise<Starter> {
  const s = (await startChirpStarter(mkdtempSync(join(tmpdir(), 'ewms-chirp-')))) as Starter;
  starters.push(s);
  return s;
}

async function waitFor(check: () => boolean): Promise<void> {
  while (!check()) await new Promise((r) => setTimeout(r, 20));
}

function chirper(transport: ChirpTransport, extra: Partial<ChirpOptions> = {}): { chirp: HTChirp; errors: string[] } {
  const errors: string[] = [];
  const chirp = new HTChirp({ enabled: true, destination: 'JOB_ATTR', rateLimitSeconds: 60, transport, onError: (m) => errors.push(m), ...extra });
  return { chirp, errors };
}

/** A job event log line read as the TMS watcher reads it: split at the first ':', strip, unquote. */
function watcherRead(info: string): [string, unknown] {
  const at = info.indexOf(':');
  const parsed = parseClassAdExpression(info.slice(at + 1).trim()) as ClassAdValue | undefined;
  return [info.slice(0, at), parsed?.type === 'string' ? parsed.value : info.slice(at + 1).trim()];
}

describe('values as HTCondor reads them', () => {
  test('a ClassAd string survives quotes, backslashes, line breaks and control characters', () => {
    const text = 'a "quoted" \\ path\nline2\ttab\u0001end';
    expect(parseClassAdExpression(classAdString(text))).toEqual({ type: 'string', value: text });
  });

  test('Chirp words escape spaces and backslashes so the starter reads one word back', () => {
    const line = chirpRequest({ kind: 'set_job_attr', attr: 'A', expr: classAdString('two words \\ and "more"') });
    expect(chirpWords(line)).toEqual(['set_job_attr', 'A', classAdString('two words \\ and "more"')]);
  });

  test('a long value is cut to fit the 1024-byte request line, still a valid quoted string', () => {
    const command = chirpCommand('JOB_ATTR', CHIRP_ATTRS.errorTraceback, 'Traceback ' + 'x y "z" \\ '.repeat(400));
    expect(command.kind).toBe('set_job_attr');
    expect(Buffer.byteLength(chirpRequest(command)) + 1).toBeLessThanOrEqual(1024);
    const parsed = parseClassAdExpression(chirpWords(chirpRequest(command))[2]!) as ClassAdValue;
    expect(parsed.type).toBe('string');
    expect(String(parsed.value)).toMatch(/^Traceback x y "z" \\ .*\.\.\.$/);
  });

  test('a job event log line stays within the 127 bytes a generic event keeps, closing quote included', () => {
    const command = chirpCommand('JOB_EVENT_LOG', CHIRP_ATTRS.error, `TaskError: ${'é'.repeat(200)}`);
    expect(command.kind).toBe('ulog');
    if (command.kind !== 'ulog') return;
    expect(Buffer.byteLength(command.text)).toBeLessThanOrEqual(ULOG_TEXT_MAX);
    const [attr, value] = watcherRead(command.text);
    expect(attr).toBe(CHIRP_ATTRS.error);
    expect(String(value)).toMatch(/^TaskError: é+\.\.\.$/);
  });
});

describe('the Chirp protocol, spoken to the starter', () => {
  test('statuses go at once as ClassAd strings, counts as integers, with the last-updated timestamp', async () => {
    const s = await starter();
    const { chirp, errors } = chirper(new ChirpProtocolClient(s.configPath));
    chirp.status('Started');
    chirp.status('AwaitingFirstMessage');
    chirp.taskCounts({ received: 3, succeeded: 2, failed: 1 });
    await chirp.flush();
    expect(errors).toEqual([]);
    expect(s.ad.get(CHIRP_ATTRS.status)).toEqual({ type: 'string', value: 'AwaitingFirstMessage' });
    expect(s.ad.get(CHIRP_ATTRS.tasksTotal)).toEqual({ type: 'integer', value: 3 });
    expect(s.ad.get(CHIRP_ATTRS.tasksSuccess)).toEqual({ type: 'integer', value: 2 });
    expect(s.ad.get(CHIRP_ATTRS.tasksFailed)).toEqual({ type: 'integer', value: 1 });
    expect(s.ad.get(CHIRP_ATTRS.started)?.type).toBe('integer');
    expect(Number(s.ad.get(CHIRP_ATTRS.lastUpdated)?.value)).toBeGreaterThan(1_600_000_000);
  });

  test('task counts wait for the rate-limit interval; a status does not; the exit flush sends what waits', async () => {
    const s = await starter();
    const { chirp } = chirper(new ChirpProtocolClient(s.configPath), { rateLimitSeconds: 60 });
    chirp.status('Tasking');
    await waitFor(() => s.ad.has(CHIRP_ATTRS.status));
    chirp.taskCounts({ received: 1, succeeded: 0, failed: 0 });
    await new Promise((r) => setTimeout(r, 300));
    expect(s.ad.has(CHIRP_ATTRS.tasksTotal)).toBe(false);
    await chirp.flush();
    expect(s.ad.get(CHIRP_ATTRS.tasksTotal)).toEqual({ type: 'integer', value: 1 });
  });

  test('the job event log gets one generic event per attribute, read back by the TMS watcher as the Python values', async () => {
    const s = await starter();
    const { chirp } = chirper(new ChirpProtocolClient(s.configPath), { destination: 'JOB_EVENT_LOG' });
    chirp.status('Started');
    chirp.taskCounts({ received: 7, succeeded: 6, failed: 1 });
    chirp.error(Object.assign(new Error(`exit code 3: ${'boom '.repeat(60)}`), { name: 'TaskError' }));
    chirp.status('FatalError');
    await chirp.flush();
    const read = Object.fromEntries(s.events.map(watcherRead));
    expect(read[CHIRP_ATTRS.status]).toBe('FatalError');
    expect(read[CHIRP_ATTRS.tasksTotal]).toBe('7');
    expect(String(read[CHIRP_ATTRS.error])).toMatch(/^TaskError: exit code 3: boom boom .*\.\.\.$/);
    for (const event of s.events) expect(Buffer.byteLength(event)).toBeLessThanOrEqual(127);
  });

  test('every status change is sent, in order; a count set while a send is on the wire goes next, the latest winning', async () => {
    const s = await starter();
    const slow: ChirpTransport = {
      description: 'slow',
      send: async (commands) => {
        await new Promise((r) => setTimeout(r, 200));
        await new ChirpProtocolClient(s.configPath).send(commands);
      },
    };
    const { chirp } = chirper(slow, { rateLimitSeconds: 0 });
    chirp.status('AwaitingFirstMessage');
    await new Promise((r) => setTimeout(r, 50));
    chirp.status('Tasking');
    chirp.taskCounts({ received: 2, succeeded: 0, failed: 0 });
    chirp.taskCounts({ received: 5, succeeded: 0, failed: 0 });
    chirp.status('Done');
    await chirp.flush();
    const sent = s.requests.filter((r) => r.startsWith('set_job_attr HTChirpEWMSPilotStatus ')).map((r) => r.split(' ')[2]);
    expect(sent).toEqual(['"AwaitingFirstMessage"', '"Tasking"', '"Done"']);
    expect(s.ad.get(CHIRP_ATTRS.status)).toEqual({ type: 'string', value: 'Done' });
    expect(s.ad.get(CHIRP_ATTRS.tasksTotal)).toEqual({ type: 'integer', value: 5 });
    expect(s.requests.filter((r) => r.startsWith('set_job_attr HTChirpEWMSPilotTasksTotal 2'))).toEqual([]);
  });

  test('a wrong cookie is logged once and never throws into the pilot', async () => {
    const s = await starter();
    const wrong = join(mkdtempSync(join(tmpdir(), 'ewms-chirp-')), '.chirp.config');
    const [host, port] = (await import('node:fs')).readFileSync(s.configPath, 'utf8').trim().split(/\s+/);
    writeFileSync(wrong, `${host} ${port} not-the-cookie\n`);
    const { chirp, errors } = chirper(new ChirpProtocolClient(wrong));
    chirp.status('Started');
    await chirp.flush();
    chirp.status('Done');
    await chirp.flush();
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatch(/not authenticated/);
    expect(s.ad.size).toBe(0);
  });

  test('flush gives up after its budget when the starter never answers', async () => {
    const hung: ChirpTransport = { description: 'hung', send: () => new Promise(() => {}) };
    const { chirp } = chirper(hung);
    chirp.status('Done');
    const started = Date.now();
    await chirp.flush(500);
    expect(Date.now() - started).toBeLessThan(2500);
  });
});

describe('finding the way to chirp', () => {
  test('the starter\'s chirp configuration wins; it is found through _CONDOR_CHIRP_CONFIG or the scratch dir', async () => {
    const s = await starter();
    const empty = mkdtempSync(join(tmpdir(), 'ewms-chirp-cwd-'));
    expect(findChirpTransport({ _CONDOR_CHIRP_CONFIG: s.configPath, PATH: '' }, empty)?.description).toContain(s.configPath);
    const scratch = join(s.configPath, '..');
    expect(findChirpTransport({ _CONDOR_SCRATCH_DIR: scratch, PATH: '' }, empty)?.description).toContain(scratch);
  });

  test('without a chirp configuration, condor_chirp is found in $(LIBEXEC) beside _CONDOR_BIN, not only on PATH', async () => {
    const root = mkdtempSync(join(tmpdir(), 'ewms-condor-root-'));
    mkdirSync(join(root, 'bin'));
    mkdirSync(join(root, 'libexec', 'condor'), { recursive: true });
    const tool = join(root, 'libexec', 'condor', 'condor_chirp');
    copyFileSync(join(import.meta.dirname, 'stand-ins', 'condor_chirp'), tool);
    chmodSync(tool, 0o755);
    const empty = mkdtempSync(join(tmpdir(), 'ewms-chirp-cwd-'));
    const transport = findChirpTransport({ PATH: '/nonexistent', _CONDOR_BIN: join(root, 'bin') }, empty);
    expect(transport).toBeInstanceOf(CondorChirpTool);
    expect(transport?.description).toBe(tool);
    // And it behaves as the real tool: it reaches the starter the job's environment names.
    const s = await starter();
    const previous = process.env._CONDOR_CHIRP_CONFIG;
    process.env._CONDOR_CHIRP_CONFIG = s.configPath;
    try {
      const { chirp, errors } = chirper(transport!);
      chirp.status('Done');
      await chirp.flush();
      expect(errors).toEqual([]);
      expect(s.ad.get(CHIRP_ATTRS.status)).toEqual({ type: 'string', value: 'Done' });
    } finally {
      if (previous === undefined) delete process.env._CONDOR_CHIRP_CONFIG;
      else process.env._CONDOR_CHIRP_CONFIG = previous;
    }
  });

  test('HTCHIRP on without any way to chirp says so once and reports nothing', () => {
    const errors: string[] = [];
    const previous = { ...process.env };
    for (const k of ['_CONDOR_CHIRP_CONFIG', '_CONDOR_SCRATCH_DIR', '_CONDOR_BIN']) delete process.env[k];
    process.env.PATH = '/nonexistent';
    try {
      const chirp = new HTChirp({ enabled: true, destination: 'JOB_ATTR', rateLimitSeconds: 60, onError: (m) => errors.push(m) });
      chirp.status('Started');
      expect(chirp.active).toBe(false);
    } finally {
      process.env.PATH = previous.PATH;
      for (const k of ['_CONDOR_CHIRP_CONFIG', '_CONDOR_SCRATCH_DIR', '_CONDOR_BIN']) if (previous[k] !== undefined) process.env[k] = previous[k];
    }
    // cwd may hold no .chirp.config in the test run; the message names what to do.
    expect(errors.join('\n')).toMatch(/WantIOProxy/);
  });
});
