"""The 2019 post's version, without the lock: two clients at once start two tasks."""
import random
import secrets

from flask import Flask, current_app, render_template
from flask_socketio import SocketIO

NAMESPACE = "/test_conn"

socketio = SocketIO()
task = None


def create_app(async_mode=None):
    app = Flask(__name__)
    # Flask signs the session cookie with this key. A random one per process:
    # no key is ever committed, and FLASK_SECRET_KEY (read below) overrides it.
    app.config["SECRET_KEY"] = secrets.token_hex(16)
    app.config["MESS_INTERVAL"] = 5
    # Real servers hit this race once in a while; this demo widens the gap
    # between "is there a task?" and "now there is" so it happens every time.
    app.config["RACE_WINDOW"] = 0.5
    app.config.from_prefixed_env()
    socketio.init_app(app, async_mode=async_mode)

    @app.route("/")
    def index():
        return render_template("index.html", async_mode=socketio.async_mode, namespace=NAMESPACE)

    return app


def push_forever(interval):
    seq = 0
    while True:
        socketio.sleep(interval)
        seq += 1
        socketio.emit("mess", {"data": random.randint(1, 100), "seq": seq}, namespace=NAMESPACE)


@socketio.on("connect", namespace=NAMESPACE)
def start_pushing_once():
    global task
    if task is None:  # a second client can pass this check before `task` is set below
        socketio.sleep(current_app.config["RACE_WINDOW"])
        task = socketio.start_background_task(push_forever, current_app.config["MESS_INTERVAL"])


@socketio.on("my ping", namespace=NAMESPACE)
def my_ping(*ignored):  # *ignored: a payload sent with it changes nothing
    return "pong"
