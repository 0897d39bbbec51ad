"""Broadcast across several server processes, joined by a Redis message queue."""
import secrets

from flask import Flask, render_template, request
from flask_socketio import SocketIO, emit

from queue_check import check_message_queue, redact

NAMESPACE = "/test_conn"

socketio = SocketIO()


def create_app(async_mode=None):
    """Build the app; FLASK_MESSAGE_QUEUE=redis://HOST:PORT/0 joins it to the other servers."""
    app = Flask(__name__)
    # Flask signs the session cookie with this key. A random one per process:
    # no key is ever committed, and FLASK_SECRET_KEY (read below) overrides it.
    app.config["SECRET_KEY"] = secrets.token_hex(16)
    app.config.from_prefixed_env()
    queue = app.config.get("MESSAGE_QUEUE")  # None: a single server, as in lesson 04
    if queue:
        check_message_queue(queue)  # fail now, in one line, rather than lose messages later
    # With message_queue, every emit is also published to Redis, and every
    # server re-emits to its own clients what the others publish.
    socketio.init_app(app, async_mode=async_mode, message_queue=queue)

    @app.route("/")
    def index():
        return render_template("index.html", async_mode=socketio.async_mode,
                               namespace=NAMESPACE, queue=redact(queue) if queue else None)

    return app


@socketio.on("my event broadcast", namespace=NAMESPACE)
def my_event_broadcast(message=None, *extra):  # *extra: more than one argument (refused below)
    if extra or not isinstance(message, dict) or "data" not in message:
        error = '"my event broadcast" expects an object like {"data": ...}'
        emit("error", {"message": error})  # to the sender alone, as lesson 01's on_error does
        return {"ok": False, "error": error}
    # broadcast=True reaches every client of the namespace on EVERY server
    # joined by the queue; "via" says which server the sender is connected to.
    emit("my ev broadcast", {"data": message["data"], "via": request.host}, broadcast=True)
    return {"ok": True}


@socketio.on("my ping", namespace="/")
@socketio.on("my ping", namespace=NAMESPACE)
def my_ping(*ignored):  # *ignored: a payload sent with it changes nothing
    return "pong"
