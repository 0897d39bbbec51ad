"""Lesson 03, demo `monkey_patch` (README section 9): a handler that blocks in plain
standard-library code, with the standard library not patched (`--patch none`),
patched after the imports (`--patch late`) or first (the default), in every async
mode, with python-socketio clients and in Chromium.

Per mode, one server per patching choice (eventlet and gevent: none, late, early;
threading: early, as it has nothing to patch), started side by side. The freeze is
measured as in busy_handler, at a pace: another client pings every 5 ms (scenes.Pinger) while
one client's handler blocks for FLASK_BLOCK_SECONDS, and the test counts the pongs that
came back while the server waited (by the server's clock, in the acknowledgement),
leaving out the first quarter of the wait (a pong already on its way when the wait
began). A frozen server answers none; a served one about 45 of the 60 the pace allows
(at least 2 asserted). Pinging non-stop answered hundreds and cost 6 CPU-seconds more.
The lock scene deadlocks the none and late servers for good, so it comes last (its
fixture is asked for by the last test only); Ctrl-C still stops them.
"""
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from playwright.sync_api import expect

from harness import (EVENT_TIMEOUT, LessonServer, RecordingClient, http_request, run_lesson_command,
                     start_all, wait_until, without_the_pending_connect_race)
from lesson_launcher.serve import READY_LINE
from scenes import FIXED, NS, Pinger

BLOCK = 0.4   # FLASK_BLOCK_SECONDS
WAYS = ("time.sleep", "sleep", "socket", "requests")  # each blocks in the standard library
PATCHINGS = {"eventlet": ("none", "late", "early"), "gevent": ("none", "late", "early"),
             "threading": ("early",)}
GREEN = ("eventlet", "gevent")
EVENTLET_LATE = ("An exception was thrown while monkey_patching for eventlet. to fix this error "
                 "make sure you run eventlet.monkey_patch() before importing any other modules.")
GEVENT_LATE = "MonkeyPatchWarning: Monkey-patching ssl after ssl has already been imported"


@pytest.fixture(scope="module")
def servers(mode):
    """patching -> its running server. Those started with --patch are plain processes
    (the harness forks only servers patched as every lesson is, first)."""
    running = {patch: LessonServer("03", "monkey_patch", mode=mode, settings={"BLOCK_SECONDS": BLOCK},
                                   extra_args=() if patch == "early" else ("--patch", patch))
               for patch in PATCHINGS[mode]}
    start_all(running.values())
    yield running
    for patch, server in running.items():  # deadlocked or not, Ctrl-C stops it
        assert server.interrupt() == 0, server.stderr_text
        if not (mode == "eventlet" and patch == "late"):  # eventlet's own warning has tracebacks
            assert "Traceback" not in without_the_pending_connect_race(server.stderr_text, mode), \
                server.stderr_text


def pings_while(server, action, namespace=NS, then=None):
    """A python-socketio client pings at a pace (scenes.Pinger) while ``action()`` (another
    client's doing) runs: the round trips [(sent, back)], with action()'s result. ``then(result)``
    runs before the pinging client leaves (to stop a deadlocked server first: a client
    leaving a server that can no longer answer waits for it)."""
    watcher = RecordingClient(server.url, (namespace,)).connect()
    result = None
    try:
        with Pinger(watcher, namespace, timeout=BLOCK * 4) as pinger:
            wait_until(lambda: len(pinger.pongs) >= 3, what="pongs before the wait")
            result = action()
    finally:
        if then:
            then(result)
        watcher.close()
    return pinger.pongs, result


def answered_during(pongs, started, ended):
    """Pongs that came back while the server waited, but for its first quarter."""
    return sum(started + BLOCK / 4 <= back <= ended for sent, back in pongs)


def block(server, how, namespace=NS):
    """One client's "block" {"how": how}, while another pings: what the pinger saw."""
    blocker = RecordingClient(server.url, (namespace,)).connect()
    try:
        pongs, ack = pings_while(server, lambda: blocker.call(
            "block", {"how": how}, namespace=namespace, timeout=BLOCK + EVENT_TIMEOUT), namespace)
    finally:
        blocker.close()
    return {"ack": ack, "answered": answered_during(pongs, ack["started_at"], ack["ended_at"]),
            "slowest": max(back - sent for sent, back in pongs)}


@pytest.fixture(scope="module")
def waits(servers):
    """patching -> way -> what another client saw while one handler waited that way;
    plus the fixed namespace's socketio.sleep on the least patched server."""
    least = "none" if "none" in servers else "early"
    # The servers are separate processes: measured side by side, the ways one after the other.
    seen = each_server(servers, lambda patch, server: {how: block(server, how) for how in WAYS}
                       | ({"fixed": block(server, "socketio.sleep", FIXED)} if patch == least else {}))
    seen["fixed"] = seen[least].pop("fixed")
    return seen


def each_server(servers, measure):
    """{patch: measure(patch, server)}, the servers measured side by side."""
    with ThreadPoolExecutor(len(servers)) as pool:
        futures = {patch: pool.submit(measure, patch, server) for patch, server in servers.items()}
        return {patch: future.result() for patch, future in futures.items()}


def frozen(seen):
    return seen["answered"] == 0 and seen["slowest"] >= BLOCK * 0.5


def served(seen):
    return seen["answered"] >= 2


# --- forgotten: --patch none ---------------------------------------------------------

def test_monkey_patch_not_patched_every_blocking_call_freezes_every_client_in_eventlet_and_gevent(
        waits, mode):
    if mode in GREEN:
        for how in WAYS:
            assert frozen(waits["none"][how]), (how, waits["none"][how])
    else:  # threading: a real thread per handler, and nothing to patch
        for how in WAYS:
            assert served(waits["early"][how]), (how, waits["early"][how])
    for how in WAYS:  # the wait itself takes what it takes, frozen or not
        assert waits[PATCHINGS[mode][0]][how]["ack"]["seconds"] >= BLOCK


def test_monkey_patch_patched_first_no_blocking_call_freezes_anyone(waits):
    for how in WAYS:
        assert served(waits["early"][how]), (how, waits["early"][how])


def test_monkey_patch_the_fix_in_code_socketio_sleep_freezes_nobody_even_unpatched(waits):
    assert waits["fixed"]["ack"]["seconds"] >= BLOCK
    assert served(waits["fixed"]), waits["fixed"]


def test_monkey_patch_threading_mode_refuses_patch_none_and_late_with_one_line_and_status_2():
    for patch in ("none", "late"):
        done = run_lesson_command("run", "03", "monkey_patch", "--mode", "threading", "--patch", patch)
        assert done.returncode == 2, done
        assert done.stderr == (f"lesson: --patch {patch} is for eventlet and gevent; "
                               "threading mode patches nothing\n"), done.stderr


# --- too late: --patch late --------------------------------------------------------

def test_monkey_patch_patched_late_calls_looked_up_when_made_are_patched_a_name_imported_before_is_not(
        waits, mode):
    if mode not in GREEN:  # nothing to patch late: asked for, refused (the test above)
        assert "late" not in waits
        return
    late = waits["late"]
    for how in ("time.sleep", "socket", "requests"):  # time.sleep(), socket.socket(), ... at call time
        assert served(late[how]), (how, late[how])
    assert frozen(late["sleep"]), late["sleep"]  # `from time import sleep`, bound before the patch


def test_monkey_patch_patched_late_eventlet_and_gevent_say_so_in_their_own_warnings(servers, mode):
    warning = {"eventlet": EVENTLET_LATE, "gevent": GEVENT_LATE}.get(mode)
    for patch, server in servers.items():
        if patch == "late":
            assert warning in server.stderr_text, server.stderr_text
        elif warning:
            assert warning not in server.stderr_text, (patch, server.stderr_text)
    if mode == "eventlet":  # it walks Flask's request and app proxies, which raise outside a request
        assert "RuntimeError: Working outside of request context." in servers["late"].stderr_text
    if mode == "gevent":  # what had imported ssl's names before the patch (requests' urllib3)
        assert "Modules that had direct imports (NOT patched)" in servers["late"].stderr_text
        assert "urllib3.util" in servers["late"].stderr_text


def test_monkey_patch_the_ready_line_and_the_page_say_which_patching(servers, mode):
    verdicts = {"none": "not patched", "late": "patched late", "early": "patched first"}
    for patch, server in servers.items():
        assert server.ready_line["patch"] == (None if patch == "early" else patch)
        assert server.ready_line.group(0).startswith(
            f"Serving 03_pitfalls/monkey_patch (async_mode={mode}"
            + ("" if patch == "early" else f", patch={patch}") + ") on http://127.0.0.1:")
        now = RecordingClient(server.url, (NS,)).connect()
        try:
            state = now.call("patching")
        finally:
            now.close()
        page = http_request(server.url).body
        verdict = "none needed" if mode == "threading" else verdicts[patch]
        assert state["verdict"].startswith(verdict), state
        assert state["verdict"] in page.replace("&#39;", "'")  # the page says the same
        seen = state["seen"]
        standard = {"none": set(seen), "early": set(), "threading": set(seen),
                    "late": {"sleep, imported at the top of this file",
                             "the lock made when this file was imported"}}[
            "threading" if mode == "threading" else patch]
        assert {what for what, name in seen.items()
                if name.split(".")[0] in ("time", "socket", "_thread", "threading")} == standard, seen


def test_monkey_patch_lesson_run_takes_patch_for_any_lesson_and_the_ready_line_says_it():
    server = LessonServer("01", mode="gevent", extra_args=("--patch", "none")).start()
    try:
        assert server.ready_line["patch"] == "none" and server.ready_line["mode"] == "gevent"
        client = RecordingClient(server.url, (NS,)).connect()
        assert client.call("my event", {"data": 1}) == {"ok": True}
        client.close()
    finally:
        assert server.interrupt() == 0


def test_monkey_patch_ready_line_pattern_matches_every_form():
    for line, patch in [("Serving 01_basic (async_mode=gevent) on http://127.0.0.1:5000/", None),
                        ("Serving 03_pitfalls/monkey_patch (async_mode=gevent, patch=none) on "
                         "http://127.0.0.1:5000/", "none"),
                        ("Serving 03_pitfalls/monkey_patch (async_mode=eventlet, patch=late) on "
                         "http://[::1]:5000/", "late")]:
        match = READY_LINE.match(line)
        assert match and match["patch"] == patch, line
    assert not READY_LINE.match("Serving 01_basic (async_mode=gevent, patch=early) on http://127.0.0.1:5000/")


# --- the pages ------------------------------------------------------------------------

def press(page, url, how):
    """Open the page, press the button of ``how``, and return what the page measured."""
    page.goto(url)
    expect(page.locator("#status")).to_contain_text("yes", timeout=10_000)
    wait_until(lambda: page.evaluate("window.pongs.length") >= 3, what="the page's own pings")
    page.click(f'button[data-how="{how}"]')
    wait_until(lambda: page.evaluate("window.blocks.length"), timeout=BLOCK + EVENT_TIMEOUT,
               what="the block's ack")
    return page.evaluate("window.blocks[0]")


@pytest.mark.browser
def test_monkey_patch_page_shows_the_patching_and_freezes_only_when_not_patched(servers, page, mode):
    for patch, server in servers.items():
        if patch == "late":
            continue  # the python tests above; the page says "patched late" (test above)
        seen = press(page, server.url, "time.sleep")
        expect(page.locator("#async-mode")).to_have_text(mode)
        expect(page.locator("#transport")).to_contain_text("websocket")
        expect(page.locator("#latency")).to_contain_text("ms")
        if patch == "none":
            assert seen["pongsDuring"] == 0 and seen["slowest"] >= BLOCK * 0.5, seen
            expect(page.locator("#patching")).to_contain_text("not patched")
            expect(page.locator("#meanwhile")).to_contain_text("the whole server was frozen")
        else:
            assert seen["pongsDuring"] >= 2, seen
            expect(page.locator("#patching")).to_contain_text(
                "none needed" if mode == "threading" else "patched first")
            expect(page.locator("#meanwhile")).to_contain_text("the other clients were served")


@pytest.mark.browser
def test_monkey_patch_fixed_page_waits_with_socketio_sleep_and_nobody_freezes(servers, page):
    least = servers["none" if "none" in servers else "early"]
    seen = press(page, least.url + "fixed", "socketio.sleep")
    assert seen["ack"]["seconds"] >= BLOCK and seen["pongsDuring"] >= 2, seen
    expect(page.locator("#meanwhile")).to_contain_text("the other clients were served")


# --- a lock made at import (last: it deadlocks the none and late servers for good) ---

@pytest.fixture(scope="module")
def locks(servers, waits):
    """Two clients at once: "block" {"how": "lock"}; another pings. Per patching: the
    acknowledgements that came within 4 x BLOCK, and the pongs answered from 1.25 x BLOCK
    on (answered_during): by then a served server has answered the first holder, and a
    deadlocked one has stopped for good. (Before, a loaded machine may deliver the second
    holder's request after a ping, which a server not yet deadlocked answers.)"""
    def measure(patch, server):
        holders = [RecordingClient(server.url, (NS,)).connect() for _ in range(2)]
        acks, both = [], threading.Event()

        def acknowledged(ack):
            acks.append((time.monotonic(), ack))
            if len(acks) == 2:
                both.set()

        def two_holders():
            sent = time.monotonic()
            for holder in holders:
                holder.sio.emit("block", {"how": "lock"}, namespace=NS, callback=acknowledged)
            both.wait(4 * BLOCK)
            return sent, sent + 4 * BLOCK

        def stop_if_deadlocked(result):
            if len(acks) < 2:  # Ctrl-C works all the same (the servers fixture checks it)
                server.interrupt()

        pongs, (sent, deadline) = pings_while(server, two_holders, then=stop_if_deadlocked)
        for holder in holders:
            holder.close()
        return {"acks": [at - sent for at, _ in acks],
                "answered": answered_during(pongs, sent + BLOCK, deadline)}

    return each_server(servers, measure)


def test_monkey_patch_a_lock_made_at_import_deadlocks_the_server_unless_patched_first(locks, mode):
    for patch, seen in locks.items():
        if patch == "early":  # a green lock (or, in threading mode, real threads): one after the other
            assert len(seen["acks"]) == 2 and max(seen["acks"]) >= 2 * BLOCK * 0.9, seen
            assert seen["answered"] >= 2, seen
        else:  # a real lock: the second holder stops the one thread; the first never lets go
            assert seen["acks"] == [] and seen["answered"] == 0, (patch, seen)
    assert set(locks) == set(PATCHINGS[mode])
