"""`lesson run 06`: a production stack on loopback, started and stopped as one.

    Redis (a temporary one, its own dir, nothing saved)
      <- K gunicorn backends, one worker each, FLASK_MESSAGE_QUEUE pointing at that Redis
      <- nginx in front: the lesson's nginx.conf, with the ports of this run filled in

The lesson folder holds what a student copies to a server (app.py,
gunicorn.conf.py, nginx.conf); this module only starts them, as a person
would in four terminals, and stops every process it started on Ctrl-C.

No process outlives the launcher: each child runs in a process group of its own
(killed as a group on the way out, so gunicorn's and nginx's workers go too),
and on Linux each is told to get SIGKILL if the launcher dies without cleaning
up (prctl PR_SET_PDEATHSIG).

Traps (`--trap NAME`, repeatable, or `--trap all`) are the classic mistakes,
each served next to the correct site on a port of its own, so one stack shows
them all: nginx sites with a line removed or changed, and one gunicorn with
four workers. Standard library only (it imports gunicorn's worker table, no more).
"""
import ctypes
import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from .process import free_port

STACK_FILES = ("gunicorn.conf.py", "nginx.conf")
# name -> what is wrong with it (the README explains each one)
TRAPS = {
    "workers": "one gunicorn with -w 4: four workers share one port, and a session lives in one",
    "round-robin": "nginx without ip_hash: no sticky sessions",
    "no-upgrade": "nginx without the Upgrade and Connection headers: no WebSocket",
    "host": "nginx with `proxy_set_header Host $host`, which drops the port: the origin check refuses the browser",
}
SEVERAL_WORKERS = 4  # the `workers` trap: gunicorn -w 4
THREADS = 100  # gthread: one thread per open connection (long-poll or WebSocket)
READY_TIMEOUT = 30  # seconds for Redis, every backend and nginx to answer (cold imports, busy CI)
STOP_TIMEOUT = 5  # then what has not exited gets SIGKILL
UPSTREAM = "socketio_backends"


class StackError(Exception):
    """A one-line reason the stack cannot run (the launcher exits with status 2)."""


def is_stack_lesson(path: Path) -> bool:
    return all((path / name).exists() for name in STACK_FILES)


# --- what runs where ------------------------------------------------------------

def gunicorn_version() -> str:
    from importlib.metadata import version
    return version("gunicorn")


def worker_class_args(mode: str):
    """gunicorn's options for an async mode; None if the installed gunicorn has no
    worker for it (eventlet's was removed: gunicorn 27 lists none)."""
    from gunicorn.workers import SUPPORTED_WORKERS  # a plain dict; imports nothing else

    wanted = {"gevent": ["-k", "gevent"], "eventlet": ["-k", "eventlet"],
              "threading": ["-k", "gthread", "--threads", str(THREADS)]}[mode]
    return wanted if wanted[1] in SUPPORTED_WORKERS else None


def find_program(name: str, variable: str, package: str) -> str:
    """The program's path: $VARIABLE if set, else PATH and the sbin folders (Debian
    puts nginx in /usr/sbin, which a user's PATH often lacks)."""
    configured = os.environ.get(variable)
    if configured is not None:
        if os.access(configured, os.X_OK):
            return configured
        raise StackError(f"{variable}={configured} is not a program; lesson 06 needs {name}: "
                         f"{install_hint(package)}")
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"])
    found = shutil.which(name, path=path)
    if not found:
        raise StackError(f"lesson 06 needs {name}, which is not installed: {install_hint(package)}")
    return found


def install_hint(package: str) -> str:
    return f"`sudo apt-get install {package}` (Debian/Ubuntu), `brew install {package.split('-')[0]}` (macOS)"


def port_is_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


# --- nginx's configuration ------------------------------------------------------

def edit(text: str, pattern: str, replacement: str, count: int = 1) -> str:
    """re.subn that insists on ``count`` matches: the committed nginx.conf must still
    have the line a trap removes (or the trap would silently be the correct site)."""
    new, found = re.subn(pattern, replacement, text, flags=re.MULTILINE)
    if found != count:
        raise RuntimeError(f"nginx.conf: expected {count} match(es) of {pattern!r}, found {found}")
    return new


def nginx_site(template: str, listen: str, backends, trap=None) -> str:
    """The lesson's nginx.conf with this run's addresses; for a trap, its mistake made."""
    text = edit(template, r"^(\s*listen\s+)\S+;", rf"\g<1>{listen};")
    servers = "".join(f"    server {address};\n" for address in backends)
    text = edit(text, r"^(upstream \w+ \{\n(?:\s*ip_hash;.*\n)?)(?:\s*server .*\n)+", rf"\g<1>{servers}")
    if trap is None:
        return text
    # Each trap is a second site in the same nginx: its own upstream name, no second map.
    text = edit(text, r"^map \$http_upgrade.*\{\n(?:.*\n)*?\}\n", "")
    text = edit(text, rf"\b{UPSTREAM}\b", f"{UPSTREAM}_{trap.replace('-', '_')}", count=2)
    if trap == "round-robin":
        text = edit(text, r"^\s*ip_hash;.*\n", "")
    elif trap == "no-upgrade":
        text = edit(text, r"^\s*proxy_set_header (Upgrade|Connection) .*\n", "", count=2)
    elif trap == "host":
        text = edit(text, r"proxy_set_header Host \$http_host;", "proxy_set_header Host $host;")
    return f"# trap {trap}: {TRAPS[trap]}\n" + text


def nginx_main(folder: Path, root: bool) -> str:
    """nginx.conf's frame for one non-root (or root) nginx on loopback: in the foreground,
    every file it writes in ``folder``; the sites are included from there."""
    return "\n".join([
        "# written by `lesson run 06`; the sites are the lesson's nginx.conf, ports filled in",
        "daemon off;",  # the launcher is its parent, and stops it
        "worker_processes 1;",
        *(["user nobody nogroup;"] if root else []),  # root's workers drop to nobody, as usual
        f"pid {folder}/nginx.pid;",
        f"error_log {folder}/nginx-error.log warn;",
        "worker_rlimit_nofile 8192;",
        "events { worker_connections 4096; }",
        "http {",
        f"    access_log {folder}/nginx-access.log;",
        *[f"    {kind}_temp_path {folder}/{kind}_temp;"
          for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")],
        f"    include {folder}/sites/*.conf;",
        "}", ""])


# --- the processes ----------------------------------------------------------------

def die_with_parent():
    """Popen's preexec_fn: SIGKILL when the launcher dies (Linux; the thread that
    started the child must live as long: they are all started from the main thread)."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def in_child():
        prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:
            os._exit(1)

    return in_child


@dataclass
class Child:
    name: str
    process: subprocess.Popen
    stop_signal: int
    log: Path = None
    reported: bool = False

    @property
    def pid(self):
        return self.process.pid

    def last_lines(self, count=3) -> str:
        if self.log and self.log.exists():
            lines = [line for line in self.log.read_text(errors="replace").splitlines() if line.strip()]
            return " | ".join(lines[-count:])
        return ""


@dataclass
class Stack:
    lesson: object
    mode: str
    host: str
    port: int
    backends: int
    traps: list
    debug: bool = False
    folder: Path = None
    children: list = field(default_factory=list)
    trap_ports: dict = field(default_factory=dict)

    def spawn(self, name, args, stop_signal, env=None, pass_fds=(), log=None, cwd=None):
        out = open(log, "ab") if log else None
        try:
            process = subprocess.Popen(
                args, env=env, cwd=cwd, pass_fds=pass_fds, stdin=subprocess.DEVNULL,
                stdout=out or subprocess.DEVNULL, stderr=out,  # no log: the launcher's stderr
                start_new_session=True, preexec_fn=die_with_parent())
        finally:
            if out:
                out.close()
        self.children.append(Child(name, process, stop_signal, log))
        return self.children[-1]

    # Redis ----------------------------------------------------------------------
    def start_redis(self, redis_server) -> str:
        for _ in range(3):
            port = free_port()
            child = self.spawn("redis", [
                redis_server, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(self.folder),
                "--save", "", "--appendonly", "no", "--logfile", "redis.log"],
                signal.SIGTERM)
            child.log = self.folder / "redis.log"
            if wait_until(lambda: redis_ping(port) or child.process.poll() is not None,
                          READY_TIMEOUT) and child.process.poll() is None:
                say(f"Redis on redis://127.0.0.1:{port}/0 (pid {child.pid}), in {self.folder}")
                return f"redis://127.0.0.1:{port}/0"
            self.children.remove(child)
            stop_children([child])
        raise StackError(f"redis-server did not start: {child.last_lines()}")

    # the backends ---------------------------------------------------------------
    def start_backend(self, name, queue, workers=1) -> tuple:
        """One backend on a socket bound here (gunicorn's fd://): no port to race for."""
        sock = socket.create_server(("127.0.0.1", 0), backlog=1024)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        address = "127.0.0.1:%d" % sock.getsockname()[1]
        env = {**os.environ, "FLASK_MESSAGE_QUEUE": queue, "FLASK_BACKEND": f"{name} on {address}"}
        worker = worker_class_args(self.mode)
        if worker is None:  # eventlet: what `socketio.run(app)` does, one process per backend
            args = [sys.executable, "-m", "lesson_launcher.stack", "eventlet-backend",
                    str(sock.fileno()), str(self.lesson.path / "app.py")]
            how, stop_with = "eventlet's WSGI server (gunicorn has no eventlet worker)", signal.SIGTERM
        else:
            args = [sys.executable, "-m", "gunicorn", "-c", str(self.lesson.path / "gunicorn.conf.py"),
                    "--chdir", str(self.lesson.path), "--bind", f"fd://{sock.fileno()}",
                    "--workers", str(workers), *worker,
                    # Ctrl-C: the clients' connections ended with nginx; a gthread worker
                    # would still wait graceful_timeout (5 s) for its pending long-polls
                    "--graceful-timeout", "1", *(["--log-level", "info"] if self.debug else []),
                    f"app:create_app(async_mode={self.mode!r})"]
            how = f"gunicorn {' '.join(worker)} -w {workers}"
            # gunicorn's graceful SIGTERM: 1.5 s (gevent), 0.5 s (gthread) once nginx is gone.
            # Not its quick SIGQUIT: a gthread worker then waits 5 s for its threads, and a
            # gevent worker prints SystemExit's traceback from a greenlet.
            stop_with = signal.SIGTERM
        try:
            child = self.spawn(name, args, stop_with, env=env, pass_fds=(sock.fileno(),),
                               cwd=str(self.lesson.path))
        finally:
            sock.close()  # the backend has its own copy
        say(f"backend {name}: {how}, on {address} (pid {child.pid})")
        return child, address

    # nginx ----------------------------------------------------------------------
    def start_nginx(self, nginx, backends, several_workers) -> None:
        sites = self.folder / "sites"
        sites.mkdir()
        template = (self.lesson.path / "nginx.conf").read_text()
        listen = f"{self.host}:{self.port}"
        (sites / "site.conf").write_text(nginx_site(template, listen, backends))
        for trap in self.traps:
            port = free_port()
            upstream = several_workers if trap == "workers" else backends
            (sites / f"trap-{trap}.conf").write_text(
                nginx_site(template, f"127.0.0.1:{port}", upstream, trap))
            self.trap_ports[trap] = port
        conf = self.folder / "nginx.conf"
        conf.write_text(nginx_main(self.folder, os.geteuid() == 0))
        child = self.spawn("nginx", [nginx, "-p", f"{self.folder}/", "-c", str(conf),
                                     "-e", str(self.folder / "nginx-error.log")],
                           signal.SIGTERM, log=self.folder / "nginx-error.log")
        say(f"nginx (pid {child.pid}) in front; its configuration: {sites}/site.conf")

    def nginx_failure(self):
        """The [emerg] line of a nginx that exited, as a StackError."""
        nginx = next(child for child in self.children if child.name == "nginx")
        if nginx.process.poll() is None:
            return None
        text = nginx.last_lines(1)
        if "Address already in use" in text:
            return StackError(f"port {self.port} on {self.host} is already in use; pick another "
                              "with --port, or --port 0 for any free one")
        return StackError(f"nginx did not start: {text}")

    # all of it -------------------------------------------------------------------
    def start(self) -> None:
        nginx = find_program("nginx", "LESSON_NGINX", "nginx")
        redis_server = find_program("redis-server", "LESSON_REDIS_SERVER", "redis-server")
        if self.port == 0:
            self.port = free_port()
        elif not port_is_free(self.host, self.port):
            raise StackError(f"port {self.port} on {self.host} is already in use; pick another "
                             "with --port, or --port 0 for any free one")
        self.folder = Path(tempfile.mkdtemp(prefix="lesson-06-"))
        self.folder.chmod(0o755)  # nginx's workers (nobody, under root) reach their temp dirs
        queue = self.start_redis(redis_server)
        started = [self.start_backend(f"b{number}", queue) for number in range(1, self.backends + 1)]
        several = []
        if "workers" in self.traps:
            several = [self.start_backend(f"w{SEVERAL_WORKERS}", queue, workers=SEVERAL_WORKERS)]
        self.start_nginx(nginx, [address for _, address in started],
                         [address for _, address in several])
        for child, address in started + several:
            self.wait_for_http(child, f"http://{address}/")
        for port in [self.port, *self.trap_ports.values()]:
            self.wait_for_http(None, f"http://127.0.0.1:{port}/" if port != self.port else self.url)
        for trap, port in self.trap_ports.items():
            say(f"trap {trap} on http://127.0.0.1:{port}/: {TRAPS[trap]}")

    @property
    def url(self):
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def wait_for_http(self, child, url) -> None:
        """Until GET url answers 200; a child (or nginx) that exits meanwhile fails the start."""
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if child is not None and child.process.poll() is not None:
                raise StackError(f"backend {child.name} exited with status "
                                 f"{child.process.returncode} before it answered (its log is above)")
            failure = self.nginx_failure()
            if failure:
                raise failure
            if http_status(url) == 200:
                return
            time.sleep(0.05)  # polling, bounded by the deadline
        raise StackError(f"{url} did not answer within {READY_TIMEOUT} s")

    def watch(self) -> None:
        """Until Ctrl-C: say so when a process of the stack exits (a backend may: trap 5)."""
        while True:
            for child in self.children:
                if child.process.poll() is not None and not child.reported:
                    child.reported = True
                    if child.name in ("nginx", "redis"):
                        raise StackError(f"{child.name} (pid {child.pid}) exited with status "
                                         f"{child.process.returncode}: {child.last_lines()}")
                    say(f"backend {child.name} (pid {child.pid}) exited with status "
                        f"{child.process.returncode}; nginx sends its clients to the others")
            time.sleep(0.2)

    def stop(self) -> None:
        """nginx first: it closes every connection, so the backends' graceful shutdown
        has none left to wait for; Redis last."""
        for stage in (["nginx"], [child.name for child in self.children
                                  if child.name not in ("nginx", "redis")], ["redis"]):
            stop_children([child for child in self.children if child.name in stage])
        self.children.clear()
        if self.folder:
            shutil.rmtree(self.folder, ignore_errors=True)


def stop_children(children) -> None:
    """Each child's stop signal, to its whole process group; after STOP_TIMEOUT, SIGKILL;
    then SIGKILL to every group anyway, for workers whose master went first."""
    for child in children:
        signal_group(child, child.stop_signal)
    deadline = time.monotonic() + STOP_TIMEOUT
    for child in children:
        try:
            child.process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    for child in children:
        signal_group(child, signal.SIGKILL)
        child.process.wait()


def signal_group(child, signum) -> None:
    try:
        os.killpg(child.pid, signum)  # start_new_session: its pid is its group's id
    except (ProcessLookupError, PermissionError):
        pass


def wait_until(condition, timeout) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


def redis_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def http_status(url: str):
    match = re.match(r"http://\[?([^\]/]+?)\]?:(\d+)/", url)
    connection = http.client.HTTPConnection(match[1], int(match[2]), timeout=2)
    try:
        connection.request("GET", "/")
        return connection.getresponse().status
    except OSError:
        return None
    finally:
        connection.close()


def say(text: str) -> None:
    print(f"lesson: {text}", file=sys.stderr, flush=True)


# --- the entry points -----------------------------------------------------------

def run(lesson, args) -> int:
    """`lesson run 06 ...`, dispatched here by cli.run_lesson; returns the exit status."""
    if getattr(args, "patch", "early") != "early":
        raise StackError("--patch is for the single-server lessons; lesson 06's backends are "
                         "gunicorn workers, which patch for themselves")
    find_program("nginx", "LESSON_NGINX", "nginx")  # first: a missing one is the only line
    find_program("redis-server", "LESSON_REDIS_SERVER", "redis-server")
    mode = args.mode
    if mode == "auto":
        mode = "gevent"
        say("--mode auto picked gevent for this lesson: gunicorn's recommended async worker")
    traps = list(TRAPS) if "all" in (args.trap or []) else list(dict.fromkeys(args.trap or []))
    if worker_class_args(mode) is None:
        say(f"note: gunicorn {gunicorn_version()} has no {mode} worker (`gunicorn -k {mode}`: "
            f"\"class uri '{mode}' invalid or not found\"); each backend runs eventlet's own WSGI "
            "server instead, as socketio.run(app) does")
        if "workers" in traps:
            if args.trap != ["all"]:
                raise StackError(f"--trap workers needs gunicorn's {mode} worker, which gunicorn "
                                 f"{gunicorn_version()} does not have; use --mode gevent or threading")
            traps.remove("workers")
    stack = Stack(lesson, mode, args.host, args.port, args.backends or 2, traps, args.debug)
    signal.signal(signal.SIGTERM, interrupt)  # SIGTERM ends the stack as Ctrl-C does
    try:
        stack.start()
        print(f"Serving {lesson.name} (async_mode={mode}) on {stack.url}", flush=True)
        stack.watch()
    except KeyboardInterrupt:
        stack.stop()
        say("stopped")
        return 0
    finally:  # a failed start too: nothing it started stays behind
        stack.stop()


def interrupt(signum, frame):
    raise KeyboardInterrupt


def eventlet_backend(fd: int, app_file: str) -> None:
    """One backend in eventlet mode: patched, the lesson's app on the socket ``fd``."""
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import eventlet
    eventlet.monkey_patch()
    from . import cli, serve
    sock = socket.socket(fileno=fd)  # a green socket, after monkey_patch()
    app = cli.load_app(Path(app_file), "eventlet", False)
    serve.stop_on_signals()
    serve.serve("eventlet", app, sock, log_requests=False)


if __name__ == "__main__" and sys.argv[1:2] == ["eventlet-backend"]:
    eventlet_backend(int(sys.argv[2]), sys.argv[3])
