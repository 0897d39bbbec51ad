"""Offline workshops: `./lesson` installs everything from a wheelhouse, and asks
no package index.

A fresh checkout (the tracked files, copied, with no .venv) gets a wheelhouse
made by the documented command (`pip download` against the lock), then runs
`./lesson list` with LESSON_WHEELHOUSE set. The package index is a local HTTP
server that records every request it gets: it must get none. pip's own settings
(config files, PIP_* variables) are switched off, so only the wrapper's options
count. Slow (a whole venv is installed): marked `install`, run by `lesson test --full`.
"""
import http.server
import importlib.util
import os
import platform
import re
import shutil
import subprocess
import sys
import threading
from importlib.machinery import SourceFileLoader

import pytest

from harness import ROOT

pytestmark = pytest.mark.install

LESSON_FOLDERS = sorted(p.name for p in (ROOT / "lessons").iterdir() if re.match(r"\d\d_", p.name))
DOWNLOAD_TIMEOUT = 600  # the first download of ~110 MB; later ones come from pip's cache
INSTALL_TIMEOUT = 300


def load_wrapper():
    """./lesson as a module (it has no .py suffix), for its wheelhouse functions."""
    loader = SourceFileLoader("lesson_wrapper", str(ROOT / "lesson"))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(loader.name, loader))
    loader.exec_module(module)
    return module


WRAPPER = load_wrapper()


def pins(lines):
    """{name: version} of `name==version ...` lines, names normalised."""
    return {re.sub(r"[-_.]+", "-", line.split("==")[0]).lower(): line.split("==")[1].split()[0]
            for line in lines}


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory):
    """The documented way to make one, for laptops like this machine."""
    folder = tmp_path_factory.mktemp("wheelhouse")
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                    "--require-hashes", "-r", str(ROOT / "requirements.lock"), "-d", str(folder)],
                   check=True, timeout=DOWNLOAD_TIMEOUT, stdin=subprocess.DEVNULL)
    return folder


@pytest.fixture
def checkout(tmp_path):
    """The tracked files of this repository, as a student's fresh copy has them."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                            check=True).stdout.decode().split("\0")
    copy = tmp_path / "checkout"
    for name in filter(None, listed):
        if (ROOT / name).is_file():  # (a file deleted in the working tree is still listed)
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, copy / name)
    return copy


@pytest.fixture
def index():
    """(url, requests): a package index that answers 404 and records every request."""
    requests = []

    class Recorder(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            requests.append(self.path)
            self.send_error(404)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/simple/", requests
    server.shutdown()
    server.server_close()


def run_wrapper(checkout, wheelhouse, index_url, *args):
    """`python3 lesson ARGS` in the checkout, as on a laptop with no internet."""
    env = {name: value for name, value in os.environ.items()
           if not name.startswith("PIP_") and name.lower() not in ("http_proxy", "https_proxy")
           and name not in ("LESSON_ROOT", "VIRTUAL_ENV", "PYTHONPATH")}
    env.update(LESSON_WHEELHOUSE=str(wheelhouse), PIP_CONFIG_FILE=os.devnull,
               PIP_INDEX_URL=index_url)
    return subprocess.run([sys.executable, str(checkout / "lesson"), *args], cwd=checkout,
                          env=env, capture_output=True, text=True, timeout=INSTALL_TIMEOUT,
                          stdin=subprocess.DEVNULL)


def test_a_fresh_checkout_installs_from_the_wheelhouse_alone(checkout, wheelhouse, index):
    index_url, requests = index

    result = run_wrapper(checkout, wheelhouse, index_url, "list")

    assert result.returncode == 0, result.stderr
    assert f"installing the pinned packages from the wheelhouse {wheelhouse}" in result.stderr
    assert result.stderr.rstrip().endswith("[./lesson] ready"), result.stderr
    assert [line.split()[0] for line in result.stdout.splitlines()] == LESSON_FOLDERS
    assert requests == []
    # The compiled wheels work in the new venv (`lesson list` imports none of them).
    python = checkout / ".venv" / "bin" / "python"
    subprocess.run([python, "-c", "import flask_socketio, eventlet, gevent, socketio, numpy"],
                   check=True, timeout=60)
    # And the next run goes straight to the `lesson` command.
    again = run_wrapper(checkout, wheelhouse, index_url, "list")
    assert (again.returncode, again.stderr, again.stdout) == (0, "", result.stdout)


def test_a_venv_left_without_pip_by_a_failed_attempt_is_made_anew(checkout, wheelhouse, index):
    """Debian without python3-venv: `python -m venv` stops at "ensurepip is not
    available" and leaves a Python with no pip; the next ./lesson must not reuse it."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(checkout / ".venv")],
                   check=True, timeout=60)

    result = run_wrapper(checkout, wheelhouse, index[0], "list")

    assert result.returncode == 0, result.stderr
    assert "has no pip (an earlier attempt failed half-way): making it anew" in result.stderr
    assert [line.split()[0] for line in result.stdout.splitlines()] == LESSON_FOLDERS


def test_a_wheel_missing_from_the_wheelhouse_stops_the_install_and_names_it(
        checkout, wheelhouse, index, tmp_path):
    index_url, requests = index
    version = pins([line for line in (ROOT / "requirements.lock").read_text().splitlines()
                    if line.startswith("flask-socketio==")])["flask-socketio"]
    partial = tmp_path / "partial"  # the wheelhouse without Flask-SocketIO's wheel
    partial.mkdir()
    for wheel in wheelhouse.iterdir():
        if not wheel.name.startswith("flask_socketio-"):
            (partial / wheel.name).symlink_to(wheel)

    result = run_wrapper(checkout, partial, index_url, "list")

    assert result.returncode == 1
    assert result.stdout == ""
    assert f"No matching distribution found for flask-socketio=={version}" in result.stderr
    last_line = result.stderr.rstrip().splitlines()[-1]
    assert last_line.startswith("[./lesson] installing into ")
    assert f"a package above has no wheel in LESSON_WHEELHOUSE={partial} for Python " \
           f"{sys.version_info[0]}.{sys.version_info[1]}" in last_line
    assert requests == []  # no silent download: the index was never asked


def test_a_wheelhouse_that_is_not_a_folder_gets_one_line_and_no_venv(checkout, tmp_path, index):
    nowhere = tmp_path / "nowhere"

    result = run_wrapper(checkout, nowhere, index[0], "list")

    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (f"[./lesson] LESSON_WHEELHOUSE={nowhere} is not a folder: make it "
                             "with `./lesson wheelhouse FOLDER` on a machine with internet\n")
    assert not (checkout / ".venv").exists()


def test_the_wheelhouse_for_other_laptops_picks_what_pip_picks_here(wheelhouse):
    """`./lesson wheelhouse DIR --python X.Y --platform NAME` evaluates the lock's
    markers for the laptops (pip download would evaluate them for this machine).
    For this machine, it must choose what pip chose; for others, one pin per package."""
    lock = (ROOT / "requirements.lock").read_text()
    here = "%d.%d" % sys.version_info[:2]
    downloaded = {re.sub(r"[-_.]+", "-", wheel.name.split("-")[0]).lower(): wheel.name.split("-")[1]
                  for wheel in wheelhouse.iterdir()}
    this_machine = next(name for name, (system, machine, _) in WRAPPER.PLATFORMS.items()
                        if (system, machine) == (sys.platform, platform.machine()))
    chosen = pins(WRAPPER.requirements_for(lock, here, this_machine))
    # Any patch release of X.Y: a pin for early patches only (`python_full_version <
    # '3.11.3'`) is chosen too; pip, on this patch release, may not need it.
    extra = {name for name in set(chosen) - set(downloaded)
             if re.search(rf"^{name}==\S+ ; .*python_full_version < '{here}\.", lock, re.M | re.I)}
    assert {name: chosen[name] for name in set(chosen) - extra} == downloaded

    mac, windows = (pins(WRAPPER.requirements_for(lock, "3.13", target))
                    for target in ("macos-arm64", "windows"))
    assert "appnope" in mac and "appnope" not in chosen and "appnope" not in windows
    assert "colorama" in windows and "colorama" not in mac
    lines = WRAPPER.requirements_for(lock, "3.10", "macos-x86_64")
    assert len(pins(lines)) == len(lines)  # one version of each package
    assert all(" ; " not in line and "--hash=sha256:" in line for line in lines)
