// Stand-in for the chirp proxy an HTCondor starter runs for a job with +WantIOProxy = true, built from the
// starter's own handler (src/condor_starter.V6.1/io_proxy_handler.cpp) and the chirp client
// (htcondor/htchirp): it writes `<host> <port> <cookie>` to .chirp.config; a connection must first
// present `cookie <cookie>` (else -1 after a one-second pause); request lines over 1024 bytes get -5 and
// the connection is dropped; words are read as sscanf_chirp reads them (a backslash escapes the next
// character); `set_job_attr NAME EXPR` stores EXPR as the ClassAd expression it is — a quoted string, a
// number, a boolean, UNDEFINED, or (like the real schedd) an attribute reference for a bare word — and
// refuses what does not parse; `ulog TEXT` appends a generic event whose text is cut to 127 bytes
// (GenericEvent's 128-byte info buffer).
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';

export const LINE_MAX = 1024;
const INFO_MAX = 127;

/** Split a request the way sscanf_chirp reads `%s` words: whitespace-separated, backslash escapes. */
export function chirpWords(line) {
  const words = [];
  let i = 0;
  while (i < line.length) {
    while (i < line.length && /\s/.test(line[i])) i++;
    if (i >= line.length) break;
    let word = '';
    while (i < line.length && !/\s/.test(line[i])) {
      if (line[i] === '\\') {
        i++;
        if (i >= line.length) break;
      }
      word += line[i++];
    }
    words.push(word);
  }
  return words;
}

/** Parse one ClassAd expression as the schedd would store it; undefined when it does not parse. */
export function parseClassAdExpression(text) {
  const t = text.trim();
  if (t.startsWith('"')) {
    let out = '';
    let i = 1;
    for (; i < t.length; i++) {
      const c = t[i];
      if (c === '"') break;
      if (c === '\\') {
        const n = t[++i];
        if (n === undefined) return undefined;
        if (n === 'n') out += '\n';
        else if (n === 't') out += '\t';
        else if (n === 'r') out += '\r';
        else if (/[0-7]/.test(n)) {
          const oct = /^[0-7]{1,3}/.exec(t.slice(i))[0];
          out += String.fromCharCode(parseInt(oct, 8));
          i += oct.length - 1;
        } else out += n;
      } else out += c;
    }
    if (i !== t.length - 1) return undefined; // unterminated, or something after the closing quote
    return { type: 'string', value: out };
  }
  if (/^-?\d+$/.test(t)) return { type: 'integer', value: Number(t) };
  if (/^-?(\d+\.\d*|\.\d+)(e[-+]?\d+)?$/i.test(t)) return { type: 'real', value: Number(t) };
  if (/^(true|false)$/i.test(t)) return { type: 'boolean', value: t.toLowerCase() === 'true' };
  if (/^undefined$/i.test(t)) return { type: 'undefined' };
  if (/^[A-Za-z_][A-Za-z0-9_.]*$/.test(t)) return { type: 'reference', value: t };
  return undefined;
}

/** Start a stand-in starter; writes `.chirp.config` into `dir`. */
export async function startChirpStarter(dir) {
  const cookie = randomBytes(16).toString('hex');
  const ad = new Map();
  const events = [];
  const requests = [];
  const server = createServer((socket) => {
    let authenticated = false;
    let buffer = Buffer.alloc(0);
    const answer = (code) => socket.write(`${code}\n`);
    socket.on('data', (chunk) => {
      buffer = Buffer.concat([buffer, chunk]);
      for (;;) {
        const nl = buffer.indexOf(10);
        if (nl < 0) {
          if (buffer.length > LINE_MAX) {
            answer(-5);
            socket.destroy();
          }
          return;
        }
        if (nl + 1 > LINE_MAX) {
          answer(-5);
          socket.destroy();
          return;
        }
        const line = buffer.subarray(0, nl).toString('utf8');
        buffer = buffer.subarray(nl + 1);
        requests.push(line);
        if (!authenticated) {
          const [word, given] = chirpWords(line);
          if (word === 'cookie' && given === cookie) {
            authenticated = true;
            answer(0);
          } else setTimeout(() => answer(-1), 1000);
          continue;
        }
        const words = chirpWords(line);
        if (words[0] === 'set_job_attr' && words.length === 3) {
          const value = parseClassAdExpression(words[2]);
          if (!value) answer(-8);
          else {
            ad.set(words[1], value);
            answer(0);
          }
        } else if (words[0] === 'ulog' && words.length === 2) {
          events.push(Buffer.from(words[1], 'utf8').subarray(0, INFO_MAX).toString('utf8'));
          answer(0);
        } else answer(-8);
      }
    });
    socket.on('error', () => {});
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  const configPath = join(dir, '.chirp.config');
  writeFileSync(configPath, `127.0.0.1 ${port} ${cookie}\n`);
  return {
    configPath,
    ad,
    events,
    requests,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

