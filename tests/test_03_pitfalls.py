"""Lesson 03_pitfalls: every claim of lessons/03_pitfalls/README.md, in every async
mode, with real clients over real sockets: python-socketio, plain HTTP requests,
and Chromium. One section per demo, in the README's order, then the corrections of
the 2019 post ("What the 2019 post says that is no longer true"). (Demos 1-4, being
split into one file per demo, are in tests/test_03_pitfalls/ already.)

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
from urllib.parse import urlsplit

import pytest
import socketio
from playwright.sync_api import expect

from harness import (EVENT_TIMEOUT, ROOT, LessonServer, disconnect, free_port, http_request,
                     start_all, wait_until)

NS = "/test_conn"
LESSON = ROOT / "lessons" / "03_pitfalls"

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
