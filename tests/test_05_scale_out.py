"""Lesson 05_scale_out: two server processes and a worker joined by a real Redis, in every mode.

A module fixture starts Debian's redis-server on a free port, with its own
temporary dir and no persistence; two lesson servers (A and B) use it as their
message queue, a third (C) runs without one. Clients connect to one server each
over real sockets, so whatever a client of B receives from a client of A went
through Redis. The last test stops Redis in the middle and starts it again.

"Never receives" across servers is proven by order: Redis delivers one
publisher's messages in order, so once a later message from the same server has
arrived, an earlier one that is missing is lost, not late.
"""
import importlib.util
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
from playwright.sync_api import expect

from harness import EVENT_TIMEOUT, ROOT, STOP_TIMEOUT, free_port, http_request, run_lesson_command

NS = "/test_conn"
CHANNEL = "flask-socketio"  # Flask-SocketIO's default channel (SocketIO.init_app)
WORKER = ROOT / "lessons" / "05_scale_out" / "worker.py"
RESUBSCRIBE_TIMEOUT = 10  # the servers retry after 1 s, then 2, 4... (RedisManager)


# --- a real Redis, and the servers around it -------------------------------------

class RedisServer:
    """redis-server on 127.0.0.1, one port for its whole life, nothing saved to disk."""

    def __init__(self, directory):
        self.directory = directory
        self.port = None
        self.process = None

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, attempts=3):
        """Start on the same port as before, or on a free one the first time."""
        for _ in range(attempts if self.port is None else 1):
            port = self.port or free_port()
            if self._start_on(port):
                self.port = port
                return self
        raise AssertionError(f"redis-server did not start:\n{self.log()}")

    def _start_on(self, port):
        redis_server = shutil.which("redis-server")
        if not redis_server:
            pytest.fail("lesson 05's tests need a real Redis: `sudo apt-get install redis-server` "
                        "(.ci/run installs it when absent)", pytrace=False)
        self.process = subprocess.Popen(
            [redis_server, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(self.directory),
             "--save", "", "--appendonly", "no", "--logfile", "redis.log"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + EVENT_TIMEOUT
        while time.monotonic() < deadline:
            try:
                with redis.Redis(port=port, retry=None, socket_connect_timeout=1) as client:
                    return client.ping()
            except redis.ConnectionError:
                if self.process.poll() is not None:  # e.g. the port was taken meanwhile
                    return False
                time.sleep(0.01)  # polling a condition, bounded by the deadline
        self.process.kill()
        return False

    def stop(self):
        self.process.terminate()
        self.process.wait(STOP_TIMEOUT)

    def log(self):
        log = self.directory / "redis.log"
        return log.read_text() if log.exists() else "(no log)"

    def subscribers(self):
        """How many servers listen on the channel now (PUBSUB NUMSUB)."""
        with redis.Redis(port=self.port, retry=None) as client:
            [(_, count)] = client.pubsub_numsub(CHANNEL)
        return count

    def wait_for_subscribers(self, count, timeout=EVENT_TIMEOUT):
        """A server subscribes when its first client connects, in a background task
        (socketio.Server._handle_eio_connect -> manager.initialize): wait for it."""
        deadline = time.monotonic() + timeout
        while self.subscribers() < count:
            assert time.monotonic() < deadline, \
                f"{self.subscribers()} of {count} servers subscribed to Redis after {timeout}s"
            time.sleep(0.01)


@pytest.fixture(scope="module")
def redis_server(mode, tmp_path_factory):
    """One Redis per module and mode, stopped after the servers (fixtures end in reverse)."""
    server = RedisServer(tmp_path_factory.mktemp(f"redis-{mode}")).start()
    yield server
    if server.process.poll() is None:
        server.stop()


@pytest.fixture(scope="module")
def servers(serve, redis_server):
    """(A, B, C): A and B share the Redis queue, C has none. Started at the same time."""
    settings = [{"MESSAGE_QUEUE": redis_server.url}] * 2 + [{}]
    with ThreadPoolExecutor(len(settings)) as pool:
        return tuple(pool.map(lambda setting: serve("05", **setting), settings))


@pytest.fixture
def joined(servers, redis_server, connect):
    """joined(server, ...) -> a client of /test_conn on that server, whose server has
    subscribed to Redis, so that what the others publish can reach it."""
    queued = set()

    def open_client(server, namespaces=(NS,)):
        client = connect(server, namespaces)
        if server in servers[:2]:
            queued.add(server)
            redis_server.wait_for_subscribers(len(queued))
        return client

    return open_client


def unique(label):
    return f"{label}-{uuid.uuid4().hex[:8]}"


def broadcast(client, label):
    data = unique(label)
    assert client.call("my event broadcast", {"data": data}) == {"ok": True}
    return data


def broadcasts(client):
    """The data of every broadcast the client received, in order."""
    return [payload["data"] for payload in client.payloads("my ev broadcast")]


def host(server):
    return server.url.split("/")[2]


def run_worker(url, *args):
    return subprocess.run([sys.executable, "-X", "importtime", str(WORKER), *args],
                          env={"PATH": "/usr/bin:/bin", "FLASK_MESSAGE_QUEUE": url},
                          capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)


# --- across servers --------------------------------------------------------------

def test_a_server_subscribes_to_redis_when_its_first_client_connects_not_at_startup(
        servers, redis_server, connect):
    a, b, _ = servers  # first in the module: no client has connected to them yet
    assert redis_server.subscribers() == 0
    connect(a)
    redis_server.wait_for_subscribers(1)
    connect(b)
    redis_server.wait_for_subscribers(2)


def test_a_broadcast_from_a_client_of_server_a_reaches_every_client_of_a_and_b_once(
        servers, joined):
    a, b, _ = servers
    sender, peer_a = joined(a), joined(a)
    peers_b = [joined(b), joined(b)]
    outsider = joined(b, namespaces=("/",))

    x = broadcast(sender, "across")

    expected = [{"data": x, "via": host(a)}]
    assert sender.payloads("my ev broadcast") == expected  # local clients first, then Redis
    for client in (peer_a, *peers_b):
        client.wait_for("my ev broadcast")
        client.sync()
        # Once, not twice: A hears its own publication back from Redis and drops it.
        assert client.payloads("my ev broadcast") == expected
    outsider.sync(namespace="/")
    assert outsider.events() == outsider.events("connect")  # nothing but its own connect


def test_the_workers_mess_reaches_the_clients_of_both_servers_and_no_client_of_another_namespace(
        servers, joined, redis_server):
    a, b, alone = servers
    on_a, on_b, on_alone = joined(a), joined(b), joined(alone)
    both_namespaces = joined(b, namespaces=("/", NS))
    outsiders = [joined(a, namespaces=("/",)), joined(b, namespaces=("/",))]

    worker = run_worker(redis_server.url, "--count", "3", "--interval", "0")

    assert worker.returncode == 0, worker.stderr
    assert re.fullmatch(r"worker: sent 3 mess in \d+\.\d\d s", worker.stdout.splitlines()[-1])
    for client in (on_a, on_b, both_namespaces):
        mess = [record.data for record in client.wait_for("mess", 3)]
        assert [m["seq"] for m in mess] == [1, 2, 3]
        assert all(1 <= m["data"] <= 100 for m in mess)
    mess_b = on_b.payloads("mess")
    assert on_a.payloads("mess") == mess_b == both_namespaces.payloads("mess")  # one message each
    for client in (*outsiders, both_namespaces):
        client.sync(namespace="/")
        assert client.events(namespace="/") == client.events("connect", namespace="/")
    on_alone.sync()
    assert on_alone.events("mess") == []  # a server without the queue never hears the worker
    # A plain Python process: python -X importtime lists every module it imported.
    imported = {line.split("|")[-1].strip().split(".")[0]
                for line in worker.stderr.splitlines() if line.startswith("import time:")}
    assert {"flask_socketio", "redis"} <= imported
    assert not imported & {"eventlet", "gevent"}


def test_without_a_message_queue_a_server_is_alone(servers, joined):
    a, b, alone = servers
    on_alone, also_on_alone, on_a, on_b = joined(alone), joined(alone), joined(a), joined(b)

    from_alone = broadcast(on_alone, "alone")
    from_a = broadcast(on_a, "from A")
    on_b.wait_for("my ev broadcast")
    also_on_alone.wait_for("my ev broadcast")

    also_on_alone.sync()
    assert broadcasts(also_on_alone) == [from_alone]  # its own clients only...
    on_b.sync()
    assert broadcasts(on_b) == [from_a]  # ...and nothing from it reaches the others
    page = http_request(alone.url).body
    assert '<dd id="queue">none: a single server, alone</dd>' in page
    assert "http://" not in page and "https://" not in page  # the client is shipped, no CDN


def test_a_malformed_broadcast_gets_a_clear_acknowledgement_and_reaches_nobody(servers, joined):
    a, b, _ = servers
    sender, peer = joined(a), joined(b)

    ack = sender.call("my event broadcast", "just a string")

    assert ack == {"ok": False,
                   "error": '"my event broadcast" expects an object like {"data": ...}'}
    # ...and the same message in an `error` event, to the sender alone, as in lesson 01.
    assert sender.wait_for("error")[0].data == {"message": ack["error"]}
    x = broadcast(sender, "after")
    peer.wait_for("my ev broadcast")
    peer.sync()
    assert broadcasts(peer) == [x] and broadcasts(sender) == [x]
    assert peer.events("error") == [] and len(sender.events("error")) == 1


# --- sticky sessions --------------------------------------------------------------

def wait_for_log(server, text, timeout=EVENT_TIMEOUT):
    """Wait (bounded) until the server has written ``text`` to its stderr."""
    deadline = time.monotonic() + timeout
    while text not in server.stderr_text:
        assert time.monotonic() < deadline, f"{text!r} not in the log:\n{server.stderr_text}"
        time.sleep(0.01)


def test_a_long_polling_request_that_reaches_the_other_server_is_refused_invalid_session(servers):
    a, b, _ = servers
    polling = "socket.io/?EIO=4&transport=polling"
    status, _, handshake = http_request(a.url + polling)  # what a client's first request gets from A
    assert status == 200 and handshake.startswith("0{")
    sid = json.loads(handshake[1:])["sid"]

    # The client's next request, sent by a load balancer without sticky sessions to B:
    on_b = http_request(f"{b.url}{polling}&sid={sid}")
    assert (on_b.status, on_b.body) == (400, f'"Invalid session {sid}"')
    wait_for_log(b, f"Invalid session {sid}")

    close_on_a = http_request(f"{a.url}{polling}&sid={sid}", data=b"1")  # "1": the close packet
    assert (close_on_a.status, close_on_a.body) == (200, "OK")


# --- a bad queue URL, at startup --------------------------------------------------

def test_an_unreachable_message_queue_stops_the_server_at_startup_with_one_line(mode):
    with socket.socket() as taken:  # bound, not listening: refuses, and nobody else can listen
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        url = f"redis://127.0.0.1:{port}/0"
        result = run_lesson_command("run", "05", "--mode", mode, "--port", "0",
                                    env={**os.environ, "FLASK_MESSAGE_QUEUE": url})

    assert result.returncode == 2 and result.stdout == ""
    # eventlet mode adds the launcher's one-line deprecation note; the lesson says one line.
    lines = [line for line in result.stderr.splitlines() if not line.startswith("lesson: note:")]
    assert len(lines) == 1, result.stderr
    assert re.fullmatch(rf"lesson: cannot reach the message queue {url}: Error 111 connecting "
                        rf"to 127\.0\.0\.1:{port}\. .+", lines[0]), lines[0]


@pytest.fixture(scope="module")
def worker_main():
    """worker.main, imported from its file as `python worker.py` would run it."""
    sys.path.insert(0, str(WORKER.parent))  # where it finds queue_check, as a script does
    try:
        spec = importlib.util.spec_from_file_location("lesson_05_worker", WORKER)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(WORKER.parent))
    return module.main


@pytest.mark.parametrize("args, env_url, message", [
    (["--count", "0"], "redis://127.0.0.1:1/0",
     "worker: argument --count: expected a whole number of 1 or more, not '0'; "
     "run `worker.py --help` for usage"),
    (["--interval", "soon"], "redis://127.0.0.1:1/0",
     "worker: argument --interval: expected a number of seconds, 0 or more, not 'soon'; "
     "run `worker.py --help` for usage"),
    ([], "", "worker: set FLASK_MESSAGE_QUEUE, e.g. FLASK_MESSAGE_QUEUE=redis://127.0.0.1:6379/0"),
    ([], "redis://:secret@127.0.0.1:1/0", "worker: cannot reach the message queue "
     "redis://:***@127.0.0.1:1/0: Error 111 connecting to 127.0.0.1:1. Connection refused."),
    ([], "amqp://guest@127.0.0.1//", "worker: cannot reach the message queue "
     "amqp://guest@127.0.0.1//: this lesson expects a redis:// or rediss:// URL, "
     "e.g. redis://127.0.0.1:6379/0"),
], ids=["count 0", "interval not a number", "no queue", "queue unreachable", "not redis"])
def test_the_worker_answers_a_bad_command_line_or_queue_with_one_line_and_status_2(
        worker_main, monkeypatch, capsys, args, env_url, message):
    # In this process (a worker process costs 0.35 s of imports): SystemExit(2) and
    # what it printed are what `python worker.py` would exit with and print.
    monkeypatch.setenv("FLASK_MESSAGE_QUEUE", env_url)
    with pytest.raises(SystemExit) as exited:
        worker_main(args)
    assert (exited.value.code, *capsys.readouterr()) == (2, "", message + "\n")


# --- the page ---------------------------------------------------------------------

@pytest.fixture
def open_tab(browser):
    """open_tab(url) -> a page in a window of its own (one window renders only its
    front tab); a JavaScript error in any of them fails the test."""
    contexts, errors = [], []

    def open_page(url):
        contexts.append(browser.new_context())
        tab = contexts[-1].new_page()
        tab.on("pageerror", lambda error: errors.append(str(error)))
        tab.goto(url)
        expect(tab.locator("#status")).to_have_text("yes")
        return tab

    yield open_page
    for context in contexts:
        context.close()
    assert not errors, f"the page raised JavaScript errors: {errors}"


@pytest.mark.browser
def test_two_tabs_on_two_servers_show_each_others_broadcast_and_the_workers_mess(
        servers, redis_server, open_tab, mode):
    a, b, _ = servers
    tab_a, tab_b = open_tab(a.url), open_tab(b.url)
    redis_server.wait_for_subscribers(2)
    for tab, server in ((tab_a, a), (tab_b, b)):
        expect(tab.locator("#server")).to_have_text(host(server))
        expect(tab.locator("#async-mode")).to_have_text(mode)
        expect(tab.locator("#queue")).to_have_text(redis_server.url)
        expect(tab.locator("#transport")).to_have_text("websocket (upgraded from polling)")

    x = unique("from tab A")
    tab_a.fill("#data", x)
    tab_a.click("#broadcast")
    worker = run_worker(redis_server.url, "--count", "2", "--interval", "0")

    assert worker.returncode == 0, worker.stderr
    for tab in (tab_a, tab_b):
        expect(tab.locator('#log li[data-event="my ev broadcast"]')).to_have_text(
            re.compile(f'"data":"{x}","via":"{re.escape(host(a))}"'))
        expect(tab.locator('#log li[data-event="mess"]')).to_have_count(2)


# --- Redis stopped and started again (last: it changes the module's Redis) --------

def test_with_redis_stopped_each_server_serves_its_own_clients_logs_it_and_resumes_after(
        servers, redis_server, joined):
    a, b, _ = servers
    a1, a2, b1, b2 = joined(a), joined(a), joined(b), joined(b)

    redis_server.stop()
    down_a, down_b = broadcast(a1, "A, Redis down"), broadcast(b1, "B, Redis down")
    redis_server.start()  # same port
    gap = broadcast(a1, "A, Redis back, nobody subscribed yet")
    # Both servers are still in the 1 s sleep of RedisManager._redis_listen_with_retries,
    # so Redis had no subscriber to give `gap` to: publish returns 0 and it is gone.
    assert redis_server.subscribers() == 0, "a server subscribed again within 1 s of the stop?"

    # Each server went on serving its own clients...
    a2.wait_for("my ev broadcast", 2)
    b2.wait_for("my ev broadcast", 1)
    # ...and said so in its log.
    for server in (a, b):
        wait_for_log(server, "Cannot receive from redis... retrying in 1 secs")
        wait_for_log(server, "Cannot publish to redis... retrying")
        wait_for_log(server, "Cannot publish to redis... giving up")

    # Cross-server delivery resumes once both servers have subscribed again. What
    # was published meanwhile stays lost: a later message from the same server
    # arrives, the earlier ones do not.
    redis_server.wait_for_subscribers(2, timeout=RESUBSCRIBE_TIMEOUT)
    back_a = broadcast(a1, "A, Redis back")
    for client in (b1, b2):
        client.wait_for("my ev broadcast", 2)
    back_b = broadcast(b1, "B, Redis back")
    for client in (a1, a2):
        client.wait_for("my ev broadcast", 4)
        assert broadcasts(client) == [down_a, gap, back_a, back_b]
    b2.wait_for("my ev broadcast", 3)
    for client in (b1, b2):
        assert broadcasts(client) == [down_b, back_a, back_b]
