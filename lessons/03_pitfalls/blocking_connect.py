"""A connect handler that keeps looping: the client is not told it is connected until it returns."""
# The 2019 post's second listing pushes `mess` from inside the connect handler,
# in a `while True` loop, and notes that "the client never receives anything".
# This demo serves that code, unchanged, on /test_conn, and the fix on
# /test_conn_fixed. The page at / connects to the broken namespace, the page
# at /fixed to the fixed one; /loops says which push loops are still running,
# and POST /loops/stop makes the broken ones end.
import itertools
import random
import secrets
import threading
import time

from flask import Flask, current_app, jsonify, render_template, request
from flask_socketio import SocketIO

NAMESPACE = "/test_conn"              # the post's code, as written
FIXED_NAMESPACE = "/test_conn_fixed"  # the fix

socketio = SocketIO()


def create_app(async_mode=None):
    """Build the app. Settings (FLASK_* environment variables):
    FLASK_PUSH_INTERVAL, seconds between two `mess` pushes (default 5, as in the post);
    FLASK_LOOP_SECONDS, how long the broken connect handler loops at most (default 60)."""
    app = Flask(__name__)
    # Flask signs the session cookie with this key. A random one per process:
    # no key is ever committed, and FLASK_SECRET_KEY (read below) overrides it.
    app.config["SECRET_KEY"] = secrets.token_hex(16)
    app.config.from_prefixed_env()
    socketio.init_app(app, async_mode=async_mode)

    def page(namespace, fixed):
        return render_template("blocking_connect.html", demo="blocking_connect", fixed=fixed,
                               namespace=namespace, async_mode=socketio.async_mode,
                               interval=push_interval(), loop_seconds=loop_seconds())

    @app.route("/")
    def broken_page():
        return page(NAMESPACE, fixed=False)

    @app.route("/fixed")
    def fixed_page():
        return page(FIXED_NAMESPACE, fixed=True)

    @app.route("/loops")
    def loops():
        """What is pushing on the server: one entry per call of the broken connect
        handler (running or not), and the one background task of the fix."""
        return jsonify(connect_handler_loops=connect_handler_loops,
                       background_task={"running": task is not None, "pushes": task_pushes})

    @app.post("/loops/stop")
    def stop_loops():
        """The page's button: ask every looping connect handler to return."""
        for loop in connect_handler_loops:
            loop["stop_requested"] = True
        return jsonify(stopping=[loop["loop"] for loop in connect_handler_loops if loop["running"]])

    return app


def push_interval():
    return current_app.config.get("PUSH_INTERVAL", 5)


def loop_seconds():
    return current_app.config.get("LOOP_SECONDS", 60)


# --- broken: the 2019 post's listing -------------------------------------------

# Bookkeeping for /loops and the page, not part of the post's code: one entry
# per call of the connect handler, with how many times it pushed.
connect_handler_loops = []
loop_numbers = itertools.count(1)


@socketio.on("connect", namespace=NAMESPACE)
def test_connect(auth=None):
    interval = push_interval()
    me = {"loop": next(loop_numbers), "pushes": 0, "running": True, "stop_requested": False}
    connect_handler_loops.append(me)
    stop_at = time.monotonic() + loop_seconds()
    # python-socketio sends the CONNECT packet that tells the client "you are
    # connected" only after this function returns (socketio.Server._handle_connect).
    while True:
        socketio.sleep(interval)  # yields: other clients are served meanwhile
        # Not in the post, whose loop never ends: this one ends when you press the
        # page's button (POST /loops/stop) or after FLASK_LOOP_SECONDS (default 60),
        # so that you can see what happens when the handler returns.
        if me["stop_requested"] or time.monotonic() > stop_at:
            break
        t = random.randint(1, 100)
        me["pushes"] += 1
        # A broadcast to the namespace: it reaches every client whose connect
        # is pending or done there, so each stuck client gets every stuck loop's pushes.
        socketio.emit("mess", {"data": t, "seq": me["pushes"], "loop": me["loop"]},
                      namespace=NAMESPACE)
    me["running"] = False


# --- fixed: return from the connect handler, push from a background task -------
# The pattern of lesson 02_background: ONE task for all clients, started by the
# first connect (a lock makes two simultaneous first connects start only one).
# One addition here: the task ends when the last client has left, and the next
# connect starts a new one, so no loop outlives its clients.

task = None             # the running background task, or None
task_pushes = 0
task_lock = threading.Lock()
clients = set()         # sids connected to FIXED_NAMESPACE


@socketio.on("connect", namespace=FIXED_NAMESPACE)
def connect_fixed(auth=None):
    global task
    clients.add(request.sid)
    with task_lock:
        if task is None:
            # Read the setting here: the task runs outside any Flask context.
            task = socketio.start_background_task(push_mess, push_interval())
    # Returning (None) accepts the connection: the CONNECT packet goes out now.


@socketio.on("disconnect", namespace=FIXED_NAMESPACE)
def disconnect_fixed(reason=None):
    clients.discard(request.sid)


def push_mess(interval):
    global task, task_pushes
    while True:
        socketio.sleep(interval)
        with task_lock:
            if not clients:  # everybody left: stop; the next connect starts a new task
                task = None
                return
        task_pushes += 1
        # No request context in a task: socketio.emit, with the namespace
        # (it defaults to "/"); without `to=` it goes to every client there.
        socketio.emit("mess", {"data": random.randint(1, 100), "seq": task_pushes},
                      namespace=FIXED_NAMESPACE)


@socketio.on("my ping", namespace=NAMESPACE)
@socketio.on("my ping", namespace=FIXED_NAMESPACE)
def my_ping(*ignored):  # *ignored: a payload sent with it changes nothing
    return "pong"
