"""A server process started from Python: ``lesson run ...`` (or any command that
prints the ready line), its output read all the time, Ctrl-C to stop it.

One class for the three places that start lessons from Python: the tests'
harness (tests/harness.py), the notebooks (notebooks/lesson_server.py) and the
benchmark (lesson_launcher.bench)::

    server = LessonProcess("02", mode="gevent", settings={"MESS_INTERVAL": 0.2}).start()
    server.url        # 'http://127.0.0.1:40123/', from the ready line
    server.interrupt()  # Ctrl-C, as you would press it; returns the exit status (0)

With ``fork=True`` the lesson is not exec'd but forked from a per-mode fork server
that has patched and imported Flask-SocketIO once (lesson_launcher.forkserver):
the same ``lesson run`` code path from the command line on, at a tenth of the CPU.
"""
import ctypes
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from .serve import READY_LINE

START_TIMEOUT = 20  # seconds for the ready line (cold imports on a busy machine)
STOP_TIMEOUT = 10


class NotReady(RuntimeError):
    """The server exited, or printed no ready line in time; the message has its stderr."""


class StopTimeout(RuntimeError):
    """The server ignored Ctrl-C; it has been killed."""


def lesson_command() -> list:
    """The real launcher: the ``lesson`` console script installed beside this Python."""
    script = shutil.which("lesson", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "lesson_launcher.cli"]


def free_port() -> int:
    """A port nobody listens on now (for a setting that must name a port in advance).

    Taken below the kernel's range of ephemeral ports: the kernel hands those to
    every outgoing connection and to every server bound to port 0, so one of them
    could take the port before the server that was told to use it starts (it
    happened in CI: cross_origin's "already in use"). Lesson 06's stack uses it for nginx
    and the backends, the tests for settings that name a port."""
    import random

    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as ports:
            first_ephemeral = int(ports.read().split()[0])
    except (OSError, ValueError, IndexError):  # not Linux
        first_ephemeral = 32768
    # A generator of its own, seeded by the OS: the module's shared one may be seeded
    # alike in several processes (Hypothesis seeds it for each example of a test).
    ports = random.SystemRandom()
    while True:
        port = ports.randrange(10000, max(first_ephemeral, 10001))
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:  # in use: try another
                continue
        return port


class ServerProcess:
    """A subprocess that prints ``READY_LINE`` once it accepts connections."""

    def __init__(self, command, env=None, name=None, die_with_parent=False, fork=None):
        self.command = list(command)
        self.args = self.command[1:]
        self.env = dict(os.environ if env is None else env)
        self.name = name or " ".join(self.command)
        self.die_with_parent = die_with_parent
        self.fork = fork  # (mode, lesson arguments): fork them from that mode's fork server
        self.process = None
        self.ready_line = None
        self.url = None
        self.stdout_lines = queue.Queue()
        self.stderr_lines = []

    # --- starting ------------------------------------------------------------
    def start(self, timeout=START_TIMEOUT):
        """Start, and block until the ready line (bounded); NotReady with stderr if it never comes."""
        if self.fork:
            from . import forkserver

            self.process = forkserver.spawn(*self.fork, env=self.env)
            stdout, stderr = self.process.stdout, self.process.stderr
        else:
            self.process = subprocess.Popen(
                self.command, env=self.env, text=True, bufsize=1, stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                preexec_fn=die_with_parent() if self.die_with_parent else None)
            stdout, stderr = self.process.stdout, self.process.stderr
        # Read both pipes all the time, so that a chatty server never blocks on a full pipe.
        self.pumps = [threading.Thread(target=self._pump, args=(stdout, self.stdout_lines.put,
                                                                self.closed_stdout), daemon=True),
                      threading.Thread(target=self._pump, args=(stderr, self.stderr_lines.append),
                                       daemon=True)]
        for pump in self.pumps:
            pump.start()
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.stdout_lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.kill()
                raise NotReady(f"no ready line within {timeout}s from {self.name}; "
                               f"stderr:\n{self.stderr_text}") from None
            if line is None:  # stdout closed: the process died
                self.wait(STOP_TIMEOUT)
                raise NotReady(f"{self.name} exited with {self.process.returncode} before it "
                               f"was ready; stderr:\n{self.stderr_text}")
            match = READY_LINE.match(line.rstrip("\n"))
            if match:
                self.ready_line = match
                self.url = match["url"]
                return self

    @property
    def mode(self):
        return self.ready_line["mode"] if self.ready_line else None

    @property
    def address(self) -> tuple:
        return self.ready_line["host"].strip("[]"), int(self.ready_line["port"])

    @property
    def pid(self) -> int:
        return self.process.pid

    @staticmethod
    def _pump(stream, put, then=None):
        for line in stream:
            put(line)
        put(None)
        if then:
            then()

    def closed_stdout(self):
        """Called in a thread of its own once the server's stdout is closed (it has exited)."""

    @property
    def stderr_text(self) -> str:
        return "".join(line for line in list(self.stderr_lines) if line)

    # --- stopping ------------------------------------------------------------
    def wait(self, timeout=None):
        return self.process.wait(timeout)

    def interrupt(self, timeout=STOP_TIMEOUT) -> int:
        """Ctrl-C, as a person would press it; returns the exit status (the launcher's is 0).
        StopTimeout (after a kill) if the server ignores it for ``timeout`` s."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            status = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise StopTimeout(f"{self.name} ignored Ctrl-C for {timeout}s; "
                              f"stderr:\n{self.stderr_text}") from None
        for pump in self.pumps:  # read what it printed last
            pump.join(timeout)
        return status

    def kill(self):
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(STOP_TIMEOUT)

    def cpu_seconds(self) -> float:
        """User + system CPU time the server has used so far (Linux: /proc)."""
        import psutil

        return sum(psutil.Process(self.pid).cpu_times()[:2])

    def __repr__(self):
        return f"<{self.name}: {self.mode} on {self.url}>"


class LessonProcess(ServerProcess):
    """``lesson run LESSON [DEMO] --mode MODE --port 0 EXTRA...``: a lesson on a free port,
    with ``settings`` as FLASK_* environment variables (app.config.from_prefixed_env())."""

    def __init__(self, lesson, demo=None, mode="threading", settings=None, extra_args=(),
                 fork=False, die_with_parent=False):
        args = ["run", lesson, *([demo] if demo else []), "--mode", mode, "--port", "0",
                *extra_args]
        env = {**os.environ, **{f"FLASK_{name}": str(value)
                                for name, value in (settings or {}).items()}}
        fork_mode = None
        if fork:  # from the fork server that can run these arguments as a new process
            from . import forkserver  # would, if there is one; else a new process all the same

            fork_mode = forkserver.mode_for(args)
        super().__init__(lesson_command() + args, env=env, name=f"lesson {' '.join(args)}",
                         die_with_parent=die_with_parent,
                         fork=(fork_mode, args) if fork_mode else None)
        self.args = args


def die_with_parent():
    """A function for Popen's preexec_fn: the child gets SIGKILL when this process dies.

    SIGKILL, not SIGTERM: once we are dead, nobody reads the server's output,
    and the launcher's SIGTERM handler prints "lesson: stopped" into that dead
    pipe; the BrokenPipeError stops the handler before it exits, and in gevent
    mode the server runs on. SIGKILL needs no handler. Linux only (prctl). Linux
    sends it when the *thread* that started the child ends, so start servers
    from a thread that lives as long as they should (a notebook's cells run in
    the kernel's main thread).
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
