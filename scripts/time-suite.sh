#!/usr/bin/env bash
# Time the everyday suite as `./lesson test` runs it: the wall time, the CPU time of
# everything it started, and where that CPU time went: lesson servers, fork servers,
# Chromium, Playwright's driver, notebook kernels, lesson commands run to completion,
# the test processes, the processes left to this script when their parent ended (Chromium's
# zygotes and their renderers: uncounted before 2026-12-07), and the rest (Redis, helper
# scripts...), from what the test processes measure
# when LESSON_CPU_LOG is set (tests/cpu_log.py). Then the time per async mode and for
# the browser tests (from pytest's own per-test durations).
# Usage: scripts/time-suite.sh [more pytest args]      (e.g. 01, or --full: then the times
# per mode and for the browser tests are those of its second pytest run, the stress tests)
set -euo pipefail
cd "$(dirname "$0")/.."
./lesson list >/dev/null  # a first run installs .venv/: not part of the suite's time
report=$(mktemp -d)
mkdir "$report/cpu"
LESSON_CPU_LOG="$report/cpu" .venv/bin/python - "$report" "$@" <<'PY'
import ctypes, glob, json, os, resource, subprocess, sys, time
import xml.etree.ElementTree as ET
from collections import defaultdict

report, args = sys.argv[1], sys.argv[2:]
# A process whose parent has gone is handed to init, and its CPU time to nobody: Chromium's
# zygote (the parent of every renderer) is one. As a "child subreaper" this script gets
# them instead, waits for them, and counts them (prctl(2), PR_SET_CHILD_SUBREAPER = 36).
if ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0) != 0:
    sys.exit("time-suite.sh: prctl(PR_SET_CHILD_SUBREAPER) failed: Linux only")
started = time.monotonic()
suite = subprocess.Popen(["./lesson", "test", f"--junitxml={report}/junit.xml", "-q", *args],
                         stdin=subprocess.DEVNULL)
status, orphans, deadline = None, defaultdict(float), None
while True:  # wait for the suite and for every orphan it left to this script
    try:
        exited = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOWAIT | (os.WNOHANG if deadline else 0))
    except ChildProcessError:  # nothing left
        break
    if exited is None:  # the suite is over, some orphans still run
        if time.monotonic() > deadline:
            break
        time.sleep(0.1)
        continue
    try:
        with open(f"/proc/{exited.si_pid}/comm") as comm:  # a zombie still has its name
            name = comm.read().strip()
    except OSError:
        name = "?"
    pid, code, child_usage = os.wait4(exited.si_pid, 0)
    if pid == suite.pid:
        status, wall, deadline = os.waitstatus_to_exitcode(code), time.monotonic() - started, time.monotonic() + 10
        suite.returncode = status  # reaped here, not by Popen
    else:
        orphans[name] += child_usage.ru_utime + child_usage.ru_stime
usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # every process it started, waited for
total = usage.ru_utime + usage.ru_stime

parts = defaultdict(float)
for log in glob.glob(f"{report}/cpu/*.jsonl"):
    for line in open(log):
        entry = json.loads(line)
        parts[entry["part"]] += entry["seconds"]
print(f"\nwall time of the suite: {wall:.1f} s on {os.cpu_count()} cores; "
      f"CPU time: {total:.1f} s (user {usage.ru_utime:.1f}, system {usage.ru_stime:.1f})")
print("CPU seconds per part:")
for part in ("lesson servers", "fork servers", "Chromium", "Playwright's driver",
             "notebook kernels", "lesson commands", "test processes"):
    print(f"  {part:<32} {parts[part]:7.1f} s")
print(f"  {'orphans, by name (see above)':<32} {sum(orphans.values()):7.1f} s   "
      + ", ".join(f"{name} {seconds:.1f}" for name, seconds in sorted(orphans.items(), key=lambda o: -o[1])))
print(f"  {'other (Redis, helper scripts...)':<32} {total - sum(parts.values()) - sum(orphans.values()):7.1f} s")
left = subprocess.run(["ps", "--ppid", str(os.getpid()), "-o", "pid=,comm="], capture_output=True, text=True).stdout.split("\n")
left = [line.strip() for line in left if line.strip() and "ps" not in line.split()]
if left:
    print(f"still running 10 s after the suite, not counted: {left}")

browser = subprocess.run(["./lesson", "test", "--collect-only", "-q", "-m", "browser", "-n", "0",
                          *[arg for arg in args if arg != "--full"]],
                         capture_output=True, text=True).stdout
browser = {line.strip() for line in browser.splitlines() if "::" in line}
seconds, counts = defaultdict(float), defaultdict(int)
for case in ET.parse(f"{report}/junit.xml").iter("testcase"):
    path = case.get("classname").replace(".", "/") + ".py"
    name, spent = case.get("name"), float(case.get("time"))
    mode = next((m for m in ("eventlet", "gevent", "threading") if f"[{m}" in name), "no mode")
    part = "browser" if f"{path}::{name}" in browser else "python client / other"
    for key in (f"mode {mode}", f"part {part}"):
        seconds[key] += spent
        counts[key] += 1
print("time per test, setup and teardown included (pytest junit 'total'), summed:")
for key in sorted(seconds):
    print(f"  {key:<32} {counts[key]:4d} tests {seconds[key]:7.1f} s")
sys.exit(status)
PY
