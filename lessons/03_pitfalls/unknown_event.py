"""An event name no handler listens to ("my event braodcast"): dropped in silence; a catch-all answers it."""
# The 2019 post's page and server must agree on every event name, letter for
# letter. One letter off ("my event braodcast" for "my event broadcast") and
# nothing happens anywhere: the server drops the event, the sender gets no
# error, and the callback it passed to emit() is never called. On /test_conn
# this demo has the post's handlers and nothing else; /test_conn_fixed has the
# same handlers plus a catch-all, @socketio.on("*"), which answers every event
# that has no handler of its own.
import secrets

from flask import Flask, current_app, render_template, request
from flask_socketio import SocketIO, emit

NAMESPACE = "/test_conn"              # the post's handlers, and nothing else
FIXED_NAMESPACE = "/test_conn_fixed"  # the same, plus a catch-all

socketio = SocketIO()


def create_app(async_mode=None):
    """Build the app. Settings (FLASK_* environment variables):
    FLASK_ACK_TIMEOUT, milliseconds the page waits for an acknowledgement (default 2000)."""
    app = Flask(__name__)
    # Flask signs the session cookie with this key. A random one per process:
    # no key is ever committed, and FLASK_SECRET_KEY (read below) overrides it.
    app.config["SECRET_KEY"] = secrets.token_hex(16)
    app.config.from_prefixed_env()
    socketio.init_app(app, async_mode=async_mode)

    def page(namespace, fixed):
        return render_template("unknown_event.html", demo="unknown_event", fixed=fixed,
                               namespace=namespace, async_mode=socketio.async_mode,
                               ack_timeout=current_app.config.get("ACK_TIMEOUT", 2000))

    @app.route("/")
    def broken_page():
        return page(NAMESPACE, fixed=False)

    @app.route("/fixed")
    def fixed_page():
        return page(FIXED_NAMESPACE, fixed=True)

    return app


def data_of(message, extra):
    """The ``data`` of ``{"data": X}``; anything else gets the `error` event, as in lesson 01."""
    if extra or not isinstance(message, dict) or "data" not in message:
        raise BadPayload(f'"{request.event["message"]}" expects an object like {{"data": ...}}')
    return message["data"]


class BadPayload(ValueError):
    pass


# --- the post's handlers, on both namespaces ------------------------------------

@socketio.on("my event", namespace=NAMESPACE)
@socketio.on("my event", namespace=FIXED_NAMESPACE)
def my_event(message=None, *extra):
    emit("event response", {"data": data_of(message, extra)})
    return {"ok": True}


@socketio.on("my event broadcast", namespace=NAMESPACE)
@socketio.on("my event broadcast", namespace=FIXED_NAMESPACE)
def my_event_broadcast(message=None, *extra):
    emit("my ev broadcast", {"data": data_of(message, extra)}, broadcast=True)
    return {"ok": True}


@socketio.on("my ping", namespace=NAMESPACE)
@socketio.on("my ping", namespace=FIXED_NAMESPACE)
def my_ping(*ignored):  # *ignored: a payload sent with it changes nothing
    return "pong"


@socketio.on_error(NAMESPACE)
@socketio.on_error(FIXED_NAMESPACE)
def on_error(error):
    """A handler raised: an `error` event to the sender, and the same in the ack (lesson 01)."""
    if isinstance(error, BadPayload):
        message = str(error)
    else:  # a bug, not the client's fault: details go to the server log only
        current_app.logger.exception("handler for %r failed", request.event["message"])
        message = f'the server could not handle "{request.event["message"]}"'
    emit("error", {"message": message})
    return {"ok": False, "error": message}


# --- the fix: a catch-all for the events nobody else handles ----------------------

@socketio.on("*", namespace=FIXED_NAMESPACE)
def unknown_event(event, *args):
    # python-socketio calls this only for an event of this namespace that has no
    # handler of its own ("connect" and "disconnect" never come here), and passes
    # the event's name first. Tell the sender, in an event and in the ack (sent
    # only if the sender asked for one), and leave one line in the log.
    message = f'no handler for event "{event}" on {FIXED_NAMESPACE}'
    current_app.logger.warning("unknown event %r from %s on %s", event, request.sid,
                               FIXED_NAMESPACE)
    emit("error", {"message": message, "event": event})
    return {"ok": False, "error": message}
