"""The 2019 post's socket.io 1.5.1 client against today's server: refused with 400, retry after retry."""
import secrets

from flask import Flask, current_app, render_template, request
from flask_socketio import SocketIO, emit

# The server is plain and correct (lesson 01's handlers). The pitfall is all in
# the page: it loads the client the 2019 post used, socket.io 1.5.1, and for
# comparison today's 4.x, and connects both to this server.
NAMESPACE = "/test_conn"

socketio = SocketIO()


def create_app(async_mode=None):
    """Build the app. ``async_mode=None`` lets Flask-SocketIO pick; ``./lesson run --mode`` passes one."""
    app = Flask(__name__)
    # Flask signs the session cookie with this key. A random one per process:
    # no key is ever committed, and FLASK_SECRET_KEY (read below) overrides it.
    app.config["SECRET_KEY"] = secrets.token_hex(16)
    app.config.from_prefixed_env()
    socketio.init_app(app, async_mode=async_mode)

    @app.route("/")
    def index():
        return render_template("old_client.html", async_mode=socketio.async_mode, namespace=NAMESPACE)

    return app


class BadPayload(ValueError):
    """A client sent something the handler cannot use. The message says what was expected."""


@socketio.on("my event", namespace=NAMESPACE)
def my_event(message=None, *extra):  # *extra: more than one argument (refused below)
    # The post's page emits {data: "i'm connected"} once connected.
    if extra or not isinstance(message, dict) or "data" not in message:
        raise BadPayload('"my event" expects an object like {"data": ...}')
    emit("event response", {"data": message["data"]})
    return {"ok": True}


@socketio.on("my ping", namespace=NAMESPACE)
def my_ping(*ignored):  # *ignored: a payload sent with it changes nothing
    return "pong"


@socketio.on_error(NAMESPACE)
def on_error(error):
    """Flask-SocketIO calls this when any handler of the namespace raises."""
    if isinstance(error, BadPayload):
        message = str(error)
    else:  # a bug, not the client's fault: details go to the server log only
        current_app.logger.exception("handler for %r failed", request.event["message"])
        message = f'the server could not handle "{request.event["message"]}"'
    emit("error", {"message": message})
    return {"ok": False, "error": message}
