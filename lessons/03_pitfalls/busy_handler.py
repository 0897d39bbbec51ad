"""A handler that computes for seconds without yielding: in eventlet and gevent everyone freezes."""
# eventlet and gevent run every client's handlers in ONE thread, switching
# between them only when one of them waits (socket I/O, socketio.sleep()).
# A handler that computes without waiting never lets the others run. This
# demo's "work" handler on /test_conn computes for FLASK_BUSY_SECONDS; the one
# on /test_conn_fixed does the same work but yields between small pieces.
# A ticker pushes `tick` to every client meanwhile, so you can see the freeze.
import secrets
import threading
import time

from flask import Flask, current_app, jsonify, render_template, request
from flask_socketio import SocketIO

NAMESPACE = "/test_conn"              # the pitfall
FIXED_NAMESPACE = "/test_conn_fixed"  # the fix

socketio = SocketIO()


def create_app(async_mode=None):
    """Build the app. Settings (FLASK_* environment variables):
    FLASK_BUSY_SECONDS, how long "work" computes (default 3);
    FLASK_PUSH_INTERVAL, seconds between two `tick` pushes (default 0.5)."""
    app = Flask(__name__)
    # Flask signs the session cookie with this key. A random one per process:
    # no key is ever committed, and FLASK_SECRET_KEY (read below) overrides it.
    app.config["SECRET_KEY"] = secrets.token_hex(16)
    app.config.from_prefixed_env()
    socketio.init_app(app, async_mode=async_mode)

    def page(namespace, fixed):
        return render_template("busy_handler.html", demo="busy_handler", fixed=fixed,
                               namespace=namespace, async_mode=socketio.async_mode,
                               busy=busy_seconds(), interval=push_interval())

    @app.route("/")
    def broken_page():
        return page(NAMESPACE, fixed=False)

    @app.route("/fixed")
    def fixed_page():
        return page(FIXED_NAMESPACE, fixed=True)

    @app.route("/loops")
    def loops():
        """Whether the ticker is running (it stops when the last client leaves)."""
        return jsonify(ticker={"running": ticker is not None, "ticks": ticks})

    return app


def busy_seconds():
    return current_app.config.get("BUSY_SECONDS", 3)


def push_interval():
    return current_app.config.get("PUSH_INTERVAL", 0.5)


def crunch():
    """A few milliseconds of pure-Python arithmetic: a stand-in for real work
    (parsing, resizing an image, a slow loop over rows...). It never waits."""
    return sum(i * i % 7 for i in range(20_000))


# --- broken: compute until done -----------------------------------------------

@socketio.on("work", namespace=NAMESPACE)
def work(*ignored):  # takes no payload; one sent is ignored
    seconds = busy_seconds()
    started = time.monotonic()
    rounds = 0
    while time.monotonic() - started < seconds:
        crunch()
        rounds += 1
    return done(started, rounds)


def done(started, rounds):
    """The acknowledgement: what was done, and when (server clock, as the ticks' "at")."""
    ended = time.monotonic()
    return {"seconds": round(ended - started, 3), "rounds": rounds,
            "started_at": round(started, 3), "ended_at": round(ended, 3)}


# --- fixed: the same work, yielding between pieces ---------------------------

@socketio.on("work", namespace=FIXED_NAMESPACE)
def work_fixed(*ignored):
    seconds = busy_seconds()
    started = time.monotonic()
    rounds = 0
    while time.monotonic() - started < seconds:
        crunch()
        rounds += 1
        # Let everything else that is ready run (pushes, pings, other
        # clients), then carry on. In threading mode it costs next to nothing.
        # (gevent looks at the sockets only every 50 or so of these: keep the
        # pieces short. The README says why.)
        socketio.sleep(0)
    return done(started, rounds)


# --- the ticker: one background task for all clients (lesson 02_background) ---

ticker = None
ticks = 0
ticker_lock = threading.Lock()
clients = set()


@socketio.on("connect", namespace=NAMESPACE)
@socketio.on("connect", namespace=FIXED_NAMESPACE)
def connect(auth=None):
    global ticker
    with ticker_lock:
        clients.add((request.namespace, request.sid))
        if ticker is None:
            ticker = socketio.start_background_task(tick, push_interval())


@socketio.on("disconnect", namespace=NAMESPACE)
@socketio.on("disconnect", namespace=FIXED_NAMESPACE)
def disconnect(reason=None):
    with ticker_lock:
        clients.discard((request.namespace, request.sid))


def tick(interval):
    global ticker, ticks
    while True:
        socketio.sleep(interval)
        with ticker_lock:
            if not clients:  # everybody left: stop; the next connect starts a new ticker
                ticker = None
                return
        ticks += 1
        # "at": when the server sent it, to compare with the work's start and end.
        payload = {"seq": ticks, "at": round(time.monotonic(), 3)}
        for namespace in (NAMESPACE, FIXED_NAMESPACE):
            socketio.emit("tick", payload, namespace=namespace)


@socketio.on("my ping", namespace=NAMESPACE)
@socketio.on("my ping", namespace=FIXED_NAMESPACE)
def my_ping(*ignored):  # *ignored: a payload sent with it changes nothing
    return "pong"
