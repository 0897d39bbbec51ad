"""Fuzzing every event handler of every lesson (and of every demo of lesson 03)
with what a client can send: Hypothesis draws the arguments of the event, zero to
three of them, each an arbitrary JSON value (nested objects and arrays, strings,
numbers, booleans, null) or binary data, and, mixed in, payloads of the shape the
handler asks for with arbitrary values inside, so that both sides of its check
are reached. Each handler has a contract, written below as a function of what
was sent; for every example:

* accepted: the normal answer comes (the events it emits to the sender, the
  acknowledgement) and no `error`;
* refused: the sender gets an `error` event, `{"message": "\"<event>\" expects ..."}`,
  and the acknowledgement `{"ok": False, "error": <the same message>}`; right
  after it, a well-formed event of the same handler gets its normal answer.

Handlers that take no payload (`my ping`, `which mode`, `who am i`, `work`) accept
anything. At the end, and when they stop, the servers' stderr has no Traceback.

Cost: one server per lesson (or demo) and mode, started side by side, and one
client per server, reused by every example. Each payload drawn goes to every
handler (drawing a nested payload costs the test more CPU than a round trip),
the servers side by side. The client is a plain WebSocket
(websocket-client) that speaks Engine.IO by hand and encodes and decodes the
Socket.IO packets with python-socketio's own `socketio.packet.Packet`: the same
bytes on the wire as the python-socketio client, without its thread per message
received (see the README, "The load generator is not the bottleneck"), which
would cost four times the CPU here.

The slow demos are made cheap through their settings, not skipped: busy_handler's
`work` computes for FLASK_BUSY_SECONDS=0 (it takes no payload, so there is nothing
to reject before the work; every example gets its normal acknowledgement, 0
rounds), blocking_connect's broken connect handler loops FLASK_LOOP_SECONDS=0
(one push interval) so that its namespace can be joined, and emits_in_connect
waits FLASK_SECOND_EMIT_DELAY=0. async_model_typo serves WebSocket only under
eventlet's web server (see test_03_pitfalls/test_async_model_typo.py), so it is fuzzed in
eventlet mode only.

Connect handlers: none of them reads its `auth` argument, so there is no
payload to fuzz there.

FUZZ_EXAMPLES=N (environment) draws N examples per handler instead of EXAMPLES.
"""
import itertools
import os
import re
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Optional
from urllib.parse import urlsplit

import pytest
import websocket
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from socketio import packet as sio_packet

from harness import EVENT_TIMEOUT, ROOT, LessonServer, start_all

pytestmark = pytest.mark.stress

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", 300))
NS, FIXED = "/test_conn", "/test_conn_fixed"


# --- the servers: one per lesson or demo, in each mode -------------------------------

# lesson, demo, FLASK_* settings that make the slow demos cheap (see the docstring).
SERVERS = {
    "01": ("01", None, {}),
    "02": ("02", None, {}),
    "02 without_lock": ("02", "without_lock", {"RACE_WINDOW": 0}),
    "03 async_model_typo": ("03", "async_model_typo", {}),
    "03 blocking_connect": ("03", "blocking_connect", {"PUSH_INTERVAL": 0.2, "LOOP_SECONDS": 0}),
    "03 busy_handler": ("03", "busy_handler", {"BUSY_SECONDS": 0, "PUSH_INTERVAL": 1}),
    "03 cross_origin": ("03", "cross_origin", {"FRONTEND_PORT": 0, "STRANGER_PORT": 0}),
    "03 emit_outside_context": ("03", "emit_outside_context", {"PUSH_INTERVAL": 1}),
    "03 emits_in_connect": ("03", "emits_in_connect", {"SECOND_EMIT_DELAY": 0}),
    "03 monkey_patch": ("03", "monkey_patch", {"BLOCK_SECONDS": 0}),
    "03 old_client": ("03", "old_client", {}),
    "03 unknown_event": ("03", "unknown_event", {}),
    "04": ("04", None, {}),
    "05": ("05", None, {}),  # no FLASK_MESSAGE_QUEUE: one server, no Redis needed
}
EVENTLET_ONLY = {"03 async_model_typo"}


def served_in(mode):
    return [name for name in SERVERS if mode == "eventlet" or name not in EVENTLET_ONLY]


# --- a lean Socket.IO client over one plain WebSocket -------------------------------

class Wire:
    """One Socket.IO connection over a plain WebSocket, joined to ``namespaces``.

    Engine.IO 4 over WebSocket: each text frame is one packet, its first
    character the packet type ("4" message, "2" ping, "1" close); binary frames
    are attachments of the Socket.IO packet before them. python-socketio's
    Packet class encodes and decodes the Socket.IO packets inside."""

    def __init__(self, server, namespaces):
        parts = urlsplit(server.url)
        self.host = parts.netloc
        self.server = server
        self.ws = websocket.create_connection(
            f"ws://{parts.netloc}/socket.io/?EIO=4&transport=websocket", timeout=EVENT_TIMEOUT)
        opened = self.ws.recv()
        assert opened.startswith("0{"), opened  # the Engine.IO OPEN packet
        # From now on short reads, so that a handler that crashed (its server logged
        # a Traceback, and no answer will come) fails the check at once, not after
        # EVENT_TIMEOUT: Hypothesis replays a failing payload many times to shrink it.
        self.ws.settimeout(0.25)
        self.ids = itertools.count()
        self.received = []  # (namespace, event, args) since the last call()
        self.rooms = set()  # lesson 04: the rooms this client has joined
        for namespace in namespaces:
            self.send(sio_packet.Packet(sio_packet.CONNECT, namespace=namespace))
        joined = set()
        while joined != set(namespaces):
            pkt = self.receive()
            assert pkt.packet_type != sio_packet.CONNECT_ERROR, pkt.data
            if pkt.packet_type == sio_packet.CONNECT:
                joined.add(pkt.namespace or "/")

    def send(self, pkt):
        encoded = pkt.encode()
        text, attachments = (encoded[0], encoded[1:]) if isinstance(encoded, list) else (encoded, [])
        self.ws.send("4" + text)
        for attachment in attachments:
            self.ws.send_binary(attachment)

    def receive(self):
        """The next Socket.IO packet from the server (answering Engine.IO pings meanwhile)."""
        pending, deadline = None, time.monotonic() + EVENT_TIMEOUT
        while True:
            try:
                frame = self.ws.recv()
            except websocket.WebSocketTimeoutException:
                log = self.server.stderr_text
                if "Traceback" in log:  # the last one: this payload's, when Hypothesis shrinks
                    raise AssertionError(f"the server crashed:\n{log[log.rindex('Traceback'):]}") from None
                if time.monotonic() > deadline:
                    raise AssertionError(f"nothing from the server for {EVENT_TIMEOUT}s; "
                                         f"received since the last call: {self.received}") from None
                continue
            if isinstance(frame, bytes):
                assert pending is not None, f"an attachment with no packet before it: {frame!r}"
                if pending.add_attachment(frame):
                    return pending
                continue
            assert frame, "the server closed the WebSocket"
            kind, body = frame[0], frame[1:]
            if kind == "2":  # Engine.IO PING: answer, as every client must
                self.ws.send("3")
                continue
            assert kind == "4", f"an Engine.IO packet other than a message: {frame!r}"
            pkt = sio_packet.Packet(encoded_packet=body)
            assert pkt.packet_type != sio_packet.DISCONNECT, f"the server left {pkt.namespace}"
            if pkt.attachment_count:
                pending = pkt
                continue
            return pkt

    def call(self, namespace, event, args):
        """Emit ``event`` with ``args`` and an ack id; return the ack's arguments.
        Events that arrive before the ack are in ``self.received``."""
        self.received = []
        ack_id = next(self.ids)
        self.send(sio_packet.Packet(sio_packet.EVENT, data=[event, *args], namespace=namespace,
                                    id=ack_id))
        while True:
            pkt = self.receive()
            where = pkt.namespace or "/"
            if pkt.packet_type in (sio_packet.ACK, sio_packet.BINARY_ACK):
                if pkt.id == ack_id and where == namespace:
                    return pkt.data
            elif pkt.packet_type in (sio_packet.EVENT, sio_packet.BINARY_EVENT):
                self.received.append((where, pkt.data[0], pkt.data[1:]))

    def wait_for(self, namespace, event):
        """The first ``event`` on ``namespace`` since the last call(), waiting for it if needed."""
        while True:
            for where, name, args in self.received:
                if (where, name) == (namespace, event):
                    return args
            pkt = self.receive()
            if pkt.packet_type in (sio_packet.EVENT, sio_packet.BINARY_EVENT):
                self.received.append((pkt.namespace or "/", pkt.data[0], pkt.data[1:]))

    def close(self):
        self.ws.close()


# --- what a client can send ------------------------------------------------------------

LEAVES = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
          | st.text(max_size=12))  # text(): any code point but surrogates, which UTF-8 cannot carry
# Socket.IO carries binary data too (as attachments), anywhere in a payload.
VALUES = st.recursive(
    LEAVES | st.binary(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=10)


def object_with(**required):
    """Objects with these keys (values drawn from the given strategies), and maybe others."""
    return st.tuples(st.fixed_dictionaries(required),
                     st.dictionaries(st.text(max_size=6), VALUES, max_size=2)
                     ).map(lambda parts: {**parts[1], **parts[0]})


ROOMS = st.sampled_from(["lobby", "kitchen"]) | st.text(max_size=8) | VALUES
CALLS = ['emit("mess", ..., namespace=NS)', 'emit("mess", ..., namespace=NS, to=sid)',
         'socketio.emit("mess", ...)', 'socketio.emit("mess", ..., namespace=NS)',
         'socketio.emit("mess", ..., namespace=NS, to=sid)']  # emit_outside_context.CALLS
# The payloads the handlers ask for, with arbitrary values inside.
MONKEY_PATCH_WAYS = ["time.sleep", "sleep", "socket", "requests", "lock"]  # monkey_patch.WAYS
SHAPES = st.one_of(object_with(data=VALUES), object_with(data=st.sampled_from(CALLS)),
                   object_with(room=ROOMS), object_with(room=ROOMS, data=VALUES),
                   object_with(how=st.sampled_from(MONKEY_PATCH_WAYS)), object_with(how=st.just("socketio.sleep")))
# What a client can send with an event: 0 to 3 arbitrary values; or one payload of
# a shape some handler asks for (twice as likely: each of the six shapes must be
# drawn often enough that every handler both accepts and refuses, see the test);
# or such a payload followed by one more argument.
ONE_PAYLOAD = SHAPES.map(lambda payload: (payload,))
ARGUMENTS = st.one_of(st.lists(VALUES, max_size=3).map(tuple), ONE_PAYLOAD, ONE_PAYLOAD,
                      st.tuples(SHAPES, VALUES))


# --- the contracts ----------------------------------------------------------------------

@dataclass
class Answer:
    """The normal answer to an accepted event."""
    ack: object                    # the ack's arguments, or a predicate on them
    replies: list = field(default_factory=list)  # (event, args) to the sender, before the ack
    later: Optional[tuple] = None  # (event, predicate on args): from a background task


def one_object(args, *keys):
    """The one object payload with all of ``keys``, or None."""
    if len(args) == 1 and isinstance(args[0], dict) and all(key in args[0] for key in keys):
        return args[0]
    return None


def echoes(reply):
    """`{"data": X}` -> `reply` with `{"data": X}` to the sender (None: nothing to the
    sender, as for "my event others") and the ack {"ok": True}."""
    def contract(args, wire):
        message = one_object(args, "data")
        if message is None:
            return None
        return Answer([{"ok": True}], [(reply, [{"data": message["data"]}])] if reply else [])
    return contract


def broadcast_via(args, wire):
    """Lesson 05: the broadcast says which server the sender is connected to."""
    message = one_object(args, "data")
    if message is None:
        return None
    return Answer([{"ok": True}], [("my ev broadcast", [{"data": message["data"], "via": wire.host}])])


def room_of(args, *keys):
    message = one_object(args, "room", *keys)
    if message is None or not isinstance(message["room"], str) or not message["room"]:
        return None
    return message


def join(args, wire):
    message = room_of(args)
    if message is None:
        return None
    wire.rooms.add(message["room"])
    return Answer([{"ok": True, "rooms": sorted(wire.rooms)}])


def leave(args, wire):
    message = room_of(args)
    if message is None:
        return None
    wire.rooms.discard(message["room"])
    return Answer([{"ok": True, "rooms": sorted(wire.rooms)}])


def room_event(args, wire):
    """To the room's members: the sender hears it only if it joined the room."""
    message = room_of(args, "data")
    if message is None:
        return None
    heard = message["room"] in wire.rooms
    return Answer([{"ok": True}], [("room response", [{"room": message["room"], "data": message["data"]}])]
                  if heard else [])


def try_emit(args, wire):
    message = one_object(args, "data")
    call = message["data"] if message else None
    if not isinstance(call, str) or call not in CALLS:
        return None
    return Answer([{"ok": True}], later=("task report", lambda report: report[0]["call"] == call))


def answers(ack, *replies):
    """A handler that takes no payload: this answer, whatever was sent."""
    return lambda args, wire: Answer(ack, list(replies))


def did_no_work(ack):
    """busy_handler's `work` with FLASK_BUSY_SECONDS=0: its report, with 0 rounds."""
    [report] = ack
    return set(report) == {"seconds", "rounds", "started_at", "ended_at"} and report["rounds"] == 0


@dataclass(frozen=True)
class Handler:
    server: str                 # a key of SERVERS
    namespace: str
    event: str
    contract: Callable          # (args, wire) -> Answer, or None: refused
    emits: tuple = ()           # the events it sends the sender before its ack
    refusal: Callable = lambda args: None  # the exact `error` message, where the lesson fixes it
    good: tuple = ()            # a well-formed call, for right after a refused one

    def __str__(self):
        return f"{self.server}|{self.namespace}|{self.event}"


CATCH_ALL_PROBE = "my event braodcast"  # what the fuzz sends unknown_event's @socketio.on("*")


def blocked(ways):
    """monkey_patch's "block": its report when "how" names one of ``ways``, else refused."""
    def contract(args, wire):
        how = args[0].get("how") if len(args) == 1 and isinstance(args[0], dict) else None
        if not isinstance(how, str) or how not in ways:
            return None
        return Answer(lambda ack: len(ack) == 1 and ack[0]["ok"] and ack[0]["how"] == how, [])
    return contract


def patched_first(ack):
    """monkey_patch's "patching", in a server patched as every lesson is."""
    [state] = ack
    return state["verdict"].startswith(("patched first", "none needed"))


def nack_naming(event):
    message = f'no handler for event "{event}" on {FIXED}'
    return lambda args, wire: Answer([{"ok": False, "error": message}],
                                     [("error", [{"message": message, "event": event}])])


def ping(server, namespace=NS):
    return Handler(server, namespace, "my ping", answers(["pong"]))


def one_argument(event):
    """The `error` message of lessons 01 and 04 (data_of(), fields()) for more than one
    argument. Their other messages depend on what is wrong; only their start is checked."""
    return lambda args: f'"{event}" expects one argument, got {len(args)}' if len(args) > 1 else None


def always(message):
    return lambda args: message


def data_handler(server, event, reply, contract=None, refusal=None, namespace=NS):
    return Handler(server, namespace, event, contract or echoes(reply), emits=(reply,) if reply else (),
                   refusal=refusal or one_argument(event), good=({"data": "well-formed"},))


HANDLERS = [
    data_handler("01", "my event", "event response"),
    ping("01"),
    ping("02"),
    ping("02 without_lock"),
    Handler("03 async_model_typo", NS, "which mode",
            answers([], ("server mode", [{"async_mode": "eventlet"}])), emits=("server mode",)),
    ping("03 async_model_typo"),
    ping("03 blocking_connect"), ping("03 blocking_connect", FIXED),
    Handler("03 busy_handler", NS, "work", answers(did_no_work)),
    Handler("03 busy_handler", FIXED, "work", answers(did_no_work)),
    ping("03 busy_handler"), ping("03 busy_handler", FIXED),
    # No session cookie on this client: the user is None.
    Handler("03 cross_origin", NS, "who am i", answers([], ("you are", [{"user": None}])),
            emits=("you are",)),
    ping("03 cross_origin"),
    Handler("03 emit_outside_context", FIXED, "try emit", try_emit, good=({"data": CALLS[-1]},),
            refusal=always(f'"try emit" expects {{"data": one of {CALLS}}}')),
    ping("03 emit_outside_context"), ping("03 emit_outside_context", FIXED),
    ping("03 emits_in_connect"), ping("03 emits_in_connect", FIXED),
    data_handler("03 old_client", "my event", "event response",
                 refusal=always('"my event" expects an object like {"data": ...}')),
    ping("03 old_client"),
    # monkey_patch's "block" with FLASK_BLOCK_SECONDS=0: a lock and a slow service, but no wait.
    Handler("03 monkey_patch", NS, "block", blocked(MONKEY_PATCH_WAYS), good=({"how": "time.sleep"},),
            emits=(), refusal=always(f'"block" expects {{"how": one of {MONKEY_PATCH_WAYS}}}')),
    Handler("03 monkey_patch", FIXED, "block", blocked(["socketio.sleep"]),
            good=({"how": "socketio.sleep"},),
            refusal=always('"block" expects {"how": one of [\'socketio.sleep\']}')),
    Handler("03 monkey_patch", NS, "patching", answers(patched_first)),
    Handler("03 monkey_patch", FIXED, "patching", answers(patched_first)),
    ping("03 monkey_patch"), ping("03 monkey_patch", FIXED),
    data_handler("03 unknown_event", "my event", "event response",
                 refusal=always('"my event" expects an object like {"data": ...}')),
    data_handler("03 unknown_event", "my event broadcast", "my ev broadcast",
                 refusal=always('"my event broadcast" expects an object like {"data": ...}')),
    data_handler("03 unknown_event", "my event", "event response", namespace=FIXED,
                 refusal=always('"my event" expects an object like {"data": ...}')),
    data_handler("03 unknown_event", "my event broadcast", "my ev broadcast", namespace=FIXED,
                 refusal=always('"my event broadcast" expects an object like {"data": ...}')),
    ping("03 unknown_event"), ping("03 unknown_event", FIXED),
    # The catch-all, through an event it catches. (An event literally named "*" reaches
    # python-socketio's handler for "*" without the event's name in front, and Flask-SocketIO
    # 5.7's wrapper of catch-alls then raises IndexError or TypeError: not fuzzed.)
    Handler("03 unknown_event", FIXED, CATCH_ALL_PROBE, nack_naming(CATCH_ALL_PROBE),
            emits=("error",)),
    data_handler("04", "my event", "event response"),
    data_handler("04", "my event broadcast", "my ev broadcast"),
    data_handler("04", "my event others", None),
    # In this order, the same payload joins a room, is sent to it, and leaves it.
    Handler("04", NS, "join", join, good=({"room": "lobby"},), refusal=one_argument("join")),
    Handler("04", NS, "my room event", room_event, emits=("room response",), good=({"room": "lobby", "data": 1},),
            refusal=one_argument("my room event")),
    Handler("04", NS, "leave", leave, good=({"room": "lobby"},), refusal=one_argument("leave")),
    ping("04"), ping("04", "/"),
    data_handler("05", "my event broadcast", "my ev broadcast", contract=broadcast_via,
                 refusal=always('"my event broadcast" expects an object like {"data": ...}')),
    ping("05"), ping("05", "/"),
]


@pytest.fixture(scope="module")
def servers(mode):
    """Every lesson and demo, started side by side; on the way out, no Traceback."""
    running = {name: LessonServer(lesson, demo, mode=mode, settings=settings)
               for name, (lesson, demo, settings) in SERVERS.items() if name in served_in(mode)}
    start_all(running.values())
    yield running
    try:
        for server in running.values():  # all of them, before any assertion
            server.interrupt()
    finally:
        for server in running.values():
            server.kill()  # any that ignored Ctrl-C (a no-op for the others)
    for name, server in running.items():
        assert server.process.returncode == 0, f"{name} ended with {server.process.returncode}"
        assert "Traceback" not in server.stderr_text, f"{name}:\n{server.stderr_text}"


@pytest.fixture(scope="module")
def wires(servers):
    """One client per server, joined to every namespace its handlers are on."""
    opened = {name: Wire(server, sorted({h.namespace for h in HANDLERS if h.server == name}))
              for name, server in servers.items()}
    yield opened
    for wire in opened.values():
        wire.close()


def check(handler, wire, args):
    """Send ``args``; assert the contract's answer came. Returns True if accepted."""
    answer = handler.contract(args, wire)
    try:
        ack = wire.call(handler.namespace, handler.event, args)
        assert_answer(handler, wire, answer, ack, handler.refusal(args))
    except AssertionError as error:
        expected = "refused" if answer is None else "accepted"
        raise AssertionError(f"{handler} ({expected}): {error}") from None
    return answer is not None


def assert_answer(handler, wire, answer, ack, refusal):
    heard = [(event, args) for where, event, args in wire.received
             if where == handler.namespace and (event == "error" or event in handler.emits)]
    if answer is None:
        assert [event for event, _ in heard] == ["error"], f"heard {heard}, ack {ack}"
        [message] = heard[0][1]
        assert set(message) == {"message"} and message["message"].startswith(f'"{handler.event}" expects'), message
        assert refusal in (None, message["message"]), message
        assert ack == [{"ok": False, "error": message["message"]}], ack
        return
    assert heard == answer.replies, f"heard {heard}, expected {answer.replies}"
    assert answer.ack(ack) if callable(answer.ack) else ack == answer.ack, f"ack {ack}, expected {answer.ack}"
    if answer.later:
        event, expected = answer.later
        assert expected(wire.wait_for(handler.namespace, event)), event


def test_fuzz_every_handler_of_every_lesson(mode, servers, wires):
    """Each payload Hypothesis draws goes to every handler, so each handler gets
    EXAMPLES of them. The servers are fed side by side, one thread each (the work
    is theirs, in their own processes); the handlers of one server one after the
    other, in the table's order."""
    by_server = {name: [h for h in HANDLERS if h.server == name] for name in servers}
    outcomes = {str(handler): Counter() for handlers in by_server.values() for handler in handlers}

    def send_to(name, args):
        for handler in by_server[name]:
            accepted = check(handler, wires[name], args)
            outcomes[str(handler)]["accepted" if accepted else "refused"] += 1
            if not accepted:
                # Right after a refused payload, the handler still does its job.
                assert check(handler, wires[name], handler.good), f"{handler}: a well-formed call was refused"

    # Once a check fails, Hypothesis shrinks the payload, replaying smaller ones:
    # to the server that failed alone, or one failure would take minutes.
    failed = []

    with ThreadPoolExecutor(len(by_server)) as pool:
        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  report_multiple_bugs=False, suppress_health_check=list(HealthCheck))
        @given(args=ARGUMENTS)
        def examples(args):
            sent = {name: pool.submit(send_to, name, args) for name in failed[:1] or by_server}
            for name, done in sent.items():
                try:
                    done.result()  # re-raises a failed check here, for Hypothesis
                except BaseException:
                    failed.append(name)
                    raise

        started = time.monotonic()
        examples()
        took = time.monotonic() - started
    for handler in HANDLERS:
        if handler.server in servers:
            counts = outcomes[str(handler)]
            print(f"{handler} [{mode}]: {dict(counts)}")
            if handler.good:  # both sides of the handler's check were reached, often
                assert min(counts["accepted"], counts["refused"]) >= EXAMPLES // 20, (str(handler), counts)
            else:
                assert set(counts) == {"accepted"}, (str(handler), counts)  # whatever was sent
    print(f"{len(outcomes)} handlers x {EXAMPLES} examples [{mode}] in {took:.1f}s")
    for name, server in servers.items():
        assert "Traceback" not in server.stderr_text, f"{name}:\n{server.stderr_text}"


# --- the table above is complete ------------------------------------------------------

HANDLER_DECORATOR = re.compile(r'@socketio\.on\("([^"]+)", namespace=(\w+|"[^"]*")\)')
NAMESPACES = {"NAMESPACE": NS, "FIXED_NAMESPACE": FIXED, '"/"': "/"}


def test_fuzz_covers_every_event_handler_of_every_lesson():
    """Every @socketio.on(...) in lessons/ (but connect and disconnect, which take
    no payload a client chooses, the auth aside, which no handler reads) is fuzzed above."""
    declared = set()
    for path in ROOT.glob("lessons/*/*.py"):
        text = path.read_text()
        if "def create_app" not in text:
            continue
        if path.parent.name == "06_deploy":  # NOT fuzzed yet: its server is a whole stack (nginx,
            continue  # gunicorn, Redis) and its "via" names a backend; see the lesson 06 report
        lesson = path.parent.name[:2]
        name = lesson if path.stem == "app" else f"{lesson} {path.stem}"
        for event, namespace in HANDLER_DECORATOR.findall(text):
            if event not in ("connect", "disconnect"):
                declared.add((name, NAMESPACES[namespace], CATCH_ALL_PROBE if event == "*" else event))
        # A connect handler that reads `auth` would need fuzzing too.
        connect_handlers = re.findall(r'@socketio\.on\("connect".*?\)\ndef \w+\(([^)]*)\):\n((?:    .*\n|\n)*)', text)
        for _, body in connect_handlers:
            assert "auth" not in body, f"{path}: a connect handler reads auth"
    assert declared == {(h.server, h.namespace, h.event) for h in HANDLERS}
    assert set(SERVERS) == {h.server for h in HANDLERS}
