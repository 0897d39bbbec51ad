"""Two emits in a connect handler, one second apart: the browser shows both at once."""
# The 2019 post: "if test_connect() emits twice, the client does get them, but
# not one by one: both arrive after the second one is sent. The reason is not
# clear." This demo serves that handler on /test_conn, and the fix on
# /test_conn_fixed. The page at / connects to the broken namespace, the page at
# /fixed to the fixed one; both show when each event arrived.
import secrets
import time

from flask import Flask, current_app, render_template, request
from flask_socketio import SocketIO, emit

NAMESPACE = "/test_conn"              # the post's code, as written
FIXED_NAMESPACE = "/test_conn_fixed"  # the fix

socketio = SocketIO()


def create_app(async_mode=None):
    """Build the app. Settings (FLASK_* environment variables):
    FLASK_SECOND_EMIT_DELAY, seconds between the two emits (default 1, as in the post)."""
    app = Flask(__name__)
    # Flask signs the session cookie with this key. A random one per process:
    # no key is ever committed, and FLASK_SECRET_KEY (read below) overrides it.
    app.config["SECRET_KEY"] = secrets.token_hex(16)
    app.config.from_prefixed_env()
    socketio.init_app(app, async_mode=async_mode)

    def page(namespace, fixed):
        return render_template("emits_in_connect.html", demo="emits_in_connect", fixed=fixed,
                               namespace=namespace, async_mode=socketio.async_mode,
                               delay=second_emit_delay())

    @app.route("/")
    def broken_page():
        return page(NAMESPACE, fixed=False)

    @app.route("/fixed")
    def fixed_page():
        return page(FIXED_NAMESPACE, fixed=True)

    return app


def second_emit_delay():
    return current_app.config.get("SECOND_EMIT_DELAY", 1)


# --- broken: two emits inside the connect handler ------------------------------

@socketio.on("connect", namespace=NAMESPACE)
def test_connect(auth=None):
    started = time.monotonic()
    # Inside the connect handler emit() already works: it goes to this client.
    # python-socketio sends it at once...
    emit("mess", {"data": "first", "emitted_at": 0.0})
    socketio.sleep(second_emit_delay())
    emit("mess", {"data": "second", "emitted_at": round(time.monotonic() - started, 3)})
    # ...but the CONNECT packet, the server's "yes, you are connected", is only
    # sent after this function returns (socketio.Server._handle_connect), and
    # socket.io-client holds back every event that arrives before it.


# --- fixed: the connect handler returns at once; a background task emits -------

@socketio.on("connect", namespace=FIXED_NAMESPACE)
def connect_fixed(auth=None):
    # A background task has no request context: hand it what it needs.
    socketio.start_background_task(emit_twice, request.sid, second_emit_delay())
    # Returning now sends the CONNECT packet now.


def emit_twice(sid, delay):
    started = time.monotonic()
    # socketio.emit, with the namespace and the one client to send to.
    socketio.emit("mess", {"data": "first", "emitted_at": 0.0}, namespace=FIXED_NAMESPACE, to=sid)
    socketio.sleep(delay)
    socketio.emit("mess", {"data": "second", "emitted_at": round(time.monotonic() - started, 3)},
                  namespace=FIXED_NAMESPACE, to=sid)


@socketio.on("my ping", namespace=NAMESPACE)
@socketio.on("my ping", namespace=FIXED_NAMESPACE)
def my_ping(*ignored):  # *ignored: a payload sent with it changes nothing
    return "pong"
