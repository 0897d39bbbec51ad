"""Lesson 04_broadcast: every claim of lessons/04_broadcast/README.md, in every async mode.

Each row of the README's table ("call -> who receives it") is one test with at
least three clients, one of them connected to another namespace ("/") only.
"Never receives" is proven with sync(): a round trip on the client's own
connection, started after the server has sent everything it was going to send.
"""
import json
import re
import urllib.request
import uuid

import pytest
from playwright.sync_api import expect

from harness import http_request

NS = "/test_conn"
DEFAULT = "/"


@pytest.fixture(scope="module")
def server(serve):
    return serve("04")


def unique(label):
    """Data no other test sends, so a stray delivery could not pass for the expected one."""
    return f"{label}-{uuid.uuid4().hex[:8]}"


def heard(client):
    """Every event the client received, apart from its own connects: (namespace, event, payload)."""
    return [(r.namespace, r.event, r.data) for r in client.received
            if r.event not in ("connect", "disconnect")]


def settle(*clients):
    """A round trip on every namespace of every client (see RecordingClient.sync)."""
    for client in clients:
        for namespace in client.namespaces:
            client.sync(namespace=namespace)


def post(server, path, body, content_type="application/json"):
    """POST to the lesson; returns (status, decoded JSON body)."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    reply = http_request(server.url + path.lstrip("/"), data=data,
                         headers={"Content-Type": content_type})
    return reply.status, json.loads(reply.body)


@pytest.fixture
def outsider(server, connect):
    """A client of the default namespace "/" only: no /test_conn emit may reach it."""
    return connect(server, namespaces=(DEFAULT,))


# --- the table, row by row ------------------------------------------------------

def test_emit_in_a_handler_reaches_the_sender_only(server, connect, outsider):
    sender, peer = connect(server), connect(server)
    x = unique("private")

    assert sender.call("my event", {"data": x}) == {"ok": True}

    # The reply is emitted before the handler returns, so it is in before the ack.
    assert heard(sender) == [(NS, "event response", {"data": x})]
    settle(peer, outsider)
    assert heard(peer) == []
    assert heard(outsider) == []


def test_broadcast_reaches_every_client_of_the_namespace_sender_included(server, connect, outsider):
    sender, peer1, peer2 = connect(server), connect(server), connect(server)
    x = unique("everyone")

    assert sender.call("my event broadcast", {"data": x}) == {"ok": True}

    assert heard(sender) == [(NS, "my ev broadcast", {"data": x})]
    for peer in (peer1, peer2):
        peer.wait_for("my ev broadcast")
        settle(peer)
        assert heard(peer) == [(NS, "my ev broadcast", {"data": x})]
    settle(outsider)
    assert heard(outsider) == []


def test_include_self_false_reaches_everyone_but_the_sender(server, connect, outsider):
    sender, peer1, peer2 = connect(server), connect(server), connect(server)
    x = unique("others")

    assert sender.call("my event others", {"data": x}) == {"ok": True}

    for peer in (peer1, peer2):
        peer.wait_for("my ev others")
        settle(peer)
        assert heard(peer) == [(NS, "my ev others", {"data": x})]
    settle(sender, outsider)
    assert heard(sender) == []
    assert heard(outsider) == []


def join(client, room):
    ack = client.call("join", {"room": room})
    assert ack["ok"] is True and room in ack["rooms"], ack
    return ack


def test_a_room_event_reaches_the_rooms_members_only(server, connect, outsider):
    member1, member2, stranger = connect(server), connect(server), connect(server)
    room = unique("room")
    join(member1, room)
    join(member2, room)
    x = unique("to-members")

    assert member1.call("my room event", {"room": room, "data": x}) == {"ok": True}

    expected = [(NS, "room response", {"room": room, "data": x})]
    assert heard(member1) == expected  # the sender is a member, so it hears it too
    member2.wait_for("room response")
    settle(member2, stranger, outsider)
    assert heard(member2) == expected
    assert heard(stranger) == []
    assert heard(outsider) == []


def test_a_client_outside_the_room_can_send_to_it_but_does_not_hear_it(server, connect, outsider):
    member1, member2, stranger = connect(server), connect(server), connect(server)
    room = unique("room")
    join(member1, room)
    join(member2, room)
    x = unique("from-outside")

    assert stranger.call("my room event", {"room": room, "data": x}) == {"ok": True}

    for member in (member1, member2):
        member.wait_for("room response")
        settle(member)
        assert heard(member) == [(NS, "room response", {"room": room, "data": x})]
    settle(stranger, outsider)
    assert heard(stranger) == []
    assert heard(outsider) == []


def test_after_leave_a_client_no_longer_hears_the_room(server, connect, outsider):
    stayer, leaver, other_member = connect(server), connect(server), connect(server)
    room = unique("room")
    for client in (stayer, leaver, other_member):
        join(client, room)

    assert leaver.call("leave", {"room": room}) == {"ok": True, "rooms": []}
    x = unique("after-leave")
    assert stayer.call("my room event", {"room": room, "data": x}) == {"ok": True}

    other_member.wait_for("room response")
    settle(leaver, other_member, outsider)
    assert heard(stayer) == heard(other_member) == [(NS, "room response", {"room": room, "data": x})]
    assert heard(leaver) == []
    assert heard(outsider) == []


def test_join_and_leave_acknowledge_with_the_rooms_the_client_is_in(server, connect):
    client = connect(server)
    assert client.call("join", {"room": "b"}) == {"ok": True, "rooms": ["b"]}
    assert client.call("join", {"room": "a"}) == {"ok": True, "rooms": ["a", "b"]}
    # Joining twice is harmless...
    assert client.call("join", {"room": "a"}) == {"ok": True, "rooms": ["a", "b"]}
    assert client.call("leave", {"room": "b"}) == {"ok": True, "rooms": ["a"]}
    # ...and so is leaving a room you are not in.
    assert client.call("leave", {"room": "nowhere"}) == {"ok": True, "rooms": ["a"]}


def test_socketio_emit_with_namespace_reaches_every_client_of_that_namespace_and_none_of_another(
        server, connect, outsider):
    client1, client2 = connect(server), connect(server)
    both = connect(server, namespaces=(DEFAULT, NS))  # one connection, two namespaces
    x = unique("announce")

    assert post(server, "/announce", {"data": x}) == (200, {"ok": True, "namespace": NS})

    for client in (client1, client2, both):
        client.wait_for("announcement", namespace=NS)
    settle(client1, client2, both, outsider)
    for client in (client1, client2, both):
        assert heard(client) == [(NS, "announcement", {"data": x})]
    assert heard(outsider) == []


def test_socketio_emit_without_namespace_goes_to_the_default_namespace_not_to_test_conn(
        server, connect, outsider):
    client1, client2 = connect(server), connect(server)
    both = connect(server, namespaces=(DEFAULT, NS))
    x = unique("forgot-namespace")

    assert post(server, "/announce-without-namespace", {"data": x}) == (200, {"ok": True, "namespace": "/"})

    for client in (outsider, both):
        client.wait_for("announcement", namespace=DEFAULT)
    settle(client1, client2, both, outsider)
    assert heard(outsider) == heard(both) == [(DEFAULT, "announcement", {"data": x})]
    assert heard(client1) == heard(client2) == []


@pytest.mark.parametrize("path", ["/announce", "/announce-without-namespace"])
@pytest.mark.parametrize("body, content_type", [
    ({"date": 1}, "application/json"),
    ("just a string", "application/json"),
    (b'{"data": 1}', "text/plain"),  # what a cross-site HTML form could send
], ids=["no data key", "not an object", "not JSON"])
def test_an_announcement_without_a_json_data_body_is_refused_and_emits_nothing(
        server, connect, outsider, path, body, content_type):
    client = connect(server)

    status, answer = post(server, path, body, content_type)

    assert status == 400
    assert answer == {"message": f'POST {path} expects a JSON body like {{"data": ...}} '
                                 '(Content-Type: application/json)'}
    settle(client, outsider)
    assert heard(client) == heard(outsider) == []


# --- bad input gets an `error` event, and the server keeps serving ---------------

BAD_PAYLOADS = {
    "broadcast, a string": ("my event broadcast", "hi", 'expects an object like {"data": ...}, got a string'),
    "broadcast, no data": ("my event broadcast", {"date": 1}, 'expects an object with a "data" key'),
    "others, an array": ("my event others", [1], 'expects an object like {"data": ...}, got an array'),
    "others, no payload": ("my event others", None, 'expects an object like {"data": ...}, got null'),
    "join, no room": ("join", {"name": "r"},
                      """expects an object with a "room" key, got keys ['name']"""),
    "join, not an object": ("join", "lobby", 'expects an object like {"room": ...}, got a string'),
    "join, a number": ("join", {"room": 5}, 'expects "room" to be a non-empty string, got a number'),
    "join, empty room": ("join", {"room": ""}, 'expects "room" to be a non-empty string, got an empty string'),
    "join, an object": ("join", {"room": {}}, 'expects "room" to be a non-empty string, got an object'),
    "leave, no room": ("leave", {}, 'expects an object with a "room" key, got keys []'),
    "room event, no room": ("my room event", {"data": 1}, 'expects an object with a "room" key'),
    "room event, no data": ("my room event", {"room": "r"}, 'expects an object with a "data" key'),
    "room event, not an object": ("my room event", 3,
                                  'expects an object like {"room": ..., "data": ...}, got a number'),
}


@pytest.mark.parametrize("event, payload, explanation", BAD_PAYLOADS.values(), ids=BAD_PAYLOADS.keys())
def test_a_malformed_payload_gets_an_error_event_to_the_sender_and_the_server_keeps_serving(
        server, connect, outsider, event, payload, explanation):
    sender, bystander = connect(server), connect(server)
    join(bystander, "r")  # so a room event to "r" that slipped through would show

    ack = sender.call(event, payload) if payload is not None else sender.call(event)

    [error] = sender.wait_for("error")
    assert error.data == {"message": ack["error"]}
    assert f'"{event}" {explanation}' in error.data["message"]
    assert ack == {"ok": False, "error": error.data["message"]}
    assert heard(sender) == [(NS, "error", error.data)]
    settle(bystander, outsider)
    assert heard(bystander) == heard(outsider) == []
    # The sender's connection still works, and so does everyone else's.
    x = unique("after")
    assert sender.call("my event broadcast", {"data": x}) == {"ok": True}
    bystander.wait_for("my ev broadcast")
    assert bystander.payloads("my ev broadcast") == [{"data": x}]


# --- the page -------------------------------------------------------------------

def test_the_page_ships_the_pinned_client_and_loads_nothing_from_the_internet(server):
    html = urllib.request.urlopen(server.url, timeout=5).read().decode()
    assert 'src="/static/vendor/socket.io.min.js"' in html
    assert "http://" not in html and "https://" not in html
    script = urllib.request.urlopen(server.url + "static/vendor/socket.io.min.js", timeout=5).read()
    assert script.startswith(b"/*!\n * Socket.IO v4.")


def log_items(tab, event, namespace=NS, text=None):
    """The tab's log lines for ``event`` received on ``namespace`` (containing ``text``)."""
    items = tab.locator(f'#log li[data-event="{event}"][data-namespace="{namespace}"]')
    return items.filter(has_text=text) if text else items


@pytest.fixture(scope="module")
def tabs(server, browser, mode):
    """Two browser tabs on the lesson's page, connected on both namespaces, shared
    by the browser tests of one mode (opening them is most of a test's time).

    Each tab gets its own browser context (its own window): in one window only
    the front tab renders frames, and Playwright's clicks in a background tab
    wait about 2 s for one.
    """
    contexts, errors, websockets = [], [], {}
    for _ in range(2):
        contexts.append(browser.new_context())
        tab = contexts[-1].new_page()
        tab.on("pageerror", lambda error: errors.append(str(error)))
        websockets[tab] = []
        tab.on("websocket", lambda ws, opened=websockets[tab]: opened.append(ws.url))
        tab.goto(server.url)
    for tab in websockets:
        expect(tab.locator("#async-mode")).to_have_text(mode)
        expect(tab.locator("#status")).to_have_text("yes")
        expect(tab.locator("#status-default")).to_have_text("yes")
    yield (*websockets, websockets, errors)
    for context in contexts:
        context.close()


@pytest.fixture
def two_tabs(tabs):
    """The two tabs, for one test; a JavaScript error in either fails that test."""
    a, b, websockets, errors = tabs
    yield a, b, websockets
    assert not errors, f"the page raised JavaScript errors: {errors}"


def round_trip(tab):
    """A sender-only reply to this tab: once it shows, everything sent to the tab earlier has too."""
    label = unique("round trip")
    tab.fill("#data", label)
    tab.click("#send")
    expect(log_items(tab, "event response", text=label)).to_have_count(1)


@pytest.mark.browser
def test_two_tabs_a_broadcast_shows_in_the_other_tab_and_a_sender_only_reply_does_not(two_tabs):
    a, b, websockets = two_tabs
    for tab in (a, b):
        name = tab.locator("#me").text_content()
        assert re.fullmatch(r"tab-[0-9a-f]{4}", name)
        expect(tab.locator("#data")).to_have_value(f"hello from {name}")
    expect(a.locator("#transport")).to_have_text("websocket (upgraded from polling)")
    assert len(websockets[a]) == 1, websockets[a]  # one WebSocket carries both namespaces
    expect(a.locator("#latency")).to_have_text(re.compile(r"^\d+\.\d ms$"))

    shout = unique("shout from A")
    a.fill("#data", shout)
    a.click("#broadcast")
    for tab in (a, b):
        expect(log_items(tab, "my ev broadcast")).to_contain_text(f'{{"data":"{shout}"}}')

    whisper = unique("whisper to A")
    a.fill("#data", whisper)
    a.click("#send")  # a sender-only reply: A shows it...
    expect(log_items(a, "event response", text=whisper)).to_have_count(1)
    round_trip(b)
    expect(b.locator("#log")).not_to_contain_text(whisper)  # ...B does not

    others = unique("for the others")
    a.fill("#data", others)
    a.click("#others")  # include_self=False: B shows it, A does not
    expect(log_items(b, "my ev others", text=others)).to_have_count(1)
    round_trip(a)
    expect(log_items(a, "my ev others", text=others)).to_have_count(0)

    errors_in_b = log_items(b, "error").count()
    a.click("#send-bad")  # the error goes to the sender only
    expect(log_items(a, "error").first).to_contain_text('expects an object like')
    round_trip(b)
    expect(log_items(b, "error")).to_have_count(errors_in_b)


@pytest.mark.browser
def test_two_tabs_rooms_and_announcements_show_where_the_table_says(two_tabs):
    a, b, _ = two_tabs
    room = unique("kitchen")

    b.fill("#room", room)
    b.click("#join")
    expect(b.locator("#rooms")).to_have_text(room)
    a.fill("#room", room)
    dinner = unique("dinner is ready")
    a.fill("#data", dinner)
    a.click("#room-send")  # A is not in the room: only B hears it
    expect(log_items(b, "room response", text=dinner)).to_have_count(1)
    round_trip(a)
    expect(log_items(a, "room response", text=dinner)).to_have_count(0)
    b.click("#leave")
    expect(b.locator("#rooms")).to_have_text("none")

    right = unique("right namespace")
    a.fill("#data", right)
    a.click("#announce")
    for tab in (a, b):
        expect(log_items(tab, "announcement", text=right)).to_have_count(1)
    expect(log_items(a, "http", "http", text='"namespace":"/test_conn"').last).to_be_visible()

    forgot = unique("forgot the namespace")
    a.fill("#data", forgot)
    a.click("#announce-default")
    for tab in (a, b):
        expect(log_items(tab, "announcement", DEFAULT, text=forgot)).to_have_count(1)
        round_trip(tab)
        expect(log_items(tab, "announcement", NS, text=forgot)).to_have_count(0)
