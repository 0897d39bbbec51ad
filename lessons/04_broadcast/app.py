"""Who receives an emit: the sender, everyone, everyone else, a room, or a whole namespace."""
import secrets

from flask import Flask, current_app, render_template, request
from flask_socketio import SocketIO, emit, join_room, leave_room, rooms

# The namespace the page talks on, as in the 2019 post. Clients of any other
# namespace (the default one, "/", included) never hear what is emitted here.
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

    # An HTTP view is outside any Socket.IO handler: there is no sender and no
    # current namespace, so flask_socketio.emit() cannot be used here.
    # socketio.emit() can: with no to=, it goes to every client of ONE namespace.
    @app.post("/announce")
    def announce():
        data, problem = announcement_data()
        if problem:
            return problem, 400
        socketio.emit("announcement", {"data": data}, namespace=NAMESPACE)
        return {"ok": True, "namespace": NAMESPACE}

    @app.post("/announce-without-namespace")
    def announce_without_namespace():
        data, problem = announcement_data()
        if problem:
            return problem, 400
        # The classic mistake, on purpose: namespace= left out means "/", not
        # the namespace the page listens on, so /test_conn clients get nothing.
        socketio.emit("announcement", {"data": data})
        return {"ok": True, "namespace": "/"}

    return app


def announcement_data():
    """(data, None) from a JSON body ``{"data": X}``, or (None, an error body)."""
    # get_json() only reads an application/json body, which a cross-site HTML
    # form cannot send: another web page cannot make this server announce.
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or "data" not in body:
        return None, {"message": f'POST {request.path} expects a JSON body like {{"data": ...}} '
                                 '(Content-Type: application/json)'}
    return body["data"], None


class BadPayload(ValueError):
    """A client sent something the handler cannot use. The message says what was expected."""


JSON_TYPES = {dict: "an object", list: "an array", str: "a string", int: "a number",
              float: "a number", bool: "a boolean", type(None): "null", bytes: "binary data"}


def fields(message, *keys, extra=()):
    """The values of ``keys`` in an object payload, or BadPayload naming what arrived instead."""
    event = request.event["message"]
    if extra:  # socket.emit("join", {room: "a"}, "more"): one payload per event here
        raise BadPayload(f'"{event}" expects one argument, got {1 + len(extra)}')
    if not isinstance(message, dict):
        got = JSON_TYPES.get(type(message), type(message).__name__)
        example = ", ".join(f'"{key}": ...' for key in keys)
        raise BadPayload(f'"{event}" expects an object like {{{example}}}, got {got}')
    for key in keys:
        if key not in message:
            raise BadPayload(f'"{event}" expects an object with a "{key}" key, got keys {sorted(message)}')
    return [message[key] for key in keys]


def room_name(room):
    """A room name must be a non-empty string: "" would make emit(to="") fall back
    to the sender alone, and an object cannot be a room at all."""
    if not isinstance(room, str) or not room:
        got = "an empty string" if room == "" else JSON_TYPES.get(type(room), type(room).__name__)
        raise BadPayload(f'"{request.event["message"]}" expects "room" to be a non-empty string, got {got}')
    return room


# --- one client, everyone, everyone else ------------------------------------

@socketio.on("my event", namespace=NAMESPACE)
def my_event(message=None, *extra):  # =None: no payload at all; *extra: several (refused)
    [data] = fields(message, "data", extra=extra)
    # Inside a handler, emit() knows the sender (request.sid) and the
    # namespace, so with no other argument it goes to the sender alone.
    emit("event response", {"data": data})
    return {"ok": True}  # the acknowledgement, for clients that asked for one


@socketio.on("my event broadcast", namespace=NAMESPACE)
def my_event_broadcast(message=None, *extra):
    [data] = fields(message, "data", extra=extra)
    # broadcast=True: every client of this handler's namespace, the sender too.
    emit("my ev broadcast", {"data": data}, broadcast=True)
    return {"ok": True}


@socketio.on("my event others", namespace=NAMESPACE)
def my_event_others(message=None, *extra):
    [data] = fields(message, "data", extra=extra)
    # include_self=False skips the sender (skip_sid=request.sid): a chat
    # message the sender has already shown does not come back to it.
    emit("my ev others", {"data": data}, broadcast=True, include_self=False)
    return {"ok": True}


# --- rooms: named groups of clients inside a namespace ------------------------

def my_rooms():
    """The rooms this client joined. rooms() also lists the room named after the
    client's own sid, which every client is in; that one is not news."""
    return sorted(room for room in rooms() if room != request.sid)


@socketio.on("join", namespace=NAMESPACE)
def join(message=None, *extra):
    [room] = fields(message, "room", extra=extra)
    join_room(room_name(room))
    # Membership is in place once the client has this ack: wait for it before
    # counting on the room's messages (handlers of one client can run concurrently).
    return {"ok": True, "rooms": my_rooms()}


@socketio.on("leave", namespace=NAMESPACE)
def leave(message=None, *extra):
    [room] = fields(message, "room", extra=extra)
    leave_room(room_name(room))
    return {"ok": True, "rooms": my_rooms()}


@socketio.on("my room event", namespace=NAMESPACE)
def my_room_event(message=None, *extra):
    room, data = fields(message, "room", "data", extra=extra)
    room = room_name(room)
    # to=room: the room's members only. The sender need not be one (think of
    # mailing a list you are not on); it gets the message only if it is.
    emit("room response", {"room": room, "data": data}, to=room)
    return {"ok": True}


# --- a round trip for latency meters and test barriers, on both namespaces ----

@socketio.on("my ping", namespace="/")
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
    emit("error", {"message": message})  # to the sender only, as in my_event()
    return {"ok": False, "error": message}  # the error handler's return value is the ack
