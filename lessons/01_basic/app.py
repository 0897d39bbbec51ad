"""Send an event, get a reply, an acknowledgement, and a clear error for bad input."""
import secrets

from flask import Flask, current_app, render_template, request
from flask_socketio import SocketIO, emit

# A namespace is a named channel multiplexed over one connection. The 2019
# post's page connects to this one; handlers below are registered on it.
NAMESPACE = "/test_conn"

# Created without an app, bound to one in create_app(): the Flask
# "application factory" pattern, so tests can build as many apps as they like.
socketio = SocketIO()


def create_app(async_mode=None):
    """Build the app. ``async_mode=None`` lets Flask-SocketIO pick
    (eventlet, then gevent, then threading); ``./lesson run --mode`` passes one."""
    app = Flask(__name__)
    # Flask signs the session cookie with this key. A random one per process:
    # no key is ever committed, and FLASK_SECRET_KEY (read below) overrides it.
    app.config["SECRET_KEY"] = secrets.token_hex(16)
    # Settings come from FLASK_* environment variables, e.g. FLASK_SECRET_KEY.
    app.config.from_prefixed_env()
    socketio.init_app(app, async_mode=async_mode)

    @app.route("/")
    def index():
        return render_template("index.html", async_mode=socketio.async_mode, namespace=NAMESPACE)

    return app


class BadPayload(ValueError):
    """A client sent something the handler cannot use. The message says what was expected."""


JSON_TYPES = {dict: "an object", list: "an array", str: "a string", int: "a number",
              float: "a number", bool: "a boolean", type(None): "null", bytes: "binary data"}


def data_of(message, extra=()):
    """The ``data`` of ``{"data": X}``, or BadPayload naming what arrived instead."""
    event = request.event["message"]
    if extra:  # socket.emit("my event", {data: 1}, "more"): one payload per event here
        raise BadPayload(f'"{event}" expects one argument, got {1 + len(extra)}')
    if not isinstance(message, dict):
        got = JSON_TYPES.get(type(message), type(message).__name__)
        raise BadPayload(f'"{event}" expects an object like {{"data": ...}}, got {got}')
    if "data" not in message:
        raise BadPayload(f'"{event}" expects an object with a "data" key, got keys {sorted(message)}')
    return message["data"]


@socketio.on("my event", namespace=NAMESPACE)
def my_event(message=None, *extra):  # =None: no payload at all; *extra: several (refused)
    data = data_of(message, extra)
    # Inside a handler, emit() knows the sender (request.sid) and the
    # namespace, so this goes to the sender alone.
    emit("event response", {"data": data})
    # Whatever a handler returns is the acknowledgement: it is passed to the
    # callback the client gave to emit(), if it gave one.
    return {"ok": True}


@socketio.on("my ping", namespace=NAMESPACE)
def my_ping(*ignored):  # *ignored: a payload sent with it changes nothing
    # Nothing to do: the page times how long the acknowledgement takes to come back.
    return "pong"


@socketio.on_error(NAMESPACE)
def on_error(error):
    """Flask-SocketIO calls this when any handler of the namespace raises."""
    if isinstance(error, BadPayload):
        message = str(error)
    else:  # a bug, not the client's fault: details go to the server log only
        current_app.logger.exception("handler for %r failed", request.event["message"])
        message = f'the server could not handle "{request.event["message"]}"'
    emit("error", {"message": message})  # to the sender only, as in my_event()
    return {"ok": False, "error": message}  # the error handler's return value is the ack
