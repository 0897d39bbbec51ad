"""Start a lesson's server from a notebook, exactly as you would from a terminal.

    import lesson_server
    server = lesson_server.start("02", MESS_INTERVAL=0.2)  # lesson run 02 --port 0 ...
    server.url        # 'http://127.0.0.1:40123/'
    server.stop()     # Ctrl-C, as you would press it

It runs the real launcher, ``lesson run LESSON [DEMO] --mode MODE --port 0``, in
a subprocess, and waits for the one line it prints when it accepts connections
(lesson_launcher.process.LessonProcess, the class the tests and the benchmark use
too). The async mode comes from the ``LESSON_MODE`` environment variable (default
threading), so the test suite can run every notebook in each mode.

No orphan servers: every server still running is stopped when the kernel (or any
Python process using this module) exits normally, by ``atexit``; and on Linux each
server is told to die with the kernel if the kernel is killed, even by SIGKILL,
which leaves no time for atexit (``prctl(PR_SET_PDEATHSIG)``).
"""
import atexit
import os
import time

from lesson_launcher import forkserver
from lesson_launcher.process import LessonProcess, NotReady, StopTimeout, die_with_parent

DEFAULT_MODE = "threading"

running = set()  # the servers this kernel started and has not stopped yet


class LessonServer(LessonProcess):
    """A running ``lesson run`` process: its ``url``, its ``mode``, ``stop()``."""

    def closed_stdout(self):
        # The server has exited (its pipes closed), however it was stopped: collect its exit
        # status at once. Until then it is a "zombie" that still counts as a child, and
        # ipykernel, when it shuts down, signals its children until none is left
        # (Kernel._progressively_terminate_all_children): for seconds, until Jupyter kills it.
        self.process.wait()

    @property
    def stderr(self):
        """What the server has written to stderr so far (warnings, errors, `lesson: stopped`)."""
        return self.stderr_text

    def stop(self):
        """Ctrl-C (the launcher exits at once with status 0); returns the exit status."""
        try:
            status = self.interrupt()
        except StopTimeout:  # killed
            status = self.process.returncode
        running.discard(self)
        return status


def start(lesson, demo=None, mode=None, patch=None, **settings):
    """``lesson run LESSON [DEMO]`` on a free port; settings become FLASK_* variables;
    ``patch="none"`` or ``"late"`` adds ``--patch`` (lesson 03's monkey_patch demo)."""
    mode = mode or os.environ.get("LESSON_MODE", DEFAULT_MODE)
    # die_with_parent() (also the preexec_fn for other servers a notebook starts, such as
    # lesson 05's Redis): Linux sends the signal when the *thread* that started the
    # server ends, so start servers from the notebook's cells (the kernel's main
    # thread), not from a thread of your own that may finish first.
    # Under the test suite ($LESSON_FORKSERVERS set), a server patched first is forked
    # from the suite's fork server for its mode, as the tests' servers are: the same
    # launcher code from the command line on, without importing Flask-SocketIO again
    # (lesson_launcher.forkserver; it kills the server if this kernel dies).
    server = LessonServer(lesson, demo, mode, settings, ("--patch", patch) if patch else (),
                          fork=forkserver.SHARED in os.environ,
                          die_with_parent=die_with_parent() is not None)
    running.add(server)
    try:
        return server.start()
    except NotReady as error:
        running.discard(server)
        raise RuntimeError(str(error)) from None


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
