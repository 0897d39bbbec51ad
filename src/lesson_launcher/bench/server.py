"""The benchmark's baseline: a bare python-socketio server, no Flask, with the
handlers the benchmark drives in lessons 01 and 04, served exactly as the
launcher serves a lesson (same patching, same socket, same WSGI server).

So the only difference between this server and ``lesson run`` is Flask and
Flask-SocketIO, and the ratio of their figures is what those two cost.

    python -m lesson_launcher.bench.server --mode gevent [--no-nodelay]

``--no-nodelay`` turns TCP_NODELAY off again on the listening socket, to
reproduce the ~40 ms stalls that serve.listen() prevents; ``--backlog N``
lengthens its listen queue (see README.md, "Which async mode? Measured on this machine").
"""
import socket
import sys

from .. import modes

NAMESPACE = "/test_conn"
LABEL = "bench_server"


def create_app(async_mode: str):
    """A socketio.WSGIApp with lesson 01's ``my event`` and ``my ping`` and
    lesson 04's ``my event others``, minus their payload checks."""
    import socketio

    sio = socketio.Server(async_mode=async_mode)

    @sio.on("my event", namespace=NAMESPACE)
    def my_event(sid, message):
        sio.emit("event response", {"data": message["data"]}, to=sid, namespace=NAMESPACE)
        return {"ok": True}

    @sio.on("my event others", namespace=NAMESPACE)
    def my_event_others(sid, message):
        sio.emit("my ev others", {"data": message["data"]}, skip_sid=sid, namespace=NAMESPACE)
        return {"ok": True}

    @sio.on("my ping", namespace=NAMESPACE)
    def my_ping(sid, *ignored):  # a payload sent with it changes nothing, as in the lessons
        return "pong"

    return socketio.WSGIApp(sio)


def main(argv=None) -> int:
    from ..cmdline import Parser, port_number

    parser = Parser(prog="python -m lesson_launcher.bench.server",
                    description="A bare python-socketio server: the benchmark's baseline.")
    parser.add_argument("--mode", required=True, choices=modes.MODES)
    parser.add_argument("--port", default=0, type=port_number)
    parser.add_argument("--no-nodelay", action="store_true",
                        help="leave Nagle's algorithm on (to reproduce the 40 ms stalls)")
    parser.add_argument("--backlog", type=int,
                        help="listen queue length (the launcher's: Python's default, 128)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    modes.patch(args.mode)  # before socketio is imported, as the launcher does

    from .. import serve  # noqa: E402  (after patching, on purpose)

    sock = serve.listen("127.0.0.1", args.port)
    if args.no_nodelay:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 0)
    if args.backlog:
        sock.listen(args.backlog)  # Linux lets a listening socket change its queue length
    app = create_app(args.mode)
    serve.stop_on_signals()
    serve.announce(LABEL, app.engineio_app.async_mode, sock)
    serve.serve(args.mode, app, sock, log_requests=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
