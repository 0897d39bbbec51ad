"""The machinery behind the fixtures in conftest.py: a lesson server in a
subprocess, and a python-socketio client that records what it receives.

Nothing here sleeps to synchronise: every wait is on a condition with a
deadline, and a failed wait says what did arrive.
"""
import http.client
import os
import re
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlsplit

import engineio
import socketio

import cpu_log

from lesson_launcher import forkserver
from lesson_launcher.process import (START_TIMEOUT, STOP_TIMEOUT, LessonProcess, NotReady,
                                     StopTimeout, free_port, lesson_command)

ROOT = Path(__file__).resolve().parents[1]
MODES = ("eventlet", "gevent", "threading")
EVENT_TIMEOUT = 5   # default bound for waiting on one event
FORK = os.environ.get("LESSON_FORK", "1") != "0"  # lessons and commands from fork servers


def run_lesson_command(*args, env=None, timeout=30, fork=None) -> subprocess.CompletedProcess:
    """Run ``lesson ARGS`` to completion (for commands that exit by themselves), with
    stdin empty, stdout and stderr captured.

    Forked, as lesson servers are, from the fork server that can run these arguments
    as a new process would (forkserver.mode_for): cli.main(ARGS), without the 0.1-0.9 s
    of CPU an interpreter start and its imports cost. A new process of the installed
    ``lesson`` script when ``fork=False``, with LESSON_FORK=0, or when the arguments or
    ``env`` need one."""
    mode = forkserver.mode_for(args, env) if (FORK if fork is None else fork) else None
    if mode is None:
        before = cpu_log.children_seconds()
        try:
            return subprocess.run(lesson_command() + list(args), capture_output=True, text=True,
                                  timeout=timeout, env=env, stdin=subprocess.DEVNULL)
        finally:
            cpu_log.record("lesson commands", cpu_log.children_seconds() - before)
    child = forkserver.spawn(mode, args, os.environ if env is None else env)
    output = {}

    def read(name):
        output[name] = getattr(child, name).read()

    readers = [threading.Thread(target=read, args=(name,)) for name in ("stdout", "stderr")]
    for reader in readers:
        reader.start()
    try:
        status = child.wait(timeout)
    except subprocess.TimeoutExpired:
        child.kill()
        raise
    finally:
        for reader in readers:
            reader.join(STOP_TIMEOUT)
    cpu_log.record("lesson commands", child.cpu_seconds or 0.0)
    return subprocess.CompletedProcess(["lesson", *args], status, output["stdout"], output["stderr"])


def wait_until(condition, timeout=EVENT_TIMEOUT, what="the condition"):
    """Poll ``condition()`` (an HTTP request, a page read, a log) until it returns a
    truthy value, which is returned; for what comes with no event to wait on."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout}s for {what}; last value: {value!r}")
        time.sleep(0.02)  # a polling period, not a synchronisation


class Reply(NamedTuple):
    status: int
    headers: http.client.HTTPMessage
    body: str


def http_request(url, *, data=None, headers=None, timeout=EVENT_TIMEOUT) -> Reply:
    """One plain HTTP request to ``url``: a GET, or a POST of ``data`` (bytes).
    Any status is an answer, not an exception. It goes straight to the address in
    ``url``, never through a proxy named in the environment."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        connection.request("POST" if data is not None else "GET", target, body=data,
                           headers=headers or {})
        response = connection.getresponse()
        return Reply(response.status, response.headers, response.read().decode(errors="replace"))
    finally:
        connection.close()


def start_all(servers):
    """Start LessonServers side by side (each spends a moment importing); if one
    fails, kill the others and raise its error."""
    servers, errors = list(servers), []

    def start(server):
        try:
            server.start()
        except BaseException as error:  # noqa: B036 -- re-raised below, in the caller's thread
            errors.append(error)

    threads = [threading.Thread(target=start, args=(server,)) for server in servers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        for server in servers:
            server.kill()
        raise errors[0]
    return servers


def alive(process) -> bool:
    """Whether a process (a psutil.Process or a pid) still runs. A zombie does not: it
    is dead, and only waits for whoever adopted it to read its exit status. A process
    that ends between two looks at it does not either (CI saw psutil raise there)."""
    import psutil

    try:
        process = psutil.Process(process) if isinstance(process, int) else process
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


# python-socketio 5.18's Manager.connect() is not thread-safe: two connects to one namespace
# of a threading server that finish at once can log this KeyError, harmless (the CONNECT
# packet is out before it): README, "Four things found on the way", and
# docs/evidence/socketio_pending_connect_race.py. Any other traceback, or this one from an
# eventlet or gevent server (whose greenlets do not switch there), still fails a test.
PENDING_CONNECT_RACE = re.compile(
    r"message handler error\nTraceback \(most recent call last\):\n(?:  .*\n)*?"
    r"  File \"[^\"\n]*socketio/base_manager\.py\", line \d+, in connect\n"
    r"    .*pending_connect\[namespace\].*\n(?:    .*\n)*KeyError: '/[^'\n]*'\n")


def without_the_pending_connect_race(stderr, mode):
    """A server's stderr, less that one harmless traceback if the server ran in threading mode."""
    return PENDING_CONNECT_RACE.sub("", stderr) if mode == "threading" else stderr


class LessonServer(LessonProcess):
    """``lesson run LESSON [DEMO] --mode MODE --port 0`` for a test: what went wrong
    is an AssertionError that shows the server's stderr.

    Forked from the mode's fork server (lesson_launcher.forkserver: the launcher's
    code path from the command line on, at a tenth of the CPU), unless
    ``fork=False``, LESSON_FORK=0 in the environment, or the arguments need a new
    process (forkserver.mode_for: ``--mode auto``, ``--patch``)."""

    def __init__(self, lesson, demo=None, mode="threading", settings=None, extra_args=(),
                 fork=None):
        super().__init__(lesson, demo, mode, settings, extra_args,
                         fork=FORK if fork is None else fork)

    def start(self, timeout=START_TIMEOUT):
        try:
            return super().start(timeout)
        except NotReady as error:
            raise AssertionError(str(error)) from None

    def interrupt(self, timeout=STOP_TIMEOUT) -> int:
        """Ctrl-C, as a person would press it; returns the exit status."""
        if cpu_log.FOLDER and self.process.poll() is None:
            cpu_log.record("lesson servers", cpu_log.process_seconds(self.pid))
        try:
            return super().interrupt(timeout)
        except StopTimeout as error:
            raise AssertionError(str(error)) from None

    def stop(self) -> str:
        """Ctrl-C; the server must exit with status 0. Returns all it wrote to stderr."""
        status = self.interrupt()
        assert status == 0, f"Ctrl-C ended the server with status {status}:\n{self.stderr_text}"
        return self.stderr_text


@dataclass
class Received:
    event: str
    namespace: str
    args: tuple
    at: float = field(default_factory=time.monotonic)

    @property
    def data(self):
        """The first argument, which is the payload for every event in these lessons."""
        return self.args[0] if self.args else None


class InOrderEngineIOClient(engineio.Client):
    """python-engineio's client hands each received message to a thread of its
    own (``_trigger_event('message', ..., run_async=True)``, engineio 4.x), so
    two messages that arrived in order can be *handled* out of order: in CI an
    ack was seen before the event the server had emitted just before it. Here
    each message still gets its thread (a handler may block, or disconnect),
    but takes a ticket on the reading thread and waits for its turn, so
    handlers run one after another in arrival order. Every "A arrives before
    B" check and ``sync()`` rely on that."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._turn = threading.Condition()
        self._tickets = 0  # given out, in arrival order
        self._served = 0   # handlers finished

    def _trigger_event(self, event, *args, **kwargs):
        if event != "message" or not kwargs.get("run_async"):
            return super()._trigger_event(event, *args, **kwargs)
        with self._turn:
            ticket, self._tickets = self._tickets, self._tickets + 1

        def in_turn():
            with self._turn:
                self._turn.wait_for(lambda: self._served == ticket)
            try:
                super(InOrderEngineIOClient, self)._trigger_event(event, *args, run_async=False)
            finally:
                with self._turn:
                    self._served += 1
                    self._turn.notify_all()

        return self.start_background_task(in_turn)


class InOrderClient(socketio.Client):
    def _engineio_client_class(self):
        return InOrderEngineIOClient


class RecordingClient:
    """A python-socketio client that records every event of every namespace."""

    def __init__(self, url, namespaces=("/test_conn",), transports=None, **client_options):
        self.url = url
        self.namespaces = list(namespaces)
        self.received = []
        self.changed = threading.Condition()
        # Reconnection would hide a dropped connection from the test, unless the
        # test is about it (client_options go to socketio.Client).
        self.sio = InOrderClient(**{"reconnection": False, **client_options})
        self.sio.on("*", self._record_event, namespace="*")
        self.sio.on("connect", lambda ns: self._record("connect", ns, ()), namespace="*")
        self.sio.on("disconnect", lambda ns, *reason: self._record("disconnect", ns, reason),
                    namespace="*")
        self.connected_at = None
        self.transports = transports

    def connect(self, wait_timeout=EVENT_TIMEOUT):
        started = time.monotonic()
        self.sio.connect(self.url, namespaces=self.namespaces, transports=self.transports,
                         wait_timeout=wait_timeout)
        self.connected_at = time.monotonic()
        self.connect_started_at = started
        return self

    def _record_event(self, event, namespace, *args):
        self._record(event, namespace, args)

    def _record(self, event, namespace, args):
        with self.changed:
            self.received.append(Received(event, namespace, args))
            self.changed.notify_all()

    # --- sending -----------------------------------------------------------
    def emit(self, event, *args, namespace="/test_conn"):
        self.sio.emit(event, args[0] if len(args) == 1 else args or None, namespace=namespace)

    def call(self, event, *args, namespace="/test_conn", timeout=EVENT_TIMEOUT):
        """Emit and wait (bounded) for the acknowledgement; returns what the handler returned."""
        data = args[0] if len(args) == 1 else (args or None)
        return self.sio.call(event, data, namespace=namespace, timeout=timeout)

    # --- what arrived ------------------------------------------------------
    def events(self, event=None, namespace=None) -> list:
        with self.changed:
            return [r for r in self.received
                    if (event is None or r.event == event)
                    and (namespace is None or r.namespace == namespace)]

    def payloads(self, event, namespace="/test_conn") -> list:
        return [r.data for r in self.events(event, namespace)]

    def wait_for(self, event, count=1, namespace="/test_conn", timeout=EVENT_TIMEOUT) -> list:
        """Block until ``count`` ``event``s have arrived; return them (Received records)."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                found = [r for r in self.received if r.event == event and r.namespace == namespace]
                if len(found) >= count:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"waited {timeout}s for {count} {event!r} on {namespace}, got {len(found)}; "
                        f"everything received: {[(r.event, r.namespace, r.args) for r in self.received]}")
                self.changed.wait(left)

    def sync(self, event="my ping", namespace="/test_conn"):
        """A round trip to the server and back on this client's connection.

        Messages on one connection arrive in order (and this client handles
        them in that order, see InOrderEngineIOClient), so once the ack of an
        event sent *now* is back, anything the server sent this client
        earlier has been recorded too. That turns "never receives X" into a check
        with no sleep in it: do the thing, sync, then look.
        """
        self.call(event, namespace=namespace)

    def close(self):
        disconnect(self.sio)


def disconnect(sio):
    """``sio.disconnect()``, without a race of python-engineio's client (4.15):
    over long-polling, a disconnect() made while the client's write loop is
    still POSTing (e.g. right after a call() whose ack came back first) ends that
    loop without sending the CLOSE packet; the server then holds the pending GET
    until its next ping, and disconnect() waits ping_interval (25 s). Measured: 7
    of 40 disconnects after a call(). Waiting until every queued packet is sent
    first: 0 of 40."""
    sent = sio.eio.queue  # a queue.Queue; this is its join(), with a bound
    if sio.eio.state == "connected":  # else nothing will be sent any more
        with sent.all_tasks_done:
            sent.all_tasks_done.wait_for(lambda: not sent.unfinished_tasks, timeout=EVENT_TIMEOUT)
    sio.disconnect()
