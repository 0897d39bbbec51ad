"""`lesson bench`: the benchmark runs end to end and writes what it promises; its
baseline server answers like the lessons in every async mode; a wrong command line
gets one line and status 2.

One `--quick` run in one mode (gevent; the servers through the launcher, real
clients over real sockets; all three modes would cost the suite three times the
server start-ups) feeds one test: under pytest-xdist a module-scoped run shared
by several tests would run once per worker. No timing is asserted: the figures
belong to the machine (docs/bench/ holds a full run in every mode, and what it means).
"""
import json
import re
import struct
import subprocess
import sys

import pytest

from lesson_launcher.process import ServerProcess

BENCH = [sys.executable, "-m", "lesson_launcher.bench"]
SERVERS = ("lesson", "bare")
QUICK = {"round_trips": 16, "clients": 20, "messages": 5}
QUICK_MODE = "gevent"


def run_bench(*args, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run(BENCH + list(args), capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def markdown_tables(text: str) -> dict:
    """{section heading: (header cells, [row cells])} for each table of bench.md."""
    tables = {}
    for section in text.split("\n## ")[1:]:
        heading, _, body = section.partition("\n")
        lines = [line for line in body.splitlines() if line.startswith("|")]
        cells = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]
        tables[heading] = (cells[0], cells[2:])
    return tables


def table_titled(tables: dict, start: str) -> tuple:
    [found] = [table for heading, table in tables.items() if heading.startswith(start)]
    return found


def check_tables(markdown: str, report: dict) -> None:
    tables = markdown_tables(markdown)
    assert len(tables) == 3, list(tables)
    every_pair = [[QUICK_MODE, server] for server in SERVERS]

    header, rows = table_titled(tables, "Round trips")
    assert header[:6] == ["mode", "server", "WebSocket p50 (ms)", "WebSocket p99 (ms)",
                          "long-polling p50 (ms)", "long-polling p99 (ms)"]
    assert any("server CPU" in cell for cell in header) and any("client CPU" in cell
                                                                for cell in header)
    assert [row[:2] for row in rows] == every_pair
    for mode, server, ws_p50, *_ in rows:  # the table shows the JSON's figures
        assert ws_p50 == f"{report['results'][mode][server]['rtt_websocket']['p50_ms']:.2f}"

    header, rows = table_titled(tables, "Connect storm and fan-out")
    for column in ("storm (s)", "fan-out (s)", "fan-out server CPU (s)",
                   "fan-out generator CPU (s)", "generator idle", "listen queue overflows"):
        assert column in header
    assert [row[:2] for row in rows] == every_pair

    header, rows = table_titled(tables, "Lesson / bare")
    assert header == ["mode", "WebSocket p50", "long-polling p50", "server CPU per WS round trip",
                      "fan-out time", "fan-out server CPU", "storm time"]
    assert [row[0] for row in rows] == [QUICK_MODE]
    for row in rows:
        assert all(re.fullmatch(r"\d+\.\d\d|n/a", cell) for cell in row[1:]), row


def check_figures(report: dict) -> None:
    assert list(report["results"]) == [QUICK_MODE]
    assert {key: report["sizes"][key] for key in QUICK} == QUICK
    for server in SERVERS:
        figures = report["results"][QUICK_MODE][server]
        for transport in ("websocket", "polling"):
            trips = figures[f"rtt_{transport}"]
            assert trips["round_trips"] == QUICK["round_trips"]
            assert 0 < trips["p50_ms"] <= trips["p99_ms"] <= trips["max_ms"]
        assert figures["storm"]["clients"] == QUICK["clients"]
        # Every client got every message exactly once (the generator checks each count).
        assert figures["fanout"]["deliveries"] == QUICK["clients"] * QUICK["messages"]
        for part in ("storm", "fanout"):
            assert figures[part]["server_cpu_s"] >= 0 and figures[part]["generator_cpu_s"] >= 0


def png_size(data: bytes) -> tuple:
    """(width, height) from a PNG's IHDR chunk; fails on anything that is not a PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_a_quick_run_measures_both_servers_and_writes_the_table_the_plot_and_the_figures(tmp_path):
    out = tmp_path / "results"  # does not exist yet: the benchmark creates it

    result = run_bench("--quick", "--modes", QUICK_MODE, "--out", str(out))

    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(path.name for path in out.iterdir()) == ["bench.json", "bench.md", "bench.png"]
    assert result.stdout.startswith("lesson bench: ") and str(out / "bench.md") in result.stdout
    # The progress bar (tqdm, on stderr) reached its end: "n/n".
    assert re.search(r"\b(\d+)/\1\b", result.stderr), result.stderr[-300:]

    report = json.loads((out / "bench.json").read_text())
    check_figures(report)
    check_tables((out / "bench.md").read_text(), report)
    width, height = png_size((out / "bench.png").read_bytes())
    assert width > height > 200
    assert (out / "bench.png").stat().st_size < 150_000


# --- the baseline server -------------------------------------------------------------

@pytest.fixture(scope="module")
def bare(mode):
    """bench/server.py in this module's mode, started and stopped as the harness does a
    lesson, by the same class (here the command is the bare server's)."""
    server = ServerProcess([sys.executable, "-m", "lesson_launcher.bench.server", "--mode", mode])
    server.start()
    yield server
    assert server.interrupt() == 0, server.stderr_text
    assert "Traceback" not in server.stderr_text, server.stderr_text


def test_the_bare_server_answers_the_benchmark_events_as_lessons_01_and_04_do(bare, connect, mode):
    assert bare.ready_line["label"] == "bench_server" and bare.ready_line["mode"] == mode
    sender, other = connect(bare), connect(bare)

    # Lesson 01's `my event`: a reply to the sender, then the acknowledgement.
    assert sender.call("my event", {"data": "x"}) == {"ok": True}
    assert sender.payloads("event response") == [{"data": "x"}]
    assert sender.call("my ping") == "pong"
    # Lesson 04's `my event others`: everyone but the sender.
    assert sender.call("my event others", {"data": "y"}) == {"ok": True}
    assert [r.data for r in other.wait_for("my ev others")] == [{"data": "y"}]
    other.sync()
    sender.sync()
    assert other.payloads("event response") == [] and sender.payloads("my ev others") == []


# --- the command line ------------------------------------------------------------------

def test_the_command_answers_a_wrong_command_line_with_one_line_and_status_2():
    result = run_bench("--quick", timeout=30)

    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == ("lesson bench: the following arguments are required: --out; "
                             "run `lesson bench --help` for usage\n")


@pytest.mark.parametrize("args, message", [
    (["--out", "{tmp}", "--modes", "tornado"], "unknown mode 'tornado'"),
    (["--out", "{tmp}", "--modes", ","], "name at least one mode"),
    (["--out", "{tmp}", "--clients", "0"], "expected a whole number >= 1, not '0'"),
    (["--out", "{tmp}", "--round-trips", "many"], "expected a whole number >= 8, not 'many'"),
    (["--out", "{file}"], "exists and is not a folder"),
    (["--out", "{tmp}", "--fast"], "unrecognized arguments: --fast"),
])
def test_each_wrong_option_gets_one_line_saying_what_is_wrong_and_status_2(tmp_path, capsys,
                                                                           args, message):
    """In-process, as the command above does it in a subprocess: main() is its entry point."""
    from lesson_launcher import bench

    a_file = tmp_path / "a_file"
    a_file.write_text("")
    args = [arg.format(tmp=tmp_path / "out", file=a_file) for arg in args]

    with pytest.raises(SystemExit) as exit_:
        bench.main(args)

    assert exit_.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    [line] = err.splitlines()
    assert line.startswith("lesson bench: ") and message in line, line
    assert line.endswith("run `lesson bench --help` for usage")
    assert not (tmp_path / "out").exists()  # nothing was started or written
