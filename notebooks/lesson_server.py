"""Start a lesson's server from a notebook, exactly as you would from a terminal.

    import lesson_server
    server = lesson_server.start("02", MESS_INTERVAL=0.2)  # lesson run 02 --port 0 ...
    server.url        # 'http://127.0.0.1:40123/'
    server.stop()     # Ctrl-C, as you would press it

It runs the real launcher, ``lesson run LESSON [DEMO] --mode MODE --port 0``, in
a subprocess, and waits for the one line it prints when it accepts connections.
The async mode comes from the ``LESSON_MODE`` environment variable (default
threading), so the test suite can run every notebook in each mode.

No orphan servers: every server still running is stopped when the kernel (or any
Python process using this module) exits normally, by ``atexit``; and on Linux each
server is told to die with the kernel if the kernel is killed, even by SIGKILL,
which leaves no time for atexit (``prctl(PR_SET_PDEATHSIG)``).
"""
import atexit
import ctypes
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from lesson_launcher.serve import READY_LINE  # the line `lesson run` prints when it is ready

DEFAULT_MODE = "threading"
START_TIMEOUT = 20  # seconds for the ready line (cold imports on a busy machine)
STOP_TIMEOUT = 10

running = set()  # the servers this kernel started and has not stopped yet


class LessonServer:
    """A running ``lesson run`` process: its ``url``, its ``mode``, ``stop()``."""

    def __init__(self, process, args):
        self.process, self.args = process, args
        self.pid = process.pid
        self.url = self.mode = None
        self._stderr = []
        self._stdout = queue.Queue()
        # Read both pipes all the time, so a chatty server never blocks on a full pipe.
        pipes = ((process.stdout, self._stdout.put), (process.stderr, self._stderr.append))
        for stream, put in pipes:
            threading.Thread(target=self._pump, args=(stream, put), daemon=True).start()

    def _pump(self, stream, put):
        for line in stream:
            put(line)
        put(None)
        # The server has exited (its pipes closed), however it was stopped: collect its exit
        # status at once. Until then it is a "zombie" that still counts as a child, and
        # ipykernel, when it shuts down, signals its children until none is left
        # (Kernel._progressively_terminate_all_children): for seconds, until Jupyter kills it.
        self.process.wait()

    def wait_until_ready(self):
        """Block until the ready line (bounded); fail with the server's stderr if it never comes."""
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                line = self._stdout.get(timeout=max(0, deadline - time.monotonic()))
            except queue.Empty:
                line = None
            if line is None:  # the server exited, or was not ready within START_TIMEOUT
                self.stop()
                raise RuntimeError(f"`lesson {' '.join(self.args)}` did not start:\n"
                                   + self.stderr)
            ready = READY_LINE.match(line.strip())
            if ready:
                self.url, self.mode = ready["url"], ready["mode"]
                return self

    @property
    def stderr(self):
        """What the server has written to stderr so far (warnings, errors, `lesson: stopped`)."""
        return "".join(filter(None, self._stderr))

    def stop(self):
        """Ctrl-C (the launcher exits at once with status 0); returns the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            status = self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            status = self.process.wait(STOP_TIMEOUT)
        running.discard(self)
        return status

    def __repr__(self):
        return f"<lesson {' '.join(self.args)}: {self.mode} on {self.url}>"


def start(lesson, demo=None, mode=None, **settings):
    """``lesson run LESSON [DEMO]`` on a free port; settings become FLASK_* variables."""
    mode = mode or os.environ.get("LESSON_MODE", DEFAULT_MODE)
    args = ["run", lesson, *([demo] if demo else []), "--mode", mode, "--port", "0"]
    env = {**os.environ, **{f"FLASK_{name}": str(value) for name, value in settings.items()}}
    # The console script installed beside this kernel's Python: the project's own venv.
    lesson = str(Path(sys.executable).with_name("lesson"))
    process = subprocess.Popen([lesson, *args], env=env, text=True, bufsize=1,
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, preexec_fn=die_with_parent())
    server = LessonServer(process, args)
    running.add(server)
    return server.wait_until_ready()


def die_with_parent():
    """A function for Popen's preexec_fn: the child gets SIGKILL when this process dies.

    SIGKILL, not SIGTERM: once we are dead, nobody reads the server's output,
    and the launcher's SIGTERM handler prints "lesson: stopped" into that dead
    pipe; the BrokenPipeError stops the handler before it exits, and in gevent
    mode the server runs on. SIGKILL needs no handler. Linux only (prctl). Linux
    sends it when the *thread* that started the child ends, so start servers
    from the notebook's cells (the kernel's main thread), not from a thread of
    your own that may finish first.
    """
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up now: the child only calls it
    parent = os.getpid()
    PR_SET_PDEATHSIG = 1

    def in_child():
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before prctl: too late for the signal
            os._exit(1)

    return in_child


def wait_until(condition, timeout=5):
    """Wait until ``condition()`` is true, checking every 10 ms; fail after ``timeout`` s.

    The notebooks wait on what has arrived, never for a fixed time, so a
    fast machine does not wait longer than needed and a slow one still passes.
    """
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"still not true after {timeout} s")
        time.sleep(0.01)


@atexit.register
def stop_all():
    """The kernel is shutting down (or restarting): stop whatever is still running."""
    for server in list(running):
        server.stop()
