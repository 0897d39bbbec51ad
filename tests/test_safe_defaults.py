"""Safe defaults, each proven: 127.0.0.1 unless --host says otherwise (and then a
warning), no debugger or reloader, same-origin CORS, a secret key that is never
in the repository.

Two servers per mode, started side by side, do the server checks: lesson 01
through the real launcher, as is and with --host 0.0.0.0, each as a demo (`boom`,
in a temporary lesson folder) that adds two routes which raise, since no lesson
route fails on purpose. (What test_launcher.py covers is not repeated: request
logging off without --debug, a port in use.)
"""
import json
import os
import re
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import psutil
import pytest

from harness import ROOT, LessonServer, RecordingClient, http_request, start_all, wait_until
from lesson_launcher import catalog, cli
from lesson_launcher import serve as launcher_serve

ERROR_DETAIL = "a detail for the server log only"
BOOM_DEMO = f'''"""Lesson 01 plus two routes that raise: what does a visitor see of a server error?"""
import sys

sys.path.insert(0, {str(ROOT / "lessons" / "01_basic")!r})
from app import create_app as lesson_01  # noqa: E402


def create_app(async_mode=None):
    app = lesson_01(async_mode)

    @app.route("/boom")
    def boom():  # an error in a view: Flask's own error handling answers
        raise RuntimeError({ERROR_DETAIL!r})

    inner = app.wsgi_app

    def middleware(environ, start_response):  # an error outside Flask: the server answers
        if environ["PATH_INFO"] == "/middleware-boom":
            raise RuntimeError({ERROR_DETAIL!r})
        return inner(environ, start_response)

    app.wsgi_app = middleware
    return app
'''
NETWORK_WARNING = re.compile(r"^lesson: warning: --host (\S+) makes this lesson reachable "
                             r"from other machines on the network$")


# Another address of this machine, for "reachable from elsewhere": 127.0.0.2 is in
# the loopback range (on Linux every 127.x.y.z is this machine), so no packet leaves
# it, yet a server bound to 127.0.0.1 alone does not answer there.
ANOTHER_ADDRESS = "127.0.0.2"


def listening_on(server) -> set:
    """The addresses the server's process listens on, as the kernel reports them."""
    connections = psutil.Process(server.process.pid).net_connections(kind="inet")
    return {c.laddr.ip for c in connections if c.status == psutil.CONN_LISTEN}


@pytest.fixture(scope="module")
def lesson_root(tmp_path_factory):
    """A lessons/ folder with lesson 01's `boom` demo; LESSON_ROOT points the launcher at it."""
    root = tmp_path_factory.mktemp("safe-defaults")
    (root / "lessons" / "01_basic").mkdir(parents=True)
    (root / "lessons" / "01_basic" / "boom.py").write_text(BOOM_DEMO)
    return root


@pytest.fixture(scope="module")
def servers(mode, lesson_root):
    """(default, open): `lesson run 01 boom`, as is and with --host 0.0.0.0."""
    default = LessonServer("01", "boom", mode=mode)
    open_ = LessonServer("01", "boom", mode=mode, extra_args=["--host", "0.0.0.0"])
    for server in (default, open_):
        server.env["LESSON_ROOT"] = str(lesson_root)
    start_all([default, open_])
    yield default, open_
    for server in (default, open_):
        server.stop()  # (its log holds the tracebacks of the errors provoked here, on purpose)


@pytest.fixture(scope="module")
def server(servers):
    return servers[0]


def page(url, path="/", headers=None):
    """One HTTP GET of ``path`` on the server at ``url``: (status, headers, body)."""
    return http_request(url.rstrip("/") + path, headers=headers)


def at_address(url, address):
    """``url`` at another address of this machine, same port."""
    parts = urlsplit(url)
    return parts._replace(netloc=f"{address}:{parts.port}").geturl()


# --- binding: 127.0.0.1 unless --host says otherwise ------------------------------

def test_by_default_the_server_binds_127_0_0_1_only(server):
    assert server.ready_line["host"] == "127.0.0.1"
    assert page(server.url).status == 200
    assert not [line for line in server.stderr_text.splitlines() if line.startswith("lesson: warning")]
    assert listening_on(server) == {"127.0.0.1"}
    with pytest.raises(ConnectionRefusedError):  # the same port on another address: nobody there
        socket.create_connection((ANOTHER_ADDRESS, int(server.ready_line["port"])), timeout=5).close()


def test_host_0_0_0_0_warns_in_one_line_and_is_reachable_from_the_network(servers):
    open_ = servers[1]
    assert open_.ready_line["host"] == "0.0.0.0"
    warnings = [line for line in open_.stderr_text.splitlines() if line.startswith("lesson: warning")]
    assert len(warnings) == 1 and NETWORK_WARNING.match(warnings[0])[1] == "0.0.0.0", warnings
    assert listening_on(open_) == {"0.0.0.0"}  # every IPv4 address of the machine
    assert page(at_address(open_.url, ANOTHER_ADDRESS)).status == 200  # what the warning says is true


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "0.0.0.0", "::"])
def test_only_a_loopback_bind_goes_without_the_warning(host):
    """The launcher's own decision, on a socket it really binds (no server needed)."""
    try:
        sock = launcher_serve.listen(host, 0)
    except launcher_serve.CannotListen as error:
        pytest.skip(f"cannot bind {host} here: {error}")
    with sock:
        warning = cli.network_warning(host, sock)
    if host in ("0.0.0.0", "::"):
        assert NETWORK_WARNING.match(warning)[1] == host
    else:
        assert warning is None


# --- no debugger, no reloader -------------------------------------------------------

def assert_plain_500(status, body):
    assert status == 500
    for leak in (ERROR_DETAIL, "Traceback", "Werkzeug Debugger", "__debugger__"):
        assert leak not in body, f"the 500 page shows {leak!r}:\n{body[:2000]}"


def test_an_error_in_a_view_gives_a_plain_500_without_the_debugger(server):
    status, _, body = page(server.url, "/boom")
    assert_plain_500(status, body)
    # Flask answered and logged it, which it does only out of debug mode (in debug
    # mode it lets the exception through to the server, for a debugger to catch).
    assert "<title>500 Internal Server Error</title>" in body
    wait_until(lambda: "Exception on /boom [GET]" in server.stderr_text
               and ERROR_DETAIL in server.stderr_text, what="Flask's log of the error")


def test_an_error_outside_flask_sends_the_client_no_traceback(server):
    """eventlet.wsgi.server's own default, debug=True, would send it: serve.py says debug=False."""
    status, _, body = page(server.url, "/middleware-boom")
    assert_plain_500(status, body)  # (the body: Werkzeug's page, gevent's one line, or nothing)


def test_there_is_no_reloader_process(server):
    """A reloader runs the app in a child process that it restarts on every edit."""
    # (psutil reads every process's parent; /proc/PID/task/*/children races with
    # the threads of threading mode, which come and go.)
    assert psutil.Process(server.process.pid).children(recursive=True) == []


# --- same-origin CORS ---------------------------------------------------------------

HANDSHAKE = "/socket.io/?EIO=4&transport=polling"
UPGRADE = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
           "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}


def test_a_page_from_another_origin_is_refused_and_the_same_origin_accepted(server):
    same = server.url.rstrip("/")
    for origin, polling, websocket in [("http://evil.example", 400, 400), (same, 200, 101)]:
        status, headers, body = page(server.url, HANDSHAKE, {"Origin": origin})
        assert status == polling, (origin, body)
        assert page(server.url, HANDSHAKE.replace("polling", "websocket"),
                    {**UPGRADE, "Origin": origin}).status == websocket, origin
        if status == 200:  # an Engine.IO session opened, and no CORS header for others to read it
            assert body.startswith("0{")
            assert headers.get("Access-Control-Allow-Origin") in (None, same)
    # And a client that sends no Origin at all (not a browser) gets in, over both transports.
    for transports in (["websocket"], ["polling"]):
        client = RecordingClient(server.url, transports=transports).connect()
        try:
            assert client.call("my ping") == "pong"
        finally:
            client.close()


# --- the secret key: random per process, from the environment, never committed ---------

KEYS_OF_EVERY_DEMO = """
import json, os, sys
from lesson_launcher import catalog
from lesson_launcher.cli import load_app
keys = {f"{lesson.name}/{demo}": load_app(file, "threading", False).config["SECRET_KEY"]
        for lesson in catalog.all_lessons() for demo, file in lesson.demos().items()}
print(json.dumps(keys), flush=True)
os._exit(0)  # cross_origin serves its other sites from threads: do not wait for them
"""


def secret_keys(**environment) -> dict:
    env = {name: value for name, value in os.environ.items() if name != "FLASK_SECRET_KEY"}
    # cross_origin serves two more sites, on free ports here; lesson 05 alone needs no Redis.
    env.update(FLASK_FRONTEND_PORT="0", FLASK_STRANGER_PORT="0", **environment)
    env.pop("FLASK_MESSAGE_QUEUE", None)
    result = subprocess.run([sys.executable, "-c", KEYS_OF_EVERY_DEMO], capture_output=True,
                            text=True, timeout=60, env=env, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


INSTRUCTORS_KEY = "set-by-the-instructor"


def test_every_demo_gets_a_random_key_per_process_unless_flask_secret_key_says():
    with ThreadPoolExecutor() as pool:  # three processes side by side
        first, second, from_environment = pool.map(lambda env: secret_keys(**env), [
            {}, {}, {"FLASK_SECRET_KEY": INSTRUCTORS_KEY}])

    demos = {f"{lesson.name}/{demo}" for lesson in catalog.all_lessons() for demo in lesson.demos()}
    assert set(first) == set(second) == set(from_environment) == demos
    for demo in demos:
        assert re.fullmatch(r"[0-9a-f]{32}", first[demo]), (demo, first[demo])
        assert first[demo] != second[demo], demo
        assert from_environment[demo] == INSTRUCTORS_KEY, demo


# A SECRET_KEY (or secret_key) given a string literal: in code, settings, or .env files.
LITERAL_KEY = re.compile(r"""(?ix) secret_key ['"\]]{0,2} \s* [:=] \s* [rbu]? ['"]
                             | ^ \s* (export \s+)? \w*secret_key \s* = \s* [^\s'"$(]""", re.MULTILINE)


@pytest.mark.parametrize("line", [
    'app.config["SECRET' '_KEY"] = "dev"', "SECRET" "_KEY = 'change me'", 'app.secret' '_key = b"x"',
    '{"SECRET' '_KEY": "x"}', 'app.config.update(SECRET' '_KEY="x")', "FLASK_SECRET" "_KEY=abc123",
    "export FLASK_SECRET" "_KEY=abc123"])
def test_the_committed_key_search_finds_a_literal_key(line):
    assert LITERAL_KEY.search(line)


def test_no_tracked_file_assigns_a_literal_secret_key():
    try:
        tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                                 timeout=30, check=True).stdout.decode().split("\0")
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    found = []
    for name in filter(None, tracked):
        path = ROOT / name
        if path.is_file():
            for number, line in enumerate(path.read_bytes().decode(errors="replace").splitlines(), 1):
                if LITERAL_KEY.search(line):
                    found.append(f"{name}:{number}: {line.strip()}")
    assert found == [], "a secret key is committed; read it from FLASK_SECRET_KEY instead"
