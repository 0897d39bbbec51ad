#!/usr/bin/env bash
# Time the everyday suite as `./lesson test` runs it: the wall time, the CPU time of
# everything it started, and where that CPU time went: lesson servers, fork servers,
# Chromium, Playwright's driver, notebook kernels, lesson commands run to completion,
# the test processes, and the rest (Redis, helper scripts...), from what the test processes measure
# when LESSON_CPU_LOG is set (tests/cpu_log.py). Then the time per async mode and for
# the browser tests (from pytest's own per-test durations).
# Usage: scripts/time-suite.sh [more pytest args]      (e.g. --full, or 01)
set -euo pipefail
cd "$(dirname "$0")/.."
./lesson list >/dev/null  # a first run installs .venv/: not part of the suite's time
report=$(mktemp -d)
mkdir "$report/cpu"
LESSON_CPU_LOG="$report/cpu" .venv/bin/python - "$report" "$@" <<'PY'
import glob, json, os, resource, subprocess, sys, time
import xml.etree.ElementTree as ET
from collections import defaultdict

report, args = sys.argv[1], sys.argv[2:]
started = time.monotonic()
status = subprocess.call(["./lesson", "test", f"--junitxml={report}/junit.xml", "-q", *args],
                         stdin=subprocess.DEVNULL)
wall = time.monotonic() - started
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
print(f"  {'other (Redis, helper scripts...)':<32} {total - sum(parts.values()):7.1f} s")

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
