"""Lesson 03, demo `unknown_event` (README section 8): an event whose name no handler
listens to, with the python-socketio client and in Chromium, in every async mode.

One server per mode for the whole module; the "never" claims are bounded by the
acknowledgement timeout the test chooses (ACK) and closed by a round trip (`sync`):
messages on one connection arrive in order.
"""
import inspect
import time

import pytest
import socketio
from playwright.sync_api import expect

from harness import wait_until

NS, FIXED = "/test_conn", "/test_conn_fixed"
TYPO, RIGHT = "my event braodcast", "my event broadcast"
ACK = 0.3  # seconds a client waits for an acknowledgement; the page's FLASK_ACK_TIMEOUT (ms)


@pytest.fixture(scope="module")
def server(serve):
    return serve("03", "unknown_event", ACK_TIMEOUT=int(ACK * 1000))


def events_of(client, namespace):
    return [r.event for r in client.events(namespace=namespace) if r.event != "connect"]


def warnings_about(server, event):
    return [line for line in server.stderr_text.splitlines()
            if "WARNING" in line and f"unknown event {event!r}" in line]


# --- the post's code: /test_conn ---------------------------------------------------

def test_unknown_event_the_server_drops_it_no_reply_no_error_no_broadcast_and_no_ack(server, connect):
    sender, other = connect(server, (NS,)), connect(server, (NS,))

    asked = time.monotonic()
    with pytest.raises(socketio.exceptions.TimeoutError):
        sender.call(TYPO, {"data": "typo"}, timeout=ACK)
    assert time.monotonic() - asked >= ACK
    sender.sync()
    other.sync()
    assert events_of(sender, NS) == [] and events_of(other, NS) == []  # no reply, no error event
    assert [line for line in server.stderr_text.splitlines() if TYPO in line and FIXED not in line] == []
    # The right name, on the same connections: answered, and broadcast to the other client.
    assert sender.call(RIGHT, {"data": "right"}) == {"ok": True}
    assert other.wait_for("my ev broadcast")[0].data == {"data": "right"}


def test_unknown_event_a_callback_passed_to_emit_is_never_called(server, connect):
    sender = connect(server, (NS,))
    called = []

    sender.sio.emit(TYPO, {"data": "typo"}, namespace=NS, callback=lambda *ack: called.append(ack))
    sent = time.monotonic()
    # Later events are answered; by the time ACK has passed and a last round trip is
    # back, an acknowledgement of the typo, had there been one, would have come first.
    assert sender.call(RIGHT, {"data": 1}) == {"ok": True}
    wait_until(lambda: time.monotonic() - sent >= ACK, what="ACK seconds")
    sender.sync()
    assert called == []


def test_unknown_event_python_socketio_drops_it_in_server_trigger_event():
    """Where the installed sources drop it: socketio.Server._trigger_event finds no
    handler and returns `not_handled`, and _handle_event_internal sends an ACK only
    for a handled event."""
    server = socketio.Server(async_mode="threading")
    server.on("my event broadcast", lambda sid, data: None, namespace=NS)

    assert server._trigger_event(TYPO, NS, "sid", {"data": 1}) is server.not_handled
    assert server._trigger_event(RIGHT, NS, "sid", {"data": 1}) is None  # handled, returned None
    assert "if r != self.not_handled and id is not None:" in inspect.getsource(
        socketio.Server._handle_event_internal)


# --- the fix: a catch-all on /test_conn_fixed -------------------------------------

def test_unknown_event_fixed_catch_all_answers_an_error_event_naming_it_and_a_nack(server, connect):
    client = connect(server, (FIXED,))
    message = f'no handler for event "{TYPO}" on {FIXED}'

    assert client.call(TYPO, {"data": "typo"}, namespace=FIXED) == {"ok": False, "error": message}
    [error] = client.wait_for("error", namespace=FIXED)
    assert error.data == {"message": message, "event": TYPO}
    # Without a callback the error event comes all the same (and no ack: none was asked for).
    client.emit("my evnet", {"data": 1}, namespace=FIXED)
    assert client.wait_for("error", 2, namespace=FIXED)[1].data["event"] == "my evnet"


def test_unknown_event_fixed_catch_all_logs_one_warning_line_per_unknown_event(server, connect):
    client = connect(server, (FIXED,))
    event = "my event brodacast"  # seen by no other test

    client.call(event, {"data": 1}, namespace=FIXED)
    wait_until(lambda: warnings_about(server, event), what="the warning line")
    client.sync(namespace=FIXED)
    [line] = warnings_about(server, event)
    assert "WARNING in unknown_event" in line and FIXED in line, line


def test_unknown_event_fixed_known_events_behave_as_before_the_catch_all_never_sees_them(
        server, connect):
    client, other = connect(server, (FIXED,)), connect(server, (FIXED,))

    assert client.call("my event", {"data": 5}, namespace=FIXED) == {"ok": True}
    assert client.wait_for("event response", namespace=FIXED)[0].data == {"data": 5}
    assert client.call(RIGHT, {"data": 6}, namespace=FIXED) == {"ok": True}
    assert other.wait_for("my ev broadcast", namespace=FIXED)[0].data == {"data": 6}
    # A malformed payload goes to the handler's own error handler, not to the catch-all.
    refusal = '"my event" expects an object like {"data": ...}'
    assert client.call("my event", "no object", namespace=FIXED) == {"ok": False, "error": refusal}
    other.close()  # a disconnect, and the connects above: reserved, never caught
    client.sync(namespace=FIXED)
    for event in ("my event", RIGHT, "my ping", "connect", "disconnect"):
        assert warnings_about(server, event) == [], server.stderr_text
    assert [r.data for r in client.events("error", FIXED)] == [{"message": refusal}]


# --- the pages ------------------------------------------------------------------------

def open_page(page, url):
    page.goto(url)
    expect(page.locator("#status")).to_contain_text("yes", timeout=10_000)
    return page


@pytest.mark.browser
def test_unknown_event_page_nothing_happens_the_callback_is_never_called_a_timeout_says_so(
        server, page):
    open_page(page, server.url)

    page.click("#typo")
    page.click("#typo-timeout")
    wait_until(lambda: page.evaluate("window.results.timeout"), timeout=ACK + 5,
               what="the timeout's callback")
    page.evaluate("window.sync()")  # a round trip: whatever the server sent has arrived
    results = page.evaluate("window.results")
    assert results["typo"] == {"calls": 0, "ack": None}
    assert results["timeout"]["error"] == "operation has timed out", results
    assert results["timeout"]["after"] >= ACK * 0.9, results
    expect(page.locator("#callback")).to_contain_text("not called")
    expect(page.locator("#explain")).to_contain_text("Nothing happened")
    assert page.evaluate("window.incoming") == []  # onAny saw no event at all

    # The right name: the callback runs, and onAny sees the broadcast, which the
    # page has no handler of its own for.
    page.click("#right-name")
    wait_until(lambda: page.evaluate("window.results.right"), what="the right name's ack")
    assert page.evaluate("window.results.right.ack") == {"ok": True}
    wait_until(lambda: page.evaluate("window.incoming.map((e) => e.event)") == ["my ev broadcast"],
               what="onAny to see the broadcast")
    assert page.evaluate("window.results.typo.calls") == 0


@pytest.mark.browser
def test_unknown_event_fixed_page_gets_the_error_event_and_its_callback_the_nack(server, page):
    open_page(page, server.url + "fixed")
    message = f'no handler for event "{TYPO}" on {FIXED}'

    page.click("#typo")
    wait_until(lambda: page.evaluate("window.results.typo.calls") == 1, what="the callback")
    assert page.evaluate("window.results.typo.ack") == {"ok": False, "error": message}
    wait_until(lambda: page.evaluate("window.incoming.length") == 1, what="the error event")
    assert page.evaluate("window.incoming[0]")["data"] == {"message": message, "event": TYPO}
    expect(page.locator("#explain")).to_contain_text(f"The server says: {message}")
    page.click("#typo-timeout")
    wait_until(lambda: page.evaluate("window.results.timeout"), what="the timeout's callback")
    assert page.evaluate("window.results.timeout.error") is None
    assert page.evaluate("window.results.timeout.ack") == {"ok": False, "error": message}
