"""The 2019 post's SocketIO(async_model=...) typo: no error, and the mode is not the one asked for."""
import secrets

from flask import Flask, render_template, request
from flask_socketio import SocketIO, emit

NAMESPACE = "/test_conn"

# THE PITFALL, spelt as in the 2019 post: "async_model" instead of "async_mode".
# Nothing complains. Flask-SocketIO keeps every keyword it does not know and
# passes it on to socketio.Server, which passes it on to engineio.Server, whose
# __init__ takes **kwargs and ignores what it does not use. With no async_mode,
# engineio then picks the first mode that imports: eventlet, gevent_uwsgi,
# gevent, threading. Spelt right, SocketIO(async_mode="threading") is obeyed,
# and a wrong value ("threadin") raises ValueError at once.
socketio = SocketIO(async_model="threading")


def create_app(async_mode=None):
    """Build the app. ``./lesson run --mode`` passes ``async_mode``; like the
    post's code, this demo does not pass it on: the typo is all the server gets."""
    app = Flask(__name__)
    # Flask signs the session cookie with this key. A random one per process:
    # no key is ever committed, and FLASK_SECRET_KEY (read below) overrides it.
    app.config["SECRET_KEY"] = secrets.token_hex(16)
    app.config.from_prefixed_env()
    app.config["LAUNCHER_MODE"] = async_mode  # only to show it on the page
    socketio.init_app(app)

    @app.route("/")
    def index():
        return render_template(
            "async_model_typo.html", namespace=NAMESPACE,
            async_mode=socketio.async_mode,                  # what the server really runs
            launcher_mode=app.config["LAUNCHER_MODE"],
            options=socketio.server_options,                 # what Flask-SocketIO passed on
            detection_order=socketio.server.eio.async_modes(),
            web_server=request.environ.get("SERVER_SOFTWARE"))

    return app


@socketio.on("which mode", namespace=NAMESPACE)
def which_mode(*ignored):  # takes no payload; one sent is ignored
    # Asked over the socket, so the answer comes from the running server.
    emit("server mode", {"async_mode": socketio.async_mode})


@socketio.on("my ping", namespace=NAMESPACE)
def my_ping(*ignored):  # *ignored: a payload sent with it changes nothing
    return "pong"
