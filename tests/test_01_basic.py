"""Lesson 01_basic: every claim of lessons/01_basic/README.md, in every async mode."""
import re
import urllib.request

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from playwright.sync_api import expect

NS = "/test_conn"


@pytest.fixture(scope="module")
def server(serve):
    return serve("01")


# --- my event -> event response, to the sender only, acknowledged ------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(exclude_categories=("Cs",)), max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=10)


@pytest.fixture
def client(server, connect):
    return connect(server)


# One client serves all the examples Hypothesis generates (hence the health check).
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(x=json_values)
def test_my_event_is_answered_with_the_same_data_and_acknowledged(client, x):
    before = len(client.events("event response"))

    ack = client.call("my event", {"data": x})

    assert ack == {"ok": True}
    # The reply is emitted before the handler returns, so it arrives before the ack.
    responses = client.events("event response")
    assert len(responses) == before + 1
    assert responses[-1].data == {"data": x}


def test_the_reply_goes_to_the_sender_alone(server, connect):
    alice, bob = connect(server), connect(server)

    alice.emit("my event", {"data": "for alice"})

    assert alice.wait_for("event response")[0].data == {"data": "for alice"}
    bob.sync()
    assert bob.events("event response") == []


def test_long_polling_alone_works_too(server, connect):
    client = connect(server, transports=["polling"])
    assert client.sio.transport() == "polling"
    assert client.call("my event", {"data": 7}) == {"ok": True}
    assert client.payloads("event response") == [{"data": 7}]


# --- bad input gets an `error` event, and the server keeps serving ------------

BAD_PAYLOADS = {
    "a string": ("not an object", 'expects an object like {"data": ...}, got a string'),
    "a number": (42, "got a number"),
    "an array": ([1, 2], "got an array"),
    "no data key": ({"date": 1}, 'expects an object with a "data" key'),
    "no payload": (None, "got null"),
}


@pytest.mark.parametrize("payload, explanation", BAD_PAYLOADS.values(), ids=BAD_PAYLOADS.keys())
def test_a_malformed_payload_gets_an_error_event_and_the_server_keeps_serving(
        server, connect, payload, explanation):
    sender, bystander = connect(server), connect(server)

    ack = sender.call("my event", payload) if payload is not None else sender.call("my event")

    [error] = sender.wait_for("error")
    assert set(error.data) == {"message"}
    assert explanation in error.data["message"]
    assert '"my event"' in error.data["message"]
    assert ack == {"ok": False, "error": error.data["message"]}
    assert sender.events("event response") == []
    # The same connection still works, and so do the others.
    assert sender.call("my event", {"data": "after"}) == {"ok": True}
    assert sender.payloads("event response") == [{"data": "after"}]
    assert bystander.call("my event", {"data": "bystander"}) == {"ok": True}
    bystander.sync()
    assert bystander.events("error") == []
    assert bystander.payloads("event response") == [{"data": "bystander"}]


# --- the page -----------------------------------------------------------------

def test_the_page_ships_the_pinned_client_and_loads_nothing_from_the_internet(server):
    html = urllib.request.urlopen(server.url, timeout=5).read().decode()
    assert 'src="/static/vendor/socket.io.min.js"' in html
    assert "http://" not in html and "https://" not in html
    script = urllib.request.urlopen(server.url + "static/vendor/socket.io.min.js", timeout=5).read()
    assert script.startswith(b"/*!\n * Socket.IO v4.")


@pytest.mark.browser
def test_the_page_connects_upgrades_to_websocket_and_shows_the_reply(server, page, mode):
    page.goto(server.url)

    expect(page.locator("#async-mode")).to_have_text(mode)
    expect(page.locator("#status")).to_have_text("yes")
    expect(page.locator("#transport")).to_have_text("websocket (upgraded from polling)")
    expect(page.locator("#latency")).to_have_text(re.compile(r"^\d+\.\d ms$"))
    # The page says hello on connect, as in the 2019 post.
    expect(page.locator('#log li[data-event="event response"]')).to_contain_text("i'm connected")

    page.fill("#data", "from the browser")
    page.click("#send")
    expect(page.locator('#log li[data-event="event response"]').first).to_contain_text("from the browser")
    expect(page.locator('#log li[data-event="ack"]').first).to_contain_text('{"ok":true}')

    page.click("#send-bad")
    expect(page.locator('#log li[data-event="error"]')).to_contain_text("expects an object")
