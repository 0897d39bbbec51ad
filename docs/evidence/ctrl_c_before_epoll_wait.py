"""A Ctrl-C that comes just before the event loop blocks can be ignored for a minute
(src/lesson_launcher/serve.py, wake_the_loop_on_signals).

Python runs a signal handler in the main thread, between two bytecodes. When SIGINT
comes after the last check and before eventlet's (or gevent's) loop enters
epoll_wait(), the kernel has delivered it, Python has noted it, and nothing wakes the
loop: with no client connected, it sleeps up to a minute before the handler runs.
signal.set_wakeup_fd() closes the gap: Python writes a byte to a pipe the loop watches.

    .venv/bin/python docs/evidence/ctrl_c_before_epoll_wait.py eventlet 100

starts `lesson run 01` N times, sends SIGINT right after its ready line, and counts the
servers still running 3 s later. Seen on 2026-11-25 (2 cores, 4 busy processes beside
it, eventlet 0.40): before the fix, 2 of 106 (in do_epoll_wait, SIGINT caught and not
pending, py-spy showing the hub in Hub.do_poll); after, 0 of 120 in eventlet and 0 of
80 in gevent. Not part of the test suite: the race needs many tries under load, and
the suite must not flake.
"""
import signal
import subprocess
import sys
import time

mode, runs = sys.argv[1], int(sys.argv[2])
ignored = []
for attempt in range(runs):
    server = subprocess.Popen(
        [sys.executable, "-m", "lesson_launcher.cli", "run", "01", "--mode", mode, "--port", "0"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    server.stdout.readline()  # the ready line
    sent = time.monotonic()
    server.send_signal(signal.SIGINT)
    try:
        server.wait(3)
    except subprocess.TimeoutExpired:
        server.wait(120)
        ignored.append(round(time.monotonic() - sent, 1))
    server.stdout.close()
print(f"{mode}: {len(ignored)} of {runs} servers ignored Ctrl-C for over 3 s "
      f"(they stopped after {ignored} s)")
