/**
 * The spawn helper's program (Python 3.8+, standard library only), run by `python3 -I -S -c`, which reads it from its
 * environment: it ships inside the package as text, so nothing is compiled at install time.
 *
 * Protocol, one JSON object per line. Pilot → helper: `{"env": n, "vars": {…}}` defines environment n (sent
 * once: tasks of one slot have the same), `{"id", "file", "args", "env": n, "cwd", "stdout", "stderr"}` starts
 * a process. Helper → pilot: `{"ready": pid}` once; `{"id", "pid"}` when started or `{"id", "error",
 * "message"}` when not; `{"id", "code"}` or `{"id", "signal"}` when the process ended.
 *
 * Each task is started with `os.posix_spawn` (glibc: clone with CLONE_VM|CLONE_VFORK, so its cost does not
 * grow with any address space), as the leader of a new process group (`setpgroup=0`), every signal back to
 * its default, stdin from /dev/null and stdout/stderr opened by the spawn itself. The helper ignores
 * SIGINT/SIGTERM/SIGHUP (the pilot decides when tasks stop) and watches its stdin: when it closes, the pilot
 * is gone however it died (a SIGKILL included), and the helper stops every task group it started — TERM,
 * then KILL after the grace given as its first argument — and exits.
 */
export const PYTHON_HELPER_SOURCE = String.raw`import errno, json, os, selectors, signal, sys, time
GRACE = float(sys.argv[1]) if len(sys.argv) > 1 else 10.0
for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    signal.signal(s, signal.SIG_IGN)
SIGDEF = signal.valid_signals() - {signal.SIGKILL, signal.SIGSTOP}
running = {}
found = {}
envs = {}
def send(obj):
    try:
        os.write(1, (json.dumps(obj, separators=(',', ':')) + '\n').encode())
    except OSError:
        pass  # the pilot is gone: its end of stdin closes too, and that ends this process
def resolve(file, path):
    if '/' in file:
        return file
    key = (file, path)
    hit = found.get(key)
    if hit:
        return hit
    for d in (path if path is not None else '/usr/bin:/bin').split(':'):
        cand = os.path.join(d or '.', file)
        if os.access(cand, os.X_OK) and not os.path.isdir(cand):
            found[key] = cand
            return cand
    raise FileNotFoundError(errno.ENOENT, 'not found on PATH', file)
def start(req):
    rid = req['id']
    try:
        env = envs[req['env']]
        exe = resolve(req['file'], env.get('PATH'))
        # Every time (one cheap call): a directory removed and made again under the same name is another one.
        os.chdir(req['cwd'])
        fa = [(os.POSIX_SPAWN_OPEN, 0, '/dev/null', os.O_RDONLY, 0),
              (os.POSIX_SPAWN_OPEN, 1, req['stdout'], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644),
              (os.POSIX_SPAWN_OPEN, 2, req['stderr'], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)]
        pid = os.posix_spawn(exe, [req['file']] + req['args'], env, file_actions=fa, setpgroup=0, setsigdef=SIGDEF, setsigmask=())
    except OSError as e:
        send({'id': rid, 'error': errno.errorcode.get(e.errno, 'EIO'), 'message': e.strerror or str(e)})
        return
    except Exception as e:
        send({'id': rid, 'error': 'EINVAL', 'message': str(e)})
        return
    running[pid] = rid
    send({'id': rid, 'pid': pid})
def reap(report=True):
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        rid = running.pop(pid, None)
        if rid is None or not report:
            continue
        if os.WIFSIGNALED(status):
            send({'id': rid, 'signal': os.WTERMSIG(status)})
        else:
            send({'id': rid, 'code': os.WEXITSTATUS(status)})
def killpg(pgid, sig):
    try:
        os.killpg(pgid, sig)
        return True
    except OSError:
        return False
def shutdown(sel):
    groups = list(running)
    for g in groups:
        killpg(g, signal.SIGTERM)
    deadline = time.monotonic() + GRACE
    while time.monotonic() < deadline and any(killpg(g, 0) for g in groups):
        sel.select(0.05)
        reap(report=False)  # the pilot is gone: nobody to tell
    for g in groups:
        killpg(g, signal.SIGKILL)
    os._exit(0)
def main():
    r, w = os.pipe()
    os.set_blocking(r, False)
    os.set_blocking(w, False)
    signal.set_wakeup_fd(w, warn_on_full_buffer=False)
    signal.signal(signal.SIGCHLD, lambda s, f: None)
    sel = selectors.DefaultSelector()
    sel.register(0, selectors.EVENT_READ, 0)
    sel.register(r, selectors.EVENT_READ, 1)
    send({'ready': os.getpid()})
    buf = b''
    while True:
        for key, _ in sel.select():
            if key.data == 1:
                try:
                    os.read(r, 4096)
                except BlockingIOError:
                    pass
                reap()
                continue
            chunk = os.read(0, 1 << 16)
            if not chunk:
                sel.unregister(0)
                shutdown(sel)
            buf += chunk
            *lines, buf = buf.split(b'\n')
            for line in lines:
                if line:
                    req = json.loads(line)
                    if 'vars' in req:
                        envs[req['env']] = req['vars']
                    else:
                        start(req)
main()
`;
