"""Emit `mess` to the clients of every server, from a plain Python process.

This is the part of an app that is not a web server: a Celery task, a cron
job, a script. It has no Flask app and no clients of its own, and it needs
neither eventlet nor gevent: it only publishes to the message queue, and
every server subscribed to the queue emits to its own clients.

    FLASK_MESSAGE_QUEUE=redis://127.0.0.1:6379/0 .venv/bin/python lessons/05_scale_out/worker.py
"""
import argparse
import os
import random
import sys
import time

from flask_socketio import SocketIO

from queue_check import check_message_queue, redact

NAMESPACE = "/test_conn"  # the namespace the servers' clients listen on


class Parser(argparse.ArgumentParser):
    """A wrong command line gets one line on stderr and status 2."""

    def error(self, message):
        self.exit(2, f"worker: {message}; run `worker.py --help` for usage\n")


def positive_int(text):
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of 1 or more, not {text!r}")
    return int(text)


def seconds(text):
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of seconds, 0 or more, not {text!r}")
    return value


def fail(message):
    """One line on stderr and status 2, like a wrong command line: no traceback."""
    print(f"worker: {message}", file=sys.stderr)
    raise SystemExit(2)


def parse_args(argv):
    parser = Parser(prog="worker.py", description="Emit `mess` to every server's clients "
                    "through the message queue named by FLASK_MESSAGE_QUEUE.")
    parser.add_argument("--count", type=positive_int, default=10, help="messages (default 10)")
    parser.add_argument("--interval", type=seconds, default=1.0,
                        help="seconds between two messages (default 1; 0: as fast as possible)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    url = os.environ.get("FLASK_MESSAGE_QUEUE")
    if not url:
        fail("set FLASK_MESSAGE_QUEUE, e.g. FLASK_MESSAGE_QUEUE=redis://127.0.0.1:6379/0")
    try:
        check_message_queue(url)
    except ConnectionError as error:
        fail(str(error))
    # No app: SocketIO(message_queue=...) is a write-only client of the queue
    # (Flask-SocketIO's init_app passes write_only=True when app is None).
    # async_mode="threading": the worker serves nobody, so it needs no
    # eventlet or gevent (left to pick, python-engineio would load eventlet).
    socketio = SocketIO(message_queue=url, async_mode="threading")
    print(f"worker: sending {args.count} mess to {NAMESPACE} through {redact(url)}", flush=True)
    started = time.monotonic()
    for seq in range(1, args.count + 1):
        if seq > 1:
            time.sleep(args.interval)
        # Publish only: the servers subscribed to the queue deliver it.
        socketio.emit("mess", {"data": random.randint(1, 100), "seq": seq}, namespace=NAMESPACE)
    print(f"worker: sent {args.count} mess in {time.monotonic() - started:.2f} s", flush=True)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:  # Ctrl-C: stop quietly, as the servers do
        print("worker: stopped", file=sys.stderr)
