"""Lesson 03, demo 3: emit_outside_context (lessons/03_pitfalls/emit_outside_context.py).
Proves the README's section "3. `emit_outside_context`: `emit()` in a background
task": the bare emit() raises "Working outside of request context" (and, with
namespace= and to=, the application-context error), socketio.emit() reaches whom
its arguments say, and the fix's per-client task.
"""
import pytest
from playwright.sync_api import expect

from harness import wait_until
from scenes import FIXED, PUSH, get_json


@pytest.fixture(scope="module")
def outside(serve):
    return serve("03", "emit_outside_context", PUSH_INTERVAL=PUSH)


REQUEST_CONTEXT_FRAMES = [
    {"file": "flask_socketio/__init__.py", "function": "emit", "line": "to = flask.request.sid"},
    {"file": "werkzeug/local.py", "function": "__get__", "line": "obj = instance._get_current_object()"},
    {"file": "werkzeug/local.py", "function": "_get_current_object",
     "line": "raise RuntimeError(unbound_message) from None"},
]


def test_emit_outside_context_bare_emit_in_a_task_raises_working_outside_of_request_context(
        outside, connect):
    client = connect(outside)

    [error] = client.wait_for("task error")
    assert error.data["error"] == "RuntimeError"
    assert error.data["message"] == "Working outside of request context."
    assert error.data["raised_in"] == REQUEST_CONTEXT_FRAMES
    client.sync()
    assert client.events("mess") == []  # the task died at its first emit


def try_call(client, call):
    """Ask the fixed namespace to run `call` in a background task; return its report."""
    before = len(client.events("task report", FIXED))
    assert client.call("try emit", {"data": call}, namespace=FIXED) == {"ok": True}
    return client.wait_for("task report", before + 1, namespace=FIXED)[-1].data


def tried(client, call, namespace):
    """The `mess` events that the tried `call` sent to this client on `namespace`
    (the task sends them before its report, so after a round trip they are all here)."""
    client.sync(namespace=FIXED)
    return [m for m in client.events("mess", namespace) if m.data.get("call") == call]


def test_emit_outside_context_bare_emit_with_namespace_raises_the_same_request_context_error(
        outside, connect):
    client = connect(outside, namespaces=(FIXED,))
    call = 'emit("mess", ..., namespace=NS)'

    report = try_call(client, call)
    assert (report["error"], report["message"]) == ("RuntimeError", "Working outside of request context.")
    assert report["raised_in"] == REQUEST_CONTEXT_FRAMES
    assert tried(client, call, FIXED) == []


def test_emit_outside_context_bare_emit_with_namespace_and_to_still_needs_an_app_context(
        outside, connect):
    client = connect(outside, namespaces=(FIXED,))
    call = 'emit("mess", ..., namespace=NS, to=sid)'

    report = try_call(client, call)
    assert report["error"] == "RuntimeError"
    assert report["message"] == "Working outside of application context."
    assert report["raised_in"][0] == {"file": "flask_socketio/__init__.py", "function": "emit",
                                      "line": "socketio = flask.current_app.extensions['socketio']"}
    assert report["raised_in"][-1]["function"] == "_get_current_object"
    assert tried(client, call, FIXED) == []


def test_emit_outside_context_socketio_emit_without_namespace_goes_to_the_default_namespace_only(
        outside, connect):
    requester = connect(outside, namespaces=("/", FIXED))
    bystander = connect(outside, namespaces=(FIXED,))
    call = 'socketio.emit("mess", ...)'

    assert try_call(requester, call) == {"call": call, "error": None}
    assert len(tried(requester, call, "/")) == 1
    assert tried(requester, call, FIXED) == []
    assert tried(bystander, call, FIXED) == []


def test_emit_outside_context_socketio_emit_with_namespace_reaches_every_client_of_it(outside, connect):
    requester = connect(outside, namespaces=(FIXED,))
    bystander = connect(outside, namespaces=(FIXED,))
    call = 'socketio.emit("mess", ..., namespace=NS)'

    assert try_call(requester, call) == {"call": call, "error": None}
    assert len(tried(requester, call, FIXED)) == 1
    assert len(tried(bystander, call, FIXED)) == 1


def test_emit_outside_context_socketio_emit_with_namespace_and_to_reaches_that_client_only(
        outside, connect):
    requester = connect(outside, namespaces=(FIXED,))
    bystander = connect(outside, namespaces=(FIXED,))
    call = 'socketio.emit("mess", ..., namespace=NS, to=sid)'

    assert try_call(requester, call) == {"call": call, "error": None}
    assert len(tried(requester, call, FIXED)) == 1
    assert tried(bystander, call, FIXED) == []


def test_emit_outside_context_fixed_task_pushes_to_its_client_only_and_ends_when_it_leaves(
        outside, connect):
    alice = connect(outside, namespaces=(FIXED,))
    bob = connect(outside, namespaces=(FIXED,))
    alice_sid = alice.sio.get_sid(namespace=FIXED)

    alice.wait_for("mess", 4, namespace=FIXED)
    bob.wait_for("mess", 4, namespace=FIXED)
    # Each client's task numbers its own pushes: a client that also got the
    # other's would see every number twice.
    for client in (alice, bob):
        seqs = sorted(m.data["seq"] for m in client.events("mess", FIXED))
        assert seqs == list(range(1, len(seqs) + 1))
    assert alice_sid in get_json(outside, "/loops")["push_loops"]

    alice.close()
    wait_until(lambda: alice_sid not in get_json(outside, "/loops")["push_loops"],
               what="alice's push loop to end")


@pytest.mark.browser
def test_emit_outside_context_page_shows_the_error_and_never_a_mess(outside, page):
    page.goto(outside.url)

    expect(page.locator("#task")).to_have_text("crashed: RuntimeError: Working outside of request context.")
    expect(page.locator("#explain")).to_contain_text("raised in werkzeug/local.py, _get_current_object()")
    expect(page.locator("#mess-count")).to_have_text("0")


@pytest.mark.browser
def test_emit_outside_context_fixed_page_gets_its_pushes_and_the_buttons_show_who_receives(outside, page):
    page.goto(outside.url + "fixed")

    wait_until(lambda: int(page.locator("#mess-count").inner_text()) >= 2, what="2 pushes on the page")
    page.click('button[data-call="emit(\\"mess\\", ..., namespace=NS)"]')
    expect(page.locator("#try-result")).to_contain_text(
        'raised RuntimeError: "Working outside of request context."')
    page.click('button[data-call="socketio.emit(\\"mess\\", ...)"]')
    expect(page.locator("#timeline")).to_contain_text('your handler on "/" ran')


def test_emit_outside_context_no_push_loop_is_left_running_once_its_clients_are_gone(outside):
    wait_until(lambda: get_json(outside, "/loops")["push_loops"] == [], what="every push loop to end")
