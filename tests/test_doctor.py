"""`lesson doctor`: one row per thing a workshop laptop needs (check | result | fix),
exit status 0 when every required check passes, 1 otherwise, 2 for a wrong command line.

Two real runs of the `lesson` command (each starts lesson 01 in the three modes
and talks to it over WebSocket): a healthy machine, and a broken one.
"""
import os
import re
import shutil
import socket
import time

from harness import MODES, free_port, run_lesson_command
from lesson_launcher import doctor

MODE_OK = re.compile(r"ok: event acknowledged over WebSocket in \d+ ms; up in [\d.]+ s")
HANDSHAKE_OK = re.compile(r"ok: WebSocket handshake ok \(no socketio client to go further\); "
                          r"up in [\d.]+ s")


def checks(port):
    return ["python", *[f"mode {mode}" for mode in MODES], "browser client", f"port {port}",
            "browser for tests", "redis-server", "nginx"]


def rows_of(stdout) -> dict:
    """{check: (result, fix)} from the doctor's table (columns found from the header)."""
    header, *rows, _summary = stdout.splitlines()
    assert header.split() == ["check", "result", "fix"], header
    result_at, fix_at = header.index("result"), header.index("fix")
    return {row[:result_at].strip(): (row[result_at:fix_at].strip(), row[fix_at:].strip())
            for row in rows}


def test_a_healthy_machine_passes_every_check_and_exits_0():
    port = free_port()  # not 5000: a lesson someone left running there is not the test's business
    started = time.monotonic()

    result = run_lesson_command("doctor", "--port", str(port))

    took = time.monotonic() - started
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == ""
    rows = rows_of(result.stdout)
    assert list(rows) == checks(port)
    assert {check: fix for check, (_, fix) in rows.items() if fix} == {}
    assert all(outcome.startswith("ok: ") for outcome, _ in rows.values()), result.stdout
    for mode in MODES:  # a real acknowledged event over WebSocket, in every mode
        assert MODE_OK.fullmatch(rows[f"mode {mode}"][0]), rows[f"mode {mode}"]
    assert rows[f"port {port}"][0] == "ok: free on 127.0.0.1"
    assert result.stdout.splitlines()[-1].startswith("lesson doctor: all required checks passed (")
    assert took < 20, f"{took:.1f} s"  # about 3 s; the bound catches a check that hangs


def test_a_port_in_use_fails_with_its_fix_while_a_missing_browser_only_warns(tmp_path):
    """The broken laptop: the port is taken, no Chromium anywhere, and no python-socketio
    client (websocket-client hidden), so the modes are checked by a bare handshake."""
    bin_dir, no_client = tmp_path / "bin", tmp_path / "no-client"
    bin_dir.mkdir()
    no_client.mkdir()
    if shutil.which("redis-server"):  # keep Redis on the PATH: one warning at a time
        (bin_dir / "redis-server").symlink_to(shutil.which("redis-server"))
    (no_client / "websocket.py").write_text('raise ImportError("hidden by tests/test_doctor.py")\n')
    env = {**os.environ, "PATH": str(bin_dir), "CHROMIUM": str(tmp_path / "no-chromium"),
           "PLAYWRIGHT_BROWSERS_PATH": str(tmp_path / "no-browsers"), "PYTHONPATH": str(no_client)}

    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = run_lesson_command("doctor", "--port", str(port), env=env)

    assert result.returncode == 1, result.stdout + result.stderr
    rows = rows_of(result.stdout)
    assert list(rows) == checks(port)
    assert rows[f"port {port}"] == (
        "FAIL: in use on 127.0.0.1",
        "stop what uses it (a lesson left running in another terminal? Ctrl-C it there), "
        "or run the lessons with `--port 5001` (`--port 0`: any free port)")
    outcome, fix = rows["browser for tests"]
    assert outcome == (f"warning: no Chromium (CHROMIUM={tmp_path / 'no-chromium'}: no such file): "
                       "optional, only the browser tests need one")
    assert "apt-get install chromium-headless-shell" in fix and "playwright install chromium" in fix
    for mode in MODES:
        assert HANDSHAKE_OK.fullmatch(rows[f"mode {mode}"][0]), rows[f"mode {mode}"]
    others = {check: row for check, row in rows.items()
              if check not in (f"port {port}", "browser for tests") and not check.startswith("mode ")}
    assert all(outcome.startswith("ok: ") for outcome, _ in others.values()), others
    assert result.stdout.splitlines()[-1].startswith(
        f"lesson doctor: 1 required check failed (port {port}), 1 warning; see the fix column (")


def test_warnings_alone_leave_the_exit_status_0(capsys):
    ok = doctor.Row("python", doctor.OK, "3.11")
    warning = doctor.Row("redis-server", doctor.WARNING, "not found", "install it")
    failure = doctor.Row("port 5000", doctor.FAIL, "in use", "use another")

    assert doctor.report([ok, warning], 1.0) == 0
    assert doctor.report([ok, warning, failure], 1.0) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == "lesson doctor: 1 required check failed (port 5000), 1 warning; see the fix column (1.0 s)"
    assert "lesson doctor: all required checks passed, 1 warning (1.0 s)" in out


def test_a_check_that_crashes_is_a_failed_row_not_a_traceback():
    row = doctor.run_check("python", lambda: 1 / 0, ())
    assert (row.check, row.status) == ("python", doctor.FAIL)
    assert "ZeroDivisionError" in row.detail and row.fix


def test_a_wrong_doctor_command_line_gets_one_line_and_status_2():
    for args, explanation in [(["--port", "http"], "port must be a number from 0 to 65535, not 'http'"),
                              (["--fix"], "unrecognized arguments: --fix")]:
        result = run_lesson_command("doctor", *args)
        assert result.returncode == 2
        assert result.stdout == ""
        assert result.stderr.count("\n") == 1 and explanation in result.stderr, result.stderr
