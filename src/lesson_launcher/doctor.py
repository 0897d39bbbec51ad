"""lesson doctor: check in a few seconds what a workshop laptop needs, and say how to fix it.

Each check gives one row: what was checked, the result, and a fix when it is
not ok. A required check that fails is FAIL and makes the exit status 1; a
missing extra that only some of the work needs (a browser for the browser
tests, Redis for lesson 05) is a warning, and leaves the status 0.

The async modes are checked for real: lesson 01 is started through the
launcher in each mode at once (as `lesson run 01 --mode M --port 0`), a client
connects over WebSocket only, sends "my event" and waits for its
acknowledgement. Standard library only at import time, like the rest of the
launcher.
"""
import base64
import concurrent.futures
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from . import catalog, modes

MINIMUM_PYTHON = (3, 10)
OK, WARNING, FAIL = "ok", "warning", "FAIL"
START_TIMEOUT = 15  # a cold start on a slow laptop; a warm one takes about 1 s
TALK_TIMEOUT = 5
# Where a Chromium for the browser tests is looked for, here and by tests/conftest.py.
# The headless shell first: the same engine without the desktop browser around it;
# it used about half the CPU of the full Chromium in the test suite.
SYSTEM_CHROMIUMS = ("chromium-headless-shell", "chromium", "chromium-browser",
                    "google-chrome", "google-chrome-stable")
RECREATE_VENV = "recreate the venv: `rm -rf .venv && ./lesson list` (or see README, Offline workshops)"


@dataclass
class Row:
    check: str
    status: str  # OK, WARNING or FAIL
    detail: str
    fix: str = ""


def main(port: int = 5000) -> int:
    started = time.monotonic()
    rows = run_checks(port)
    return report(rows, time.monotonic() - started)


def run_checks(port: int) -> list:
    client = socketio_client()  # imported once, here: not by three threads at the same moment
    checks = [("python", check_python, ()),
              *[(f"mode {mode}", check_mode, (mode, client)) for mode in modes.MODES],
              ("browser client", check_vendored_client, ()), (f"port {port}", check_port, (port,)),
              ("browser for tests", check_browser, ()), ("redis-server", check_redis, ()),
              ("nginx", check_nginx, ())]
    # Side by side: the three servers spend most of their second importing.
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(checks)) as pool:
        return list(pool.map(lambda check: run_check(*check), checks))


def report(rows, seconds: float) -> int:
    """Print the table and a summary line; the exit status: 1 if a required check failed."""
    print(table(rows))
    failed = [row.check for row in rows if row.status == FAIL]
    warnings = sum(row.status == WARNING for row in rows)
    took = f"{seconds:.1f} s"
    also = f", {warnings} warning{'s' * (warnings != 1)}" if warnings else ""
    if failed:
        print(f"lesson doctor: {len(failed)} required check{'s' * (len(failed) != 1)} failed "
              f"({', '.join(failed)}){also}; see the fix column ({took})")
        return 1
    print(f"lesson doctor: all required checks passed{also} ({took})")
    return 0


def run_check(name, check, args) -> Row:
    """The check's row; a check that crashes is a failed row, never a traceback."""
    try:
        return check(*args)
    except Exception as error:  # noqa: BLE001 -- reported in the table
        return Row(name, FAIL, f"the check itself failed: {type(error).__name__}: {error}",
                   "please report this with the output of `lesson doctor`")


def table(rows) -> str:
    """Aligned plain text: check | result | fix."""
    lines = [("check", "result", "fix")] + [
        (row.check, f"{row.status}: {row.detail}", row.fix) for row in rows]
    widths = [max(len(line[column]) for line in lines) for column in (0, 1)]
    return "\n".join(f"{check:<{widths[0]}}  {result:<{widths[1]}}  {fix}".rstrip()
                     for check, result, fix in lines)


# --- the checks ------------------------------------------------------------------

def check_python() -> Row:
    version = sys.version.split()[0]
    if sys.version_info >= MINIMUM_PYTHON:
        return Row("python", OK, f"{version} (3.10 or newer needed)")
    return Row("python", FAIL, f"{version}; the lessons need 3.10 or newer",
               "install Python 3.10+ (python.org; Debian/Ubuntu: apt-get install python3 "
               "python3-venv), `rm -rf .venv`, and start with it: `python3.12 lesson list`")


def check_mode(mode: str, client=None) -> Row:
    """Start lesson 01 in ``mode`` and do one acknowledged event over WebSocket
    (with ``client``, the socketio module; without it, a bare WebSocket handshake)."""
    name = f"mode {mode}"
    if not modes.installed(mode):
        return Row(name, FAIL, f"{mode} is not installed", RECREATE_VENV)
    fix = f"`lesson run 01 --mode {mode}` shows the error; {RECREATE_VENV}"
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-c", "import sys; from lesson_launcher.cli import main; sys.exit(main())",
         "run", "01", "--mode", mode, "--port", "0"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "LESSON_ROOT": str(catalog.repository_root())})
    try:
        url = wait_for_ready_line(process)
        if url is None:
            return Row(name, FAIL, "lesson 01 did not start: " + last_error(process), fix)
        up = time.monotonic() - started
        try:
            how = websocket_round_trip(url, client)
        except Exception as error:  # noqa: BLE001 -- the row says what went wrong
            return Row(name, FAIL, f"lesson 01 started, but over WebSocket: {error}", fix)
        return Row(name, OK, f"{how}; up in {up:.1f} s")
    finally:
        stop(process)


def wait_for_ready_line(process):
    """The URL from the launcher's ready line, or None if it died or took too long."""
    from .serve import READY_LINE  # standard library only; not imported before it is needed

    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if not select.select([process.stdout], [], [], deadline - time.monotonic())[0]:
            break
        line = process.stdout.readline()
        if not line:  # it exited
            return None
        match = READY_LINE.match(line.rstrip("\n"))
        if match:
            return match["url"]
    process.kill()
    return None


def stop(process) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)  # the launcher exits at once on Ctrl-C
    try:
        process.communicate(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()


def last_error(process) -> str:
    """The last line the dead (or killed) server wrote on stderr."""
    try:
        _, stderr = process.communicate(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        _, stderr = process.communicate()
    lines = [line for line in stderr.splitlines() if line.strip()]
    if process.returncode is not None and process.returncode < 0:
        return f"no ready line within {START_TIMEOUT} s"
    return lines[-1] if lines else f"it exited with status {process.returncode}"


def socketio_client():
    """The python-socketio package, if its client can do WebSocket here (the test extra)."""
    try:
        import socketio
        import websocket  # noqa: F401 -- websocket-client, which the client needs for WebSocket
    except ImportError:
        return None
    return socketio


def websocket_round_trip(url: str, socketio=None) -> str:
    """With the python-socketio client: connect over WebSocket only, emit "my event",
    wait for the acknowledgement. Without it, a bare WebSocket handshake: the
    server must switch protocols and open an Engine.IO session."""
    if socketio is None:
        websocket_handshake(url)
        return "WebSocket handshake ok (no socketio client to go further)"
    client = socketio.Client(reconnection=False)
    started = time.monotonic()
    try:
        client.connect(url, namespaces=["/test_conn"], transports=["websocket"],
                       wait_timeout=TALK_TIMEOUT)
        ack = client.call("my event", {"data": "doctor"}, namespace="/test_conn",
                          timeout=TALK_TIMEOUT)
        transport = client.transport()
    finally:
        client.disconnect()
    if ack != {"ok": True} or transport != "websocket":
        raise RuntimeError(f"expected the ack {{'ok': True}} over websocket, got {ack!r} "
                           f"over {transport}")
    return f"event acknowledged over WebSocket in {1000 * (time.monotonic() - started):.0f} ms"


def websocket_handshake(url: str) -> None:
    """GET /socket.io/ with Upgrade: websocket; expect 101 and the Engine.IO open packet."""
    host, port = re.match(r"http://([^/]+):(\d+)/", url).groups()
    key = base64.b64encode(os.urandom(16)).decode()
    with socket.create_connection((host.strip("[]"), int(port)), timeout=TALK_TIMEOUT) as sock:
        sock.sendall((f"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n"
                      f"Host: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
        status = data.split(b"\r\n", 1)[0].decode(errors="replace")
        if " 101 " not in f"{status} ":
            raise RuntimeError(f"the WebSocket handshake got {status or 'no answer'!r}")
        # The first frame: unmasked text (0x81), its length (in 1, 3 or 9 bytes),
        # then the Engine.IO OPEN packet, "0{...}". Its first two bytes are enough.
        frame = data.split(b"\r\n\r\n", 1)[1]
        while True:
            start = 2 + {126: 2, 127: 8}.get(frame[1] & 0x7F, 0) if len(frame) > 1 else 2
            if len(frame) >= start + 2:
                break
            chunk = sock.recv(4096)
            if not chunk:
                break
            frame += chunk
        if frame[:1] != b"\x81" or frame[start:start + 2] != b"0{":
            raise RuntimeError(f"no Engine.IO open packet after the handshake: {frame[:40]!r}")


def check_vendored_client() -> Row:
    """Every socket.io client file a lesson page loads from static/vendor/ is there,
    and socket.io.min.js is the version package.json pins."""
    root = catalog.repository_root()
    fix = ("restore the committed copies: `git checkout -- 'lessons/*/static/vendor/'` "
           "(or `npm ci && npm run vendor`)")
    pinned = None
    if (root / "package.json").exists():
        pinned = json.loads((root / "package.json").read_text())["devDependencies"]["socket.io-client"]
    wanted = set()
    for template in sorted(root.glob("lessons/*/templates/*.html")):
        for name in re.findall(r"filename=['\"]vendor/([^'\"]+)['\"]", template.read_text(encoding="utf-8")):
            wanted.add(template.parent.parent / "static" / "vendor" / name)
    if not wanted:
        return Row("browser client", FAIL, "no lesson page found under lessons/", fix)
    missing = sorted(str(path.relative_to(root)) for path in wanted if not path.exists())
    if missing:
        return Row("browser client", FAIL, f"missing: {', '.join(missing)}", fix)
    if pinned:
        header = f"/*!\n * Socket.IO v{pinned}\n".encode()
        wrong = sorted(str(path.relative_to(root)) for path in wanted
                       if path.name == "socket.io.min.js" and not path.read_bytes().startswith(header))
        if wrong:
            return Row("browser client", FAIL, f"not socket.io {pinned}: {', '.join(wrong)}", fix)
    lessons = len({path.parents[2] for path in wanted})
    version = f"socket.io {pinned}, " if pinned else ""
    return Row("browser client", OK, f"{version}{len(wanted)} files in {lessons} lessons' static/vendor/")


def check_port(port: int, host: str = "127.0.0.1") -> Row:
    """Can `lesson run` listen there? The same bind as the launcher's (serve.listen)."""
    name = f"port {port}"
    try:
        with socket.create_server((host, port)):
            return Row(name, OK, f"free on {host}")
    except OSError as error:
        if error.errno not in (48, 98):  # EADDRINUSE on macOS, Linux
            return Row(name, FAIL, f"cannot listen on {host}:{port}: {error.strerror or error}",
                       "pick another port with `./lesson run 01 --port 5001`, or --port 0 for any free one")
    fix = ("stop what uses it (a lesson left running in another terminal? Ctrl-C it there), "
           "or run the lessons with `--port 5001` (`--port 0`: any free port)")
    if port == 5000:
        fix += ("; on macOS, AirPlay Receiver takes 5000: turn it off in System Settings > "
                "General > AirDrop & Handoff")
    return Row(name, FAIL, f"in use on {host}{who_answers(host, port)}", fix)


def who_answers(host: str, port: int) -> str:
    """", by Server: X" when what listens there answers HTTP within half a second."""
    try:
        with socket.create_connection((host, port), timeout=0.5) as sock:
            sock.sendall(f"HEAD / HTTP/1.0\r\nHost: {host}:{port}\r\n\r\n".encode())
            head = sock.recv(4096).decode("latin-1")
    except OSError:
        return ""
    server = re.search(r"(?im)^server:\s*(.+?)\s*$", head)
    return f", by Server: {server[1]}" if server else ""


def check_browser() -> Row:
    """A Chromium for the browser tests, searched as tests/conftest.py does: optional,
    since the lessons run in any browser and only `lesson test` drives one."""
    name, note = "browser for tests", ""
    configured = os.environ.get("CHROMIUM")
    if configured and not Path(configured).exists():
        note = f" (CHROMIUM={configured}: no such file)"
    found = next((path for path in chromium_candidates() if path and Path(path).exists()),
                 None) or playwright_chromium()
    if found:
        return Row(name, OK, f"{found}{note}")
    return Row(name, WARNING, f"no Chromium{note}: optional, only the browser tests need one",
               "`sudo apt-get install chromium-headless-shell`, or "
               "`.venv/bin/playwright install chromium`, or CHROMIUM=/path/to/chrome")


def chromium_candidates() -> list:
    """$CHROMIUM, then the system's Chromiums on PATH (None where there is none)."""
    return [os.environ.get("CHROMIUM")] + [shutil.which(name) for name in SYSTEM_CHROMIUMS]


def playwright_chromium():
    """The Chromium `playwright install chromium` downloads, if it did."""
    try:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as playwright:
            path = playwright.chromium.executable_path
    except Exception:  # noqa: BLE001 -- not installed, or its driver cannot start: none found
        return None
    return path if path and Path(path).exists() else None


def check_redis() -> Row:
    found = shutil.which("redis-server")
    if found:
        return Row("redis-server", OK, found)
    return Row("redis-server", WARNING, "not found: optional, only lessons 05 and 06 need it",
               "`sudo apt-get install redis-server`, or `brew install redis` (macOS)")


def check_nginx() -> Row:
    """Lesson 06 puts nginx in front; Debian installs it in /usr/sbin (stack.find_program)."""
    from .stack import StackError, find_program

    try:
        found = find_program("nginx", "LESSON_NGINX", "nginx")
    except StackError:
        return Row("nginx", WARNING, "not found: optional, only lesson 06 needs it",
                   "`sudo apt-get install nginx`, or `brew install nginx` (macOS)")
    return Row("nginx", OK, found)
