"""Lesson 03, demo 7: cross_origin (lessons/03_pitfalls/cross_origin.py).
Proves the README's section "7. `cross_origin`: a page from another origin": by
default another origin is refused (long-polling and WebSocket), the python client
is not a browser, an exact list of origins lets your front end in and nobody
else, and "*" lets any page in as the logged-in user.
"""
import json
import re
from urllib.parse import urlsplit

import pytest
import socketio
from playwright.sync_api import expect

from harness import EVENT_TIMEOUT, LessonServer, disconnect, free_port, http_request
from scenes import (NS, OpenPage, connection, console_has, handshake, python_client, servers_running,
                    stop_all, wait_for_stderr)

REFUSED = "Not an accepted origin."
STRANGER = "http://127.0.0.1:1"  # an origin in raw requests: the server only reads the header


def origin(url):
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


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
