"""Pages from other origins (other ports) connecting: refused by default; allow exact origins, never "*"."""
import secrets
from urllib.parse import urlsplit
from wsgiref.simple_server import WSGIRequestHandler, make_server

from flask import Flask, abort, render_template, request, session
from flask_socketio import SocketIO, emit

NAMESPACE = "/test_conn"

socketio = SocketIO()

# Two stand-ins for other web sites on this machine, each on its own port (a
# different port is a different origin): "frontend" plays your own front end
# (say a JavaScript dev server), "stranger" any other page the user has open.
# Ports come from FLASK_FRONTEND_PORT and FLASK_STRANGER_PORT; 0 picks a free one.
OTHER_SITES = {"frontend": 5001, "stranger": 5002}


def create_app(async_mode=None):
    """Build the app. ``async_mode=None`` lets Flask-SocketIO pick; ``./lesson run --mode`` passes one."""
    app = Flask(__name__)
    # This demo remembers who you are in Flask's signed session cookie, which
    # needs a secret key. A fresh random one per run: never commit a real key
    # (set FLASK_SECRET_KEY to keep sessions across restarts).
    app.config["SECRET_KEY"] = secrets.token_hex(16)
    app.config.from_prefixed_env()

    # THE SETTING THIS DEMO IS ABOUT. None (the default) accepts only pages
    # from this server's own origin. The fix for a front end on another
    # origin is an exact list, which replaces the default, so it names this
    # server's own origin too:
    #   FLASK_CORS_ALLOWED_ORIGINS='["http://127.0.0.1:5000", "http://127.0.0.1:5001"]'
    # "*" accepts every page on the web: see the README for why not.
    allowed = app.config.get("CORS_ALLOWED_ORIGINS")
    socketio.init_app(app, async_mode=async_mode, cors_allowed_origins=allowed)

    sites = {name: serve_other_site(name, app.config.get(f"{name.upper()}_PORT", port))
             for name, port in OTHER_SITES.items()}

    @app.route("/")
    def index():
        # A pretend login: the first visit gets a user name in the session cookie.
        session.setdefault("user", f"student-{secrets.token_hex(2)}")
        host = urlsplit(request.host_url).hostname
        return render_template(
            "cross_origin.html", role="lesson", async_mode=socketio.async_mode,
            namespace=NAMESPACE, allowed=allowed, user=session["user"],
            lesson=request.host_url.rstrip("/"),
            sites={name: f"http://{host}:{port}" for name, port in sites.items()})

    return app


@socketio.on("who am i", namespace=NAMESPACE)
def who_am_i(*ignored):  # takes no payload; one sent is ignored
    # Flask-SocketIO gives each connection a copy of the session from the
    # cookies of the request that opened it: whichever page connected, it
    # acts as the user who is logged in on this site.
    emit("you are", {"user": session.get("user")})


@socketio.on("my ping", namespace=NAMESPACE)
def my_ping(*ignored):  # *ignored: a payload sent with it changes nothing
    return "pong"


# --- the other sites: not part of the Socket.IO server -------------------------

class QuietHandler(WSGIRequestHandler):
    def log_message(self, *args):  # one line per request would bury the server's own messages
        pass


def serve_other_site(role, port):
    """Serve this demo's page as another site would, on ``port``; return the port."""
    site = Flask(__name__)  # same templates/ and static/ folders as the lesson

    @site.route("/")
    def page():
        # The lesson page says where the lesson is (?lesson=http://host:port).
        lesson = request.args.get("lesson", "http://127.0.0.1:5000")
        if urlsplit(lesson).scheme not in ("http", "https"):
            abort(400)
        return render_template("cross_origin.html", role=role, namespace=NAMESPACE, lesson=lesson)

    try:
        server = make_server("127.0.0.1", port, site, handler_class=QuietHandler)
    except OSError as error:
        raise SystemExit(f"cross_origin: cannot serve the {role!r} page on port {port} "
                         f"({error.strerror}); pick another with FLASK_{role.upper()}_PORT") from None
    socketio.start_background_task(server.serve_forever)
    return server.server_port
