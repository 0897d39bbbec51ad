"""Lesson 03_pitfalls: every claim of lessons/03_pitfalls/README.md, in every async
mode, with real clients over real sockets: python-socketio, plain HTTP requests,
and Chromium. One section per demo, in the README's order, then the corrections of
the 2019 post ("What the 2019 post says that is no longer true").

Durations are shortened through FLASK_* settings; every timing assertion is a
bound relative to the configured duration, never an exact value. Where several
claims need the same slow scene (connect handlers looping, pages waiting for two
events), a module fixture plays it once, with its clients or tabs side by side,
and the tests named after the claims read what it saw. Each demo has servers of
its own, so that pytest-xdist can run the demos on different workers (see
conftest.pytest_xdist_make_scheduler).
"""
import hashlib
import http.client
import importlib.util
import json
import re
import subprocess
import sys
import threading
import time
from urllib.parse import urlsplit

import pytest
import socketio
from playwright.sync_api import expect

from harness import (EVENT_TIMEOUT, ROOT, LessonServer, RecordingClient, disconnect, free_port,
                     http_request, start_all, wait_until)

NS, FIXED = "/test_conn", "/test_conn_fixed"
LESSON = ROOT / "lessons" / "03_pitfalls"

PUSH = 0.1          # FLASK_PUSH_INTERVAL of blocking_connect and emit_outside_context
LOOP = 0.5          # FLASK_LOOP_SECONDS of the server that shows that setting
DELAY = 0.5         # FLASK_SECOND_EMIT_DELAY of emits_in_connect
BUSY = 0.6          # FLASK_BUSY_SECONDS of busy_handler
TICK = 0.05         # FLASK_PUSH_INTERVAL of busy_handler

UNSUPPORTED = "The client is using an unsupported version of the Socket.IO or Engine.IO protocols"
WRONG_SERVER = "RuntimeError: You need to use the eventlet server"
REFUSED = "Not an accepted origin."
STRANGER = "http://127.0.0.1:1"  # an origin in raw requests: the server only reads the header
# sha256 of socket.io.js from the socket.io-client 1.5.1 package, whose tarball
# package-lock.json pins by its sha512 integrity.
OLD_CLIENT_SHA256 = "2351381bf9894f7524a70c20d7d86020091f3fb61ab6a238b48f7caf677331d4"


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
        assert "Traceback" not in server.stderr_text, server.stderr_text


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


def get_json(server, path):
    reply = http_request(server.url + path.lstrip("/"))
    assert reply.status == 200, reply
    return json.loads(reply.body)


def origin(url):
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def handshake(server, origin_header=None, host=None):
    """The first request of every Socket.IO client (Engine.IO 4, long-polling)."""
    headers = {"Origin": origin_header} if origin_header else {}
    if host:
        headers["Host"] = host
    return http_request(server.url + "socket.io/?EIO=4&transport=polling", headers=headers)


def connection(server):
    parts = urlsplit(server.url)
    return http.client.HTTPConnection(parts.hostname, parts.port, timeout=EVENT_TIMEOUT)


def websocket_upgrade(server, origin_header, host=None):
    """The request that opens a WebSocket, as a browser on ``origin_header`` sends it."""
    conn = connection(server)
    try:
        conn.request("GET", "/socket.io/?EIO=4&transport=websocket", headers={
            "Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Origin": origin_header,
            **({"Host": host} if host else {})})
        response = conn.getresponse()
        # 101 Switching Protocols has no body: what follows is the WebSocket itself.
        return response.status, "" if response.status == 101 else response.read().decode()
    finally:
        conn.close()


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


# --- reading a page's timeline (window.timeline, see templates/base.html) -------

def timeline_of(page):
    return page.evaluate("window.timeline || []")  # [] while the page is still loading


def handled(timeline, event):
    return [e for e in timeline if e["kind"] == "handled" and e["event"] == event]


def arrived(timeline, event):
    return [e for e in timeline if e["kind"] == "arrived" and e["event"] == event]


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


@pytest.fixture(scope="module")
def tabs(browser):
    """open(url) -> a new tab; close_all() closes them. JavaScript errors in any of
    them fail the test. Each tab gets a browser context (a window) of its own: tabs
    sharing one would be background tabs, whose timers Chromium slows down."""
    contexts, errors = [], []

    class Tabs:
        @staticmethod
        def open(url):
            contexts.append(browser.new_context())
            tab = contexts[-1].new_page()
            tab.on("pageerror", lambda error: errors.append(str(error)))
            tab.goto(url, wait_until="commit")  # the tabs load side by side
            return tab

        @staticmethod
        def close_all():
            while contexts:
                contexts.pop().close()
            failures = errors[:]
            errors.clear()
            assert not failures, f"the pages raised JavaScript errors: {failures}"

    yield Tabs
    Tabs.close_all()


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



# =============================================================================
# 1. blocking_connect
# =============================================================================

def stuck(server, namespaces=(NS,)):
    """A python-socketio client whose connect to /test_conn is pending: connect(wait=False)
    returns once the Engine.IO connection is up and leaves the namespaces connecting."""
    client = RecordingClient(server.url, namespaces)
    client.connect_started_at = time.monotonic()
    client.sio.connect(server.url, namespaces=list(namespaces), wait=False)
    return client


def loops_of(server):
    return get_json(server, "/loops")["connect_handler_loops"]


def stop_loops(server):
    """POST /loops/stop: the broken connect handlers return (after their current sleep)."""
    reply = http_request(server.url + "loops/stop", data=b"")
    assert reply.status == 200, reply
    return json.loads(reply.body)


@pytest.fixture(scope="module")
def blocking_servers(mode):
    """blocking_connect's servers, started side by side. Their broken handlers loop
    until POST /loops/stop, or FLASK_LOOP_SECONDS (default 60 s). One for the client
    that gives up (its loop must outlive it), one for the other python clients, one
    per stuck page (so that clients watched at the same time do not get each other's
    broadcasts), and one with a short loop."""
    settings = {"PUSH_INTERVAL": PUSH}
    servers = {name: LessonServer("03", "blocking_connect", mode=mode, settings=settings)
               for name in ("gave_up", "blocking", "blocking_2", "blocking_3")}
    servers["blocking_short"] = LessonServer("03", "blocking_connect", mode=mode,
                                             settings={**settings, "LOOP_SECONDS": LOOP})
    yield servers_running(servers)
    stop_all(servers)


@pytest.fixture(scope="module")
def gave_up(blocking_servers):
    """The python-socketio client against the broken namespace, as a user would write
    it: connect(url, namespaces=["/test_conn"]). It takes seconds to give up, so it
    runs in the background from the first blocking_connect test on; the tests that
    read it come last in this file."""
    server = blocking_servers["gave_up"]
    client = RecordingClient(server.url)
    result = {"client": client, "server": server}

    def attempt():
        result["started"] = time.monotonic()
        try:
            client.sio.connect(server.url, namespaces=[NS])  # wait_timeout: the default, 1 s
        except socketio.exceptions.ConnectionError as error:
            result["error"] = error
        result["ended"] = time.monotonic()
        result["pushes_when_it_gave_up"] = loops_of(server)[-1]["pushes"]

    result["thread"] = threading.Thread(target=attempt, daemon=True)
    result["thread"].start()
    yield result
    result["thread"].join(10)


@pytest.fixture(scope="module")
def blocking(blocking_servers, gave_up):
    return blocking_servers["blocking"]


def watch_python_clients_while_looping(blocking):
    """Three python-socketio clients, watched together while broken connect handlers
    loop:
      a: /test_conn_fixed and /test_conn over ONE connection; pings on /test_conn_fixed
         while its /test_conn connect is pending;
      b: /test_conn, connecting while a's handler loops;
      c: /test_conn_fixed, connecting while both loop.
    Then POST /loops/stop lets both connect handlers return."""
    seen, a, b, c = {}, None, None, None
    try:
        a = stuck(blocking, namespaces=(FIXED, NS))
        a.wait_for("connect", namespace=FIXED)
        first = a.wait_for("mess", namespace=NS)[0]
        answered = []
        a.sio.emit("my ping", namespace=FIXED, callback=lambda *args: answered.append(time.monotonic()))
        seen["a_pinged_while_pending"] = a.events("connect", NS) == []

        b = stuck(blocking)
        wait_until(lambda: len({m.data["loop"] for m in b.events("mess", NS)}) == 2,
                   what="b to get the pushes of two loops")
        seen["b_got_pushes_of_loops"] = {m.data["loop"] for m in b.events("mess", NS)}
        seen["connects_while_looping"] = a.events("connect", NS) + b.events("connect", NS)

        c = RecordingClient(blocking.url, (FIXED,)).connect()
        seen["c_pong"] = c.call("my ping", namespace=FIXED)
        seen["c_pushes"] = len(c.wait_for("mess", namespace=FIXED))
        seen["a_loop_running_after_c"] = loops_of(blocking)[first.data["loop"] - 1]["running"]
        seen["a_pong_while_looping"] = list(answered)

        # Now let the handlers return.
        seen["stop_requested_at"] = time.monotonic()
        stop_loops(blocking)
        [seen["a_connected"]] = a.wait_for("connect", namespace=NS)
        wait_until(lambda: answered, what="a's pong")
        seen["a_pong_at"] = answered[0]
        [seen["b_connected"]] = b.wait_for("connect", namespace=NS)
        seen["b_pong"] = b.call("my ping", namespace=NS)
    finally:
        for client in (a, b, c):
            if client:
                client.close()
    return seen


@pytest.fixture(scope="module")
def while_looping(blocking_servers, gave_up, tabs):
    """The python clients and the pages, on servers of their own, watched at the
    same time, once, for every claim that reads this."""
    seen, pages = side_by_side(
        lambda: watch_python_clients_while_looping(blocking_servers["blocking"]),
        lambda: watch_pages_while_looping(blocking_servers, tabs), timeout=3 * EVENT_TIMEOUT)
    return {**seen, "pages": pages}


def test_blocking_connect_other_clients_of_test_conn_are_stuck_too_and_get_every_loops_pushes(
        while_looping):
    assert len(while_looping["b_got_pushes_of_loops"]) == 2  # a's loop and its own
    assert while_looping["connects_while_looping"] == []


def test_blocking_connect_clients_of_another_namespace_are_served_meanwhile(while_looping):
    assert while_looping["c_pong"] == "pong"
    assert while_looping["c_pushes"] >= 1  # from the fix's task
    assert while_looping["a_loop_running_after_c"] is True  # all that while a's handler looped


def test_blocking_connect_the_stuck_connection_reads_nothing_else_until_the_handler_returns(
        while_looping):
    # a's ping on /test_conn_fixed, sent while its /test_conn connect was pending, was
    # not answered while the handler looped (c connected and got its pong meanwhile),
    # only once the handlers were asked to return.
    assert while_looping["a_pinged_while_pending"]
    assert while_looping["a_pong_while_looping"] == []
    assert while_looping["a_pong_at"] >= while_looping["stop_requested_at"]


def test_blocking_connect_when_the_loop_ends_the_client_is_connected_at_last(while_looping):
    assert while_looping["b_connected"].at >= while_looping["stop_requested_at"]
    assert while_looping["b_pong"] == "pong"


def test_blocking_connect_the_loop_stops_by_itself_after_flask_loop_seconds(blocking_servers):
    server = blocking_servers["blocking_short"]
    client = stuck(server)
    try:
        [connected] = client.wait_for("connect", namespace=NS)
        assert connected.at - client.connect_started_at >= LOOP * 0.9
        assert [loop["running"] for loop in loops_of(server)] == [False]
        assert client.call("my ping", namespace=NS) == "pong"
    finally:
        client.close()


# --- the fix ----------------------------------------------------------------

def test_blocking_connect_fixed_connects_at_once_and_one_task_pushes_to_everyone(blocking, connect):
    alice = connect(blocking, namespaces=(FIXED,))
    bob = connect(blocking, namespaces=(FIXED,))
    # connect() returned: the server answered before its first push.
    assert alice.events("connect", FIXED)[0].at < alice.wait_for("mess", namespace=FIXED)[0].at

    bobs = bob.wait_for("mess", 4, namespace=FIXED)[:4]
    # Alice got the very same pushes (same random data, same seq): one emit reached both...
    seqs = {m.data["seq"] for m in bobs}
    wait_until(lambda: seqs <= {m.data["seq"] for m in alice.events("mess", FIXED)},
               what="alice to get bob's pushes")
    alices = {m.data["seq"]: m.data for m in alice.events("mess", FIXED)}
    assert [alices[m.data["seq"]] for m in bobs] == [m.data for m in bobs]
    # ...and one push per interval: one task for everybody, not one per client.
    times = [m.at for m in bobs]
    assert max(times) - min(times) >= 3 * PUSH / 2, times
    assert get_json(blocking, "/loops")["background_task"]["running"] is True


def test_blocking_connect_fixed_task_stops_when_the_last_client_leaves(blocking, connect):
    client = connect(blocking, namespaces=(FIXED,))
    client.wait_for("mess", namespace=FIXED)
    client.close()
    wait_until(lambda: not get_json(blocking, "/loops")["background_task"]["running"],
               what="the background task to stop")
    again = connect(blocking, namespaces=(FIXED,))
    again.wait_for("mess", namespace=FIXED)
    assert get_json(blocking, "/loops")["background_task"]["running"] is True


# --- the pages ----------------------------------------------------------------

SNAPSHOT = """() => ({
    status: document.getElementById("status").textContent,
    transport: document.getElementById("transport").textContent,
    arrived: Number(document.getElementById("arrived-count").textContent),
    handled: Number(document.getElementById("handled-count").textContent),
    explain: document.getElementById("explain").textContent,
})"""


def watch_pages_while_looping(servers, tabs):
    """Side by side: the broken page with the default transports, the broken page over
    WebSocket only (on a server of its own), and the fixed page; watched while the
    connect handlers loop, then once they have returned."""
    blocking, other = servers["blocking_2"], servers["blocking_3"]
    before = {"default": len(loops_of(blocking)), "websocket": len(loops_of(other))}
    default = tabs.open(blocking.url)
    websocket = tabs.open(other.url + "?transport=websocket")
    fixed = tabs.open(blocking.url + "fixed")
    seen = {"default": {}, "websocket": {}, "fixed": {}}

    # While the handlers loop (they do until asked to stop).
    wait_until(lambda: len(loops_of(blocking)) > before["default"]
               and loops_of(blocking)[before["default"]]["pushes"] >= 2, what="two pushes")
    seen["default"]["pending"] = default.evaluate(SNAPSHOT)
    seen["default"]["loop_running"] = loops_of(blocking)[before["default"]]["running"]
    websocket.wait_for_function("Number((document.getElementById('arrived-count') || {}).textContent) >= 3",
                                timeout=EVENT_TIMEOUT * 1000)
    seen["websocket"]["pending"] = websocket.evaluate(SNAPSHOT)
    seen["websocket"]["loop_running"] = loops_of(other)[before["websocket"]]["running"]

    # The page's button lets the handlers return.
    for name, tab in (("default", default), ("websocket", websocket)):
        tab.click("#stop-loops")
        expect(tab.locator("#status")).to_contain_text("yes — the server answered the connect after")
        seen[name]["timeline"] = timeline_of(tab)
    seen["default"]["loop"] = loops_of(blocking)[before["default"]]
    seen["websocket"]["loop"] = loops_of(other)[before["websocket"]]
    wait_until(lambda: len(moments(after_upgrade(timeline_of(fixed), "mess"))) >= 4,
               what="pushes at 4 moments on the fixed page after its upgrade to WebSocket")
    seen["fixed"] = {"timeline": timeline_of(fixed), **fixed.evaluate(SNAPSHOT)}
    tabs.close_all()
    return seen


def assert_held_pushes_handled_at_once_before_connect(seen):
    """After the button: the page is connected, and ran its mess handler for every
    push of the loop in one burst, right before its connect handler."""
    timeline, loop = seen["timeline"], seen["loop"]
    messes, connected = handled(timeline, "mess"), connect_entry(timeline)
    button = only(timeline, "sent", "POST /loops/stop")
    assert loop["running"] is False
    assert [m["data"]["loop"] for m in messes] == [loop["loop"]] * len(messes)
    assert [m["data"]["seq"] for m in messes] == list(range(1, loop["pushes"] + 1))  # in order
    assert len(messes) >= 3
    # in one burst: in one synchronous run of JavaScript with the connect handler
    assert {m["task"] for m in messes} == {connected["task"]}, timeline
    assert messes[0]["t"] >= button["t"]
    assert messes[-1]["t"] <= connected["t"]


@pytest.mark.browser
def test_blocking_connect_page_says_not_connected_and_shows_nothing_while_the_handler_loops(
        while_looping):
    seen = while_looping["pages"]["default"]
    pending = seen["pending"]
    # The loop had pushed twice already: the page still waited and had shown nothing;
    # the WebSocket upgrade had started but could not finish while the connect was pending.
    assert seen["loop_running"] is True
    assert pending["status"].startswith("no — the server has not answered the connect yet"), pending
    assert pending["handled"] == 0, pending
    assert pending["transport"] == "polling (upgrade to websocket started, not finished)", pending

    assert_held_pushes_handled_at_once_before_connect(seen)
    # Once the upgrade had started (polling paused for it), the pushes waited on the
    # server until the handler returned and the upgrade could finish: then they came
    # over the WebSocket, right before the CONNECT packet. Before it, they came over
    # long-polling as usual (how many depends on how fast the page got going), and so
    # may one batch after it: the answer to the long-poll request already under way.
    timeline = seen["timeline"]
    upgrading = only(timeline, "status", "upgrading")
    button = only(timeline, "sent", "POST /loops/stop")
    [connect_packet] = arrived(timeline, "CONNECT packet")
    after = [m for m in arrived(timeline, "mess") if m["t"] > upgrading["t"]]
    held = [m for m in after if m["via"].startswith("websocket")]
    in_flight = [m for m in after if m["via"].startswith("long-poll")]
    assert len(held) >= 2, timeline
    assert all(button["t"] <= m["t"] <= connect_packet["t"] for m in held), timeline
    assert connect_packet["via"].startswith("websocket"), timeline
    assert len({m["via"] for m in in_flight}) <= 1, timeline  # one long-poll response at most


@pytest.mark.browser
def test_blocking_connect_page_over_websocket_receives_each_push_but_socketio_client_holds_it(
        while_looping):
    seen = while_looping["pages"]["websocket"]
    pending = seen["pending"]
    assert seen["loop_running"] is True
    assert pending["arrived"] >= 3 and pending["handled"] == 0, pending
    assert pending["status"].startswith("no — the server has not answered the connect yet"), pending
    assert "socket.io-client keeps events that arrive before the server answers the connect" \
        in pending["explain"], pending
    pushes = arrived(seen["timeline"], "mess")
    assert pushes[2]["t"] - pushes[0]["t"] >= PUSH / 2  # as they were pushed, not in one burst

    assert_held_pushes_handled_at_once_before_connect(seen)


@pytest.mark.browser
def test_blocking_connect_fixed_page_connects_at_once_and_shows_each_push(while_looping):
    seen = while_looping["pages"]["fixed"]
    assert seen["status"].startswith("yes — the server answered the connect after"), seen
    assert "websocket" in seen["transport"], seen
    messes = handled(seen["timeline"], "mess")
    assert connect_entry(seen["timeline"])["t"] < messes[0]["t"]
    # One by one, not all at once. (Pushes sent while the transport is upgraded to
    # WebSocket wait for the upgrade and arrive together when it completes: on a
    # busy machine that can be five or more. So count the moments after it.)
    assert len(moments(after_upgrade(seen["timeline"], "mess"))) >= 4, seen["timeline"]
    # Each one handled as it arrived: nothing held back. (The broken page holds its
    # first push for 2 * PUSH at least: until the button, pressed after the third
    # push. The bound leaves room for a renderer kept waiting by a busy machine.)
    arrival = {m["data"]["seq"]: m["t"] for m in arrived(seen["timeline"], "mess")}
    assert all(m["t"] - arrival[m["data"]["seq"]] < 2 * PUSH for m in messes), (messes, arrival)


def test_blocking_connect_no_loop_is_left_running_once_its_clients_are_gone(blocking_servers):
    # After the tests above: every broken loop has ended, and the fix's task stopped
    # with its last client (the server of the client that gave up is the exception,
    # on purpose: see the tests at the end of this file).
    for name in ("blocking", "blocking_2", "blocking_3", "blocking_short"):
        server = blocking_servers[name]
        wait_until(lambda: not any(loop["running"] for loop in loops_of(server))
                   and not get_json(server, "/loops")["background_task"]["running"],
                   what=f"every loop of {name} to end")


# =============================================================================
# 2. emits_in_connect
# =============================================================================

@pytest.fixture(scope="module")
def emits(serve):
    return serve("03", "emits_in_connect", SECOND_EMIT_DELAY=DELAY)


def watch_python_clients_connect(emits):
    """Two python-socketio clients connecting at the same time, one per namespace;
    each records its events, when connect() started and when it returned."""
    clients = {"broken": RecordingClient(emits.url, (NS,)), "fixed": RecordingClient(emits.url, (FIXED,))}
    threads = [threading.Thread(target=client.connect) for client in clients.values()]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(DELAY + EVENT_TIMEOUT)
        clients["broken"].wait_for("mess", 2, namespace=NS)
        clients["fixed"].wait_for("mess", 2, namespace=FIXED)
    finally:
        for client in clients.values():
            client.close()
    return clients


def watch_pages_connect(emits, tabs):
    """The broken page and the fixed one, each with the default transports and with
    WebSocket only: four tabs side by side, read once both events are on each."""
    paths = {("broken", "default"): "", ("broken", "websocket"): "?transport=websocket",
             ("fixed", "default"): "fixed", ("fixed", "websocket"): "fixed?transport=websocket"}
    opened = {key: tabs.open(emits.url + path) for key, path in paths.items()}
    seen = {}
    for key, tab in opened.items():
        wait_until(lambda: len(handled(timeline_of(tab), "mess")) == 2, what="both events on the page")
        seen[key] = {"timeline": timeline_of(tab),
                     "gap": tab.locator("#gap").inner_text(), "explain": tab.locator("#explain").inner_text()}
    tabs.close_all()
    return seen


@pytest.fixture(scope="module")
def emits_seen(emits, tabs):
    """The python clients and the pages connecting at the same time."""
    clients, pages = side_by_side(lambda: watch_python_clients_connect(emits),
                                  lambda: watch_pages_connect(emits, tabs),
                                  timeout=DELAY + 3 * EVENT_TIMEOUT)
    return {**clients, "pages": pages}


def test_emits_in_connect_python_client_gets_each_event_when_sent_and_connect_returns_after_both(
        emits_seen):
    client = emits_seen["broken"]
    first, second = client.events("mess", NS)
    [connected] = client.events("connect", NS)
    assert [first.data["data"], second.data["data"]] == ["first", "second"]
    # python-socketio runs the handler of each event as it arrives, connected or not...
    assert second.at - first.at >= DELAY / 2
    # ...long before the CONNECT, which comes when the connect handler has returned:
    # connect() took the whole connect handler.
    assert connected.at - first.at >= DELAY / 2
    assert client.connected_at - first.at >= DELAY / 2


def test_emits_in_connect_fixed_python_client_connects_at_once_and_gets_the_events_delay_apart(
        emits_seen):
    client = emits_seen["fixed"]
    first, second = client.events("mess", FIXED)
    [connected] = client.events("connect", FIXED)
    assert [first.data["data"], second.data["data"]] == ["first", "second"]
    # In threading mode the task may emit just before the handler's CONNECT is out.
    assert first.at >= connected.at - DELAY / 2
    assert second.at - first.at >= DELAY / 2


@pytest.mark.browser
def test_emits_in_connect_page_runs_both_handlers_at_once_right_before_connect_though_sent_apart(
        emits_seen):
    emits_pages = emits_seen["pages"]
    for transport in ("default", "websocket"):
        seen = emits_pages["broken", transport]
        first, second = handled(seen["timeline"], "mess")
        assert [first["data"]["data"], second["data"]["data"]] == ["first", "second"]
        # in one synchronous run of JavaScript with the connect handler, though emitted DELAY apart
        assert first["task"] == second["task"] == connect_entry(seen["timeline"])["task"]
        assert first["t"] >= DELAY
        assert second["t"] <= connect_entry(seen["timeline"])["t"]
        assert f"(the server emitted them {DELAY} s apart)" in seen["gap"]
        assert "Both events reached your handler at the same moment" in seen["explain"]
    # Over WebSocket they reached the browser apart, and the first one was held there.
    timeline = emits_pages["broken", "websocket"]["timeline"]
    pushes, (first, second) = arrived(timeline, "mess"), handled(timeline, "mess")
    assert pushes[1]["t"] - pushes[0]["t"] >= DELAY / 2
    assert first["t"] >= pushes[1]["t"]


@pytest.mark.browser
def test_emits_in_connect_fixed_page_runs_each_handler_as_its_event_arrives(emits_seen):
    emits_pages = emits_seen["pages"]
    for transport in ("default", "websocket"):
        seen = emits_pages["fixed", transport]
        (first, second), pushes = handled(seen["timeline"], "mess"), arrived(seen["timeline"], "mess")
        assert first["t"] >= connect_entry(seen["timeline"])["t"] - 0.05
        assert first["t"] < pushes[1]["t"]  # handled before the second one had even arrived
        assert "One event, then the other" in seen["explain"]
    # Over WebSocket nothing else delays them: they come about the delay apart.
    first, second = handled(emits_pages["fixed", "websocket"]["timeline"], "mess")
    assert second["t"] - first["t"] >= DELAY / 2


# =============================================================================
# 3. emit_outside_context
# =============================================================================

@pytest.fixture(scope="module")
def outside(serve):
    return serve("03", "emit_outside_context", PUSH_INTERVAL=PUSH)


REQUEST_CONTEXT_FRAMES = [
    {"file": "flask_socketio/__init__.py", "function": "emit", "line": "to = flask.request.sid"},
    {"file": "werkzeug/local.py", "function": "__get__", "line": "obj = instance._get_current_object()"},
    {"file": "werkzeug/local.py", "function": "_get_current_object",
     "line": "raise RuntimeError(unbound_message) from None"},
]


def test_emit_outside_context_bare_emit_in_a_task_raises_working_outside_of_request_context(
        outside, connect):
    client = connect(outside)

    [error] = client.wait_for("task error")
    assert error.data["error"] == "RuntimeError"
    assert error.data["message"] == "Working outside of request context."
    assert error.data["raised_in"] == REQUEST_CONTEXT_FRAMES
    client.sync()
    assert client.events("mess") == []  # the task died at its first emit


def try_call(client, call):
    """Ask the fixed namespace to run `call` in a background task; return its report."""
    before = len(client.events("task report", FIXED))
    assert client.call("try emit", {"data": call}, namespace=FIXED) == {"ok": True}
    return client.wait_for("task report", before + 1, namespace=FIXED)[-1].data


def tried(client, call, namespace):
    """The `mess` events that the tried `call` sent to this client on `namespace`
    (the task sends them before its report, so after a round trip they are all here)."""
    client.sync(namespace=FIXED)
    return [m for m in client.events("mess", namespace) if m.data.get("call") == call]


def test_emit_outside_context_bare_emit_with_namespace_raises_the_same_request_context_error(
        outside, connect):
    client = connect(outside, namespaces=(FIXED,))
    call = 'emit("mess", ..., namespace=NS)'

    report = try_call(client, call)
    assert (report["error"], report["message"]) == ("RuntimeError", "Working outside of request context.")
    assert report["raised_in"] == REQUEST_CONTEXT_FRAMES
    assert tried(client, call, FIXED) == []


def test_emit_outside_context_bare_emit_with_namespace_and_to_still_needs_an_app_context(
        outside, connect):
    client = connect(outside, namespaces=(FIXED,))
    call = 'emit("mess", ..., namespace=NS, to=sid)'

    report = try_call(client, call)
    assert report["error"] == "RuntimeError"
    assert report["message"] == "Working outside of application context."
    assert report["raised_in"][0] == {"file": "flask_socketio/__init__.py", "function": "emit",
                                      "line": "socketio = flask.current_app.extensions['socketio']"}
    assert report["raised_in"][-1]["function"] == "_get_current_object"
    assert tried(client, call, FIXED) == []


def test_emit_outside_context_socketio_emit_without_namespace_goes_to_the_default_namespace_only(
        outside, connect):
    requester = connect(outside, namespaces=("/", FIXED))
    bystander = connect(outside, namespaces=(FIXED,))
    call = 'socketio.emit("mess", ...)'

    assert try_call(requester, call) == {"call": call, "error": None}
    assert len(tried(requester, call, "/")) == 1
    assert tried(requester, call, FIXED) == []
    assert tried(bystander, call, FIXED) == []


def test_emit_outside_context_socketio_emit_with_namespace_reaches_every_client_of_it(outside, connect):
    requester = connect(outside, namespaces=(FIXED,))
    bystander = connect(outside, namespaces=(FIXED,))
    call = 'socketio.emit("mess", ..., namespace=NS)'

    assert try_call(requester, call) == {"call": call, "error": None}
    assert len(tried(requester, call, FIXED)) == 1
    assert len(tried(bystander, call, FIXED)) == 1


def test_emit_outside_context_socketio_emit_with_namespace_and_to_reaches_that_client_only(
        outside, connect):
    requester = connect(outside, namespaces=(FIXED,))
    bystander = connect(outside, namespaces=(FIXED,))
    call = 'socketio.emit("mess", ..., namespace=NS, to=sid)'

    assert try_call(requester, call) == {"call": call, "error": None}
    assert len(tried(requester, call, FIXED)) == 1
    assert tried(bystander, call, FIXED) == []


def test_emit_outside_context_fixed_task_pushes_to_its_client_only_and_ends_when_it_leaves(
        outside, connect):
    alice = connect(outside, namespaces=(FIXED,))
    bob = connect(outside, namespaces=(FIXED,))
    alice_sid = alice.sio.get_sid(namespace=FIXED)

    alice.wait_for("mess", 4, namespace=FIXED)
    bob.wait_for("mess", 4, namespace=FIXED)
    # Each client's task numbers its own pushes: a client that also got the
    # other's would see every number twice.
    for client in (alice, bob):
        seqs = sorted(m.data["seq"] for m in client.events("mess", FIXED))
        assert seqs == list(range(1, len(seqs) + 1))
    assert alice_sid in get_json(outside, "/loops")["push_loops"]

    alice.close()
    wait_until(lambda: alice_sid not in get_json(outside, "/loops")["push_loops"],
               what="alice's push loop to end")


@pytest.mark.browser
def test_emit_outside_context_page_shows_the_error_and_never_a_mess(outside, page):
    page.goto(outside.url)

    expect(page.locator("#task")).to_have_text("crashed: RuntimeError: Working outside of request context.")
    expect(page.locator("#explain")).to_contain_text("raised in werkzeug/local.py, _get_current_object()")
    expect(page.locator("#mess-count")).to_have_text("0")


@pytest.mark.browser
def test_emit_outside_context_fixed_page_gets_its_pushes_and_the_buttons_show_who_receives(outside, page):
    page.goto(outside.url + "fixed")

    wait_until(lambda: int(page.locator("#mess-count").inner_text()) >= 2, what="2 pushes on the page")
    page.click('button[data-call="emit(\\"mess\\", ..., namespace=NS)"]')
    expect(page.locator("#try-result")).to_contain_text(
        'raised RuntimeError: "Working outside of request context."')
    page.click('button[data-call="socketio.emit(\\"mess\\", ...)"]')
    expect(page.locator("#timeline")).to_contain_text('your handler on "/" ran')


def test_emit_outside_context_no_push_loop_is_left_running_once_its_clients_are_gone(outside):
    wait_until(lambda: get_json(outside, "/loops")["push_loops"] == [], what="every push loop to end")


# =============================================================================
# 4. busy_handler
# =============================================================================

@pytest.fixture(scope="module")
def busy(serve):
    return serve("03", "busy_handler", BUSY_SECONDS=BUSY, PUSH_INTERVAL=TICK)


def watch_while_working(server, namespace, work):
    """A python-socketio client pings non-stop and records the ticks while ``work()``
    (done by another client) runs; returns what it saw, with work()'s acknowledgement."""
    watcher = RecordingClient(server.url, (namespace,)).connect()
    try:
        watcher.wait_for("tick", 2, namespace=namespace)
        stop, pongs = threading.Event(), []

        def ping_non_stop():
            while not stop.is_set():
                sent = time.monotonic()
                watcher.call("my ping", namespace=namespace)
                pongs.append((sent, time.monotonic()))

        pinger = threading.Thread(target=ping_non_stop)
        started = time.monotonic()
        pinger.start()
        try:
            ack = work()
        finally:
            answered = time.monotonic()
            stop.set()
            pinger.join(EVENT_TIMEOUT)
        # One more tick, so that the gap the work made (if any) is over.
        watcher.wait_for("tick", len(watcher.events("tick", namespace)) + 1, namespace=namespace)
    finally:
        watcher.close()
    ticks = [t for t in watcher.events("tick", namespace) if t.at >= started - TICK]
    gaps = [b.at - a.at for a, b in zip(ticks, ticks[1:])]
    return {
        "ack": ack,
        "took": answered - started,
        # by the server's clock: the ticks it sent while the work ran
        "ticks_during_work": sum(ack["started_at"] < t.data["at"] < ack["ended_at"] for t in ticks),
        "longest_silence": max(gaps),
        "slowest_pong": max(back - sent for sent, back in pongs),
        "pongs_before_the_work_was_done": sum(back < answered for sent, back in pongs),
        # pongs that came back while the server worked (its clock and ours are both
        # the machine's monotonic clock)
        "pongs_during_work": sum(ack["started_at"] <= back <= ack["ended_at"]
                                 for sent, back in pongs),
    }


@pytest.fixture(scope="module")
def busy_page(busy, tabs):
    """The page presses "work" on /test_conn while a python-socketio client watches:
    what each of them saw; then the fixed page presses "work" on /test_conn_fixed."""
    page = tabs.open(busy.url)
    wait_until(lambda: len(handled(timeline_of(page), "tick")) >= 2, what="ticks on the page")

    def press_work():
        page.click("#work")
        expect(page.locator("#work-status")).to_contain_text("done:", timeout=(BUSY + EVENT_TIMEOUT) * 1000)
        [ack] = [e["data"] for e in handled(timeline_of(page), "work")]
        return ack

    python = watch_while_working(busy, NS, press_work)
    # One more tick on the page too, so that its longest silence is complete.
    ticks = len(handled(timeline_of(page), "tick"))
    wait_until(lambda: len(handled(timeline_of(page), "tick")) > ticks, what="a tick after the work")
    seen = {"page": read_work(page)}

    # Then the fixed page (its namespace yields while it works), from a fresh tab.
    fixed = tabs.open(busy.url + "fixed")
    wait_until(lambda: len(handled(timeline_of(fixed), "tick")) >= 2, what="ticks on the fixed page")
    fixed.click("#work")
    expect(fixed.locator("#work-status")).to_contain_text("done:", timeout=(BUSY + EVENT_TIMEOUT) * 1000)
    seen["fixed_page"] = read_work(fixed)
    tabs.close_all()
    return {"python": python, **seen}


def read_work(page):
    """What a busy_handler page says once its "work" is acknowledged."""
    return page.evaluate("({during: window.ticksDuringWork, longest: window.longestSilence, "
                         "saidSilent: window.saidSilent === true, "
                         "explain: document.getElementById('explain').textContent})")


def test_busy_handler_freezes_every_other_client_in_eventlet_and_gevent_but_not_in_threading(
        busy_page, mode):
    seen = busy_page["python"]

    assert seen["ack"]["seconds"] >= BUSY and seen["took"] >= BUSY
    if mode in ("eventlet", "gevent"):
        assert seen["ticks_during_work"] == 0, seen
        assert seen["longest_silence"] >= BUSY * 0.75, seen
        assert seen["slowest_pong"] >= BUSY * 0.5, seen
    else:
        assert seen["ticks_during_work"] >= 1, seen
        assert seen["pongs_before_the_work_was_done"] >= 3, seen


@pytest.mark.browser
def test_busy_handler_page_goes_silent_while_it_works_in_eventlet_and_gevent_only(busy_page, mode):
    seen = busy_page["page"]

    if mode in ("eventlet", "gevent"):
        assert seen["during"] == 0, seen
        assert seen["longest"] >= BUSY * 0.75, seen
        assert seen["saidSilent"], seen  # "silent for 0.5 s: no tick, no pong"
        assert "the server sent no tick at all" in seen["explain"], seen
    else:
        assert seen["during"] >= 1, seen
        assert "the other clients were served meanwhile" in seen["explain"], seen


@pytest.mark.browser
def test_busy_handler_fixed_page_gets_ticks_while_its_work_runs_in_every_mode(busy_page):
    seen = busy_page["fixed_page"]

    assert seen["during"] >= 1, seen
    assert "the other clients were served meanwhile" in seen["explain"], seen


@pytest.fixture(scope="module")
def fixed_work_seen(busy):
    """One client asks /test_conn_fixed for "work" while another pings and watches."""
    worker = RecordingClient(busy.url, (FIXED,)).connect()
    try:
        return watch_while_working(busy, FIXED, lambda: worker.call("work", namespace=FIXED,
                                                                     timeout=BUSY + EVENT_TIMEOUT))
    finally:
        worker.close()


def test_busy_handler_fixed_with_socketio_sleep_0_keeps_serving_everyone_in_every_mode(
        fixed_work_seen):
    seen = fixed_work_seen
    assert seen["ack"]["seconds"] >= BUSY and seen["took"] >= BUSY
    assert seen["ticks_during_work"] >= 1, seen
    assert seen["pongs_during_work"] >= 1, seen


def test_busy_handler_fixed_in_gevent_the_others_get_a_turn_only_about_every_50_pieces(
        fixed_work_seen, mode):
    # Each "my ping" needs the server to read its socket; count those answered
    # while the work ran, against the pieces of work (one socketio.sleep(0) each).
    seen = fixed_work_seen
    pieces, pongs = seen["ack"]["rounds"], seen["pongs_during_work"]
    if mode == "gevent":
        assert pongs <= pieces / 25 + 2, seen  # about pieces / 50: 16 for 744 here
    else:
        assert pongs >= pieces / 10, seen      # about pieces / 3: 211 for 639 in eventlet


def test_busy_handler_the_ticker_stops_when_the_last_client_leaves(busy, connect):
    client = connect(busy)
    client.wait_for("tick")
    client.close()
    wait_until(lambda: not get_json(busy, "/loops")["ticker"]["running"], what="the ticker to stop")


# =============================================================================
# 5. async_model_typo
# =============================================================================

@pytest.fixture(scope="module")
def typo(mode):
    """async_model_typo's servers: "quiet" is stopped by the first test, which reads
    all it printed. The others share one server, but in gevent mode, where one test
    freezes a server, each test has its own."""
    uses = ("websocket", "freeze", "page")
    servers = {"quiet": LessonServer("03", "async_model_typo", mode=mode)}
    if mode == "gevent":
        servers.update({use: LessonServer("03", "async_model_typo", mode=mode) for use in uses})
    else:
        servers.update(dict.fromkeys(uses, LessonServer("03", "async_model_typo", mode=mode)))
    start_all(set(servers.values()))
    yield servers
    for server in set(servers.values()):
        server.kill()


@pytest.fixture(scope="module")
def typo_tab(typo, browser):
    tab = OpenPage(browser, typo["page"].url)
    yield tab
    tab.close()


def test_async_model_typo_raises_no_error_and_the_server_runs_eventlet_whatever_the_mode(
        typo, mode):
    server = typo["quiet"]

    assert server.ready_line["mode"] == "eventlet"
    assert http_request(server.url).status == 200
    stderr = server.stop()
    assert "Error" not in stderr and "Traceback" not in stderr, stderr
    if mode != "eventlet":  # (--mode eventlet: the launcher imported eventlet itself, earlier)
        # The one hint: eventlet's warning as Engine.IO's eventlet driver imports it...
        warning = re.search(r"(?s)\S*engineio/async_drivers/eventlet\.py:\d+: EventletDeprecationWarning:"
                            r".*?from eventlet\.green\.threading import Event\n", stderr)
        assert warning, stderr
        stderr = stderr.replace(warning[0], "")
    # ...and apart from it, only the launcher's own lines.
    assert all(line.startswith("lesson: ") for line in stderr.splitlines() if line.strip()), stderr


def test_async_model_typo_the_keyword_reaches_engineio_which_ignores_it():
    """In this process (threading, nothing patched): where async_model goes."""
    import engineio
    from flask import Flask
    from flask_socketio import SocketIO

    sio = SocketIO(Flask(__name__), async_model="threading", async_mode="threading")
    assert sio.server_options["async_model"] == "threading"  # kept by Flask-SocketIO,
    assert not hasattr(sio.server, "async_model")             # passed on by socketio.Server,
    assert not hasattr(sio.server.eio, "async_model")         # dropped by engineio.Server,
    # which takes any keyword at all without a word:
    assert engineio.Server(async_mode="threading", no_such_option=1).async_mode == "threading"


def test_async_model_typo_the_fix_async_mode_is_obeyed_and_a_wrong_value_raises():
    from flask import Flask
    from flask_socketio import SocketIO

    assert SocketIO(Flask(__name__), async_mode="threading").async_mode == "threading"
    with pytest.raises(ValueError, match="Invalid async_mode specified"):
        SocketIO(Flask(__name__), async_mode="threadin")


def test_async_model_typo_websocket_works_only_with_eventlets_web_server(typo, mode):
    server = typo["websocket"]
    if mode == "eventlet":
        client = python_client(server, transports=["websocket"])
        try:
            assert client.transport() == "websocket"
            assert client.call("my ping", namespace=NS, timeout=EVENT_TIMEOUT) == "pong"
        finally:
            disconnect(client)
        assert WRONG_SERVER not in server.stderr_text
    else:
        with pytest.raises(socketio.exceptions.ConnectionError):
            python_client(server, transports=["websocket"])
        wait_for_stderr(server, WRONG_SERVER)


def test_async_model_typo_in_gevent_mode_one_waiting_long_poll_freezes_the_whole_server(typo, mode):
    server = typo["freeze"]
    # An Engine.IO session, and the long-poll every client keeps open to wait for news.
    status, _, body = handshake(server)
    assert status == 200, body
    sid = json.loads(body[1:])["sid"]
    long_poll = connection(server)
    try:
        # Sent now; answered when there is news, and nothing here sends any. The
        # server has it before the next connection below even opens.
        long_poll.request("GET", f"/socket.io/?EIO=4&transport=polling&sid={sid}")
        try:
            page = http_request(server.url, timeout=1)
        except TimeoutError as error:
            page = error
    finally:
        long_poll.close()
    if mode == "gevent":
        assert isinstance(page, Exception), f"the page was served during the long-poll: {page}"
    else:
        assert page[0] == 200


@pytest.mark.browser
def test_async_model_typo_the_page_says_what_runs_and_the_websocket_upgrade_fails_off_eventlet(
        typo_tab, mode):
    tab = typo_tab
    page = tab.page

    expect(page.locator("#async-mode")).to_have_text("eventlet")
    expect(page.locator("#launcher-mode")).to_have_text(mode)
    expect(page.locator("#options")).to_have_text("{'async_model': 'threading'}")
    expect(page.locator("#detection-order")).to_have_text("eventlet, gevent_uwsgi, gevent, threading")
    expect(page.locator("#error-raised")).to_have_text("none: the server started")
    if mode == "eventlet":
        expect(page.locator("#verdict")).to_contain_text("everything works")
        expect(page.locator("#transport")).to_have_text("websocket (upgraded from polling)")
        expect(page.locator("#server-mode")).to_have_text("eventlet")
        expect(page.locator('#log li[data-event="server mode"]')).to_contain_text('"eventlet"')
    else:
        expect(page.locator("#verdict")).to_contain_text("They do not fit")
    if mode == "threading":
        # (In gevent mode the page's own long-poll races its upgrade request, and
        # the freeze tested above can come first: the 500 is tested with Python.)
        console_has(tab, "Error during WebSocket handshake: Unexpected response code: 500")
        expect(page.locator("#transport")).to_have_text("polling")


# =============================================================================
# 6. old_client
# =============================================================================

@pytest.fixture(scope="module")
def old_client(serve):
    return serve("03", "old_client")


@pytest.fixture(scope="module")
def old_client_tab(old_client, browser):
    tab = OpenPage(browser, old_client.url)
    yield tab
    tab.close()


def test_old_client_the_server_answers_an_engine_io_3_request_with_400_unsupported_version(
        old_client):
    server = old_client

    status, _, body = http_request(server.url + "socket.io/?EIO=3&transport=polling")

    assert (status, json.loads(body)) == (400, UNSUPPORTED)
    wait_for_stderr(server, UNSUPPORTED + " (further occurrences of this error will be logged")


def test_old_client_todays_python_client_speaks_engine_io_4_and_is_served(old_client, connect):
    client = connect(old_client)

    assert "EIO=4" in client.sio.eio.base_url
    assert client.call("my event", {"data": "from python"}) == {"ok": True}
    assert client.payloads("event response") == [{"data": "from python"}]


@pytest.mark.browser
def test_old_client_the_2019_client_asks_for_eio_3_is_refused_with_400_and_retries(
        old_client_tab, mode):
    tab = old_client_tab
    page, answers = tab.page, tab.answers
    expect(page.locator("#async-mode")).to_have_text(mode)
    old, new = page.locator("#old"), page.locator("#new")

    # The old client: an error, a retry a second or so later, the same error.
    expect(old.locator('li[data-event="connect_error"]').first).to_contain_text("xhr poll error (HTTP 400)")
    expect(old.locator('li[data-event="reconnect_attempt"]').first).to_contain_text("1")
    expect(old.locator('li[data-event="reconnect_error"]').first).to_contain_text("xhr poll error (HTTP 400)")
    expect(old.locator(".status")).to_have_text("no")
    expect(old.locator('li[data-event="connect"]')).to_have_count(0)
    # Each of its requests asked for Engine.IO 3 and got 400 (t= is its cache buster).
    old_requests = [(url, status) for url, status in answers if "EIO=3" in url and "&t=" in url]
    assert len(old_requests) >= 2, answers
    assert {status for _, status in old_requests} == {400}
    assert all("transport=polling" in url for url, _ in old_requests)
    console_has(tab, "the server responded with a status of 400 (BAD REQUEST)", count=2)
    # The Socket.IO protocol revision of the compatibility table, as 1.5.1 states it.
    assert page.evaluate("io1.protocol") == 4
    # What the server answered, as the page shows it.
    expect(page.locator("#server-answer")).to_have_text(f'HTTP 400 BAD REQUEST\n"{UNSUPPORTED}"')

    # Today's client, same page, same server: Engine.IO 4, long-polling first, then WebSocket.
    expect(new.locator(".status")).to_have_text("yes")
    expect(new.locator(".transport")).to_have_text("websocket (upgraded from polling)")
    expect(new.locator('li[data-event="event response"]')).to_contain_text("i'm connected")
    new_requests = [(url, status) for url, status in answers if "EIO=4" in url]
    assert new_requests and "transport=polling" in new_requests[0][0]
    assert {status for _, status in new_requests} == {200}


def test_old_client_the_shipped_file_is_socket_io_client_1_5_1_as_pinned():
    package = json.loads((ROOT / "package.json").read_text())
    lock = json.loads((ROOT / "package-lock.json").read_text())
    assert package["devDependencies"]["socket.io-client-1.5.1"] == "npm:socket.io-client@1.5.1"
    assert package["devDependencies"]["socket.io-client"] == "4.8.4"  # what every lesson uses
    pinned = lock["packages"]["node_modules/socket.io-client-1.5.1"]
    assert (pinned["name"], pinned["version"]) == ("socket.io-client", "1.5.1")
    assert pinned["integrity"].startswith("sha512-")
    assert "resolved" not in pinned  # no registry URL in the lock (.npmrc)

    shipped = LESSON / "static" / "vendor" / "socket.io-1.5.1.js"
    assert hashlib.sha256(shipped.read_bytes()).hexdigest() == OLD_CLIENT_SHA256
    installed = ROOT / "node_modules" / "socket.io-client-1.5.1" / "socket.io.js"
    if installed.exists():  # after `npm ci`: the very file npm installed
        assert installed.read_bytes() == shipped.read_bytes()
    # Shipped to this lesson only.
    assert [p.relative_to(ROOT).parts[1] for p in ROOT.glob("lessons/*/static/vendor/socket.io-1.5.1.js")] \
        == ["03_pitfalls"]


# =============================================================================
# 7. cross_origin
# =============================================================================

@pytest.fixture(scope="module")
def cors(mode):
    """cross_origin with its default settings, with the fix (an exact list of origins:
    this server's own and the front end's), and with "*"."""
    own_port, frontend_port = free_port(), free_port()
    own, frontend = f"http://127.0.0.1:{own_port}", f"http://127.0.0.1:{frontend_port}"

    def cross_origin(allowed=None, port_args=(), **ports):
        settings = {"FRONTEND_PORT": 0, "STRANGER_PORT": 0, **ports}
        if allowed is not None:  # spelt as in the README: '*' or a JSON list
            settings["CORS_ALLOWED_ORIGINS"] = allowed if allowed == "*" else json.dumps(allowed)
        return LessonServer("03", "cross_origin", mode=mode, settings=settings, extra_args=port_args)

    servers = {
        "default": cross_origin(),
        "exact": cross_origin([own, frontend], port_args=("--port", str(own_port)),
                              FRONTEND_PORT=frontend_port),
        "star": cross_origin("*"),
    }
    yield servers_running(servers)
    stop_all(servers)


@pytest.fixture(scope="module")
def cors_tabs(cors, browser):
    """The three lesson pages, opened together so that their waits overlap (a refused
    client retries a second or so after its first error)."""
    tabs = {name: OpenPage(browser, server.url) for name, server in cors.items()}
    yield tabs
    for tab in tabs.values():
        tab.close()


def frame(page, name):
    return page.frame_locator(f"iframe#{name}").locator("#lesson-panel")


def linked_sites(server):
    """The other sites' origins, as the lesson page links them."""
    html = http_request(server.url).body
    return dict(re.findall(r'<iframe id="(\w+)"[^>]* src="(http://[^/"]+)/', html))


def test_cross_origin_by_default_the_server_refuses_another_origin_with_400(cors):
    server = cors["default"]

    status, headers, body = handshake(server, STRANGER)
    assert (status, json.loads(body)) == (400, REFUSED)
    assert headers["Access-Control-Allow-Origin"] is None  # so the browser hides the answer
    # Logged once as an error (the first foreign origin, maybe a page's), then at INFO level.
    wait_for_stderr(server, "is not an accepted origin. (further occurrences of this error")
    # The same check guards WebSocket, where browsers do no CORS check at all.
    assert websocket_upgrade(server, STRANGER) == (400, f'"{REFUSED}"')
    # The server's own origin is accepted.
    status, headers, body = handshake(server, origin(server.url))
    assert status == 200 and body.startswith('0{"sid":')
    assert headers["Access-Control-Allow-Origin"] == origin(server.url)


def test_cross_origin_the_python_client_is_not_a_browser_the_origin_check_does_not_stop_it(cors):
    server = cors["default"]
    # Long-polling sends no Origin at all; WebSocket (websocket-client) sends the
    # server's own. Both get in.
    for transports in (["polling"], ["websocket"]):
        client = python_client(server, transports=transports)
        try:
            assert client.call("my ping", namespace=NS, timeout=EVENT_TIMEOUT) == "pong"
        finally:
            disconnect(client)
    # It sends whatever Origin it is told to: a foreign one is refused, like a browser's.
    with pytest.raises(socketio.exceptions.ConnectionError):
        python_client(server, transports=["polling"], headers={"Origin": STRANGER})


@pytest.mark.browser
def test_cross_origin_by_default_pages_from_other_ports_are_refused(cors_tabs, mode):
    tab = cors_tabs["default"]
    page = tab.page
    expect(page.locator("#async-mode")).to_have_text(mode)

    user = page.locator("#user").inner_text()
    expect(page.locator("#lesson-panel .status")).to_have_text("yes")
    expect(page.locator("#lesson-panel .user")).to_have_text(user)
    for name in ("frontend", "stranger"):
        # Refused, retried a second or so later, refused again.
        errors = frame(page, name).locator('li[data-event="connect_error"]')
        expect(errors.first).to_contain_text("xhr poll error")
        expect(errors.nth(1)).to_contain_text("xhr poll error")
        expect(frame(page, name).locator(".status")).to_contain_text("no")
        expect(frame(page, name).locator(".user")).to_have_text("–")
    console_has(tab, "has been blocked by CORS policy: No 'Access-Control-Allow-Origin' header", count=2)


def test_cross_origin_the_fix_an_exact_list_accepts_those_origins_and_refuses_others(cors):
    server = cors["exact"]
    frontend = linked_sites(server)["frontend"]

    status, headers, _ = handshake(server, frontend)
    assert status == 200
    assert headers["Access-Control-Allow-Origin"] == frontend
    assert headers["Access-Control-Allow-Credentials"] == "true"
    status, _, body = handshake(server, STRANGER)
    assert (status, json.loads(body)) == (400, REFUSED)
    assert websocket_upgrade(server, STRANGER)[0] == 400


@pytest.mark.browser
def test_cross_origin_the_fix_lets_your_front_end_in_as_the_user_and_still_refuses_others(
        cors_tabs):
    page = cors_tabs["exact"].page

    user = page.locator("#user").inner_text()
    expect(page.locator("#lesson-panel .status")).to_have_text("yes")
    frontend, stranger = frame(page, "frontend"), frame(page, "stranger")
    expect(frontend.locator(".status")).to_have_text("yes")
    expect(frontend.locator(".user")).to_have_text(user)
    expect(frontend.locator(".transport")).to_have_text("websocket (upgraded from polling)")
    expect(stranger.locator('li[data-event="connect_error"]').first).to_contain_text("xhr poll error")
    expect(stranger.locator('li[data-event="connect"]')).to_have_count(0)


def test_cross_origin_an_exact_list_replaces_the_default_so_it_must_name_your_own_origin(cors):
    # The same page opened as http://localhost:PORT/ instead of http://127.0.0.1:PORT/:
    # its requests say Host: localhost:PORT and Origin: http://localhost:PORT.
    def as_localhost(server):
        host = f"localhost:{urlsplit(server.url).port}"
        return {"origin_header": f"http://{host}", "host": host}

    # The default accepts the origin the Host header names: same origin.
    default = cors["default"]
    assert handshake(default, **as_localhost(default))[0] == 200
    # A list accepts what it lists and nothing else, the page's own origin included.
    exact = cors["exact"]
    status, _, body = handshake(exact, **as_localhost(exact))
    assert (status, json.loads(body)) == (400, REFUSED)
    assert websocket_upgrade(exact, **as_localhost(exact))[0] == 400
    # The page warns when its own origin is not in the list.
    assert 'id="own-origin-missing"' in http_request(exact.url, headers={"Host": as_localhost(exact)["host"]}).body
    assert 'id="own-origin-missing"' not in http_request(exact.url).body


def test_cross_origin_star_accepts_any_origin_and_tells_the_browser_to_send_cookies(cors):
    server = cors["star"]

    status, headers, _ = handshake(server, STRANGER)
    assert status == 200
    # Not a literal "*" (which browsers refuse to combine with cookies): the
    # caller's own origin is echoed back, with credentials allowed.
    assert headers["Access-Control-Allow-Origin"] == STRANGER
    assert headers["Access-Control-Allow-Credentials"] == "true"
    assert websocket_upgrade(server, STRANGER)[0] == 101


@pytest.mark.browser
def test_cross_origin_star_lets_any_other_page_connect_as_the_logged_in_user(cors_tabs):
    page = cors_tabs["star"].page

    user = page.locator("#user").inner_text()
    expect(page.locator("#setting")).to_contain_text('cors_allowed_origins = "*"')
    stranger = frame(page, "stranger")
    expect(stranger.locator(".status")).to_have_text("yes")
    expect(stranger.locator(".user")).to_have_text(user)
    expect(stranger.locator('li[data-event="you are"]')).to_contain_text(user)
    expect(stranger.locator(".explain")).to_contain_text(f"connected to the lesson as {user}")


# =============================================================================
# What the 2019 post says that is no longer true
# =============================================================================

def test_2019_post_every_async_mode_serves_websocket_today_gevent_without_gevent_websocket(
        old_client, connect, mode):
    client = connect(old_client, transports=["websocket"])

    assert client.sio.transport() == "websocket"
    assert client.call("my event", {"data": mode}) == {"ok": True}
    assert client.payloads("event response") == [{"data": mode}]
    # The post says gevent needs gevent-websocket for WebSocket: it is not even installed.
    assert importlib.util.find_spec("geventwebsocket") is None


def test_2019_post_eventlet_is_deprecated_by_its_own_maintainers():
    result = subprocess.run([sys.executable, "-W", "always", "-c", "import eventlet"],
                            capture_output=True, text=True, timeout=30)
    assert "EventletDeprecationWarning" in result.stderr
    assert "Eventlet is deprecated" in result.stderr
    assert "we strongly recommend against using it for new projects" in result.stderr


# =============================================================================
# 1. blocking_connect, continued: the client that gave up (see `gave_up`)
# =============================================================================

def joined(gave_up):
    gave_up["thread"].join(10)
    assert not gave_up["thread"].is_alive(), "connect() neither returned nor raised within 10 s"
    return gave_up


def test_blocking_connect_python_client_connect_gives_up_after_wait_timeout_and_raises(
        gave_up, mode):
    result = joined(gave_up)

    assert isinstance(result.get("error"), socketio.exceptions.ConnectionError)
    assert str(result["error"]) == "Unexpected connection error"
    took = result["ended"] - result["started"]
    assert 1 <= took < 1 + 3 + EVENT_TIMEOUT, took  # wait_timeout, then the close
    if mode == "eventlet":
        # eventlet's WebSocket never answers the client's close: 3 s more at least.
        assert took >= 1 + 2.9, took
    assert result["client"].events("connect") == []


def test_blocking_connect_python_client_runs_its_mess_handler_for_pushes_before_giving_up(gave_up):
    result = joined(gave_up)
    pushes = result["client"].events("mess", NS)

    assert len(pushes) >= 3
    assert pushes[0].at < result["started"] + 1  # before wait_timeout was over
    # (python-engineio runs each message's handler in a thread of its own: sort them.)
    assert sorted(p.data["seq"] for p in pushes) == list(range(1, len(pushes) + 1))


def test_blocking_connect_the_loop_keeps_pushing_after_the_client_gave_up(gave_up):
    result = joined(gave_up)
    server, before = result["server"], result["pushes_when_it_gave_up"]

    loop = wait_until(lambda: (lambda loop: loop["pushes"] >= before + 3 and loop)(loops_of(server)[-1]),
                      what="three more pushes from the abandoned loop")
    assert loop["running"] is True
    assert len(loops_of(server)) == 1
