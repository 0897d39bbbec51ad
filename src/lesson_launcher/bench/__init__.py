"""`lesson bench`: the async modes measured on this machine (round trips, a connect
storm, a fan-out), each lesson next to a bare python-socketio server.

    run.py      the command: starts the servers, drives the measurements, main()
    clients.py  the lean WebSocket load generator (also used by tests/test_load.py)
    server.py   the bare baseline server (python -m lesson_launcher.bench.server)
    report.py   bench.md, bench.png and bench.json

A package of its own: the launcher (lesson_launcher.cli) knows only `main`, and
nothing here imports the launcher's command line.
"""


def main(argv=None) -> int:
    from .run import main as run

    return run(argv)
