"""Restarting a lesson server while clients are connected (issue 9), in every async mode.

Lesson 02's server is stopped (Ctrl-C) under a python-socketio client and a
page, and started again on the same port. Neither is told anything: both see
the connection drop (the page says so), keep trying, connect to the new server
by themselves and receive `mess` from its background task.

The page is the lesson's, as shipped: socket.io's default reconnection (a first
try after 1 s, +-50%, then 2 s, 4 s, ... up to 5 s). The python-socketio client
here tries every 0.2 s, with no randomisation (its defaults: 1 s +-0.5 s, then
doubling), to keep the test short; the harness's RecordingClient turns
reconnection off, so this file has its own.
"""
import re
import time

import pytest
from playwright.sync_api import expect

from harness import LessonServer, RecordingClient, disconnect, free_port, wait_until

INTERVAL = 0.1      # FLASK_MESS_INTERVAL: a push every 100 ms
RECONNECT_TIMEOUT = 10  # seconds: socket.io's page retries after about 1 s, then 2 s, then 4 s
NAMESPACE = "/test_conn"


class ReconnectingClient(RecordingClient):
    """A RecordingClient with python-socketio's reconnection on (the default),
    trying every 0.2 s."""

    def __init__(self, url):
        super().__init__(url, reconnection=True, reconnection_delay=0.2,
                         reconnection_delay_max=0.2, randomization_factor=0)

    def close(self):
        if self.sio.connected:
            disconnect(self.sio)
        else:
            self.sio.shutdown()  # stops its reconnection attempts


def lesson_02_on(port, mode):
    server = LessonServer("02", mode=mode, settings={"MESS_INTERVAL": INTERVAL},
                          extra_args=("--port", str(port)))  # the last --port wins
    return server.start()


# Every change of the page's "Connected" field, with the page's clock (ms since the epoch).
WATCH_STATUS = """() => {
    const status = document.getElementById("status");
    window.statusLog = [];
    new MutationObserver(() => statusLog.push([Date.now(), status.textContent, status.className]))
        .observe(status, {childList: true, characterData: true, subtree: true});
}"""


def points(page):
    return int(page.locator("#points").text_content())


@pytest.mark.browser
def test_client_and_page_reconnect_by_themselves_after_a_restart(mode, page, request):
    port = free_port()
    servers = []

    def stop_all():
        for server in servers:
            server.kill()
    request.addfinalizer(stop_all)

    servers.append(lesson_02_on(port, mode))
    client = ReconnectingClient(servers[0].url)
    request.addfinalizer(client.close)
    client.connect()
    page.goto(servers[0].url)
    expect(page.locator("#status")).to_have_text("yes")
    page.evaluate(WATCH_STATUS)
    client.wait_for("mess", 2)
    wait_until(lambda: points(page) >= 2, what="2 points on the page")

    # Stop the server under them.
    stopped_at = time.monotonic()
    stderr = servers[0].stop()
    assert "Traceback" not in stderr, stderr
    client.wait_for("disconnect", namespace=NAMESPACE)
    status = page.locator("#status")
    expect(status).to_have_text(re.compile(r"^no \(transport (close|error)\)$"))
    expect(status).to_have_class("bad")
    messes_before, points_before = len(client.events("mess")), points(page)

    # The same lesson on the same port; nobody tells the clients.
    servers.append(lesson_02_on(port, mode))
    ready_at, ready_wall = time.monotonic(), time.time()

    client.wait_for("connect", 2, namespace=NAMESPACE, timeout=RECONNECT_TIMEOUT)
    client.wait_for("mess", messes_before + 2, timeout=RECONNECT_TIMEOUT)
    expect(status).to_have_text("yes", timeout=RECONNECT_TIMEOUT * 1000)
    expect(status).to_have_class("ok")
    wait_until(lambda: points(page) >= points_before + 2, timeout=RECONNECT_TIMEOUT,
               what="2 more points on the page")

    # The new server's task: its seq runs without a gap, and counts from 1 again: the
    # client's first seq is at most the number of pushes the new server had time to
    # make since it was ready. (Not "1": the page may have reconnected first.)
    received = client.events("mess")[messes_before:]
    after = [r.data["seq"] for r in received]
    assert after == list(range(after[0], after[0] + len(after))), after
    assert after[0] <= (received[0].at - ready_at) / INTERVAL + 1, (after, received[0].at - ready_at)

    # The page showed the dropped connection, then came back, in that order.
    log = page.evaluate("() => statusLog")
    texts = [text for _, text, _ in log]
    assert texts[0].startswith("no (") and texts[-1] == "yes", log
    dropped, reconnected = client.events("disconnect", NAMESPACE)[0].at, \
        client.events("connect", NAMESPACE)[1].at
    page_dropped = log[0][0] / 1000  # the page's clock: ms since the epoch
    page_back = next(at for at, text, _ in log if text == "yes") / 1000
    print(f"\n[{mode}] server down {ready_at - stopped_at:.2f} s (Ctrl-C to the new ready line); "
          f"back after the drop / after the ready line: python client {reconnected - dropped:.2f} / "
          f"{reconnected - ready_at:.2f} s, page {page_back - page_dropped:.2f} / "
          f"{page_back - ready_wall:.2f} s; page log {[text for _, text, _ in log]}")
    stderr = servers[1].stop()
    assert "Traceback" not in stderr, stderr
