"""Lesson 03, demo 6: old_client (lessons/03_pitfalls/old_client.py).
Proves the README's section "6. `old_client`: the 2019 post's socket.io 1.5.1
client against today's server": Engine.IO 3 requests get 400, today's clients
are served, and the shipped 1.5.1 file is the pinned one. (The ``old_client``
server fixture is in conftest.py: test_2019_post.py talks to it too.)
"""
import hashlib
import json

import pytest
from playwright.sync_api import expect

from harness import ROOT, http_request
from scenes import OpenPage, console_has, wait_for_stderr

LESSON = ROOT / "lessons" / "03_pitfalls"

UNSUPPORTED = "The client is using an unsupported version of the Socket.IO or Engine.IO protocols"
# sha256 of socket.io.js from the socket.io-client 1.5.1 package, whose tarball
# package-lock.json pins by its sha512 integrity.
OLD_CLIENT_SHA256 = "2351381bf9894f7524a70c20d7d86020091f3fb61ab6a238b48f7caf677331d4"


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
