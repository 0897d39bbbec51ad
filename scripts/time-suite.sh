#!/usr/bin/env bash
# Time the whole suite as `./lesson test` runs it, then split the time by async
# mode and for the browser tests (from pytest's own per-test durations).
# Usage: scripts/time-suite.sh [more pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
report=$(mktemp -d)
start=$(date +%s.%N)
./lesson test --junitxml="$report/junit.xml" -q "$@" | tail -n 3
end=$(date +%s.%N)
./lesson test --collect-only -q -m browser -n 0 | grep '::' > "$report/browser.txt" || true
.venv/bin/python - "$report" "$start" "$end" <<'PY'
import sys, xml.etree.ElementTree as ET
from collections import defaultdict
report, start, end = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
browser = {line.strip() for line in open(f"{report}/browser.txt")}
seconds, counts = defaultdict(float), defaultdict(int)
for case in ET.parse(f"{report}/junit.xml").iter("testcase"):
    node = case.get("classname").replace(".", "/") + ".py::" + case.get("name")
    name, time = case.get("name"), float(case.get("time"))
    mode = next((m for m in ("eventlet", "gevent", "threading") if f"[{m}" in name), "no mode")
    part = "browser" if node in browser else "python client / other"
    for key in (f"mode {mode}", f"part {part}"):
        seconds[key] += time
        counts[key] += 1
print(f"wall time of the whole suite: {end - start:.1f} s")
print("time per test, setup and teardown included (pytest junit 'total'), summed:")
for key in sorted(seconds):
    print(f"  {key:<32} {counts[key]:4d} tests {seconds[key]:7.1f} s")
PY
