"""Lesson 03: what the 2019 post says that is no longer true (the README's section
of that name): every async mode serves WebSocket today, gevent without
gevent-websocket, and eventlet is deprecated by its own maintainers. The first
test talks to the old_client demo's server (the ``old_client`` fixture, in
conftest.py).
"""
import importlib.util
import subprocess
import sys


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
