"""lesson bench: which async mode? Round trips, a connect storm and a fan-out, measured here.

For each async mode, the lesson servers run through the real launcher
(``lesson run 01`` for round trips, ``lesson run 04`` for the storm and the
fan-out) next to a bare python-socketio server with the same handlers, served
the same way (bench/server.py). The two are measured alternately, so the ratio
lesson / bare is what Flask and Flask-SocketIO cost, on this machine, today.

    lesson bench --out DIR [--quick] [--modes eventlet,gevent,threading]

writes DIR/bench.md (tables), DIR/bench.png (plot) and DIR/bench.json (raw figures).
"""
import argparse
import os
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import psutil
import socketio
from tqdm import tqdm

from .. import modes
from ..cmdline import Parser
from ..process import LessonProcess, NotReady, ServerProcess, StopTimeout
from .clients import ClientError, Generator, sender
from .report import write_all

NAMESPACE = "/test_conn"
FANOUT_EVENT, FANOUT_REPLY = "my event others", "my ev others"  # lesson 04, include_self=False
START_TIMEOUT = 30   # seconds for a server's ready line, on a busy machine
CALL_TIMEOUT = 10    # seconds for one acknowledged round trip
BLOCKS = 8           # round trips alternate between the two servers in this many blocks
WARM_UP = 20         # untimed round trips first: imports, caches, TCP windows


class BenchError(RuntimeError):
    """The benchmark could not measure something; the message says what and why."""


@dataclass(frozen=True)
class Sizes:
    round_trips: int   # sequential acked round trips per transport and server
    clients: int       # connect storm and fan-out
    messages: int      # fan-out: each goes to every client
    processes: int     # load-generator processes the clients are spread over


def default_processes() -> int:
    """At least 2, so that the clients are spread; no more than the cores, up to 4."""
    return max(2, min(os.cpu_count() or 2, 4))


FULL = Sizes(round_trips=2000, clients=500, messages=100, processes=default_processes())
QUICK = Sizes(round_trips=16, clients=20, messages=5, processes=2)


# --- command line ------------------------------------------------------------------

class BenchParser(Parser):
    """cmdline.Parser's one-line errors, pointing at `lesson bench --help`."""

    def error(self, message):
        self.exit(2, f"lesson bench: {message}; run `lesson bench --help` for usage\n")


def mode_list(text: str) -> tuple:
    wanted = tuple(name.strip() for name in text.split(",") if name.strip())
    for name in wanted:
        if name not in modes.MODES:
            raise argparse.ArgumentTypeError(
                f"unknown mode {name!r}; choose from {', '.join(modes.MODES)}")
        if not modes.installed(name):
            raise argparse.ArgumentTypeError(f"async mode {name} is not installed")
    if not wanted:
        raise argparse.ArgumentTypeError("name at least one mode")
    return tuple(dict.fromkeys(wanted))


def count(minimum: int):
    def parse(text: str) -> int:
        if not text.isdigit() or int(text) < minimum:
            raise argparse.ArgumentTypeError(f"expected a whole number >= {minimum}, not {text!r}")
        return int(text)
    return parse


def out_dir(text: str) -> Path:
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} exists and is not a folder")
    return path


def build_parser() -> BenchParser:
    parser = BenchParser(
        prog="lesson bench",
        description="Measure each async mode: round-trip latency (WebSocket and long-polling), "
                    "a connect storm and a broadcast fan-out, against the lesson servers and "
                    "a bare python-socketio server. Writes bench.md, bench.png and bench.json.")
    parser.add_argument("--out", required=True, type=out_dir, metavar="DIR",
                        help="folder for bench.md, bench.png and bench.json (created if needed)")
    parser.add_argument("--modes", default=modes.MODES, type=mode_list, metavar="LIST",
                        help="comma-separated async modes (default: eventlet,gevent,threading)")
    parser.add_argument("--quick", action="store_true",
                        help=f"tiny sizes, a few seconds per mode: {QUICK.round_trips} round "
                             f"trips, {QUICK.clients} clients, {QUICK.messages} messages")
    parser.add_argument("--round-trips", type=count(BLOCKS), metavar="N",
                        help=f"round trips per transport and server (default {FULL.round_trips})")
    parser.add_argument("--clients", type=count(1), metavar="N",
                        help=f"clients in the connect storm and the fan-out "
                             f"(default {FULL.clients})")
    parser.add_argument("--messages", type=count(1), metavar="M",
                        help=f"fan-out messages, each to every client (default {FULL.messages})")
    parser.add_argument("--processes", type=count(1), metavar="P",
                        help=f"load-generator processes (default {FULL.processes} here)")
    # Evidence, not for normal use, so not listed: run the bare server with
    # Nagle's algorithm on (the 40 ms stalls that serve.listen() prevents), or
    # with a longer listen queue than the launcher's (the connect storm).
    parser.add_argument("--no-nodelay", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--bare-backlog", type=count(1), help=argparse.SUPPRESS)
    return parser


def sizes_of(args) -> Sizes:
    base = QUICK if args.quick else FULL
    return Sizes(round_trips=args.round_trips or base.round_trips,
                 clients=args.clients or base.clients,
                 messages=args.messages or base.messages,
                 processes=args.processes or base.processes)


# --- servers -------------------------------------------------------------------------

def stop(server: ServerProcess) -> None:
    """Ctrl-C, as for any lesson; a traceback in its stderr fails the benchmark."""
    try:
        status = server.interrupt()
    except StopTimeout as error:
        raise BenchError(str(error)) from None
    if status != 0 or "Traceback" in server.stderr_text:
        raise BenchError(f"{server.name} ended with status {status}: {tail(server)}")


def tail(server: ServerProcess) -> str:
    return " | ".join(line.strip() for line in server.stderr_lines[-5:] if line and line.strip())


def bare_options(args) -> list:
    """Command-line options for bench/server.py: none, unless gathering evidence."""
    return (["--no-nodelay"] if args.no_nodelay else []) + (
        ["--backlog", str(args.bare_backlog)] if args.bare_backlog else [])


def start_servers(mode: str, options: list) -> dict:
    """lesson 01, lesson 04 and the bare server in ``mode``, started together."""
    bare = [sys.executable, "-m", "lesson_launcher.bench.server", "--mode", mode] + options
    servers = {"lesson01": LessonProcess("01", mode=mode), "lesson04": LessonProcess("04", mode=mode),
               "bare": ServerProcess(bare, name=f"bare server ({mode})")}
    try:
        for server in servers.values():
            server.start(START_TIMEOUT)
            if server.mode != mode:
                raise BenchError(f"{server.name} runs async_mode={server.mode}, not {mode}")
    except (NotReady, BenchError) as error:  # one did not start: stop the others too
        for server in servers.values():
            server.kill()
        raise BenchError(str(error)) from None
    return servers


# --- round trips ---------------------------------------------------------------------

def open_client(url: str, transport: str):
    client = socketio.Client(reconnection=False)
    try:
        client.connect(url, namespaces=[NAMESPACE], transports=[transport],
                       wait_timeout=CALL_TIMEOUT)
    except socketio.exceptions.ConnectionError as error:
        raise BenchError(f"cannot connect to {url} over {transport}: {error}") from None
    return client


def close_client(client) -> None:
    """disconnect(), after the client's send queue is empty: over long-polling,
    python-engineio 4.15 drops the CLOSE packet of a disconnect() made while
    its write loop is still posting, and then waits 25 s (tests/harness.py)."""
    sent = client.eio.queue
    if client.eio.state == "connected":
        with sent.all_tasks_done:
            sent.all_tasks_done.wait_for(lambda: not sent.unfinished_tasks, timeout=CALL_TIMEOUT)
    client.disconnect()


def call(client, number: int) -> None:
    try:
        reply = client.call("my event", {"data": number}, namespace=NAMESPACE,
                            timeout=CALL_TIMEOUT)
    except socketio.exceptions.TimeoutError:
        raise BenchError(f"no acknowledgement within {CALL_TIMEOUT} s") from None
    if reply != {"ok": True}:
        raise BenchError(f"unexpected acknowledgement {reply!r}")


def round_trips(servers: dict, transport: str, total: int, bar) -> dict:
    """``total`` acked ``my event`` round trips to each server, one at a time,
    alternating between the servers in blocks so that both see the same machine."""
    me = psutil.Process()
    clients = {name: open_client(server.url, transport) for name, server in servers.items()}
    times = {name: [] for name in servers}
    cpu = {name: [0.0, 0.0] for name in servers}
    try:
        for name, client in clients.items():
            for number in range(min(WARM_UP, total // 4)):
                call(client, number)
        for block in range(BLOCKS):
            size = total // BLOCKS + (block < total % BLOCKS)
            for name, client in clients.items():
                server_before, client_before = servers[name].cpu_seconds(), sum(me.cpu_times()[:2])
                for number in range(size):
                    started = time.perf_counter()
                    call(client, number)
                    times[name].append(time.perf_counter() - started)
                cpu[name][0] += servers[name].cpu_seconds() - server_before
                cpu[name][1] += sum(me.cpu_times()[:2]) - client_before
                bar.update()
    finally:
        for client in clients.values():
            close_client(client)
    return {name: latency_summary(times[name], *cpu[name]) for name in servers}


def latency_summary(seconds: list, server_cpu: float, client_cpu: float) -> dict:
    ms = sorted(1000 * s for s in seconds)
    return {"round_trips": len(ms), "p50_ms": statistics.median(ms),
            "p99_ms": statistics.quantiles(ms, n=100, method="inclusive")[98],
            "mean_ms": statistics.fmean(ms), "max_ms": ms[-1],
            "server_cpu_ms_per_round_trip": 1000 * server_cpu / len(ms),
            "client_cpu_ms_per_round_trip": 1000 * client_cpu / len(ms)}


# --- connect storm and fan-out -------------------------------------------------------

def listen_overflows():
    """Linux's count of connections dropped because a listen queue was full
    (TcpExt ListenOverflows in /proc/net/netstat), or None elsewhere."""
    try:
        lines = Path("/proc/net/netstat").read_text().splitlines()
    except OSError:
        return None
    for names, values in zip(lines[::2], lines[1::2]):
        if names.startswith("TcpExt:"):
            return int(dict(zip(names.split(), values.split()))["ListenOverflows"])
    return None


def schedstat(pid: int):
    """(seconds on a core, seconds runnable but waiting for a core), summed over the
    live threads of ``pid``: fields 1 and 2 of Linux's /proc/PID/task/TID/schedstat.
    None where there is no such file (not Linux)."""
    run = wait = 0
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    for tid in threads:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                fields = f.read().split()
        except OSError:  # the thread ended meanwhile
            continue
        run, wait = run + int(fields[0]), wait + int(fields[1])
    return run / 1e9, wait / 1e9


class Window:
    """What the server and the load generator did during one measurement: CPU
    seconds (psutil) and, on Linux, how long they were runnable but waiting for a
    core (other work on the machine) or idle, waiting for input.

    A load-generator process is one thread, so its idle share is exact: while it
    is idle, it has read everything the server sent and waits for more, so it
    is not what limits the pace."""

    def __init__(self, server: ServerProcess, generator):
        self.server, self.generator = server, generator

    def snapshot(self) -> tuple:
        workers = [schedstat(process.pid) for process in self.generator.processes]
        return (time.monotonic(), self.server.cpu_seconds(), schedstat(self.server.process.pid),
                self.generator.cpu_seconds(), workers)

    def __enter__(self) -> "Window":
        self.before = self.snapshot()
        return self

    def __exit__(self, *exc_info) -> None:
        self.after = self.snapshot()

    def figures(self) -> dict:
        (t0, cpu0, sched0, gen0, workers0), (t1, cpu1, sched1, gen1, workers1) = \
            self.before, self.after
        seconds = t1 - t0
        found = {"window_s": seconds, "server_cpu_s": cpu1 - cpu0,
                 "server_busy": (cpu1 - cpu0) / seconds, "generator_cpu_s": gen1 - gen0,
                 "server_waiting_for_a_core_s": None, "generator_idle": None}
        if sched0 and sched1:
            found["server_waiting_for_a_core_s"] = sched1[1] - sched0[1]
        if all(workers0) and all(workers1):
            found["generator_idle"] = min(
                (seconds - (run1 - run0) - (wait1 - wait0)) / seconds
                for (run0, wait0), (run1, wait1) in zip(workers0, workers1))
        return found


def storm_and_fanout(server: ServerProcess, generator, sizes: Sizes, bar) -> dict:
    """N clients connect at once; then M events, each broadcast to all N."""
    overflows = listen_overflows()
    with Window(server, generator) as window:
        wall, connect_times = generator.connect(server.address, sizes.clients)
    storm = {"clients": sizes.clients, "wall_s": wall,
             "connect_p50_s": statistics.median(connect_times),
             "connect_max_s": max(connect_times),
             "listen_overflows": None if overflows is None else listen_overflows() - overflows,
             **window.figures()}
    bar.update()

    generator.arm(sizes.messages)
    source = sender(server.address, NAMESPACE)
    try:
        with Window(server, generator) as window:
            started = time.monotonic()
            source.emit_all(FANOUT_EVENT, [{"data": n} for n in range(sizes.messages)])
            last, delivered = generator.last_delivery()
    finally:
        source.close()
        generator.close_clients()
    fanout = {"clients": sizes.clients, "messages": sizes.messages, "deliveries": delivered,
              "wall_s": last - started, "deliveries_per_s": delivered / (last - started),
              **window.figures()}
    bar.update()
    return {"storm": storm, "fanout": fanout}


# --- one mode, all of it -------------------------------------------------------------

def bench_mode(mode: str, sizes: Sizes, generator, bar, options: list) -> dict:
    bar.set_description(f"{mode}: starting servers")
    servers = start_servers(mode, options)
    try:
        bar.update()
        results = {"lesson": {}, "bare": {}}
        pairs = {"lesson": servers["lesson01"], "bare": servers["bare"]}
        for transport in ("websocket", "polling"):
            bar.set_description(f"{mode}: {transport} round trips")
            for name, summary in round_trips(pairs, transport, sizes.round_trips, bar).items():
                results[name][f"rtt_{transport}"] = summary
        for name, server in (("lesson", servers["lesson04"]), ("bare", servers["bare"])):
            bar.set_description(f"{mode}: {name} storm and fan-out")
            results[name].update(storm_and_fanout(server, generator, sizes, bar))
    finally:
        problems = []
        for server in servers.values():
            try:
                stop(server)
            except BenchError as error:
                problems.append(str(error))
        if problems and sys.exc_info()[0] is None:
            raise BenchError("; ".join(problems))
    return results


def steps_per_mode() -> int:
    """For the progress bar: servers up, the round-trip blocks, storm and fan-out twice."""
    return 1 + 2 * 2 * BLOCKS + 2 * 2


def machine() -> dict:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(),
            "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "system": platform.platform(terse=True), "python": platform.python_version()}


def versions() -> dict:
    found = {}
    for package in ("flask", "flask-socketio", "python-socketio", "python-engineio",
                    "eventlet", "gevent", "simple-websocket", "werkzeug"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            pass
    return found


def run(args) -> dict:
    sizes = sizes_of(args)
    report = {"date": time.strftime("%Y-%m-%d %H:%M %Z"), "machine": machine(),
              "versions": versions(), "sizes": asdict(sizes),
              "quick": args.quick, "bare_server_options": bare_options(args),
              "load_average_before": os.getloadavg(), "results": {},
              "seconds_per_mode": {}}
    started = time.monotonic()
    generator = Generator(sizes.processes, NAMESPACE, FANOUT_REPLY)
    try:
        with tqdm(total=steps_per_mode() * len(args.modes), file=sys.stderr, unit="step",
                  bar_format="{desc:<34}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}]") as bar:
            for mode in args.modes:
                mode_started = time.monotonic()
                report["results"][mode] = bench_mode(mode, sizes, generator, bar,
                                                     bare_options(args))
                report["seconds_per_mode"][mode] = time.monotonic() - mode_started
            bar.set_description("done")
    finally:
        generator.stop()
    report["load_average_after"] = os.getloadavg()
    report["seconds"] = time.monotonic() - started
    return report


def main(argv=None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        report = run(args)
        files = write_all(report, args.out)
    except (BenchError, ClientError, OSError) as error:
        print(f"lesson bench: {error}", file=sys.stderr)
        return 1
    except psutil.Error as error:  # e.g. NoSuchProcess
        print(f"lesson bench: a server or load-generator process ended early: {error}",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("lesson bench: stopped", file=sys.stderr)
        return 130
    print(f"lesson bench: {report['seconds']:.0f} s; wrote {', '.join(map(str, files))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
