"""Lesson 03, demo 5: async_model_typo (lessons/03_pitfalls/async_model_typo.py).
Proves the README's section "5. `SocketIO(async_model="threading")`": the typo
raises no error, the server runs eventlet whatever the mode, WebSocket works only
under eventlet's web server, and in gevent mode one waiting long-poll freezes it.
"""
import json
import re

import pytest
import socketio
from playwright.sync_api import expect

from harness import EVENT_TIMEOUT, LessonServer, disconnect, http_request, start_all
from scenes import NS, OpenPage, connection, console_has, handshake, python_client, wait_for_stderr

WRONG_SERVER = "RuntimeError: You need to use the eventlet server"


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
