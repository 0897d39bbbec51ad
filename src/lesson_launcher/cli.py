"""lesson list | run LESSON [DEMO] [options] | test [LESSON] [pytest args] | bench | doctor [--port N]

Only the standard library is imported until the async mode is chosen and
patched in; Flask and the lesson come after.
"""
import argparse
import importlib.util
import ipaddress
import os
import subprocess
import sys
from typing import NoReturn

from . import catalog, modes, stack
from .cmdline import Parser, port_number


def backend_count(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 16:
        raise argparse.ArgumentTypeError(f"expected a number of backends from 1 to 16, not {text!r}")
    return int(text)


def build_parser() -> Parser:
    parser = Parser(prog="lesson", description="List, run and test the Flask-SocketIO lessons.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    list_ = commands.add_parser("list", help="list the lessons, or the demos of one lesson")
    list_.add_argument("lesson", nargs="?", help="01, 01_basic or basic")

    run = commands.add_parser("run", help="serve one lesson (one demo of it)")
    run.add_argument("lesson", help="01, 01_basic or basic")
    run.add_argument("demo", nargs="?", help="the demo, for a lesson that has several")
    run.add_argument("--mode", default="auto", choices=("auto",) + modes.MODES,
                     help="async mode (default: auto, the first installed of "
                          "eventlet, gevent, threading, as Flask-SocketIO picks)")
    run.add_argument("--patch", default="early", choices=modes.PATCHING,
                     help="eventlet and gevent: monkey patch the standard library before the "
                          "lesson is imported (early, the default), after it (late) or not at "
                          "all (none); lesson 03's monkey_patch demo shows what the last two cost")
    run.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    run.add_argument("--port", default=5000, type=port_number,
                     help="port (default: 5000; 0 picks a free one)")
    run.add_argument("--debug", action="store_true",
                     help="Flask debug mode and request logging (restart by hand after an edit)")
    run.add_argument("--backends", type=backend_count, metavar="K",
                     help="lesson 06: how many gunicorn backends behind nginx (default: 2)")
    run.add_argument("--trap", action="append", choices=("all", *stack.TRAPS),
                     help="lesson 06: also serve this mistake, on a port of its own (repeatable)")

    doctor = commands.add_parser("doctor", help="check what the lessons and tests need on this "
                                                "machine, with a fix for each problem")
    doctor.add_argument("--port", default=5000, type=port_number,
                        help="the port to check is free (default: 5000, as `lesson run`)")

    commands.add_parser("test", help="run the everyday test suite (`test 01`: one lesson's tests); "
                             "--full adds the fuzzing, load and install tests, as CI does "
                             "(other arguments go to pytest)",
                        add_help=False)
    commands.add_parser("bench", help="measure the async modes on this machine "
                                      "(`lesson bench --help`)", add_help=False)
    return parser


def fail(message: str) -> NoReturn:
    print(f"lesson: {message}", file=sys.stderr)
    raise SystemExit(2)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["test"]:  # everything after `test` belongs to pytest
        return run_tests(argv[1:])
    if argv[:1] == ["bench"]:  # and everything after `bench` to the benchmark
        from .bench import main as bench
        return bench(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        if args.command == "list":
            return list_lessons(args.lesson)
        if args.command == "doctor":
            from . import doctor
            return doctor.main(args.port)
        return run_lesson(args)
    except (catalog.NotFound, modes.ModeUnavailable, stack.StackError) as error:
        fail(str(error))
    except ConnectionError as error:  # a lesson's create_app could not reach a service it needs
        fail(str(error))
    except KeyboardInterrupt:  # Ctrl-C before the server was up
        print("lesson: stopped", file=sys.stderr)
        return 0


def list_lessons(key=None) -> int:
    if key is None:
        lessons = catalog.all_lessons()
        width = max(len(lesson.name) for lesson in lessons)
        for lesson in lessons:
            print(f"{lesson.name:<{width}}  {lesson.description}")
        return 0
    lesson = catalog.find_lesson(key)
    demos = lesson.demos()
    width = max(len(name) for name in demos)
    for name, file in demos.items():
        print(f"{name:<{width}}  {catalog.describe_demo(file)}")
    return 0


EVERYDAY = "not stress and not install"
STRESS = "stress or install"  # what `--full` adds
NO_TESTS_COLLECTED = 5        # pytest's exit status (`lesson test --full tests/test_load.py`: the everyday part)


def lesson_tests(root, key: str) -> list:
    """The test files of one lesson: tests/test_NN_topic.py, or the folder tests/test_NN_topic/."""
    lesson = catalog.find_lesson(key, root)
    found = [str(path.relative_to(root)) for path in
             (root / "tests" / f"test_{lesson.name}.py", root / "tests" / f"test_{lesson.name}")
             if path.exists()]
    if not found:
        fail(f"lesson {lesson.name} has no tests (tests/test_{lesson.name}.py)")
    return found


def run_tests(pytest_args) -> int:
    root = catalog.repository_root()
    os.chdir(root)
    command = [sys.executable, "-m", "pytest"]
    # `lesson test 01` (a lesson's number or name first): that lesson's tests alone.
    first = pytest_args[0] if pytest_args else "-"
    if not first.startswith("-") and not os.path.exists(first.split("::")[0]):
        try:
            pytest_args = lesson_tests(root, pytest_args[0]) + list(pytest_args[1:])
        except catalog.NotFound as error:
            fail(f"{error} (or give pytest a test file)")
    # Four pytest-xdist workers unless told otherwise (`-n 0` runs serially). Much
    # of a lesson test's time is spent waiting on a server or a push, so on 2 cores
    # four workers keep the CPU busier than three: 56.6 s against 60.6-61 s for the
    # everyday suite (96% of the CPU used against 90%). tests/conftest.py keeps the
    # tests of one lesson, one mode (and one demo of lesson 03) on one worker, so
    # each server starts once.
    if not any(arg == "-n" or arg.startswith(("-n", "--numprocesses")) for arg in pytest_args):
        command += ["-n", "4"]
    # The everyday run leaves out the fuzzing, load and install tests (markers
    # in pyproject.toml); `--full`, which CI runs, adds them. An explicit -m wins.
    full = "--full" in pytest_args
    pytest_args = [arg for arg in pytest_args if arg != "--full"]
    explicit_marks = any(arg == "-m" or arg.startswith("-m") for arg in pytest_args)
    # Let Python cache bytecode, even where the environment forbids it (Docker images
    # often set PYTHONDONTWRITEBYTECODE=1, as this workshop machine does): the suite
    # starts a hundred Python processes, and without the cache each pytest worker
    # rewrites and compiles the 30 test modules again, 1.4 CPU-seconds per process
    # per run (collection: 2.7 s of CPU without the cache, 1.3 s with it). The cache
    # is __pycache__/, ignored by git.
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    if explicit_marks:
        os.execv(sys.executable, command + pytest_args)
    if not full:
        os.execv(sys.executable, command + ["-m", EVERYDAY] + pytest_args)
    # `--full`: the everyday tests first, then the others alone. Side by side, 200
    # load-test clients or hypothesis's thousands of payloads starve the everyday
    # tests' browser tabs of CPU, and a page that measures when its pushes arrive
    # (lesson 03) then fails for the machine's sake, not the lesson's.
    statuses = []
    for marks in (EVERYDAY, STRESS):
        print(f"lesson: pytest -m {marks!r}", file=sys.stderr, flush=True)
        tests = subprocess.Popen(command + ["-m", marks] + pytest_args)
        try:
            statuses.append(tests.wait())
        except KeyboardInterrupt:  # pytest got the Ctrl-C too: let it report, then stop here
            tests.wait()
            return 130
    failed = [status for status in statuses if status not in (0, NO_TESTS_COLLECTED)]
    return failed[0] if failed else min(statuses)


def run_lesson(args) -> int:
    lesson = catalog.find_lesson(args.lesson)
    if stack.is_stack_lesson(lesson.path):  # lesson 06: Redis, gunicorn and nginx, not one server
        return stack.run(lesson, args)
    if args.backends is not None or args.trap:
        fail(f"--backends and --trap are for lesson 06_deploy only, not {lesson.name}")
    demo, file = lesson.demo(args.demo)
    label = lesson.name if demo == "app" else f"{lesson.name}/{demo}"
    mode = modes.pick(args.mode)
    if args.mode == "auto":
        print(f"lesson: --mode auto picked {mode} (the first installed of "
              f"{', '.join(modes.AUTO_ORDER)})", file=sys.stderr)
    if args.patch != "early" and mode == "threading":
        fail(f"--patch {args.patch} is for eventlet and gevent; threading mode patches nothing")
    modes.import_quietly(mode)
    if args.patch == "early":
        modes.patch(mode)  # before Flask or the lesson is imported

    from . import serve  # noqa: E402  (after patching, on purpose)

    try:
        sock = serve.listen(args.host, args.port)
    except serve.CannotListen as error:
        fail(str(error))
    warning = network_warning(args.host, sock)
    if warning:
        print(warning, file=sys.stderr)
    app = load_app(file, mode, args.debug)
    if args.patch == "late":
        modes.patch(mode)  # after Flask and the lesson were imported: too late (lesson 03)
    serve.stop_on_signals()
    serve.announce(label, app.extensions["socketio"].async_mode, sock, patch=args.patch)
    serve.serve(mode, app, sock, log_requests=args.debug)
    return 0


def network_warning(host: str, sock):
    """One line when the socket is bound to more than loopback: then any machine
    that can reach this one can open the lesson (and nothing here checks who)."""
    address = ipaddress.ip_address(sock.getsockname()[0].split("%")[0])
    if address.is_loopback:
        return None
    return (f"lesson: warning: --host {host} makes this lesson reachable from other machines "
            "on the network")


def load_app(file, mode: str, debug: bool):
    """Import the lesson module from its file and build its app in ``mode``."""
    sys.path.insert(0, str(file.parent))  # so a demo can import its lesson's helpers
    name = f"lesson_{file.parent.name}_{file.stem}"
    spec = importlib.util.spec_from_file_location(name, file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # Flask finds templates/ through the module's file
    spec.loader.exec_module(module)
    app = module.create_app(async_mode=mode)
    if debug:
        app.debug = True
    return app
