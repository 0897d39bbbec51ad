"""The benchmark's output: bench.json (every figure), bench.md (tables), bench.png (plot)."""
import json
from pathlib import Path

SERVERS = ("lesson", "bare")
TRANSPORTS = (("websocket", "WebSocket"), ("polling", "long-polling"))


def write_all(report: dict, folder: Path) -> list:
    paths = [folder / "bench.md", folder / "bench.png", folder / "bench.json"]
    paths[0].write_text(markdown(report), encoding="utf-8")
    plot(report, paths[1])
    paths[2].write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return paths


def ratio(report: dict, mode: str, *path) -> float:
    """lesson / bare for one figure, e.g. ratio(r, "gevent", "fanout", "wall_s")."""
    lesson, bare = (report["results"][mode][server] for server in SERVERS)
    for key in path:
        lesson, bare = lesson[key], bare[key]
    return lesson / bare if bare else float("nan")


def format_ratio(value: float) -> str:
    return "n/a" if value != value else f"{value:.2f}"  # NaN: a zero CPU time (tiny sizes)


def table(header: list, rows: list) -> list:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + [
        "| " + " | ".join(row) + " |" for row in rows]


def header_lines(report: dict) -> list:
    m, sizes = report["machine"], report["sizes"]
    load = "/".join(f"{value:.1f}" for value in report["load_average_before"][:1] +
                    report["load_average_after"][:1])
    packages = ", ".join(f"{name} {version}" for name, version in report["versions"].items())
    lines = [
        "# Which async mode? Benchmark", "",
        f"{report['date']}; {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB; {m['system']}; "
        f"Python {m['python']}; load average (1 min) before/after: {load}; "
        f"took {report['seconds']:.0f} s.", "",
        f"Packages: {packages}.", "",
        "**lesson**: the lesson served by `lesson run` (lesson 01 for the round trips, lesson 04 "
        "for the storm and the fan-out); **bare**: a python-socketio `socketio.Server` with the "
        "same handlers and no Flask, served the same way (`lesson_launcher/bench/server.py`). "
        f"Load generator: {sizes['processes']} processes.",
    ]
    if report["quick"]:
        lines += ["", "**--quick**: sizes this small prove that the benchmark runs, nothing "
                      "more (CPU times come in 10 ms clock ticks)."]
    if report["bare_server_options"]:
        lines += ["", f"**The bare server ran with `{' '.join(report['bare_server_options'])}`**: "
                      "an experiment, not the baseline (see `lesson_launcher/bench/server.py`)."]
    return lines


def round_trip_lines(report: dict) -> list:
    rows = []
    for mode, servers in report["results"].items():
        for server in SERVERS:
            ws, polling = servers[server]["rtt_websocket"], servers[server]["rtt_polling"]
            rows.append([mode, server, f"{ws['p50_ms']:.2f}", f"{ws['p99_ms']:.2f}",
                         f"{polling['p50_ms']:.2f}", f"{polling['p99_ms']:.2f}",
                         f"{ws['server_cpu_ms_per_round_trip']:.2f} / "
                         f"{polling['server_cpu_ms_per_round_trip']:.2f}",
                         f"{ws['client_cpu_ms_per_round_trip']:.2f} / "
                         f"{polling['client_cpu_ms_per_round_trip']:.2f}"])
    count = report["sizes"]["round_trips"]
    return [f"## Round trips: acked `my event`, {count} in a row per transport and server", "",
            *table(["mode", "server", "WebSocket p50 (ms)", "WebSocket p99 (ms)",
                    "long-polling p50 (ms)", "long-polling p99 (ms)",
                    "server CPU per round trip, WS / polling (ms)",
                    "client CPU per round trip, WS / polling (ms)"], rows)]


def waiting_share(mode: str, figures: dict):
    """Seconds the server was runnable but not running, as a share of the window."""
    waiting = figures["server_waiting_for_a_core_s"]
    if waiting is None or mode == "threading":
        return None
    return waiting / figures["window_s"]


def share(value) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def load_lines(report: dict) -> list:
    rows = []
    for mode, servers in report["results"].items():
        for server in SERVERS:
            storm, fan = servers[server]["storm"], servers[server]["fanout"]
            overflows = storm["listen_overflows"]
            rows.append([mode, server, f"{storm['wall_s']:.2f}",
                         f"{storm['connect_p50_s']:.3f} / {storm['connect_max_s']:.3f}",
                         "n/a" if overflows is None else str(overflows),
                         f"{storm['server_cpu_s']:.2f}", f"{storm['generator_cpu_s']:.2f}",
                         f"{fan['wall_s']:.2f}", f"{fan['deliveries_per_s']:,.0f}",
                         f"{fan['server_cpu_s']:.2f}", share(fan["server_busy"]),
                         share(waiting_share(mode, fan)),
                         f"{fan['generator_cpu_s']:.2f}", share(fan["generator_idle"])])
    s = report["sizes"]
    return [f"## Connect storm and fan-out: {s['clients']} clients at once, then "
            f"{s['messages']} message{'s' if s['messages'] != 1 else ''} to all of them "
            f"({s['clients'] * s['messages']} deliveries)",
            "",
            *table(["mode", "server", "storm (s)", "one connect p50 / max (s)",
                    "listen queue overflows", "storm server CPU (s)", "storm generator CPU (s)",
                    "fan-out (s)", "deliveries/s", "fan-out server CPU (s)", "server busy",
                    "server waiting for a core", "fan-out generator CPU (s)", "generator idle"],
                  rows), "",
            "*server busy*: its CPU seconds / fan-out seconds. It runs Python on one core at a "
            "time (one hub, or the GIL), so about 100% is all it can do; threading goes "
            "beyond, as its threads make system calls without the GIL. *server waiting for a "
            "core*: "
            "runnable, but the cores were busy with other processes (the load generator "
            "among them); n/a for threading, whose hundreds of threads wait at the same "
            "time. *generator idle*: the share of "
            "the fan-out during which the least idle load-generator process was neither "
            "running nor waiting for a core, but waiting for the server's next message "
            "(Linux /proc/PID/schedstat)."]


RATIOS = (("WebSocket p50", ("rtt_websocket", "p50_ms")),
          ("long-polling p50", ("rtt_polling", "p50_ms")),
          ("server CPU per WS round trip", ("rtt_websocket", "server_cpu_ms_per_round_trip")),
          ("fan-out time", ("fanout", "wall_s")),
          ("fan-out server CPU", ("fanout", "server_cpu_s")),
          ("storm time", ("storm", "wall_s")))


def ratio_lines(report: dict) -> list:
    rows = [[mode] + [format_ratio(ratio(report, mode, *path)) for _, path in RATIOS]
            for mode in report["results"]]
    return ["## Lesson / bare: what Flask and Flask-SocketIO cost (goal: at most 1.2)", "",
            *table(["mode"] + [name for name, _ in RATIOS], rows)]


def markdown(report: dict) -> str:
    sections = [header_lines(report), round_trip_lines(report), load_lines(report),
                ratio_lines(report)]
    return "\n\n".join("\n".join(lines) for lines in sections) + "\n"


def plot(report: dict, path: Path) -> None:
    """Three panels, one group of bars per mode: round trips, fan-out, connect storm."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

    results = report["results"]
    modes = list(results)
    figure, (rtt, fanout, storm) = plt.subplots(1, 3, figsize=(12, 3.8), dpi=80,
                                                gridspec_kw={"width_ratios": [2, 1.2, 1]})
    width = 0.2
    colours = {("websocket", "lesson"): "#1f5fa8", ("websocket", "bare"): "#8db5e3",
               ("polling", "lesson"): "#c2571a", ("polling", "bare"): "#f0b27a"}
    for slot, ((transport, label), server) in enumerate(
            (t, s) for t in TRANSPORTS for s in SERVERS):
        xs = [i + (slot - 1.5) * width for i in range(len(modes))]
        figures = [results[mode][server][f"rtt_{transport}"] for mode in modes]
        rtt.bar(xs, [f["p50_ms"] for f in figures], width, label=f"{label}, {server}",
                color=colours[transport, server])
        rtt.scatter(xs, [f["p99_ms"] for f in figures], marker="_", s=120, color="black",
                    label="p99" if slot == 0 else None, zorder=3)
    rtt.set_yscale("log")
    rtt.yaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))
    rtt.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    rtt.yaxis.set_minor_formatter(NullFormatter())
    highest = max(results[mode][server][f"rtt_{transport}"]["p99_ms"]
                  for mode in modes for server in SERVERS for transport, _ in TRANSPORTS)
    rtt.set_ylim(top=highest * 5)  # room for the legend above the p99 marks
    rtt.set_title(f"Round trip, p50 (bars) and p99, ms ({report['sizes']['round_trips']} each)")
    rtt.legend(fontsize=7, ncol=3, loc="upper center")

    sizes = report["sizes"]
    for slot, server in enumerate(SERVERS):
        xs = [i + (slot - 0.5) * 0.35 for i in range(len(modes))]
        walls = [results[mode][server]["fanout"]["wall_s"] for mode in modes]
        cpus = [results[mode][server]["fanout"]["server_cpu_s"] for mode in modes]
        tone = "#2d7d46" if server == "lesson" else "#9fd3a9"
        fanout.bar(xs, walls, 0.35, color=tone, label=f"{server}: time")
        fanout.bar(xs, cpus, 0.15, color="black", alpha=0.6,
                   label="server CPU" if slot == 0 else None)
        storm.bar(xs, [results[mode][server]["storm"]["wall_s"] for mode in modes], 0.35,
                  color="#6a4c93" if server == "lesson" else "#c3b1e1", label=server)
    fanout.set_title(f"Fan-out: {sizes['messages']} messages x {sizes['clients']} clients, s")
    fanout.legend(fontsize=7)
    storm.set_title(f"Connect storm: {sizes['clients']} clients, s")
    storm.legend(fontsize=7)
    for axes in (rtt, fanout, storm):
        axes.set_xticks(range(len(modes)), modes)
        axes.title.set_fontsize(9)
        axes.tick_params(labelsize=8)
    figure.suptitle(f"lesson bench, {report['date']}, {report['machine']['cpu']}, "
                    f"{report['machine']['cores']} cores", fontsize=9)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
