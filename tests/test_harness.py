"""The test client itself: what the lesson tests take for granted about it."""
import os
import random
import threading
import time

import pytest

from harness import InOrderEngineIOClient, free_port, run_lesson_command
from lesson_launcher import forkserver


def test_received_messages_are_handled_in_arrival_order_even_when_handlers_are_slow():
    # python-engineio gives each message its own thread; a slow handler for an
    # early message must still finish before a later message is handled, else
    # "the reply arrives before the ack" could be recorded the other way round.
    eio = InOrderEngineIOClient()
    handled, done = [], threading.Event()

    def on_message(n):
        time.sleep(random.uniform(0, 0.003))  # the jitter that reorders bare threads
        handled.append(n)
        if n == 49:
            done.set()

    eio.on("message", on_message)
    for n in range(50):
        eio._trigger_event("message", n, run_async=True)

    assert done.wait(5), f"only {len(handled)} of 50 messages handled"
    assert handled == list(range(50))


# --- which lesson commands a fork server runs (lesson_launcher.forkserver.mode_for) ---

@pytest.mark.parametrize("argv, env, expected", [
    (["run", "01", "--mode", "gevent", "--port", "0"], None, "gevent"),
    (["run", "01", "--mode=eventlet"], None, "eventlet"),
    (["list"], None, "threading"),                       # patches nothing: the unpatched server
    (["run", "01", "--mode", "auto"], None, None),       # the launcher's own pick is the point
    (["run", "01", "--mode", "tornado"], None, None),    # no such server: the launcher says so
    (["run", "03", "monkey_patch", "--mode", "gevent", "--patch", "late"], None, None),
    (["doctor"], {"PYTHONPATH": "/elsewhere"}, None),    # read when an interpreter starts
    (["run", "05", "--mode", "gevent"], {"FLASK_MESSAGE_QUEUE": "redis://"}, "gevent"),
], ids=["mode", "mode=", "no mode", "auto", "unknown mode", "patch", "PYTHONPATH", "FLASK_ setting"])
def test_a_command_is_forked_only_where_a_new_process_would_behave_the_same(argv, env, expected):
    if env is not None:
        env = {**os.environ, **env}

    assert forkserver.mode_for(argv, env) == expected


def test_a_forked_command_gives_its_output_and_exit_status():
    result = run_lesson_command("list", "99")  # forked: no mode named, no PYTHON* change

    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.startswith("lesson: no lesson '99'")


def test_the_fork_server_tells_a_childs_exit_status_and_cpu_time():
    child = forkserver.spawn("threading", ["list", "01"], dict(os.environ))
    stdout = child.stdout.read()

    assert child.wait(10) == 0
    assert stdout.startswith("app ")
    assert isinstance(child.cpu_seconds, float)  # (from wait4: may be 0.0 for so short a life)


def test_free_port_leaves_the_shared_random_generator_alone():
    # Hypothesis seeds the random module for each example it runs, and warns when
    # something draws from it meanwhile; and processes seeded alike would pick alike.
    random.seed(2019)
    state = random.getstate()

    ports = {free_port() for _ in range(5)}

    assert random.getstate() == state
    assert len(ports) > 1 and all(1024 < port < 65536 for port in ports), ports
