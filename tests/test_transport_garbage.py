"""Garbage at the transport: invalid Engine.IO and Socket.IO packets sent to lesson 01
over a plain WebSocket and over HTTP long-polling, in every async mode.

For each kind of garbage: what the server answers (read in python-engineio 4.15 and
python-socketio 5.18, cited at each case, and checked here), what it logs, and that
a client connected before (the `bystander`) keeps being served and a new one can
connect after. When the server stops, every traceback in its log is one of those
the garbage was expected to cause.

What this found, all upstream; the tests pin today's behaviour, so a change
upstream makes them fail, on purpose:

* A malformed Socket.IO packet (bad JSON, unknown type, binary junk...) is logged
  with a full traceback ("message handler error", python-engineio's
  Server._trigger_event), and the connection carries on: log noise, no crash.
* An invalid Engine.IO packet over WebSocket ("x", or an empty frame) escapes the
  WSGI app (engineio/socket.py, Socket._websocket_handler decodes the frame outside
  its try), so the web server writes an HTTP 500 response onto the upgraded socket
  and closes it. eventlet would put the traceback in that response but for the
  launcher's debug=False; it logs nothing either (log_output is off without --debug).
* A binary event whose placeholder names a missing attachment wedges that client's
  connection: python-socketio's Server._handle_eio_message raises in
  add_attachment() before forgetting the half-received packet, so every later
  packet of that client is taken for an attachment and refused. Pings still flow,
  so the dead connection is never closed. Other clients are not affected.
* A long-polling POST that makes the server close the session (an unknown
  Engine.IO packet type, a body over max_http_buffer_size) is never answered when
  no GET of that session is waiting: Server.disconnect() calls
  Socket.close(wait=True), whose queue.join() waits for a GET to take the CLOSE
  packet, and a later GET is refused instead. In threading mode it hangs even
  with a GET waiting, because Socket.poll() puts the end-of-queue marker back and
  queue.Queue.join() re-checks the count (measured: no answer in 90 s); eventlet
  and gevent then answer 400. Each such POST holds a thread or greenlet of the
  server until the process exits.
"""
import http.client
import json
import threading
from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest
import websocket

from harness import EVENT_TIMEOUT, LessonServer, RecordingClient, wait_until

pytestmark = pytest.mark.stress

PING = '42/test_conn,1["my ping"]'  # a Socket.IO EVENT with ack id 1, as text in an Engine.IO MESSAGE
PONG = '43/test_conn,1["pong"]'     # its ACK
MAX_PAYLOAD = 1_000_000             # python-engineio's max_http_buffer_size default, the server's maxPayload


@pytest.fixture(scope="module")
def server(mode):
    """Lesson 01, on its own: the garbage makes it log Tracebacks (see the
    docstring), which the `serve` fixture would rightly refuse."""
    lesson = LessonServer("01", mode=mode).start()
    yield lesson
    lesson.stop()  # Ctrl-C still ends it with status 0
    unexpected = [line for line in exception_lines(lesson.stderr_text) if not line.startswith(EXPECTED)]
    assert not unexpected, lesson.stderr_text


@pytest.fixture(scope="module")
def bystander(server):
    """A python-socketio client connected before any garbage is sent."""
    client = RecordingClient(server.url).connect()
    yield client
    client.close()


# Every exception the garbage below makes the server log.
EXPECTED = ("ValueError: invalid literal for int() with base 10", "ValueError: Unknown packet type.",
            "TypeError: 'NoneType' object is not subscriptable", "json.decoder.JSONDecodeError",
            "IndexError: list index out of range", "KeyError: 0", "ValueError: Invalid empty packet received",
            "ValueError: Unexpected binary attachment", "ValueError: Too many packets in payload",
            "UnicodeDecodeError", "binascii.Error")


def exception_lines(stderr):
    """The last line of every traceback in ``stderr``: the exception."""
    lines, found = stderr.splitlines(), []
    for i, line in enumerate(lines):
        if line.startswith("Traceback (most recent call last):"):
            found.append(next((later for later in lines[i + 1:] if later and not later[0].isspace()), ""))
    return found


class LogFrom:
    """What the server writes to stderr from now on."""

    def __init__(self, server):
        self.server, self.start = server, len(server.stderr_text)

    def wait_for(self, text):
        wait_until(lambda: text in self.server.stderr_text[self.start:], what=f"{text!r} in the server's log")


@pytest.fixture
def log(server, bystander):
    """The server's log from the start of the test; after it, the bystander is still served."""
    yield LogFrom(server)
    assert bystander.call("my ping") == "pong"


# --- over a plain WebSocket -----------------------------------------------------------------

class RawWebSocket:
    """A WebSocket to the server's Engine.IO endpoint, joined to /test_conn, that sends whatever it is given."""

    def __init__(self, server):
        host = urlsplit(server.url).netloc
        self.ws = websocket.create_connection(f"ws://{host}/socket.io/?EIO=4&transport=websocket",
                                              timeout=EVENT_TIMEOUT)
        assert self.ws.recv().startswith("0{")  # Engine.IO OPEN
        self.ws.send("40/test_conn,")
        assert self.ws.recv().startswith("40/test_conn,{")  # Socket.IO CONNECT answered

    def send(self, frame):
        self.ws.send_binary(frame) if isinstance(frame, bytes) else self.ws.send(frame)

    def ping(self):
        """A `my ping` with an ack id; returns the text frames that came before its ack."""
        self.ws.send(PING)
        before = []
        while (frame := self.ws.recv()) != PONG:
            before.append(frame)
        return before

    def closed_by_server(self):
        """True once the server's close frame (or the end of the stream) arrives."""
        try:
            while True:
                opcode, _ = self.ws.recv_data(control_frame=True)
                if opcode == websocket.ABNF.OPCODE_CLOSE:
                    return True
        except (websocket.WebSocketConnectionClosedException, ConnectionError):
            return True

    def http_reply(self):
        """The HTTP response the server writes on this connection, as if it were a
        plain HTTP one: (status, body)."""
        response = http.client.HTTPResponse(self.ws.sock)
        response.begin()
        return response.status, response.read()

    def close(self):
        self.ws.close()


@pytest.fixture
def raw(server):
    connection = RawWebSocket(server)  # a new client, connecting after the previous garbage
    yield connection
    connection.close()


@dataclass
class Kept:
    """The connection stays usable: the next `my ping` on it is answered."""
    logged: str = None   # the exception the server logs (with its traceback), if any
    reply: str = None    # a frame the server answers with first, if any


WEBSOCKET_KEPT = {
    # engineio/socket.py Socket.receive raises UnknownPacketError, which
    # Socket._websocket_handler ignores.
    "unknown Engine.IO packet type": ("9", Kept()),
    "Engine.IO NOOP from a client": ("6", Kept()),
    # Socket.receive answers an UPGRADE with a NOOP, even on a connection that is already a WebSocket.
    "Engine.IO UPGRADE again": ("5", Kept(reply="6")),
    # An Engine.IO MESSAGE whose Socket.IO packet is malformed: python-socketio's
    # Server._handle_eio_message (or Packet.decode) raises, python-engineio's
    # Server._trigger_event catches it and logs "message handler error" with the traceback.
    "unknown Socket.IO packet type": ("49", Kept("ValueError: Unknown packet type.")),
    "not a Socket.IO packet": ("4{", Kept("ValueError: invalid literal for int() with base 10: '{'")),
    "empty Socket.IO packet": ("4", Kept("TypeError: 'NoneType' object is not subscriptable")),
    "bad JSON": ('42/test_conn,["my event",', Kept("json.decoder.JSONDecodeError")),
    "event without a name": ("42/test_conn,[]", Kept("IndexError: list index out of range")),
    "event as an object": ("42/test_conn,{}", Kept("KeyError: 0")),
    # A binary frame is an Engine.IO MESSAGE; its bytes are then decoded as a Socket.IO packet.
    "binary junk": (b"\x00\x01\xff", Kept("ValueError: invalid literal for int() with base 10: b'\\x00'")),
    # socketio.Server._handle_event: "not connected to namespace", a warning
    # (below the ERROR level it logs at), and no answer.
    "event on a namespace not joined": ('42/nope,7["my ping"]', Kept()),
    # socketio.Server._handle_connect: no handler for that namespace, CONNECT_ERROR.
    "connect to an unknown namespace": ("40/nope,", Kept(reply='44/nope,"Unable to connect"')),
}


@pytest.mark.parametrize("frame, kept", WEBSOCKET_KEPT.values(), ids=WEBSOCKET_KEPT.keys())
def test_websocket_garbage_the_connection_carries_on(raw, log, frame, kept):
    raw.send(frame)

    before_pong = raw.ping()

    assert before_pong == ([kept.reply] if kept.reply else [])
    if kept.logged:
        log.wait_for("message handler error")
        log.wait_for(kept.logged)


def test_websocket_engineio_close_closes_the_connection(raw, log):
    raw.send("1")  # Socket.receive: CLOSE from the client closes the socket
    assert raw.closed_by_server()


def test_websocket_message_over_max_payload_closes_the_connection(raw, log):
    # Socket._websocket_handler's websocket_wait() raises "packet is too large"
    # inside its try: the connection is closed, quietly (logged at INFO).
    try:
        raw.send("4" + "a" * MAX_PAYLOAD)
    except (BrokenPipeError, ConnectionResetError):  # eventlet closes while the frame is still arriving
        return
    assert raw.closed_by_server()


@pytest.mark.parametrize("frame", ["x", ""], ids=["not an Engine.IO packet", "empty frame"])
def test_websocket_invalid_engineio_packet_ends_the_connection_with_an_http_500(raw, log, mode, frame):
    # Socket._websocket_handler decodes the frame (packet.Packet(encoded_packet=p))
    # outside its try: the ValueError leaves the WSGI app, and the web server, which
    # took the connection for a plain HTTP one, answers 500 on it and closes it.
    raw.send(frame)

    status, _ = raw.http_reply()

    assert status == 500
    problem = "Invalid empty packet received" if frame == "" else "invalid literal for int()"
    if mode != "eventlet":  # eventlet.wsgi logs it only with log_output=True (`lesson run --debug`)
        log.wait_for(problem)


def test_websocket_an_http_500_sends_no_traceback_to_the_client(raw, log):
    # eventlet.wsgi.server sends it unless given debug=False, as the launcher does
    # (src/lesson_launcher/serve.py; tests/test_safe_defaults.py checks the setting).
    raw.send("x")

    status, body = raw.http_reply()

    assert status == 500
    assert b"Traceback" not in body and b".py" not in body, body.decode(errors="replace")


def test_websocket_binary_placeholder_without_its_attachment_wedges_that_connection_only(
        raw, log, server):
    # One attachment announced ("451-"), sent, but the placeholder asks for the
    # second: Packet.reconstruct_binary raises IndexError in add_attachment(),
    # before Server._handle_eio_message forgets the half-received packet...
    raw.send('451-/test_conn,["my event",{"_placeholder":true,"num":1}]')
    raw.send(b"attachment 0")
    log.wait_for("IndexError: list index out of range")

    # ...so the next packet, this ping, is taken for one more attachment and refused.
    raw.ws.send(PING)
    log.wait_for("ValueError: Unexpected binary attachment")
    # The wedged client still answers Engine.IO pings, so nothing closes it; the
    # bystander (checked by the `log` fixture) and a new client are served.
    other = RawWebSocket(server)
    assert other.ping() == []
    other.close()


# --- over HTTP long-polling -----------------------------------------------------------------

class PollingSession:
    """An Engine.IO long-polling session, driven request by request with http.client."""

    def __init__(self, server):
        self.host = urlsplit(server.url).netloc
        status, body = self.request("GET", "/socket.io/?EIO=4&transport=polling")
        assert status == 200 and body.startswith(b"0{"), body
        self.path = f"/socket.io/?EIO=4&transport=polling&sid={json.loads(body[1:])['sid']}"
        assert self.post("40/test_conn,") == (200, b"OK")
        assert self.get()[1].startswith(b"40/test_conn,{")

    def request(self, method, path, body=None, timeout=EVENT_TIMEOUT):
        connection = http.client.HTTPConnection(self.host, timeout=timeout)
        try:
            connection.request(method, path, body=body)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def post(self, body, timeout=EVENT_TIMEOUT):
        return self.request("POST", self.path, body, timeout)

    def get(self):
        return self.request("GET", self.path)

    def long_poll(self):
        """A GET left waiting for the server's next packets, as a real client always
        has one; returns a function that waits for its answer."""
        answer = {}
        thread = threading.Thread(target=lambda: answer.setdefault("got", self.get()), daemon=True)
        thread.start()

        def result():
            thread.join(EVENT_TIMEOUT)
            assert "got" in answer, "the long-poll was not answered"
            return answer["got"]
        return result


# python-engineio Server.handle_request, POST: Socket.handle_post_request decodes the
# body (Payload, at most 16 packets) and hands each packet to Socket.receive. What it
# raises, but for EngineIOError, is logged ("post request handler error", with the
# traceback) and answered 200 OK; Socket.IO errors are logged as over WebSocket.
POLLING_KEPT = {
    "not an Engine.IO packet": ("x", "post request handler error",
                                "ValueError: invalid literal for int() with base 10: 'x'"),
    "not UTF-8": (b"\xff\xfe", "post request handler error", "UnicodeDecodeError"),
    "17 packets in one payload": ("\x1e".join(["6"] * 17), "post request handler error",
                                  "ValueError: Too many packets in payload"),
    "bad base64 binary packet": ("bxx", "post request handler error", "binascii.Error: Incorrect padding"),
    "unknown Socket.IO packet type": ("49", "message handler error", "ValueError: Unknown packet type."),
    "bad JSON": ('42/test_conn,["my event",', "message handler error", "json.decoder.JSONDecodeError"),
}


@pytest.mark.parametrize("body, handler_error, logged", POLLING_KEPT.values(), ids=POLLING_KEPT.keys())
def test_polling_garbage_is_answered_ok_and_the_session_carries_on(server, log, body, handler_error, logged):
    session = PollingSession(server)
    waiting = session.long_poll()

    assert session.post(body) == (200, b"OK")

    log.wait_for(handler_error)
    log.wait_for(logged)
    assert session.post(PING) == (200, b"OK")
    assert waiting() == (200, PONG.encode())


def test_polling_engineio_close_ends_the_session(server, log):
    session = PollingSession(server)

    assert session.post("1") == (200, b"OK")  # Socket.receive: CLOSE closes the socket

    sid = session.path.rsplit("=", 1)[1]
    assert session.get() == (400, f'"\'Session is disconnected\' {sid}"'.encode())  # Server._get_socket
    assert session.post(PING) == (400, f'"Invalid session {sid}"'.encode())


@pytest.mark.parametrize("body", ["9", "4" + "a" * MAX_PAYLOAD], ids=["unknown Engine.IO packet type",
                                                                    "over max_http_buffer_size"])
def test_polling_garbage_that_closes_the_session_is_never_answered(server, log, body):
    # Socket.receive raises UnknownPacketError, Socket.handle_post_request
    # ContentTooLongError: EngineIOErrors, for which Server.handle_request calls
    # self.disconnect(sid), meaning to answer 400. But Socket.close(wait=True)
    # first waits (queue.join()) for a GET to take the CLOSE packet from the
    # session's queue, and with no GET waiting none ever will: a later GET is
    # refused, the session being closed (Server._get_socket). The POST waits for ever.
    session = PollingSession(server)

    with pytest.raises(TimeoutError):
        session.post(body, timeout=1)

    sid = session.path.rsplit("=", 1)[1]
    assert session.get() == (400, f'"\'Session is disconnected\' {sid}"'.encode())
    assert session.get() == (400, f'"Invalid session {sid}"'.encode())


# Server.handle_request's checks before any session is involved.
REFUSED = {
    "unknown session": ("POST", "/socket.io/?EIO=4&transport=polling&sid=nope", 400, b'"Invalid session nope"'),
    "unknown transport": ("GET", "/socket.io/?EIO=4&transport=pigeon", 400, b'"Invalid transport"'),
    "websocket transport without the upgrade": ("GET", "/socket.io/?EIO=4&transport=websocket", 400,
                                                b'"Invalid websocket upgrade"'),
    "Engine.IO 3": ("GET", "/socket.io/?EIO=3&transport=polling", 400,
                    b'"The client is using an unsupported version of the Socket.IO or Engine.IO protocols"'),
    "PUT": ("PUT", "/socket.io/?EIO=4&transport=polling", 405, b"Method Not Found"),
}


@pytest.mark.parametrize("method, path, status, body", REFUSED.values(), ids=REFUSED.keys())
def test_polling_bad_requests_are_refused(server, log, method, path, status, body):
    host = urlsplit(server.url).netloc
    connection = http.client.HTTPConnection(host, timeout=EVENT_TIMEOUT)
    try:
        connection.request(method, path, body="40" if method == "POST" else None)
        response = connection.getresponse()
        assert (response.status, response.read()) == (status, body)
    finally:
        connection.close()


def test_after_all_the_garbage_a_new_client_connects_and_is_served(server, bystander):
    for transports in (["polling"], None):  # long-polling alone, and upgraded to WebSocket
        client = RecordingClient(server.url, transports=transports).connect()
        try:
            assert client.call("my event", {"data": "after the garbage"}) == {"ok": True}
            assert client.payloads("event response") == [{"data": "after the garbage"}]
        finally:
            client.close()
    assert bystander.call("my ping") == "pong"
