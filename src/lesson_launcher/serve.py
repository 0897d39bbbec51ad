"""Serve a WSGI app in one async mode, on a socket we bound ourselves.

This is what ``socketio.run(app)`` does (see flask_socketio.SocketIO.run),
with two differences a test harness needs: we bind the listening socket first,
so ``--port 0`` can report the port the kernel chose, and we print one ready
line as soon as that socket accepts connections. In your own app, call
``socketio.run(app)``.
"""
import logging
import os
import re
import signal
import socket
import sys


class CannotListen(OSError):
    pass


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket; after monkey patching it is a cooperative one."""
    try:
        family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.create_server(address, family=family)
        # Real-time messages are small: send each at once rather than letting
        # Nagle's algorithm hold the second of two back-to-back messages (an
        # event and its ack) for the client's delayed ACK, about 40 ms.
        # Accepted connections inherit this option from the listening socket.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
    except socket.gaierror as error:
        raise CannotListen(f"cannot listen on host {host!r}: {error.strerror}") from None
    except OSError as error:
        if error.errno == 98 or "in use" in str(error).lower():
            hint = " (on macOS, AirPlay Receiver takes 5000)" if port == 5000 else ""
            raise CannotListen(f"port {port} on {host} is already in use{hint}; "
                               "pick another with --port, or --port 0 for any free one") from None
        raise CannotListen(f"cannot listen on {host}:{port}: {error.strerror or error}") from None


def stop_on_signals() -> None:
    """Ctrl-C (SIGINT) and SIGTERM end the server at once, with status 0.

    A Socket.IO server holds connections that never finish by themselves
    (WebSocket, long-polling), and each server's graceful stop waits for
    them: eventlet.wsgi.server joins every connection, gevent and Werkzeug
    wait for their handlers. So the launcher does not wait: it says so and
    exits. The clients see their connections close, as when a server dies,
    and a reconnecting client (the page) comes back when you start it again.
    Installed explicitly, so it also works where SIGINT was inherited as
    ignored (a shell's background job, some CI runners).
    """
    def stop(signum, frame):
        try:
            print("lesson: stopped", file=sys.stderr, flush=True)
            sys.stdout.flush()
        except OSError:  # nobody reads our output any more (a closed pipe): stop all the same
            pass
        os._exit(0)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)


STATS_PATH = "/_lesson/stats"


def with_stats(app):
    """``app``, plus ``GET /_lesson/stats``: this process's live OS threads and greenlets,
    as JSON, for the load test's leak check (tests/test_load.py). Only with LESSON_STATS=1:
    a server should not describe its insides to whoever asks."""
    import gc
    import json

    def stats_app(environ, start_response):
        if environ.get("PATH_INFO") != STATS_PATH or environ.get("REQUEST_METHOD") != "GET":
            return app(environ, start_response)
        # OS threads as the kernel counts them: under eventlet and gevent the
        # threading module is patched and would count greenlets instead (Linux only).
        tasks = "/proc/self/task"
        threads = len(os.listdir(tasks)) if os.path.isdir(tasks) else None
        greenlet = sys.modules.get("greenlet")  # imported by eventlet and gevent only
        greenlets = None if greenlet is None else sum(
            1 for obj in gc.get_objects() if isinstance(obj, greenlet.greenlet) and not obj.dead)
        body = json.dumps({"threads": threads, "greenlets": greenlets}).encode()
        start_response("200 OK", [("Content-Type", "application/json"),
                                  ("Content-Length", str(len(body)))])
        return [body]

    return stats_app


def wake_the_loop_on_signals(mode: str) -> None:
    """Let a signal wake the event loop, so that stop_on_signals' handler runs.

    Python runs a signal handler in the main thread, between two bytecodes. A
    Ctrl-C that comes just before eventlet's or gevent's loop blocks in
    epoll_wait() is noted, but the handler waits until the loop wakes up: with
    no client, a minute or more. (Measured under load: 2 Ctrl-C in 106 ignored
    for over 3 s, without this; docs/evidence/ctrl_c_before_epoll_wait.py.) With
    signal.set_wakeup_fd(), Python also writes a byte to a pipe when a signal
    comes; the loop watches the pipe, wakes, and the handler runs. Werkzeug's
    server (threading) needs none of this: it wakes every 0.5 s by itself.
    """
    if mode == "threading":
        return
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)  # set_wakeup_fd() insists: a signal handler must not block
    signal.set_wakeup_fd(write_end)
    if mode == "eventlet":
        import eventlet
        from eventlet.hubs import trampoline

        eventlet.spawn(trampoline, read_end, read=True)
    else:
        import gevent
        from gevent.socket import wait_read

        gevent.spawn(wait_read, read_end)


def cooperative(mode: str, sock: socket.socket):
    """The listening socket as eventlet's or gevent's own (what socketio.run() makes),
    if it was made before monkey patching, or without it (`lesson run --patch late|none`):
    a plain socket's accept() would block every green thread until a client connects."""
    if mode == "eventlet":
        from eventlet.greenio import GreenSocket

        return sock if isinstance(sock, GreenSocket) else GreenSocket(sock)
    if mode == "gevent":
        import gevent.socket

        if not isinstance(sock, gevent.socket.socket):
            return gevent.socket.socket(sock.family, sock.type, sock.proto, fileno=sock.detach())
    return sock


def serve(mode: str, app, sock: socket.socket, log_requests: bool) -> None:
    """Serve until the process is stopped (see stop_on_signals)."""
    if os.environ.get("LESSON_STATS") == "1":
        app = with_stats(app)
    wake_the_loop_on_signals(mode)
    sock = cooperative(mode, sock)
    if mode == "eventlet":
        import eventlet.wsgi

        # debug=False: eventlet's default (True) sends the traceback of an error
        # that escapes Flask to the client (tests/test_safe_defaults.py).
        eventlet.wsgi.server(sock, app, log_output=log_requests, debug=False)
    elif mode == "gevent":
        from gevent import pywsgi

        # WebSocket comes from simple-websocket (engineio.async_drivers.gevent),
        # so the plain pywsgi server is enough; gevent-websocket is not needed.
        class Handler(pywsgi.WSGIHandler):
            """Close the TCP connection when a WebSocket session ends.

            Otherwise pywsgi keeps it open for a next HTTP request, reads the
            client's last WebSocket frames as one, and logs "Invalid HTTP
            method" for every client that leaves (socketio.run() has the same
            noise in gevent mode without gevent-websocket)."""

            def handle_one_response(self):
                super().handle_one_response()
                if self.environ.get("HTTP_UPGRADE", "").lower() == "websocket":
                    self.close_connection = True

        server = pywsgi.WSGIServer(sock, app, handler_class=Handler,
                                   log="default" if log_requests else None)
        server.serve_forever()
    else:
        from werkzeug.serving import WSGIRequestHandler, make_server

        class Handler(WSGIRequestHandler):
            """Close the TCP connection when a WebSocket session ends (as for
            gevent above); otherwise Werkzeug logs the client's goodbye frames
            as bad requests, and never answers its WebSocket close, which
            leaves the client waiting 3 s to give up on it."""

            def run_wsgi(self):
                super().run_wsgi()
                if self.headers.get("Upgrade", "").lower() == "websocket":
                    self.close_connection = True

        if not log_requests:  # Werkzeug logs every request unless told not to
            logging.getLogger("werkzeug").setLevel(logging.ERROR)
        host, port = sock.getsockname()[:2]
        # threaded=True: one thread per connection, which long-polling and
        # WebSocket connections need. This is also what socketio.run() does.
        server = make_server(host, port, app, threaded=True, request_handler=Handler,
                             fd=sock.fileno())
        server.serve_forever()


def url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/"


# announce()'s line as a pattern, for all that wait for it: the tests' harness, the
# notebooks' lesson_server and the benchmark. The host is what url() prints.
READY_LINE = re.compile(r"^Serving (?P<label>\S+) \(async_mode=(?P<mode>\w+)"
                        r"(?:, patch=(?P<patch>late|none))?\) on "
                        r"(?P<url>http://(?P<host>[\d.]+|\[[\da-f:]+\]):(?P<port>\d+)/)$")


def announce(lesson_name: str, async_mode: str, sock: socket.socket, patch="early") -> None:
    """The ready line that tests, notebooks and people wait for (READY_LINE). It names
    the monkey patching only when it is not the default (`lesson run --patch late|none`)."""
    patching = "" if patch == "early" else f", patch={patch}"
    print(f"Serving {lesson_name} (async_mode={async_mode}{patching}) on {url(sock)}", flush=True)
    sys.stdout.flush()
