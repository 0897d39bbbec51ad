"""Lesson servers for the test suite in a few milliseconds of CPU instead of 0.3 s.

A ``lesson run`` process spends most of its start-up importing Flask, Flask-SocketIO
and the async mode's libraries (measured: 0.27-0.36 s of CPU, and the suite starts
over a hundred). A fork server is started once per async mode: it monkey patches
for that mode exactly as ``lesson run`` does (modes.patch), imports those
libraries, and then, for each server asked of it, forks a child that runs
``lesson_launcher.cli.main(["run", ...])``: the launcher's own code path from the
command line on (argument parsing, the lesson's file loaded afresh, the socket,
the ready line, the WSGI server, Ctrl-C), with the environment, working folder
and stdin/stdout/stderr of the process that asked. Only the interpreter start
and the library imports are shared.

    python -m lesson_launcher.forkserver MODE SOCKET_PATH     (started by start())

The fork server's own loop must never start an event loop: a child would inherit
its state. So it keeps the blocking originals of the few functions it uses, taken
before the mode's patching replaces them, and forks from a single thread.
Lessons are never imported here, only libraries, so an edited lesson is read anew.
tests/harness.py uses it, and so do the notebooks when the test suite runs them
(notebooks/lesson_server.py); ``lesson run`` itself, a reader's notebook and the
benchmark start real processes. A child is killed when the process that asked for it
closes its connection: has exited, or was killed.
"""
import _thread
import array
import json
import os
import select
import signal
import socket
import sys

from .modes import MODES  # (modes imports only importlib.util and sys: nothing patched)

# Taken before any patching (this module imports nothing that patches).
# gevent replaces os.close, os.fork and os.waitpid, eventlet os.read and os.waitpid:
# their versions wait for an event loop that must not run here (a closed file
# descriptor stayed open in gevent, found by a test whose pipe never closed). wait4 is
# waitpid with the child's resource usage: its CPU time goes back to whoever asked.
BLOCKING = {"socket": socket.socket, "select": select.select, "fork": os.fork,
            "wait4": os.wait4, "signal": signal.signal, "close": os.close, "read": os.read}

PRELOAD = {
    "common": ("flask", "flask_socketio", "socketio", "engineio", "jinja2", "simple_websocket",
               "lesson_launcher.cli", "lesson_launcher.serve", "lesson_launcher.catalog",
               "redis"),
    "eventlet": ("eventlet.wsgi", "engineio.async_drivers.eventlet"),
    "gevent": ("gevent.pywsgi", "engineio.async_drivers.gevent"),
    "threading": ("werkzeug.serving", "engineio.async_drivers.threading"),
}
MAX_REQUEST = 256 * 1024  # one SOCK_SEQPACKET message: the command line and environment


# --- the server --------------------------------------------------------------------

def serve(mode: str, path: str) -> None:
    import importlib

    from . import modes

    modes.patch(mode)
    for name in PRELOAD["common"] + PRELOAD[mode]:
        try:
            importlib.import_module(name)
        except ImportError:  # an optional one (redis): the child imports it if it needs it
            pass
    listener = BLOCKING["socket"](socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind(path)
    listener.listen(64)
    # SIGCHLD wakes the loop through a pipe, to collect exit statuses at once.
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    BLOCKING["signal"](signal.SIGCHLD, lambda signum, frame: None)

    waiting = []    # connections whose request has not come yet
    children = {}   # pid -> the connection that asked for it (it gets the exit status)
    stdin = sys.stdin.fileno()  # the client holds the other end: EOF when it is gone
    while True:
        asking = {connection: pid for pid, connection in children.items() if connection}
        readable, _, _ = BLOCKING["select"]([listener, wake_read, stdin] + waiting + list(asking),
                                            [], [])
        if stdin in readable and not BLOCKING["read"](stdin, 1):
            os._exit(0)  # the children get SIGKILL with us (PR_SET_PDEATHSIG)
        if wake_read in readable:
            BLOCKING["read"](wake_read, 512)
            reap(children)
        if listener in readable:
            # _accept(), not accept(): accept() builds its socket from the module's
            # `socket` class, which the patching has made cooperative.
            fd, _ = listener._accept()
            waiting.append(BLOCKING["socket"](fileno=fd))
        for connection, pid in asking.items():
            if connection not in readable or children.get(pid) is not connection:
                continue  # (or reaped above: its pid may be anyone's now)
            # The process that asked for this child has closed its end (it sends nothing
            # else): it has gone, maybe killed (a notebook's kernel, by SIGKILL). The child
            # goes with it, as a `lesson run` started with PR_SET_PDEATHSIG would.
            children[pid] = None  # reap() then tells nobody
            connection.close()
            os.kill(pid, signal.SIGKILL)
        for connection in [c for c in waiting if c in readable]:
            waiting.remove(connection)
            try:
                message, fds = receive(connection)
                request = json.loads(message)
            except (OSError, ValueError):
                connection.close()
                continue
            pid = BLOCKING["fork"]()
            if pid == 0:
                run_child(request, fds, [listener, connection, *waiting,
                                         *filter(None, children.values())], (wake_read, wake_write))
            for fd in fds:
                BLOCKING["close"](fd)
            children[pid] = connection
            send(connection, {"pid": pid})


def receive(connection) -> tuple:
    """One request and the three file descriptors sent with it (socket.send_fds)."""
    fds = array.array("i")
    message, ancillary, _, _ = connection.recvmsg(MAX_REQUEST, socket.CMSG_LEN(3 * fds.itemsize))
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[:len(data) - len(data) % fds.itemsize])
    if len(fds) != 3:
        raise ValueError(f"a request comes with 3 file descriptors, not {len(fds)}")
    return message, list(fds)


def reap(children: dict) -> None:
    while children:
        try:
            pid, status, usage = BLOCKING["wait4"](-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        connection = children.pop(pid, None)
        if connection is not None:
            send(connection, {"exit": os.waitstatus_to_exitcode(status),
                              "cpu": usage.ru_utime + usage.ru_stime})
            connection.close()


def send(connection, message: dict) -> None:
    try:
        connection.send(json.dumps(message).encode())
    except OSError:  # the client has gone
        pass


def run_child(request: dict, fds: list, sockets: list, pipes: tuple):
    """In the forked child: become ``lesson ARGS`` for the client; never returns."""
    code = 1
    try:
        die_with_parent()
        for sock in sockets:
            sock.close()
        signal.set_wakeup_fd(-1)
        BLOCKING["signal"](signal.SIGCHLD, signal.SIG_DFL)
        for fd in pipes:
            BLOCKING["close"](fd)
        for target, fd in zip((0, 1, 2), fds):
            os.dup2(fd, target)
            BLOCKING["close"](fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.argv = ["lesson", *request["argv"]]
        if "gevent" in sys.modules:  # a forked child gets a fresh hub (gevent's own advice)
            import gevent

            gevent.reinit()
        from .cli import main

        code = main(request["argv"])
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (stop.code is not None)
        if isinstance(stop.code, str):
            print(stop.code, file=sys.stderr)
    except BaseException:  # noqa: B036 -- a child must never return into the server's loop
        import traceback

        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code or 0)


def die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


# --- the client (the test harness) --------------------------------------------------

_servers = {}  # mode -> (Popen, socket path): the fork servers this process started
# (_thread, not threading: the fork server must not import threading before patching;
# _thread is built in and already loaded.)
_lock = _thread.allocate_lock()
SHARED = "LESSON_FORKSERVERS"  # {mode: socket path} of fork servers started by a parent
CONNECT_TIMEOUT = 30  # seconds for a fork server to start accepting (imports, busy machine)


def start(mode: str) -> str:
    """Start a fork server for ``mode`` in the background; returns its socket's path
    (which accepts connections once the server has patched and imported)."""
    import subprocess
    import tempfile

    folder = tempfile.mkdtemp(prefix=f"lesson-forkserver-{mode}-")
    path = os.path.join(folder, "socket")
    # stdin is a pipe we never write to: when this process dies, it closes and the
    # fork server exits (and its children with it). Not PR_SET_PDEATHSIG: that
    # fires when the *thread* that started it ends, and servers start in threads.
    process = subprocess.Popen([sys.executable, "-m", "lesson_launcher.forkserver", mode, path],
                               stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                               stderr=open(os.path.join(folder, "stderr"), "w"))
    _servers[mode] = (process, path)
    return path


def share(modes) -> None:
    """Start fork servers for ``modes`` now, for this process and the processes it
    starts later (pytest-xdist's workers), which find them in $LESSON_FORKSERVERS:
    three fork servers for the whole run instead of three per worker."""
    with _lock:
        paths = {mode: start(mode) for mode in modes}
    os.environ[SHARED] = json.dumps(paths)


def server_for(mode: str) -> str:
    """The socket of a fork server for ``mode``: shared by a parent, or this process's
    own, started on first use."""
    with _lock:
        shared = json.loads(os.environ.get(SHARED, "{}"))
        if mode in shared:
            return shared[mode]
        if mode not in _servers or _servers[mode][0].poll() is not None:
            start(mode)
        return _servers[mode][1]


def connect(path: str):
    """A connection to the fork server at ``path``, waiting (bounded) until it accepts."""
    import time

    deadline = time.monotonic() + CONNECT_TIMEOUT
    while True:
        connection = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            connection.connect(path)
            return connection
        except (FileNotFoundError, ConnectionRefusedError):  # still importing
            connection.close()
            if time.monotonic() > deadline:
                log = os.path.join(os.path.dirname(path), "stderr")
                raise RuntimeError(f"no fork server at {path} after {CONNECT_TIMEOUT}s; "
                                   f"its stderr: {open(log).read() if os.path.exists(log) else '?'}")
            time.sleep(0.02)  # polling for the socket, bounded by the deadline


def shutdown() -> list:
    """Stop this process's fork servers; returns the CPU seconds each used itself
    (not its children's: each forked server is measured apart)."""
    import subprocess

    import psutil

    used = []
    with _lock:
        for process, _ in _servers.values():
            try:
                times = psutil.Process(process.pid).cpu_times()
                used.append(times.user + times.system)
            except psutil.Error:
                pass
            process.stdin.close()  # it exits (its children die with it), and we wait for it
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        _servers.clear()
    return used


class Child:
    """A forked lesson server, with the part of subprocess.Popen's interface that
    ServerProcess uses: pid, stdout, stderr, poll(), wait(), send_signal(), kill()."""

    def __init__(self, pid, connection, stdout, stderr):
        import threading

        self.pid, self.stdout, self.stderr = pid, stdout, stderr
        self.returncode = None
        self.cpu_seconds = None  # user + system, known once it has exited
        self._connection = connection
        self._lock = threading.Lock()

    def _read_status(self, timeout):
        with self._lock:
            if self.returncode is None:
                self._connection.settimeout(timeout)
                message = self._connection.recv(4096)  # socket.timeout when still running
                ended = json.loads(message) if message else {"exit": -signal.SIGKILL}
                self.returncode, self.cpu_seconds = ended["exit"], ended.get("cpu")
                self._connection.close()
            return self.returncode

    def poll(self):
        try:
            return self._read_status(0)
        except (BlockingIOError, TimeoutError):
            return None

    def wait(self, timeout=None):
        import subprocess

        try:
            return self._read_status(timeout)
        except (BlockingIOError, TimeoutError):
            raise subprocess.TimeoutExpired(f"forked lesson {self.pid}", timeout) from None

    def send_signal(self, signum):
        if self.poll() is None:  # never signal a pid that may have been reused
            os.kill(self.pid, signum)

    def kill(self):
        self.send_signal(signal.SIGKILL)


def mode_for(argv, env=None):
    """The async mode of the fork server that runs ``lesson ARGV`` as a new process would,
    or None when only a new process will do.

    A forked child runs cli.main(ARGV) in an interpreter that has started already and has
    patched for its server's mode. So: the mode that ``--mode`` names; none for ``--mode
    auto`` (which mode the launcher picks, and patches for, is what such a command shows),
    none for ``--patch`` (it chooses when to patch: a fresh interpreter), and none when
    ``env`` sets a PYTHON* variable to other than this process has (PYTHONPATH...: read
    once, when an interpreter starts). A command that names no mode lists, checks or
    fails before any patching: threading's server, which has patched nothing."""
    argv = list(argv)
    named = [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == "--mode"]
    named += [arg.partition("=")[2] for arg in argv if arg.startswith("--mode=")]
    if any(arg == "--patch" or arg.startswith("--patch=") for arg in argv):
        return None
    if env is not None and interpreter_settings(env) != interpreter_settings(os.environ):
        return None
    mode = named[-1] if named else "threading"
    return mode if mode in MODES else None


def interpreter_settings(environ) -> dict:
    return {name: value for name, value in environ.items() if name.startswith("PYTHON")}


def spawn(mode: str, argv: list, env: dict) -> Child:
    """Fork ``lesson ARGV`` from ``mode``'s fork server, with this environment."""
    connection = connect(server_for(mode))
    out_read, out_write = os.pipe()
    err_read, err_write = os.pipe()
    devnull = os.open(os.devnull, os.O_RDONLY)
    try:
        request = {"argv": list(argv), "env": dict(env), "cwd": os.getcwd()}
        socket.send_fds(connection, [json.dumps(request).encode()], [devnull, out_write, err_write])
        reply = json.loads(connection.recv(4096))
    finally:
        for fd in (devnull, out_write, err_write):
            os.close(fd)
    return Child(reply["pid"], connection, open(out_read, encoding="utf-8", buffering=1),
                 open(err_read, encoding="utf-8", buffering=1))


if __name__ == "__main__":
    serve(*sys.argv[1:])
