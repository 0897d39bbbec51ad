"""The scenes lesson 03's tests share: servers side by side, raw HTTP requests, a
plain python-socketio client, browser tabs that record what they see, and readers
of a page's timeline (window.timeline, see lessons/03_pitfalls/templates/base.html).
Plain functions only; the fixtures two demos share are in conftest.py, next to this
file, and whatever serves one demo alone stays in that demo's test file.

One test file per demo of lessons/03_pitfalls/ (test_<demo>.py, as FastAPI's
tests/test_tutorial/ mirrors docs_src/), in the README's order, and
test_2019_post.py for its section "What the 2019 post says that is no longer true".
Every claim of the README, in every async mode, with real clients over real
sockets: python-socketio, plain HTTP requests, and Chromium.

Durations are shortened through FLASK_* settings; every timing assertion is a
bound relative to the configured duration, never an exact value. Where several
claims need the same slow scene (connect handlers looping, pages waiting for two
events), a module fixture plays it once, with its clients or tabs side by side,
and the tests named after the claims read what it saw. Each demo has servers of
its own, so that pytest-xdist can run the demos on different workers (see
conftest.pytest_xdist_make_scheduler in tests/).

The test files import this as ``from scenes import ...``: the folder has no
__init__.py, and pytest's default import mode ("prepend") puts the folder of each
test file on sys.path, as pyproject's pythonpath = ["tests"] does for harness.
"""
import http.client
import json
import threading
import time
from urllib.parse import urlsplit

import socketio

from harness import (EVENT_TIMEOUT, http_request, start_all, wait_until,
                     without_the_pending_connect_race)

NS, FIXED = "/test_conn", "/test_conn_fixed"
PUSH = 0.1          # FLASK_PUSH_INTERVAL of blocking_connect and emit_outside_context
PACE = 0.005        # between a Pinger's pings, by default: ~100 a second at most, and little CPU


# --- servers, requests, pages -------------------------------------------------------

def servers_running(servers: dict) -> dict:
    """Start a demo's servers side by side (each spends a moment importing)."""
    start_all(servers.values())
    return servers


def stop_all(servers: dict):
    """Ctrl-C, as conftest's ``serve`` stops its servers: status 0, no traceback."""
    stops = {name: server.interrupt() for name, server in servers.items()}
    for name, server in servers.items():
        assert stops[name] == 0, f"Ctrl-C ended {name} with status {stops[name]}:\n{server.stderr_text}"
        assert "Traceback" not in without_the_pending_connect_race(server.stderr_text, server.mode), \
            server.stderr_text


def side_by_side(in_thread, here, timeout):
    """(in_thread(), here()): python clients in a thread while the pages are watched
    in this one (Playwright's sync API belongs to the thread that started it). An
    error in either is raised here; in_thread() gets ``timeout`` s after here()."""
    result = {}

    def run():
        try:
            result["value"] = in_thread()
        except BaseException as error:  # noqa: B036 -- re-raised below, in this thread
            result["error"] = error

    thread = threading.Thread(target=run)
    thread.start()
    try:
        value_here = here()
    finally:
        thread.join(timeout)
    if "error" in result:
        raise result["error"]
    assert "value" in result, f"{in_thread} did not finish within {timeout} s"
    return result["value"], value_here


class Pinger:
    """Another client's view of a server that one client keeps busy: a thread sends
    "my ping" on ``client`` every ``pace`` seconds (0: non-stop) and records each round
    trip, [(sent, back)] in ``pongs``, from ``with Pinger(...)`` until the block ends; it
    stops at the first ping unanswered within ``timeout`` (a deadlocked server never
    answers). Pinging non-stop answers hundreds more and cost the monkey_patch demo's
    tests 6 CPU-seconds more, for the same verdicts; busy_handler's gevent test counts
    pongs per piece of work, and needs them all."""

    def __init__(self, client, namespace, timeout, pace=PACE):
        self.client, self.namespace, self.timeout, self.pace = client, namespace, timeout, pace
        self.pongs = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.ping_at_a_pace)

    def ping_at_a_pace(self):
        while not self.stopping.is_set():
            sent = time.monotonic()
            try:
                self.client.call("my ping", namespace=self.namespace, timeout=self.timeout)
            except Exception:  # noqa: BLE001 -- no answer in time: stop asking
                return
            self.pongs.append((sent, time.monotonic()))
            if self.pace:
                self.stopping.wait(self.pace)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc_info):
        self.stopping.set()
        self.thread.join(self.timeout + EVENT_TIMEOUT)


def get_json(server, path):
    reply = http_request(server.url + path.lstrip("/"))
    assert reply.status == 200, reply
    return json.loads(reply.body)


def handshake(server, origin_header=None, host=None):
    """The first request of every Socket.IO client (Engine.IO 4, long-polling)."""
    headers = {"Origin": origin_header} if origin_header else {}
    if host:
        headers["Host"] = host
    return http_request(server.url + "socket.io/?EIO=4&transport=polling", headers=headers)


def connection(server):
    parts = urlsplit(server.url)
    return http.client.HTTPConnection(parts.hostname, parts.port, timeout=EVENT_TIMEOUT)


def wait_for_stderr(server, text):
    wait_until(lambda: text in server.stderr_text,
               what=f"{text!r} on the server's stderr; it has:\n{server.stderr_text[-2000:]}")


def python_client(server, transports=None, headers=None):
    """A plain python-socketio client (the harness's records events; these tests need the raw one)."""
    client = socketio.Client(reconnection=False)
    client.connect(server.url, namespaces=[NS], transports=transports, headers=headers or {},
                   wait_timeout=EVENT_TIMEOUT)
    return client


def console_has(tab, text, count=1):
    """Wait until the browser console of ``tab`` has shown ``text`` ``count`` times."""
    # page.evaluate gives Playwright the turn to deliver the console events it holds.
    wait_until(lambda: tab.page.evaluate("1") and sum(text in line for line in tab.console) >= count,
               what=f"{count} x {text!r} in the console; it has: {tab.console}")


class OpenPage:
    """A browser tab on ``url`` in a context of its own, recording its console,
    its JavaScript errors, and the status of every Socket.IO request it makes."""

    def __init__(self, browser, url):
        self.context = browser.new_context()
        self.page = self.context.new_page()
        self.console, self.errors, self.answers = [], [], []
        self.page.on("console", lambda message: self.console.append(message.text))
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.on("response", lambda response: self.answers.append(
            (response.url, response.status)) if "/socket.io/" in response.url else None)
        self.page.goto(url, wait_until="commit")

    def close(self):
        self.context.close()
        assert not self.errors, f"the page raised JavaScript errors: {self.errors}"


# --- reading a page's timeline (window.timeline, see templates/base.html) -------

def timeline_of(page):
    return page.evaluate("window.timeline || []")  # [] while the page is still loading


def handled(timeline, event):
    return [e for e in timeline if e["kind"] == "handled" and e["event"] == event]


def arrived(timeline, event):
    return [e for e in timeline if e["kind"] == "arrived" and e["event"] == event]


def held_back(timeline, event):
    """The `event` pushes whose handler ran only after a later delivery (another
    long-poll response or WebSocket message) had reached the page: held back.

    Timing-free on purpose: socket.io-client hands a packet to its handler in a
    microtask of the task that delivered it, so a push that is not held is handled
    before the next delivery can arrive, however slow a busy machine runs the tab."""
    waiting, held = {}, []  # waiting: push -> the delivery that brought it
    for entry in timeline:
        key = json.dumps(entry["data"], sort_keys=True)
        if entry["kind"] == "arrived":
            for push, via in waiting.items():
                if via != entry["via"]:
                    held.append(push)
            if entry["event"] == event:
                waiting[key] = entry["via"]
        elif entry["kind"] == "handled" and entry["event"] == event:
            waiting.pop(key, None)
    held = set(held)
    return [e for e in handled(timeline, event) if json.dumps(e["data"], sort_keys=True) in held]


def after_upgrade(timeline, event):
    """The `event` pushes handled after the page's upgrade to WebSocket finished."""
    upgraded = [e["t"] for e in timeline if e["kind"] == "status" and e["event"] == "upgraded"]
    return [e for e in handled(timeline, event) if upgraded and e["t"] > upgraded[0]]


def moments(entries, apart=PUSH / 2):
    """The times at which entries came, counting those less than `apart` after
    the one before as the same moment (a burst)."""
    starts = []
    for entry in entries:
        if not starts or entry["t"] - starts[-1] >= apart:
            starts.append(entry["t"])
    return starts


def only(timeline, kind, event):
    """The one row of this kind for this event (a failure if there are none or several)."""
    [entry] = [e for e in timeline if e["kind"] == kind and e["event"] == event]
    return entry


def connect_entry(timeline):
    return only(timeline, "status", "connect")

