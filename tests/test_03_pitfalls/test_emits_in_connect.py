"""Lesson 03, demo 2: emits_in_connect (lessons/03_pitfalls/emits_in_connect.py).
Proves the README's section "2. `emits_in_connect`: two emits, one second apart,
arrive together": python-socketio gets each event when it is sent, the browser
runs both handlers at once right before its connect handler, and the fix.

The python clients and four tabs connect at the same time, once per mode
(``emits_seen``); the tests read what they saw.
"""
import threading

import pytest

from harness import EVENT_TIMEOUT, RecordingClient, wait_until
from scenes import FIXED, NS, arrived, connect_entry, handled, side_by_side, timeline_of

DELAY = 0.5         # FLASK_SECOND_EMIT_DELAY of emits_in_connect


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
