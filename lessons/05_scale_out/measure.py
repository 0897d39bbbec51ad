"""Measure what the README quotes: the worker's throughput to two servers, the latency
the queue adds to a broadcast, and what a Redis outage loses. Not a test: it
asserts nothing about time, it prints figures.

    .venv/bin/python lessons/05_scale_out/measure.py [--mode threading] [--messages 2000]

It starts its own redis-server and lesson servers (through the real launcher, as
the tests do) and talks to them with the tests' recording client.
"""
import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from harness import LessonServer, RecordingClient  # noqa: E402
from test_05_scale_out import WORKER, RedisServer  # noqa: E402


def start_servers(mode, *settings):
    servers = [LessonServer("05", mode=mode, settings=setting) for setting in settings]
    for server in servers:
        server.start()
    return servers


def run_worker(redis_server, count, interval):
    return subprocess.Popen([sys.executable, str(WORKER), "--count", str(count),
                             "--interval", str(interval)],
                            env={"FLASK_MESSAGE_QUEUE": redis_server.url},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def throughput(redis_server, on_a, on_b, count):
    """Messages per second from the worker to one client on each server, all delivered?"""
    worker = run_worker(redis_server, count, 0)
    arrivals = [client.wait_for("mess", count, timeout=120) for client in (on_a, on_b)]
    sent = worker.communicate(timeout=60)[0].strip().splitlines()[-1]
    first = min(records[0].at for records in arrivals)
    last = max(records[-1].at for records in arrivals)
    in_order = all([r.data["seq"] for r in records] == list(range(1, count + 1))
                   for records in arrivals)
    print(f"  throughput: {count} mess to a client of A and a client of B in "
          f"{last - first:.2f} s = {(count - 1) / (last - first):.0f} messages/s to each, "
          f"all delivered in order: {in_order} ({sent})")


def latency(sender, receiver, rounds):
    """Median seconds from emitting a broadcast to its arrival at another client."""
    seen = len(receiver.events("my ev broadcast"))
    samples = []
    for n in range(rounds):
        started = time.monotonic()
        sender.call("my event broadcast", {"data": n})
        seen += 1
        samples.append(receiver.wait_for("my ev broadcast", seen)[-1].at - started)
    return statistics.median(samples)


def outage(redis_server, clients, down_after=1.0, down_for=2.0, rate=20):
    """Stop Redis while the worker sends ``rate`` messages a second; which ones got lost?"""
    count = int(rate * (down_after + down_for + 3))
    for client in clients:  # forget the throughput run's mess
        with client.changed:
            client.received.clear()
    worker = run_worker(redis_server, count, 1 / rate)
    started = time.monotonic()
    time.sleep(down_after)
    redis_server.stop()
    stopped = time.monotonic()
    time.sleep(down_for)
    redis_server.start()
    restarted = time.monotonic()
    redis_server.wait_for_subscribers(2, timeout=70)
    resubscribed = time.monotonic()
    worker.communicate(timeout=60)
    print(f"  outage: {count} mess at {rate}/s; Redis stopped {stopped - started:.1f} s into "
          f"the run, started again {restarted - stopped:.1f} s later; the servers subscribed "
          f"again {resubscribed - stopped:.1f} s after the stop")
    for client, name in zip(clients, "AB"):
        got = {r.data["seq"] for r in client.events("mess")}
        lost = sorted(set(range(1, count + 1)) - got)
        span = f"seq {lost[0]}..{lost[-1]}, {len(lost) / rate:.2f} s of messages" if lost else ""
        print(f"    the client of {name} got {len(got)}, lost {len(lost)}: {span}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", default="threading", choices=("eventlet", "gevent", "threading"))
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        redis_server = RedisServer(Path(directory)).start()
        queued = {"MESSAGE_QUEUE": redis_server.url}
        a, b, alone = start_servers(args.mode, queued, queued, {})
        try:
            clients = [RecordingClient(server.url).connect() for server in (a, a, b, alone, alone)]
            redis_server.wait_for_subscribers(2)
            print(f"mode {args.mode}:")
            throughput(redis_server, clients[0], clients[2], args.messages)
            single = latency(clients[3], clients[4], args.rounds)
            same = latency(clients[0], clients[1], args.rounds)
            across = latency(clients[0], clients[2], args.rounds)
            print(f"  broadcast latency, median of {args.rounds}: one server without queue "
                  f"{single * 1e3:.2f} ms; with the queue, same server {same * 1e3:.2f} ms, "
                  f"A to B {across * 1e3:.2f} ms = {across / single:.1f} x the single server")
            outage(redis_server, clients[:3:2])
            for client in clients:
                client.close()
        finally:
            for server in (a, b, alone):
                server.stop()
            redis_server.stop()


if __name__ == "__main__":
    main()
