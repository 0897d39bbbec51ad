"""The 2019 post's version, without the lock: two clients at once start two tasks."""
import random

from flask import Flask, current_app, render_template
from flask_socketio import SocketIO

NAMESPACE = "/test_conn"

socketio = SocketIO()
task = None


def create_app(async_mode=None):
    app = Flask(__name__)
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
def my_ping():
    return "pong"
