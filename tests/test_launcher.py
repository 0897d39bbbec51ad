"""The `lesson` command's contract: list, run, the ready line, Ctrl-C, and
one clear line with exit status 2 for every wrong command line."""
import os
import re
import select
import signal
import socket
import subprocess
import sys
from types import SimpleNamespace

import pytest

from harness import (ROOT, START_TIMEOUT, STOP_TIMEOUT, LessonServer, RecordingClient,
                     lesson_command, run_lesson_command, wait_until)

LESSON_FOLDERS = sorted(p.name for p in (ROOT / "lessons").iterdir() if re.match(r"\d\d_", p.name))


def readme_heading(folder):
    first = (ROOT / "lessons" / folder / "README.md").read_text(encoding="utf-8").splitlines()[0]
    return first.removeprefix("# ").split(": ", 1)[1]


# --- lesson list ----------------------------------------------------------------

def test_list_prints_each_lesson_folder_with_its_one_line_description():
    result = run_lesson_command("list", fork=False)  # the installed `lesson` script, started anew

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines] == LESSON_FOLDERS
    for line, folder in zip(lines, LESSON_FOLDERS):
        assert line.split(None, 1)[1] == readme_heading(folder)


@pytest.mark.parametrize("key", ["01", "01_basic", "basic"])
def test_a_lesson_is_named_by_number_folder_or_topic(key):
    result = run_lesson_command("list", key)

    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[:1] == ["app"]
    assert "Send an event" in result.stdout


def test_the_wrapper_reuses_the_installed_venv_without_reinstalling():
    """Run ./lesson through the system Python: the lock has not changed, so it
    goes straight to the `lesson` command (nothing printed on stderr)."""
    result = subprocess.run([sys.executable, str(ROOT / "lesson"), "list"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert result.stderr == ""
    assert result.stdout == run_lesson_command("list").stdout


# --- lesson run: ready line, modes, Ctrl-C -----------------------------------------

@pytest.fixture(scope="module")
def served_then_stopped(mode):
    """A lesson 01 server in this mode, started as every test server is (stdin from
    /dev/null: no terminal), used by a WebSocket client and a long-polling client,
    then stopped with Ctrl-C while both are still connected. The tests below read
    what happened; one server per mode serves them all. A real `lesson` process, not
    one forked from the harness's fork server: this is the launcher's contract."""
    seen = SimpleNamespace(server=LessonServer("01", mode=mode, fork=False).start())
    try:
        # Connecting at once, with no retry, works: the ready line was not early.
        websocket = RecordingClient(seen.server.url).connect()
        polling = RecordingClient(seen.server.url, transports=["polling"]).connect()
        seen.transport = websocket.sio.transport()
        seen.answers = [websocket.call("my ping"), polling.call("my ping")]
    finally:
        seen.status = seen.server.interrupt()
    websocket.wait_for("disconnect")
    polling.close()
    seen.stderr = seen.server.stderr_text
    return seen


def test_the_ready_line_comes_once_the_server_accepts_connections(served_then_stopped, mode):
    """In every mode, threading included: socketio.run() refuses Werkzeug without a
    terminal unless told allow_unsafe_werkzeug=True; the launcher needs none."""
    assert re.fullmatch(r"Serving 01_basic \(async_mode=%s\) on http://127\.0\.0\.1:\d+/" % mode,
                        served_then_stopped.server.ready_line.group(0))
    assert served_then_stopped.answers == ["pong", "pong"]


def test_ctrl_c_stops_the_server_cleanly_while_clients_are_connected(served_then_stopped):
    assert served_then_stopped.transport == "websocket"
    assert served_then_stopped.status == 0
    assert "Traceback" not in served_then_stopped.stderr
    assert served_then_stopped.stderr.rstrip().endswith("lesson: stopped")


def test_without_debug_requests_are_not_logged(served_then_stopped):
    assert "GET /socket.io/" not in served_then_stopped.stderr


def test_socketio_run_itself_refuses_werkzeug_without_a_terminal():
    """What the README says the launcher spares you: flask_socketio.SocketIO.run()
    in threading mode raises when stdin is not a terminal (CI, notebooks, services)."""
    code = ("from flask import Flask; from flask_socketio import SocketIO; app = Flask('x'); "
            "SocketIO(app, async_mode='threading').run(app, port=0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=30, stdin=subprocess.DEVNULL)

    assert result.returncode == 1
    assert "RuntimeError: The Werkzeug web server is not designed to run in production" \
        in result.stderr
    assert "allow_unsafe_werkzeug=True" in result.stderr


def test_a_server_whose_output_nobody_reads_any_more_still_stops_at_once(mode):
    """As when the terminal, notebook kernel or test runner that started it is gone:
    its "lesson: stopped" line then meets a closed pipe. (SIGTERM runs the same
    handler as Ctrl-C.)"""
    process = subprocess.Popen(lesson_command() + ["run", "01", "--mode", mode, "--port", "0"],
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        assert select.select([process.stdout], [], [], START_TIMEOUT)[0], "no ready line"
        assert process.stdout.readline().startswith("Serving 01_basic")
        process.stderr.close()  # nobody reads the server's stderr any more

        process.send_signal(signal.SIGINT)

        assert process.wait(STOP_TIMEOUT) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(STOP_TIMEOUT)


def test_auto_mode_picks_like_flask_socketio_and_says_so():
    server = LessonServer("01", mode="auto").start()
    try:
        # eventlet is installed here, and python-engineio tries it first.
        assert server.ready_line["mode"] == "eventlet"
        # (Printed before the ready line, but on stderr, which is read by another thread.)
        wait_until(lambda: "--mode auto picked eventlet" in server.stderr_text,
                   what="the launcher's note on stderr")
    finally:
        assert server.interrupt() == 0


def test_debug_turns_on_request_logging(mode):
    server = LessonServer("01", mode=mode, extra_args=["--debug"]).start()
    try:
        client = RecordingClient(server.url, transports=["polling"]).connect()
        client.close()
    finally:
        assert server.interrupt() == 0
    assert re.search(r"GET /socket.io/\?\S*transport=polling", server.stderr_text), server.stderr_text


# --- a wrong command line: one line on stderr, status 2, no traceback -----------------

WRONG_COMMAND_LINES = {
    "unknown lesson": (["run", "99"], "no lesson '99'; the lessons are: 01_basic, "),
    "unknown demo": (["run", "01", "nope"], "lesson 01_basic has no demo 'nope'"),
    "unknown mode": (["run", "01", "--mode", "tornado"], "invalid choice: 'tornado'"),
    "port not a number": (["run", "01", "--port", "http"], "port must be a number from 0 to 65535, not 'http'"),
    "port out of range": (["run", "01", "--port", "70000"], "port must be a number from 0 to 65535, not '70000'"),
    "negative port": (["run", "01", "--port=-1"], "port must be a number from 0 to 65535, not '-1'"),
    "no command": ([], "the following arguments are required: command"),
    "unknown command": (["serve", "01"], "invalid choice: 'serve'"),
    "list of unknown lesson": (["list", "42"], "no lesson '42'"),
    "test of unknown lesson": (["test", "42"], "no lesson '42'"),
}


@pytest.mark.parametrize("args, explanation", WRONG_COMMAND_LINES.values(), ids=WRONG_COMMAND_LINES.keys())
def test_a_wrong_command_line_gets_one_clear_line_and_status_2(args, explanation):
    result = run_lesson_command(*args)

    assert result.returncode == 2
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith("lesson: ")
    assert explanation in result.stderr


def test_lesson_test_with_a_lesson_runs_that_lessons_tests_alone_in_every_mode():
    # (A lesson named by its topic, `basic`, is found by the same catalog.find_lesson:
    # test_a_lesson_is_named_by_number_folder_or_topic.)
    result = run_lesson_command("test", "01", "--collect-only", "-q", "-n", "0")

    assert result.returncode == 0, result.stdout + result.stderr
    tests = [line for line in result.stdout.splitlines() if "::" in line]
    assert tests and all(test.startswith("tests/test_01_basic.py::") for test in tests), tests
    for mode in ("eventlet", "gevent", "threading"):
        assert any(f"[{mode}" in test for test in tests), f"no {mode} test in {tests}"


# Collecting without conftest.py and hypothesis's plugin (tests ids without their modes):
# 1.8 CPU-s for the two pytest runs of `--full`, against 2.5.
CHEAPEST_COLLECTION = ("--collect-only", "-q", "-n", "0", "--noconftest", "-p", "no:hypothesispytest")


def test_lesson_test_full_runs_the_stress_tests_alone_after_the_everyday_ones():
    # Two pytest runs, one after the other: 200 load-test clients side by side with a
    # page that times its pushes would fail the page for the machine's sake.
    result = run_lesson_command("test", "--full", "tests/test_load.py", "tests/test_vendor.py",
                                *CHEAPEST_COLLECTION)

    assert result.returncode == 0, result.stdout + result.stderr
    runs = [line for line in result.stderr.splitlines() if line.startswith("lesson: pytest -m")]
    assert runs == ["lesson: pytest -m 'not stress and not install'",
                    "lesson: pytest -m 'stress or install'"], result.stderr
    tests = [line.split("::")[0] for line in result.stdout.splitlines() if "::" in line]
    everyday = tests.index("tests/test_load.py")  # the first stress test: every test before it is everyday
    assert set(tests[:everyday]) == {"tests/test_vendor.py"}, tests
    assert set(tests[everyday:]) == {"tests/test_load.py"}, tests


def test_lesson_test_full_of_stress_tests_alone_is_no_failure():
    # The everyday run of `--full tests/test_load.py` collects nothing (pytest's exit
    # status 5); the stress run collects the file's tests, so the whole is a success.
    result = run_lesson_command("test", "--full", "tests/test_load.py", *CHEAPEST_COLLECTION)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "no tests collected (" in result.stdout, result.stdout  # (N deselected)
    assert any(line.startswith("tests/test_load.py::") for line in result.stdout.splitlines())


def test_lesson_test_caches_bytecode_even_where_the_environment_forbids_it(tmp_path):
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPYCACHEPREFIX": str(tmp_path)}
    # The cheapest pytest run that imports pytest: every module it imports is compiled
    # afresh under the empty prefix (the standard library's too), so no conftest and no
    # hypothesis plugin: 1.9 CPU-s, against 5.2 for collecting tests/test_harness.py.
    result = run_lesson_command("test", "--version", "--noconftest", "-p", "no:hypothesispytest",
                                env=env)

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("pytest "), result.stdout
    # pytest's own modules, compiled and cached under the prefix given (none without the change)
    assert list(tmp_path.rglob("_pytest/*.pyc")), sorted(tmp_path.rglob("*"))[:10]


@pytest.mark.parametrize("args", [[], ["wheels/", "--platform", "beos"]], ids=["no folder", "unknown platform"])
def test_the_wrappers_wheelhouse_command_answers_a_wrong_command_line_in_one_line(args):
    result = subprocess.run([sys.executable, str(ROOT / "lesson"), "wheelhouse", *args],
                            capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)

    assert result.returncode == 2
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith("./lesson wheelhouse: ")


def test_a_port_already_taken_gets_one_clear_line_and_status_2(mode):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = run_lesson_command("run", "01", "--mode", mode, "--port", str(port))

    assert result.returncode == 2
    assert result.stdout == ""
    lines = [line for line in result.stderr.splitlines() if "eventlet is deprecated" not in line]
    assert lines == [f"lesson: port {port} on 127.0.0.1 is already in use; "
                     "pick another with --port, or --port 0 for any free one"]
