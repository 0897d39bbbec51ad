"""The figures of the README: what nginx and a second backend cost, and a connect storm.

    .venv/bin/python lessons/06_deploy/measure.py [--mode gevent] [--clients 50]

Starts `lesson run 06 --port 0` (nginx, two gunicorn backends, Redis), then measures
over WebSocket with the python-socketio client:
  round trip   p50 of 200 acknowledged "my ping", through nginx / straight to one backend
  fan-out      one "my event broadcast" until all --clients got it, through nginx's
               round-robin site (WebSocket only, so no session needs to stick: the
               clients alternate between the two backends, and half of them get the
               broadcast through Redis) / one backend, direct
  storm        --clients connections opened at once through nginx, until all are connected
"""
import argparse
import re
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import socketio

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))
from lesson_launcher.process import LessonProcess  # noqa: E402

NS = "/test_conn"


def connect(url):
    client = socketio.Client()
    got = threading.Event()
    client.on("my ev broadcast", lambda data: got.set(), namespace=NS)
    client.connect(url, namespaces=[NS], transports=["websocket"], wait_timeout=30)
    return client, got


def round_trip_ms(url, count=200):
    client, _ = connect(url)
    try:
        times = []
        for _ in range(count):
            started = time.perf_counter()
            client.call("my ping", namespace=NS, timeout=5)
            times.append((time.perf_counter() - started) * 1000)
        return statistics.median(times)
    finally:
        client.disconnect()


def fan_out_ms(url, count):
    with ThreadPoolExecutor(16) as pool:
        clients = list(pool.map(lambda _: connect(url), range(count)))
    try:
        time.sleep(0.5)  # let every backend subscribe to Redis first (measurement, not a test)
        started = time.perf_counter()
        clients[0][0].emit("my event broadcast", {"data": "fan-out"}, namespace=NS)
        for _, got in clients:
            got.wait(10)
        return (time.perf_counter() - started) * 1000
    finally:
        for client, _ in clients:
            client.disconnect()


def storm_s(url, count):
    started = time.perf_counter()
    with ThreadPoolExecutor(count) as pool:
        clients = list(pool.map(lambda _: connect(url), range(count)))
    took = time.perf_counter() - started
    for client, _ in clients:
        client.disconnect()
    return took


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", default="gevent", choices=("gevent", "threading", "eventlet"))
    parser.add_argument("--clients", type=int, default=50)
    args = parser.parse_args()
    stack = LessonProcess("06", mode=args.mode, extra_args=["--trap", "round-robin"],
                          die_with_parent=True).start(timeout=60)
    try:
        backend = re.search(r"backend b1: .* on (127\.0\.0\.1:\d+)", stack.stderr_text)
        direct = f"http://{backend[1]}/"
        spread = "http://127.0.0.1:%s/" % re.search(r"trap round-robin on http://127\.0\.0\.1:(\d+)/",
                                                    stack.stderr_text)[1]
        print(f"{args.mode}: round trip p50 {round_trip_ms(stack.url):.2f} ms through nginx, "
              f"{round_trip_ms(direct):.2f} ms direct to one backend")
        print(f"{args.mode}: fan-out to {args.clients} clients {fan_out_ms(spread, args.clients):.1f} ms "
              f"through nginx (2 backends, Redis), {fan_out_ms(direct, args.clients):.1f} ms one backend direct")
        print(f"{args.mode}: connect storm, {args.clients} clients at once through nginx: "
              f"{storm_s(stack.url, args.clients):.2f} s")
    finally:
        stack.interrupt()


if __name__ == "__main__":
    main()
