/**
 * The minimal loop the pilot must beat: a synchronous Python program with pika (`basic_get`, write the infile,
 * `subprocess.run(cp)`, read the outfile, publish with a confirm, ack), one per concurrent task, run until the
 * queue is empty. Skipped when no Python has pika (`.ci/run` installs python3-pika).
 */
import { spawn, spawnSync } from 'node:child_process';

const LOOP = String.raw`
import os, subprocess, sys, tempfile, time, pika
url, queue, out = sys.argv[1], sys.argv[2], sys.argv[3]
conn = pika.BlockingConnection(pika.URLParameters(url))
ch = conn.channel()
ch.confirm_delivery()
d = tempfile.mkdtemp()
infile, outfile = os.path.join(d, 'in'), os.path.join(d, 'out')
start, n = time.time(), 0
while True:
    method, props, body = ch.basic_get(queue)
    if method is None:
        break
    with open(infile, 'wb') as f:
        f.write(body)
    subprocess.run(['cp', infile, outfile], check=True)
    with open(outfile, 'rb') as f:
        result = f.read()
    ch.basic_publish('', out, result, pika.BasicProperties(delivery_mode=2))
    ch.basic_ack(method.delivery_tag)
    n += 1
print(start, time.time(), n)
conn.close()
`;

/** A Python that can import pika: `python3` on PATH, else Debian's (python3-pika); undefined when neither can. */
export function pikaPython(): string | undefined {
  return ['python3', '/usr/bin/python3'].find((python) => spawnSync(python, ['-c', 'import pika'], { stdio: 'ignore' }).status === 0);
}

/** Run `concurrency` loops on `queue` until it is empty; events per second from the first start to the last end. */
export async function pythonLoop(python: string, url: string, queue: string, outgoing: string, concurrency: number): Promise<{ rate: number; events: number }> {
  const runs = await Promise.all(
    Array.from(
      { length: concurrency },
      () =>
        new Promise<{ start: number; end: number; n: number }>((resolve, reject) => {
          const child = spawn(python, ['-c', LOOP, url, queue, outgoing], { stdio: ['ignore', 'pipe', 'pipe'] });
          let out = '';
          let err = '';
          child.stdout.on('data', (c: Buffer) => (out += c.toString()));
          child.stderr.on('data', (c: Buffer) => (err += c.toString()));
          child.once('exit', (code) => {
            const [start, end, n] = out.trim().split(' ').map(Number);
            if (code !== 0 || start === undefined || end === undefined || n === undefined) reject(new Error(`python loop failed (${code}): ${err.slice(-500)}`));
            else resolve({ start, end, n });
          });
        }),
    ),
  );
  const events = runs.reduce((sum, r) => sum + r.n, 0);
  const seconds = Math.max(...runs.map((r) => r.end)) - Math.min(...runs.map((r) => r.start));
  return { rate: events / seconds, events };
}
