"""Push data the server produces to every open page, from one background task."""
import random
import secrets
from threading import Lock

from flask import Flask, current_app, render_template
from flask_socketio import SocketIO

NAMESPACE = "/test_conn"

socketio = SocketIO()

# The one background task of this server, and the lock that keeps it one.
task = None
task_lock = Lock()


def create_app(async_mode=None):
    app = Flask(__name__)
    # Flask signs the session cookie with this key. A random one per process:
    # no key is ever committed, and FLASK_SECRET_KEY (read below) overrides it.
    app.config["SECRET_KEY"] = secrets.token_hex(16)
    app.config["MESS_INTERVAL"] = 5  # seconds between two pushes, as in the 2019 post
    app.config.from_prefixed_env()   # FLASK_MESS_INTERVAL=0.2 overrides it
    socketio.init_app(app, async_mode=async_mode)

    @app.route("/")
    def index():
        return render_template("index.html", async_mode=socketio.async_mode, namespace=NAMESPACE)

    return app


def push_forever(interval):
    """Emit a new value to every client of the namespace, every ``interval`` seconds."""
    seq = 0
    while True:
        # socketio.sleep, not time.sleep: it is the sleep of the async mode in
        # use (eventlet's, gevent's or the standard one), so under eventlet or
        # gevent the other clients are served while this task waits.
        socketio.sleep(interval)
        seq += 1
        # socketio.emit, not emit: there is no client "request" here, so we
        # name the namespace, and the message goes to all of its clients.
        socketio.emit("mess", {"data": random.randint(1, 100), "seq": seq}, namespace=NAMESPACE)


@socketio.on("connect", namespace=NAMESPACE)
def start_pushing_once():
    global task
    # The connect handler must return quickly (the client is not connected
    # until it does), so the loop runs in a background task, started by the
    # first client. The lock makes "is there a task? if not, start one" a
    # single step: without it, two clients connecting at the same moment can
    # both see `task is None` and start two tasks (see without_lock.py).
    with task_lock:
        if task is None:
            task = socketio.start_background_task(push_forever, current_app.config["MESS_INTERVAL"])


@socketio.on("my ping", namespace=NAMESPACE)
def my_ping(*ignored):  # *ignored: a payload sent with it changes nothing
    return "pong"  # the page times this acknowledgement to show the latency
