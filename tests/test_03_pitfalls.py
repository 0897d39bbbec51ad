"""Lesson 03_pitfalls, demos 1-4: every claim of lessons/03_pitfalls/README.md
(sections blocking_connect, emits_in_connect, emit_outside_context, busy_handler),
in every async mode, with real clients: python-socketio and Chromium.

Durations are shortened through FLASK_* settings; every timing assertion is a
bound relative to the configured duration, never an exact value. Where several
claims need the same slow scene (connect handlers looping, pages waiting for
page waiting for two events), a module fixture plays it once, with its clients
or tabs side by side, and the tests named after the claims read what it saw.
"""
import json
import threading
import time
import urllib.request

import pytest
import socketio
from playwright.sync_api import expect

from harness import EVENT_TIMEOUT, LessonServer, RecordingClient

NS, FIXED = "/test_conn", "/test_conn_fixed"

PUSH = 0.1          # FLASK_PUSH_INTERVAL of blocking_connect and emit_outside_context
LOOP = 0.5          # FLASK_LOOP_SECONDS of the server that shows that setting
DELAY = 0.5         # FLASK_SECOND_EMIT_DELAY of emits_in_connect
BUSY = 0.6          # FLASK_BUSY_SECONDS of busy_handler
TICK = 0.05         # FLASK_PUSH_INTERVAL of busy_handler

SERVERS = {  # name -> (demo, settings)
    # blocking_connect's broken handlers loop until POST /loops/stop, or FLASK_LOOP_SECONDS
    # (default 60 s). One server for the client that gives up (its loop must outlive it),
    # one for the other python clients, one per stuck page (so that clients watched at
    # the same time do not get each other's broadcasts), and one with a short loop.
    "gave_up": ("blocking_connect", {"PUSH_INTERVAL": PUSH}),
    "blocking": ("blocking_connect", {"PUSH_INTERVAL": PUSH}),
    "blocking_2": ("blocking_connect", {"PUSH_INTERVAL": PUSH}),
    "blocking_3": ("blocking_connect", {"PUSH_INTERVAL": PUSH}),
    "blocking_short": ("blocking_connect", {"PUSH_INTERVAL": PUSH, "LOOP_SECONDS": LOOP}),
    "emits": ("emits_in_connect", {"SECOND_EMIT_DELAY": DELAY}),
    "outside": ("emit_outside_context", {"PUSH_INTERVAL": PUSH}),
    "busy": ("busy_handler", {"BUSY_SECONDS": BUSY, "PUSH_INTERVAL": TICK}),
}


@pytest.fixture(scope="module")
def servers(mode):
    """Every server of this file, started together (each one spends a moment importing),
    and stopped with Ctrl-C at the end like conftest's ``serve``: cleanly, no traceback."""
    started, failures = {}, []

    def start(name, demo, settings):
        try:
            started[name] = LessonServer("03", demo, mode=mode, settings=settings).start()
        except BaseException as error:  # noqa: B036 -- re-raised below, in the test's thread
            failures.append(error)

    threads = [threading.Thread(target=start, args=(name, *spec)) for name, spec in SERVERS.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        if failures:
            raise failures[0]
        yield started
    finally:
        stops = {name: server.interrupt() for name, server in started.items()}
    for name, server in started.items():
        assert stops[name] == 0, f"Ctrl-C ended {name} with status {stops[name]}:\n{server.stderr_text}"
        assert "Traceback" not in server.stderr_text, server.stderr_text


def get_json(server, path):
    with urllib.request.urlopen(server.url + path.lstrip("/"), timeout=5) as response:
        return json.loads(response.read())


def wait_until(condition, timeout=EVENT_TIMEOUT, what="the condition"):
    """Poll ``condition()`` (an HTTP request, a page read) until it returns a truthy value."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout}s for {what}; last value: {value!r}")
        time.sleep(0.02)  # a polling period, not a synchronisation


# --- reading a page's timeline (window.timeline, see templates/base.html) -------

def timeline_of(page):
    return page.evaluate("window.timeline || []")  # [] while the page is still loading


def handled(timeline, event):
    return [e for e in timeline if e["kind"] == "handled" and e["event"] == event]


def arrived(timeline, event):
    return [e for e in timeline if e["kind"] == "arrived" and e["event"] == event]


def connect_entry(timeline):
    [entry] = [e for e in timeline if e["kind"] == "status" and e["event"] == "connect"]
    return entry


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
    request = urllib.request.Request(server.url + "loops/stop", method="POST")
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def gave_up(servers):
    """The python-socketio client against the broken namespace, as a user would write
    it: connect(url, namespaces=["/test_conn"]). It takes seconds to give up, so it
    runs in the background from the first blocking_connect test on; the tests that
    read it come last in this file."""
    server = servers["gave_up"]
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
def blocking(servers, gave_up):
    return servers["blocking"]


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
def while_looping(servers, gave_up, tabs):
    """The python clients (in a thread) and the pages, on servers of their own, watched
    at the same time, once, for every claim that reads this."""
    python = {}

    def watch_python():
        try:
            python["seen"] = watch_python_clients_while_looping(servers["blocking"])
        except BaseException as error:  # noqa: B036 -- re-raised below
            python["error"] = error

    thread = threading.Thread(target=watch_python)
    thread.start()
    try:
        pages = watch_pages_while_looping(servers, tabs)
    finally:
        thread.join(3 * EVENT_TIMEOUT)
    if "error" in python:
        raise python["error"]
    return {**python["seen"], "pages": pages}


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


def test_blocking_connect_the_loop_stops_by_itself_after_flask_loop_seconds(servers):
    server = servers["blocking_short"]
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
    wait_until(lambda: len(handled(timeline_of(fixed), "mess")) >= 6, what="6 pushes on the fixed page")
    seen["fixed"] = {"timeline": timeline_of(fixed), **fixed.evaluate(SNAPSHOT)}
    tabs.close_all()
    return seen


def assert_held_pushes_handled_at_once_before_connect(seen):
    """After the button: the page is connected, and ran its mess handler for every
    push of the loop in one burst, right before its connect handler."""
    timeline, loop = seen["timeline"], seen["loop"]
    messes, connected = handled(timeline, "mess"), connect_entry(timeline)
    [button] = [e for e in timeline if e["kind"] == "sent" and e["event"] == "POST /loops/stop"]
    assert loop["running"] is False
    assert [m["data"]["loop"] for m in messes] == [loop["loop"]] * len(messes)
    assert [m["data"]["seq"] for m in messes] == list(range(1, loop["pushes"] + 1))  # in order
    assert len(messes) >= 3
    assert messes[-1]["t"] - messes[0]["t"] < 0.05
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
    # server and reached the browser in one burst, with the CONNECT packet. Before
    # it, they came over long-polling as usual (how many depends on how fast the
    # page got going), and so may one batch after it: the answer to the long-poll
    # request that was already under way.
    timeline = seen["timeline"]
    [upgrading] = [e for e in timeline if e["kind"] == "status" and e["event"] == "upgrading"]
    [connect_packet] = arrived(timeline, "CONNECT packet")
    after = [m for m in arrived(timeline, "mess") if m["t"] > upgrading["t"]]
    burst = [m for m in after if connect_packet["t"] - m["t"] < 0.05]
    in_flight = [m for m in after if m not in burst]
    assert len(burst) >= 2, timeline
    assert not in_flight or in_flight[-1]["t"] - in_flight[0]["t"] < 0.05, timeline


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
    messes = handled(seen["timeline"], "mess")[:6]
    assert connect_entry(seen["timeline"])["t"] < messes[0]["t"]
    # One by one, not all at once (pushes sent during the upgrade to WebSocket may
    # arrive together, when it completes).
    assert messes[5]["t"] - messes[0]["t"] >= 2 * PUSH, messes
    # Each one handled the moment it arrived: nothing held back.
    arrival = {m["data"]["seq"]: m["t"] for m in arrived(seen["timeline"], "mess")}
    assert all(m["t"] - arrival[m["data"]["seq"]] < 0.05 for m in messes), (messes, arrival)


def test_blocking_connect_no_loop_is_left_running_once_its_clients_are_gone(servers):
    # After the tests above: every broken loop has ended, and the fix's task stopped
    # with its last client (the server of the client that gave up is the exception,
    # on purpose: see the tests at the end of this file).
    for name in ("blocking", "blocking_2", "blocking_3", "blocking_short"):
        wait_until(lambda: not any(loop["running"] for loop in loops_of(servers[name]))
                   and not get_json(servers[name], "/loops")["background_task"]["running"],
                   what=f"every loop of {name} to end")


# =============================================================================
# 2. emits_in_connect
# =============================================================================

@pytest.fixture(scope="module")
def emits(servers):
    return servers["emits"]


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
    """The python clients (in a thread) and the pages connecting at the same time."""
    python = {}

    def watch_python():
        try:
            python["clients"] = watch_python_clients_connect(emits)
        except BaseException as error:  # noqa: B036 -- re-raised below
            python["error"] = error

    thread = threading.Thread(target=watch_python)
    thread.start()
    try:
        pages = watch_pages_connect(emits, tabs)
    finally:
        thread.join(DELAY + 3 * EVENT_TIMEOUT)
    if "error" in python:
        raise python["error"]
    return {**python["clients"], "pages": pages}


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
        assert second["t"] - first["t"] < 0.05
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
def outside(servers):
    return servers["outside"]


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
def busy(servers):
    return servers["busy"]


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
    }


@pytest.fixture(scope="module")
def busy_page(busy, tabs):
    """The page presses "work" on /test_conn while a python-socketio client watches:
    what each of them saw."""
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
    seen = page.evaluate("({during: window.ticksDuringWork, longest: window.longestSilence, "
                         "saidSilent: window.saidSilent === true, "
                         "explain: document.getElementById('explain').textContent})")
    tabs.close_all()
    return {"python": python, "page": seen}


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


def test_busy_handler_fixed_with_socketio_sleep_0_keeps_serving_everyone_in_every_mode(busy, connect):
    worker = connect(busy, namespaces=(FIXED,))
    seen = watch_while_working(busy, FIXED, lambda: worker.call("work", namespace=FIXED,
                                                                 timeout=BUSY + EVENT_TIMEOUT))

    assert seen["ack"]["seconds"] >= BUSY and seen["took"] >= BUSY
    assert seen["ticks_during_work"] >= 1, seen
    assert seen["pongs_before_the_work_was_done"] >= 3, seen


def test_busy_handler_the_ticker_stops_when_the_last_client_leaves(busy, connect):
    client = connect(busy)
    client.wait_for("tick")
    client.close()
    wait_until(lambda: not get_json(busy, "/loops")["ticker"]["running"], what="the ticker to stop")


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
