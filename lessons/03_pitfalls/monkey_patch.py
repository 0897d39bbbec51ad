"""A handler that blocks in the standard library: eventlet and gevent freeze everyone unless patched first (--patch early|late|none)."""
# eventlet and gevent run every handler of the server in green threads on ONE
# OS thread. They can switch to another green thread only when the running one
# waits in *their* code. Monkey patching replaces the standard library's
# blocking functions (time.sleep, sockets, threads, locks) with theirs, so that
# plain code waits cooperatively. This demo's "block" handler on /test_conn
# waits in plain standard-library code, five ways; the launcher decides the
# patching: `./lesson run 03 monkey_patch --mode gevent --patch none` (not at
# all), `--patch late` (after this module was imported, as the 2019 post's code
# first did) or `--patch early` (first thing, the default). This file never
# patches anything itself: in your own app, patch in the entry point.
import secrets
import socket
import threading
import time
from time import sleep  # a name bound now: patching later does not change it

import requests
from flask import Flask, current_app, render_template, request
from flask_socketio import SocketIO, emit

NAMESPACE = "/test_conn"              # blocks in the standard library
FIXED_NAMESPACE = "/test_conn_fixed"  # waits with socketio.sleep()

socketio = SocketIO()
lock = threading.Lock()  # made at import: a real OS lock unless patched before


def create_app(async_mode=None):
    """Build the app. Settings (FLASK_* environment variables):
    FLASK_BLOCK_SECONDS, how long "block" waits (default 3)."""
    app = Flask(__name__)
    # Flask signs the session cookie with this key. A random one per process:
    # no key is ever committed, and FLASK_SECRET_KEY (read below) overrides it.
    app.config["SECRET_KEY"] = secrets.token_hex(16)
    app.config.from_prefixed_env()
    socketio.init_app(app, async_mode=async_mode)

    def page(namespace, fixed):
        return render_template("monkey_patch.html", demo="monkey_patch", fixed=fixed,
                               namespace=namespace, async_mode=socketio.async_mode,
                               seconds=block_seconds(), hows=list(FIXED_WAYS if fixed else WAYS),
                               patching=patching())

    @app.route("/")
    def broken_page():
        return page(NAMESPACE, fixed=False)

    @app.route("/fixed")
    def fixed_page():
        return page(FIXED_NAMESPACE, fixed=True)

    @app.route("/patching")
    def patching_now():
        return patching()

    return app


def block_seconds():
    return current_app.config.get("BLOCK_SECONDS", 3)


# --- what the standard library is right now -------------------------------------

def name_of(thing):
    return f"{thing.__module__}.{thing.__qualname__}"


def patching():
    """What this process's standard library is, as this module sees it, and what that means.
    Patched functions and classes come from eventlet's or gevent's modules."""
    seen = {
        "time.sleep": name_of(time.sleep),
        "sleep, imported at the top of this file": name_of(sleep),
        "socket.socket": name_of(socket.socket),
        "a lock made now, threading.Lock()": name_of(type(threading.Lock())),
        "the lock made when this file was imported": name_of(type(lock)),
    }
    standard = [what for what, name in seen.items()
                if name.split(".")[0] in ("time", "socket", "_thread", "threading")]
    if socketio.async_mode == "threading":
        verdict = "none needed: threading mode runs each handler in a real thread"
    elif len(standard) == len(seen):
        verdict = "not patched: every wait below blocks the one thread that serves everyone"
    elif standard:
        verdict = ("patched late, after this file was imported: what it bound before "
                   "(" + "; ".join(standard) + ") is still the standard library's")
    else:
        verdict = "patched first: every wait below lets the other clients run"
    return {"verdict": verdict, "seen": seen, "async_mode": socketio.async_mode}


# --- a slow web service to wait for (a stand-in for a slow database or API) --------
# Plain sockets and threads, looked up when it starts: it is as patched as the rest.
# (http.server would not do: socketserver, imported with it, keeps the select.poll of
# before a late patch, and under eventlet its loop would then never let anyone run.)

def serve_slowly(listener):
    while True:
        connection, _ = listener.accept()
        threading.Thread(target=answer_slowly, args=(connection,), daemon=True).start()


def answer_slowly(connection):
    """Answer "GET /?seconds=S" after S seconds."""
    with connection:
        request_line = connection.recv(4096).decode(errors="replace").split("\r\n")[0]
        seconds = float(request_line.partition("seconds=")[2].split(" ")[0] or 0)
        time.sleep(seconds)
        connection.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nslow\n")


slow_service = None
slow_service_lock = threading.Lock()


def slow_address():
    """The slow service's (host, port), started the first time it is needed (by then
    any monkey patching is done), in a thread of its own, on a free loopback port."""
    global slow_service
    with slow_service_lock:  # nothing in here waits: even a real lock cannot get stuck
        started = slow_service is None
        if started:
            slow_service = socket.create_server(("127.0.0.1", 0))
    if started:
        threading.Thread(target=serve_slowly, args=(slow_service,), daemon=True).start()
    return slow_service.getsockname()


# --- the pitfall: wait in plain standard-library code ------------------------------

def with_time_sleep(seconds):
    time.sleep(seconds)  # the 2019 post's code did this in a handler: time.sleep(20)


def with_sleep_imported_at_the_top(seconds):
    sleep(seconds)


def with_a_socket_read(seconds):
    with socket.create_connection(slow_address()) as sock:
        sock.sendall(f"GET /?seconds={seconds} HTTP/1.0\r\n\r\n".encode())
        sock.recv(4096)  # waits until the slow service answers


def with_requests_get(seconds):
    host, port = slow_address()
    requests.get(f"http://{host}:{port}/?seconds={seconds}", timeout=seconds + 10)


def holding_the_lock_made_at_import(seconds):
    # Two of these at once: the second waits for the lock while the first waits
    # (cooperatively) inside it. With a real OS lock under eventlet or gevent,
    # that second wait stops the one thread, and the first can never let go.
    with lock:
        socketio.sleep(seconds)


WAYS = {
    "time.sleep": with_time_sleep,
    "sleep": with_sleep_imported_at_the_top,
    "socket": with_a_socket_read,
    "requests": with_requests_get,
    "lock": holding_the_lock_made_at_import,
}


@socketio.on("block", namespace=NAMESPACE)
def block(message=None, *extra):
    return wait_in(WAYS, message, extra)


def wait_in(ways, message, extra):
    how = message.get("how") if isinstance(message, dict) and not extra else None
    # isinstance first: `[1] in ways` would raise TypeError (a list cannot be a dict key).
    if not isinstance(how, str) or how not in ways:
        error = f'"block" expects {{"how": one of {list(ways)}}}'
        emit("error", {"message": error})  # to the sender alone, as lesson 01's on_error does
        return {"ok": False, "error": error}
    seconds = block_seconds()
    started = time.monotonic()
    ways[how](seconds)
    ended = time.monotonic()
    # The server's clock (the machine's monotonic clock): the tests compare it with theirs.
    return {"ok": True, "how": how, "seconds": round(ended - started, 3),
            "started_at": round(started, 3), "ended_at": round(ended, 3)}


# --- the fix in code: wait with socketio.sleep() ----------------------------------

FIXED_WAYS = {"socketio.sleep": lambda seconds: socketio.sleep(seconds)}


@socketio.on("block", namespace=FIXED_NAMESPACE)
def block_fixed(message=None, *extra):
    # socketio.sleep() is the async mode's own sleep (eventlet's, gevent's or
    # time.sleep in threading mode): cooperative, patched or not. There is no such
    # plain replacement for a socket, an HTTP client or a lock: patch first.
    return wait_in(FIXED_WAYS, message, extra)


@socketio.on("my ping", namespace=NAMESPACE)
@socketio.on("my ping", namespace=FIXED_NAMESPACE)
def my_ping(*ignored):  # *ignored: a payload sent with it changes nothing
    return "pong"


@socketio.on("patching", namespace=NAMESPACE)
@socketio.on("patching", namespace=FIXED_NAMESPACE)
def patching_event(*ignored):
    return patching()
