"""python-engineio's client, over long-polling: a disconnect() right after a call()
can wait for the server's next ping (README, "Keeping it fast").

The write loop is still POSTing when disconnect() queues CLOSE and sets the state to
"disconnecting"; the loop then ends without sending CLOSE, the server keeps the
pending GET open until its next ping, and disconnect() waits for that GET.

    .venv/bin/python docs/evidence/engineio_polling_close_race.py         # some slow
    .venv/bin/python docs/evidence/engineio_polling_close_race.py join    # none slow

Seen on 2026-11-25 (python-engineio 4.15.1, 2 cores): 7 of 40 disconnects took the
ping interval (3 s here); with `join` (wait until the send queue is empty, as
tests/harness.py's disconnect() does): 0 of 40. Not part of the test suite: the race
needs many tries, and the suite must not flake.
"""
import logging
import sys
import threading
import time

import socketio
from werkzeug.serving import make_server

logging.getLogger("werkzeug").setLevel(logging.ERROR)
sio = socketio.Server(async_mode="threading", ping_interval=3)
sio.on("ping2", lambda sid, data=None: "pong")
server = make_server("127.0.0.1", 0, socketio.WSGIApp(sio), threaded=True)
threading.Thread(target=server.serve_forever, daemon=True).start()
url = f"http://127.0.0.1:{server.server_port}"
join = sys.argv[1:] == ["join"]

slow = 0
for attempt in range(40):
    client = socketio.Client(reconnection=False)
    client.connect(url, transports=["polling"])
    assert client.call("ping2", timeout=5) == "pong"
    started = time.monotonic()
    if join:
        client.eio.queue.join()
    client.disconnect()
    took = time.monotonic() - started
    slow += took > 1
    if took > 1:
        print(f"attempt {attempt}: disconnect() took {took:.2f} s")
print(f"slow disconnects: {slow} of 40" + (" (after queue.join())" if join else ""))
