"""emit() in a background task: "Working outside of request context"; socketio.emit works."""
# The 2019 post: "in the background task you must call socketio.emit(), not
# emit(), or you get RuntimeError: Working outside of request context."
# On /test_conn each connect starts the post's task with the bare emit(); the
# error is caught and sent to the page so you can read it. On /test_conn_fixed
# the task uses socketio.emit(..., namespace=..., to=sid), and "try emit" runs
# one of five calls from a background task so you can see who receives what.
import random
import secrets
import threading
import traceback

from flask import Flask, current_app, jsonify, render_template, request
from flask_socketio import SocketIO, emit

NAMESPACE = "/test_conn"              # the post's code, as written
FIXED_NAMESPACE = "/test_conn_fixed"  # the fix

socketio = SocketIO()


def create_app(async_mode=None):
    """Build the app. Settings (FLASK_* environment variables):
    FLASK_PUSH_INTERVAL, seconds between two `mess` pushes (default 5, as in the post)."""
    app = Flask(__name__)
    # Flask signs the session cookie with this key. A random one per process:
    # no key is ever committed, and FLASK_SECRET_KEY (read below) overrides it.
    app.config["SECRET_KEY"] = secrets.token_hex(16)
    app.config.from_prefixed_env()
    socketio.init_app(app, async_mode=async_mode)

    def page(namespace, fixed):
        return render_template("emit_outside_context.html", demo="emit_outside_context",
                               fixed=fixed, namespace=namespace, async_mode=socketio.async_mode,
                               interval=push_interval(), calls=list(CALLS))

    @app.route("/")
    def broken_page():
        return page(NAMESPACE, fixed=False)

    @app.route("/fixed")
    def fixed_page():
        return page(FIXED_NAMESPACE, fixed=True)

    @app.route("/loops")
    def loops():
        """The fix's push loops that are running: one per connected client."""
        return jsonify(push_loops=sorted(push_loops))

    return app


def push_interval():
    return current_app.config.get("PUSH_INTERVAL", 5)


def where_raised(error):
    """The last frames of the error's traceback: file (from the package on), function, line."""
    frames = []
    for frame in traceback.extract_tb(error.__traceback__)[-3:]:
        path = frame.filename.replace("\\", "/")
        short = path.split("site-packages/")[-1] if "site-packages/" in path else path.rsplit("/", 1)[-1]
        frames.append({"file": short, "function": frame.name, "line": (frame.line or "").strip()})
    return frames


def error_report(error, call):
    return {"call": call, "error": type(error).__name__,
            "message": str(error).splitlines()[0], "raised_in": where_raised(error)}


# --- broken: the post's background task with the bare emit() -------------------

@socketio.on("connect", namespace=NAMESPACE)
def test_connect(auth=None):
    # The post starts one task for everybody; here each connect starts one, so
    # that every visit of the page shows what happens to it.
    socketio.start_background_task(background_task, request.sid, push_interval())


def background_task(sid, interval):
    try:
        socketio.sleep(interval)
        t = random.randint(1, 100)
        # emit() finds its recipient in flask.request (request.sid), which only
        # exists while Flask-SocketIO runs a handler. Not here: this raises.
        emit("mess", {"data": t}, namespace=NAMESPACE)
    except RuntimeError as error:
        # Left alone, the exception would end the task with a traceback in the
        # server's log and nothing on the page. Send it to the page instead:
        report = error_report(error, 'emit("mess", {"data": t}, namespace="/test_conn")')
        socketio.emit("task error", report, namespace=NAMESPACE, to=sid)


# --- fixed: socketio.emit, with namespace= and to= -----------------------------

connected = set()       # sids connected to FIXED_NAMESPACE
push_loops = set()      # sids whose push loop is running (for /loops)
lock = threading.Lock()


@socketio.on("connect", namespace=FIXED_NAMESPACE)
def connect_fixed(auth=None):
    with lock:
        connected.add(request.sid)
    socketio.start_background_task(push_to, request.sid, push_interval())


@socketio.on("disconnect", namespace=FIXED_NAMESPACE)
def disconnect_fixed(reason=None):
    with lock:
        connected.discard(request.sid)  # its loop sees this and ends


def push_to(sid, interval):
    push_loops.add(sid)
    seq = 0
    try:
        while True:
            socketio.sleep(interval)
            with lock:
                if sid not in connected:  # the client left
                    return
            seq += 1
            # socketio.emit needs no request context. Tell it the namespace
            # (default "/") and the client (default: every client of the namespace).
            socketio.emit("mess", {"data": random.randint(1, 100), "seq": seq},
                          namespace=FIXED_NAMESPACE, to=sid)
    finally:
        push_loops.discard(sid)


# --- try it: five ways to emit from a background task --------------------------

def bare_emit(sid, payload):
    emit("mess", payload, namespace=FIXED_NAMESPACE)


def bare_emit_with_to(sid, payload):
    emit("mess", payload, namespace=FIXED_NAMESPACE, to=sid)


def socketio_emit_without_namespace(sid, payload):
    socketio.emit("mess", payload)


def socketio_emit_with_namespace(sid, payload):
    socketio.emit("mess", payload, namespace=FIXED_NAMESPACE)


def socketio_emit_with_namespace_and_to(sid, payload):
    socketio.emit("mess", payload, namespace=FIXED_NAMESPACE, to=sid)


CALLS = {
    'emit("mess", ..., namespace=NS)': bare_emit,
    'emit("mess", ..., namespace=NS, to=sid)': bare_emit_with_to,
    'socketio.emit("mess", ...)': socketio_emit_without_namespace,
    'socketio.emit("mess", ..., namespace=NS)': socketio_emit_with_namespace,
    'socketio.emit("mess", ..., namespace=NS, to=sid)': socketio_emit_with_namespace_and_to,
}


@socketio.on("try emit", namespace=FIXED_NAMESPACE)
def try_emit(message=None, *extra):  # *extra: more than one argument (refused below)
    call = message.get("data") if isinstance(message, dict) and not extra else None
    # isinstance first: `[1] in CALLS` would raise TypeError (a list cannot be a dict key).
    if not isinstance(call, str) or call not in CALLS:
        error = f'"try emit" expects {{"data": one of {list(CALLS)}}}'
        emit("error", {"message": error})  # to the sender alone, as lesson 01's on_error does
        return {"ok": False, "error": error}
    socketio.start_background_task(run_call, call, request.sid)
    return {"ok": True}


def run_call(call, sid):
    """In a background task, as the post's: no Flask context at all."""
    payload = {"data": random.randint(1, 100), "call": call, "requested_by": sid}
    try:
        CALLS[call](sid, payload)
        report = {"call": call, "error": None}
    except RuntimeError as error:
        report = error_report(error, call)
    socketio.emit("task report", report, namespace=FIXED_NAMESPACE, to=sid)


@socketio.on("my ping", namespace=NAMESPACE)
@socketio.on("my ping", namespace=FIXED_NAMESPACE)
def my_ping(*ignored):  # *ignored: a payload sent with it changes nothing
    return "pong"
