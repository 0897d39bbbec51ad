"""Lesson 03, demo 4: busy_handler (lessons/03_pitfalls/busy_handler.py).
Proves the README's section "4. `busy_handler`: a handler that computes without
yielding": every other client freezes in eventlet and gevent but not in
threading, and the fix, socketio.sleep(0), keeps serving everyone (in gevent,
giving the others a turn only about every 50 pieces).
"""
import time

import pytest
from playwright.sync_api import expect

from harness import EVENT_TIMEOUT, RecordingClient, wait_until
from scenes import FIXED, NS, Pinger, get_json, handled, timeline_of

BUSY = 0.6          # FLASK_BUSY_SECONDS of busy_handler
TICK = 0.05         # FLASK_PUSH_INTERVAL of busy_handler


@pytest.fixture(scope="module")
def busy(serve):
    return serve("03", "busy_handler", BUSY_SECONDS=BUSY, PUSH_INTERVAL=TICK)


def watch_while_working(server, namespace, work):
    """A python-socketio client pings non-stop (scenes.Pinger) and records the ticks
    while ``work()`` (done by another client) runs; returns what it saw, with work()'s
    acknowledgement."""
    watcher = RecordingClient(server.url, (namespace,)).connect()
    try:
        watcher.wait_for("tick", 2, namespace=namespace)
        # non-stop: the gevent test compares the pongs with the pieces of work
        with Pinger(watcher, namespace, timeout=BUSY + EVENT_TIMEOUT, pace=0) as pinger:
            wait_until(lambda: pinger.pongs, what="a pong before the work")  # pinging is under way
            started = time.monotonic()
            try:
                ack = work()
            finally:
                answered = time.monotonic()
        pongs = [(sent, back) for sent, back in pinger.pongs if back >= started]  # (one was under way)
        # One more tick, so that the gap the work made (if any) is over.
        watcher.wait_for("tick", len(watcher.events("tick", namespace)) + 1, namespace=namespace)
    finally:
        watcher.close()
    ticks = [t for t in watcher.events("tick", namespace) if t.at >= started - TICK]
    gaps = [b.at - a.at for a, b in zip(ticks, ticks[1:])]
    return {
        "ack": ack,
        "took": answered - started,
        # by the server's clock: the ticks it sent while the work ran
        "ticks_during_work": sum(ack["started_at"] < t.data["at"] < ack["ended_at"] for t in ticks),
        "longest_silence": max(gaps),
        "slowest_pong": max(back - sent for sent, back in pongs),
        "pongs_before_the_work_was_done": sum(back < answered for sent, back in pongs),
        # pongs that came back while the server worked (its clock and ours are both
        # the machine's monotonic clock)
        "pongs_during_work": sum(ack["started_at"] <= back <= ack["ended_at"]
                                 for sent, back in pongs),
    }


@pytest.fixture(scope="module")
def busy_page(busy, tabs):
    """The page presses "work" on /test_conn while a python-socketio client watches:
    what each of them saw; then the fixed page presses "work" on /test_conn_fixed."""
    page = tabs.open(busy.url)
    wait_until(lambda: len(handled(timeline_of(page), "tick")) >= 2, what="ticks on the page")

    def press_work():
        page.click("#work")
        expect(page.locator("#work-status")).to_contain_text("done:", timeout=(BUSY + EVENT_TIMEOUT) * 1000)
        [ack] = [e["data"] for e in handled(timeline_of(page), "work")]
        return ack

    python = watch_while_working(busy, NS, press_work)
    # One more tick on the page too, so that its longest silence is complete.
    ticks = len(handled(timeline_of(page), "tick"))
    wait_until(lambda: len(handled(timeline_of(page), "tick")) > ticks, what="a tick after the work")
    seen = {"page": read_work(page)}

    # Then the fixed page (its namespace yields while it works), from a fresh tab.
    fixed = tabs.open(busy.url + "fixed")
    wait_until(lambda: len(handled(timeline_of(fixed), "tick")) >= 2, what="ticks on the fixed page")
    fixed.click("#work")
    expect(fixed.locator("#work-status")).to_contain_text("done:", timeout=(BUSY + EVENT_TIMEOUT) * 1000)
    seen["fixed_page"] = read_work(fixed)
    tabs.close_all()
    return {"python": python, **seen}


def read_work(page):
    """What a busy_handler page says once its "work" is acknowledged, with the ack's rounds."""
    [ack] = [e["data"] for e in handled(timeline_of(page), "work")]
    return {"rounds": ack["rounds"], **page.evaluate(
        "({during: window.ticksDuringWork, longest: window.longestSilence, "
        "saidSilent: window.saidSilent === true, "
        "explain: document.getElementById('explain').textContent})")}


def turns_at_least(mode, pieces):
    """How many turns (ticks sent, pings answered) the others get at least while the fixed
    work runs. eventlet and threading: some, whatever the load. gevent: its hub looks at
    the sockets and timers once every 50 pieces (README), so the turns follow the pieces
    done, about 744 in 0.6 s on an idle machine (14-16 turns), but under a suite's load 49
    were seen (a starved server: 12 ms a piece), and then no turn at all is gevent's right
    answer. Half of pieces / 50, rounded down."""
    return pieces // 100 if mode == "gevent" else 1


def test_busy_handler_freezes_every_other_client_in_eventlet_and_gevent_but_not_in_threading(
        busy_page, mode):
    seen = busy_page["python"]

    assert seen["ack"]["seconds"] >= BUSY and seen["took"] >= BUSY
    if mode in ("eventlet", "gevent"):
        assert seen["ticks_during_work"] == 0, seen
        assert seen["longest_silence"] >= BUSY * 0.75, seen
        assert seen["slowest_pong"] >= BUSY * 0.5, seen
    else:
        assert seen["ticks_during_work"] >= 1, seen
        assert seen["pongs_before_the_work_was_done"] >= 3, seen


@pytest.mark.browser
def test_busy_handler_page_goes_silent_while_it_works_in_eventlet_and_gevent_only(busy_page, mode):
    seen = busy_page["page"]

    if mode in ("eventlet", "gevent"):
        assert seen["during"] == 0, seen
        assert seen["longest"] >= BUSY * 0.75, seen
        assert seen["saidSilent"], seen  # "silent for 0.5 s: no tick, no pong"
        assert "the server sent no tick at all" in seen["explain"], seen
    else:
        assert seen["during"] >= 1, seen
        assert "the other clients were served meanwhile" in seen["explain"], seen


@pytest.mark.browser
def test_busy_handler_fixed_page_gets_ticks_while_its_work_runs_in_every_mode(busy_page, mode):
    seen = busy_page["fixed_page"]

    assert seen["during"] >= turns_at_least(mode, seen["rounds"]), seen
    if seen["during"]:
        assert "the other clients were served meanwhile" in seen["explain"], seen
    else:  # gevent, starved of CPU (turns_at_least): the page says what happened
        assert "the server sent no tick at all" in seen["explain"], seen


@pytest.fixture(scope="module")
def fixed_work_seen(busy):
    """One client asks /test_conn_fixed for "work" while another pings and watches."""
    worker = RecordingClient(busy.url, (FIXED,)).connect()
    try:
        return watch_while_working(busy, FIXED, lambda: worker.call("work", namespace=FIXED,
                                                                     timeout=BUSY + EVENT_TIMEOUT))
    finally:
        worker.close()


def test_busy_handler_fixed_with_socketio_sleep_0_keeps_serving_everyone_in_every_mode(
        fixed_work_seen, mode):
    seen = fixed_work_seen
    assert seen["ack"]["seconds"] >= BUSY and seen["took"] >= BUSY
    assert seen["ticks_during_work"] >= turns_at_least(mode, seen["ack"]["rounds"]), seen
    assert seen["pongs_during_work"] >= turns_at_least(mode, seen["ack"]["rounds"]), seen


def test_busy_handler_fixed_in_gevent_the_others_get_a_turn_only_about_every_50_pieces(
        fixed_work_seen, mode):
    # Each "my ping" needs the server to read its socket; count those answered
    # while the work ran, against the pieces of work (one socketio.sleep(0) each).
    seen = fixed_work_seen
    pieces, pongs = seen["ack"]["rounds"], seen["pongs_during_work"]
    if mode == "gevent":
        assert pongs <= pieces / 25 + 2, seen  # about pieces / 50: 16 for 744 here
    else:
        # About pieces / 3 on an idle machine (211 for 639 in eventlet): a ping waits a
        # piece or two (eventlet: its hub polls at every sleep(0)), or a few handovers of
        # the GIL (threading: the work thread is made to let go every 5 ms). A loaded
        # machine slows both the pieces and the turns (CI, threading: 13 pongs for 256
        # pieces, 12 for 326), but no turn waits for 50 pieces: at least one pong per 40
        # pieces. gevent falls short of that: 15-16 for 735-744 pieces, 6 for 277 loaded.
        assert pongs >= pieces / 40 + 1, seen


def test_busy_handler_the_ticker_stops_when_the_last_client_leaves(busy, connect):
    client = connect(busy)
    client.wait_for("tick")
    client.close()
    wait_until(lambda: not get_json(busy, "/loops")["ticker"]["running"], what="the ticker to stop")


@pytest.mark.browser
def test_busy_handler_page_left_open_shows_its_newest_100_rows_and_keeps_them_all(busy, page):
    # Every demo's page (templates/base.html) keeps its timeline table short; this one
    # gets a tick every 50 ms. 150 more rows, then the table holds the newest 100 of all.
    page.goto(busy.url, wait_until="commit")
    wait_until(lambda: handled(timeline_of(page), "tick"), what="a tick on the page")
    page.evaluate("for (let i = 0; i < 150; i++) record('status', 'a row of the test', `row ${i}`)")
    shown = page.eval_on_selector_all("#timeline tr", "rows => rows.map((row) => row.dataset.event)")
    kept = [entry["event"] for entry in timeline_of(page)]

    assert len(shown) == 100, shown
    assert shown.index("row 149") < shown.index("row 148"), shown  # the newest on top
    assert "row 0" not in shown and "row 0" in kept and len(kept) >= 151, kept
    assert "The newest 100 rows are shown" in page.text_content("body")
