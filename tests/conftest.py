"""Fixtures shared by every test file. Read top to bottom:

* every test module runs once per async ``mode`` (eventlet, gevent, threading);
* ``serve("01")`` starts that lesson through the real launcher, in that mode,
  on a free port, waits for its ready line and stops it (Ctrl-C) after the module;
* ``connect(server)`` gives a python-socketio client connected over a real
  socket, which records every event it receives;
* ``page`` is a fresh tab of a real headless Chromium.
"""
import os
import re
from pathlib import Path

import psutil
import pytest

import cpu_log
from harness import MODES, ROOT, LessonServer, RecordingClient, without_the_pending_connect_race
from lesson_launcher import forkserver
from lesson_launcher.doctor import chromium_candidates


def pytest_configure(config):
    """pytest with pytest-xdist workers (`lesson test` runs four) starts one fork server
    per async mode for all of them (lesson_launcher.forkserver, harness.LessonServer)."""
    if config.getoption("numprocesses", None) and not hasattr(config, "workerinput") \
            and os.environ.get("LESSON_FORK", "1") != "0":
        forkserver.share(MODES)


MODULE_MARK = re.compile(r"^pytestmark = pytest\.mark\.(\w+)$", re.MULTILINE)


def pytest_ignore_collect(collection_path, config):
    """A test file whose every test carries a mark that -m leaves out (`pytestmark =
    pytest.mark.stress`, for the `--full` tests) is not even imported: hypothesis alone
    took 0.65 s of CPU to import, in pytest and in each worker, for tests never run."""
    if not config.option.markexpr or collection_path.suffix != ".py":
        return None
    mark = MODULE_MARK.search(collection_path.read_text(encoding="utf-8"))
    if mark:
        from _pytest.mark.expression import Expression  # how -m itself decides

        expression = Expression.compile(config.option.markexpr)
        if not expression.evaluate(lambda name, **kwargs: name == mark[1]):
            return True
    return None


@pytest.fixture(scope="module", params=MODES)
def mode(request):
    """The async mode a test module runs in; each module runs in all three."""
    return request.param


def pytest_xdist_make_scheduler(config, log):
    """Under pytest-xdist (`lesson test` runs `-n 4`), send the tests of one module,
    one mode and one demo (`test_<demo>_...`, for lessons with several) to one
    worker, so that each lesson server starts once, not once per worker. A test
    with no mode in its id is a unit of its own. (The `xdist_group` mark cannot do this on pytest 9.2:
    pytest-xdist issue #1386.)"""
    from xdist.scheduler import LoadScopeScheduling

    demos = [path.stem for path in ROOT.glob("lessons/*/*.py") if "def create_app" in path.read_text()]

    class ByModuleModeAndDemo(LoadScopeScheduling):
        def _assign_work_unit(self, node):
            # The longest units first, so that none of them starts last while the
            # other workers idle (a notebook is one test, but seconds of work).
            # (workqueue and _assign_work_unit are LoadScopeScheduling's, xdist 3.8.)
            if not getattr(self, "ordered", False):
                units = interleaved(self.workqueue.items())
                self.workqueue.clear()
                self.workqueue.update(units)
                self.ordered = True
            super()._assign_work_unit(node)

        def _split_scope(self, nodeid):
            module, _, test = nodeid.partition("::")
            mode = re.search(r"[\[-](eventlet|gevent|threading)[\]-]", test)
            if not mode:  # one unit per test, but for a module whose tests share a costly fixture
                return module if module.endswith(ONE_UNIT_MODULES) else nodeid
            demo = next((demo for demo in demos if test.startswith(f"test_{demo}_")), "")
            return f"{module}::{mode[1]}::{demo}"

    return ByModuleModeAndDemo(config, log)


ONE_UNIT_MODULES = ("test_offline_install.py",)  # its wheelhouse is made once, for all its tests
SLOWEST_MODULES = ("test_load", "test_fuzz", "test_offline_install",  # (`--full` only)
                   "test_notebooks", "test_bench",
                   "test_03_pitfalls/test_blocking_connect", "test_03_pitfalls/test_cross_origin",
                   "test_03_pitfalls/test_busy_handler", "test_03_pitfalls",  # (a folder: one file per demo)
                   "test_05_scale_out", "test_02_background", "test_04_broadcast")  # by `--durations`, per unit


def module_of(scope):
    """A unit's test file under tests/, without .py: `test_02_background`, `test_03_pitfalls/test_busy_handler`."""
    return scope.split("::")[0].removeprefix("tests/").removesuffix(".py")


def slowest_first(scope):
    """A unit's rank in SLOWEST_MODULES: its file's, else its folder's."""
    module = module_of(scope)
    ranks = [SLOWEST_MODULES.index(name) for name in (module, module.split("/")[0]) if name in SLOWEST_MODULES]
    return ranks[0] if ranks else len(SLOWEST_MODULES)


def interleaved(units):
    """The slow modules' units first, taken in turn from each module; then the others.

    The units of one module wait alike (lesson 02's, for its pushes), so three of
    them side by side leave the CPU idle; one unit from each module in turn mixes
    waiting with working. Lesson 03's folder takes its turns as one module."""
    by_module = {}
    for unit in sorted(units, key=lambda unit: slowest_first(unit[0])):
        by_module.setdefault((slowest_first(unit[0]) < len(SLOWEST_MODULES),
                              module_of(unit[0]).split("/")[0]), []).append(unit)
    order = []
    for slow in (True, False):
        queues = [queue for (is_slow, _), queue in by_module.items() if is_slow == slow]
        while any(queues):
            order += [queue.pop(0) for queue in queues if queue]
    return order


@pytest.fixture(scope="module")
def serve(mode):
    """serve(lesson, demo=None, **settings) -> a running LessonServer in this module's mode.

    Settings become FLASK_* environment variables, read by the lesson's
    app.config.from_prefixed_env(). Servers live until the module ends.
    """
    started = []

    def start(lesson, demo=None, **settings):
        server = LessonServer(lesson, demo, mode=mode, settings=settings).start()
        started.append(server)
        return server

    yield start
    for server in started:
        stderr = server.stop()
        assert "Traceback" not in without_the_pending_connect_race(stderr, server.mode), stderr


@pytest.fixture
def connect():
    """connect(server, namespaces=("/test_conn",), transports=None) -> a connected RecordingClient."""
    clients = []

    def open_client(server, namespaces=("/test_conn",), transports=None):
        client = RecordingClient(server.url, namespaces, transports)
        clients.append(client)
        return client.connect()

    yield open_client
    for client in clients:
        client.close()


# --- a real browser ---------------------------------------------------------

CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run"]


def find_chromium(playwright):
    """$CHROMIUM, a system Chromium (headless shell or full), or the one
    `playwright install chromium` downloads."""
    # (lesson doctor looks in the same places: lesson_launcher.doctor.chromium_candidates)
    for candidate in chromium_candidates() + [playwright.chromium.executable_path]:
        if candidate and Path(candidate).exists():
            return candidate
    pytest.fail("no Chromium found for the browser tests. Install one: "
                "`sudo apt-get install chromium` (Debian/Ubuntu), or "
                "`.venv/bin/playwright install chromium` (any OS), or set CHROMIUM=/path/to/chrome",
                pytrace=False)


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=find_chromium(playwright),
                                              headless=True, args=CHROMIUM_FLAGS)
        yield chromium
        if cpu_log.FOLDER:  # Chromium runs under Playwright's driver, a child of ours
            for driver in psutil.Process().children():
                if driver.children():
                    cpu_log.record("Playwright's driver", sum(driver.cpu_times()[:2]))
                for process in driver.children():
                    cpu_log.record("Chromium", cpu_log.tree_seconds(process.pid))
        chromium.close()


def pytest_sessionfinish(session):
    """Each test process (pytest and each of its workers): stop this process's fork
    servers (lesson_launcher.forkserver), and note the CPU time it used."""
    for seconds in forkserver.shutdown():
        cpu_log.record("fork servers", seconds)
    cpu_log.record("test processes", cpu_log.own_seconds())


@pytest.fixture
def page(browser):
    """A fresh browser tab; closed after the test. Its console errors fail the test."""
    context = browser.new_context()
    tab = context.new_page()
    errors = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    yield tab
    context.close()
    assert not errors, f"the page raised JavaScript errors: {errors}"
