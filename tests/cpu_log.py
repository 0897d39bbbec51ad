"""Where the suite's CPU time goes, for scripts/time-suite.sh.

With LESSON_CPU_LOG=DIR in the environment, each test process appends one JSON line
per measurement to DIR/PID.jsonl: {"part": "lesson servers", "seconds": 0.03}.
Without it, nothing is measured or written. The parts:

* lesson servers: each server's CPU time just before its Ctrl-C (harness.LessonServer);
* fork servers: each fork server's own CPU time, at the end of the session;
* Chromium: the browser's processes, when the session closes it (conftest.browser),
  and Playwright's driver (a Node.js process) apart;
* lesson commands: `lesson ...` run to completion (harness.run_lesson_command);
* notebook kernels: the kernels and the servers they start (test_notebooks.execute);
* test processes: pytest itself and its workers (conftest.pytest_sessionfinish).
"""
import json
import os
import resource

FOLDER = os.environ.get("LESSON_CPU_LOG")


def record(part: str, seconds: float) -> None:
    if FOLDER:
        with open(os.path.join(FOLDER, f"{os.getpid()}.jsonl"), "a") as log:
            log.write(json.dumps({"part": part, "seconds": round(seconds, 4)}) + "\n")


def own_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def children_seconds() -> float:
    """CPU time of this process's children that have ended and been waited for."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def process_seconds(pid: int) -> float:
    """A live process's CPU time, with that of its children it has waited for."""
    import psutil

    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:  # it has ended already
        return 0.0
    return times.user + times.system + times.children_user + times.children_system


def tree_seconds(root: int) -> float:
    """A tree of live processes (Chromium's): the root's CPU time with its waited-for
    children's (renderers that have ended), and each live descendant's own."""
    import psutil

    try:
        descendants = psutil.Process(root).children(recursive=True)
    except psutil.Error:
        return 0.0
    total = process_seconds(root)
    for process in descendants:
        try:
            times = process.cpu_times()
        except psutil.Error:  # ended meanwhile: its parent has it, or has not waited yet
            continue
        total += times.user + times.system
    return total
