"""python-socketio's Manager.connect() is not thread-safe: in threading mode, two clients
whose connects to one namespace finish at the same moment can make the server log
"message handler error" and

    KeyError: '/test_conn'   (socketio/base_manager.py, connect: self.pending_connect[namespace])

(README, "Keeping it fast"). Thread A removes its sid from pending_connect[namespace],
thread B removes its own, A finds the list empty and deletes the key, B reads
pending_connect[namespace] again: KeyError. Server._handle_connect (socketio/server.py)
sent the CONNECT packet before it called manager.connect(), so both clients are connected
and the manager's state ends up right: a traceback in the log, nothing else.

    .venv/bin/python docs/evidence/socketio_pending_connect_race.py

Exit status 0 once a KeyError is seen, 1 if none in 2,000 rounds. Seen on 2026-12-07
(python-socketio 5.18.1, 2 cores): after 515 rounds of 4 simultaneous connects; and in
CI (Python 3.12) in tests/test_load.py's threading server, 50 clients connecting at once.
Not part of the test suite: the race needs many tries, and the suite must not flake.
"""
import sys
import threading

import socketio

sys.setswitchinterval(1e-6)  # switch threads as often as possible: the window is a few bytecodes
NAMESPACE, ROUNDS, THREADS = "/test_conn", 2000, 4

manager = socketio.Server(async_mode="threading").manager  # the manager every server gets
errors = []


def connect_at_once(barrier, eio_sid):
    sid = manager.pre_connect(eio_sid, NAMESPACE)  # what _handle_connect does first...
    barrier.wait()
    try:
        manager.connect(sid, NAMESPACE)  # ...and last, once the CONNECT packet is out
    except KeyError as error:
        errors.append(error)


for done in range(1, ROUNDS + 1):
    barrier = threading.Barrier(THREADS)
    threads = [threading.Thread(target=connect_at_once, args=(barrier, f"eio-{done}-{n}"))
               for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        break

if errors:
    print(f"{errors[0]!r} after {done} rounds of {THREADS} simultaneous connects")
else:
    print(f"no KeyError in {ROUNDS} rounds of {THREADS} simultaneous connects")
sys.exit(0 if errors else 1)
