"""Lesson 02_background: one background task pushes `mess` to every client, in every async mode."""
import re
import threading

import pytest
from playwright.sync_api import expect

from harness import EVENT_TIMEOUT, RecordingClient

INTERVAL = 0.1  # FLASK_MESS_INTERVAL for these tests; the lesson's default is 5 s


@pytest.fixture(scope="module")
def server(serve):
    return serve("02", MESS_INTERVAL=INTERVAL)


def connect_at_once(server, how_many):
    """Connect ``how_many`` clients from as many threads released at the same moment."""
    clients = [RecordingClient(server.url) for _ in range(how_many)]
    start = threading.Barrier(how_many)
    errors = []

    def go(client):
        start.wait(EVENT_TIMEOUT)
        try:
            client.connect()
        except Exception as error:  # reported below, in the test's thread
            errors.append(error)

    threads = [threading.Thread(target=go, args=(c,)) for c in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(EVENT_TIMEOUT * 2)
    assert not errors, errors
    return clients


def seqs(client):
    return [r.data["seq"] for r in client.events("mess")]


def assert_one_task(clients, count=5):
    """What one task looks like from the clients: every client sees a strictly
    consecutive run of seq numbers, a value of 1..100 for each, the same value
    for the same seq everywhere, and one push per interval."""
    values = {}
    for client in clients:
        received = client.wait_for("mess", count, timeout=count * INTERVAL + EVENT_TIMEOUT)
        numbers = [r.data["seq"] for r in received]
        assert numbers == list(range(numbers[0], numbers[0] + len(numbers))), numbers
        for r in received:
            assert set(r.data) == {"data", "seq"} and 1 <= r.data["data"] <= 100
            assert values.setdefault(r.data["seq"], r.data["data"]) == r.data["data"]
        # The mean interval: a busy machine may hand a client two pushes at once,
        # but not change how many came in the time.
        arrivals = [r.at for r in received]
        mean_gap = (arrivals[-1] - arrivals[0]) / (len(arrivals) - 1)
        assert 0.5 * INTERVAL < mean_gap < 2 * INTERVAL, arrivals


@pytest.mark.parametrize("how_many", [2, 10])
def test_clients_connecting_at_the_same_moment_share_one_task(server, how_many, request):
    clients = connect_at_once(server, how_many)
    request.addfinalizer(lambda: [c.close() for c in clients])
    assert_one_task(clients)


def test_a_late_client_joins_the_same_sequence(server, connect):
    early = connect(server)
    early.wait_for("mess", 3)

    late = connect(server)
    late.wait_for("mess", 3)

    assert seqs(late)[0] > seqs(early)[0]  # it did not start a sequence of its own
    assert_one_task([early, late], count=3)


def test_clients_that_leave_do_not_stop_the_push_for_the_others(server, connect):
    stays, leaving = connect(server), connect(server)
    leaving.wait_for("mess", 2)
    stays.wait_for("mess", 2)

    leaving.close()
    after = len(stays.events("mess"))

    received = stays.wait_for("mess", after + 4)
    assert_one_task([stays], count=after + 4)
    assert len(received) >= after + 4


def test_without_the_lock_two_clients_at_once_start_two_tasks(serve):
    """lessons/02_background/without_lock.py: the race the lock prevents."""
    racy = serve("02", "without_lock", MESS_INTERVAL=INTERVAL, RACE_WINDOW=0.3)
    clients = connect_at_once(racy, 2)
    try:
        # Two tasks, two counters: each seq number arrives twice.
        received = clients[0].wait_for("mess", 4)
        numbers = [r.data["seq"] for r in received]
        assert len(set(numbers)) < len(numbers), numbers
    finally:
        for client in clients:
            client.close()


def test_the_default_interval_is_the_2019_posts_five_seconds(monkeypatch):
    """A quick in-process check of the configuration (no server needed)."""
    import importlib.util
    from harness import ROOT

    monkeypatch.delenv("FLASK_MESS_INTERVAL", raising=False)
    spec = importlib.util.spec_from_file_location("lesson02_app", ROOT / "lessons/02_background/app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.create_app(async_mode="threading").config["MESS_INTERVAL"] == 5
    monkeypatch.setenv("FLASK_MESS_INTERVAL", "0.2")
    assert module.create_app(async_mode="threading").config["MESS_INTERVAL"] == 0.2


@pytest.mark.browser
def test_the_chart_gets_points(server, page, mode):
    page.goto(server.url)

    expect(page.locator("#async-mode")).to_have_text(mode)
    expect(page.locator("#transport")).to_have_text("websocket (upgraded from polling)")
    expect(page.locator("#points")).to_have_text(re.compile(r"^([3-9]|\d\d+)$"))
    expect(page.locator("#last")).to_have_text(re.compile(r"^\d+ \(seq \d+\)$"))
    # Something was drawn in the chart's colour.
    blue_pixels = page.evaluate("""() => {
        const c = document.getElementById('chart');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 0; i < d.length; i += 4) if (d[i] === 0x15 && d[i+1] === 0x65 && d[i+2] === 0xc0) n++;
        return n;
    }""")
    assert blue_pixels > 50
