"""Lesson 05's broadcast, served for production: gunicorn backends behind nginx, joined by Redis."""
import os
import secrets
import socket

from flask import Flask, current_app, render_template
from flask_socketio import SocketIO, emit

from queue_check import check_message_queue, redact

NAMESPACE = "/test_conn"

socketio = SocketIO()


def create_app(async_mode=None):
    """Build the app: gunicorn calls it once in each worker (`app:create_app()`).

    FLASK_MESSAGE_QUEUE=redis://HOST:PORT/0 joins the backends; FLASK_BACKEND names this
    one on the page (default: the machine's name).
    """
    app = Flask(__name__)
    # A random key per process; FLASK_SECRET_KEY (read below) overrides it. Behind a
    # load balancer, give every backend the same key if the app uses Flask's session.
    app.config["SECRET_KEY"] = secrets.token_hex(16)
    app.config["BACKEND"] = socket.gethostname()
    app.config.from_prefixed_env()
    queue = app.config.get("MESSAGE_QUEUE")
    if queue:
        check_message_queue(queue)  # fail at startup, in one line, rather than lose messages
    # async_mode must be the one of gunicorn's worker: gevent for `-k gevent`,
    # threading for `-k gthread`. Left to guess, Flask-SocketIO tries eventlet first.
    socketio.init_app(app, async_mode=async_mode, message_queue=queue)

    @app.route("/")
    def index():
        return render_template("index.html", async_mode=socketio.async_mode,
                               namespace=NAMESPACE, queue=redact(queue) if queue else None)

    return app


def backend():
    """Which backend process holds this connection: its name and the worker's pid."""
    return f"{current_app.config['BACKEND']} (pid {os.getpid()})"


@socketio.on("connect", namespace=NAMESPACE)
def on_connect(auth=None):
    # The page cannot tell which backend nginx chose: the backend says so itself.
    emit("backend", {"backend": backend()})


@socketio.on("my event broadcast", namespace=NAMESPACE)
def my_event_broadcast(message=None, *extra):  # *extra: more than one argument (refused below)
    if extra or not isinstance(message, dict) or "data" not in message:
        error = '"my event broadcast" expects an object like {"data": ...}'
        emit("error", {"message": error})
        return {"ok": False, "error": error}
    # Every client of every backend gets it, through Redis; "via" names the
    # backend of the sender (the Host header is nginx's, the same for all).
    emit("my ev broadcast", {"data": message["data"], "via": backend()}, broadcast=True)
    return {"ok": True}


@socketio.on("my ping", namespace="/")
@socketio.on("my ping", namespace=NAMESPACE)
def my_ping(*ignored):  # the page measures its latency with this round trip
    return "pong"
