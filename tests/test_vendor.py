"""What the repository ships: the pinned browser client in every lesson page,
and lock files that pin versions and hashes but name no server to fetch from."""
import hashlib
import json
import re

import pytest

from harness import ROOT

PAGE_LESSONS = sorted(p.parent.name for p in (ROOT / "lessons").glob("*/templates"))
PINNED = json.loads((ROOT / "package.json").read_text())["devDependencies"]["socket.io-client"]
NPM_LOCK = json.loads((ROOT / "package-lock.json").read_text())


def test_package_lock_pins_the_same_client_as_package_json():
    assert re.fullmatch(r"4\.\d+\.\d+", PINNED), "pin an exact 4.x version (save-exact)"
    assert NPM_LOCK["packages"]["node_modules/socket.io-client"]["version"] == PINNED


@pytest.mark.parametrize("lesson", PAGE_LESSONS)
def test_every_lesson_page_ships_the_pinned_client(lesson):
    shipped = ROOT / "lessons" / lesson / "static" / "vendor" / "socket.io.min.js"
    assert shipped.exists(), f"run `npm ci && npm run vendor` to ship the client into {lesson}"
    assert shipped.read_bytes().startswith(f"/*!\n * Socket.IO v{PINNED}\n".encode())


def test_all_lessons_ship_the_same_bytes_and_node_modules_agrees_when_present():
    digests = {hashlib.sha256((ROOT / "lessons" / lesson / "static/vendor/socket.io.min.js")
                              .read_bytes()).hexdigest() for lesson in PAGE_LESSONS}
    built = ROOT / "node_modules/socket.io-client/dist/socket.io.min.js"
    if built.exists():  # a checkout where `npm ci` ran: the copies are byte for byte npm's file
        digests.add(hashlib.sha256(built.read_bytes()).hexdigest())
    assert len(digests) == 1


PYTHON_LOCKS = ("requirements.lock", "requirements-lab.lock")


def python_pins(lock):
    """{(name, version)} of a uv-made lock; a pin spans lines up to its hashes."""
    requirements = re.split(r"\n(?=[a-z])", (ROOT / lock).read_text().split("\n", 3)[-1])
    return [r for r in requirements if "==" in r]


def test_lock_files_name_no_index_or_download_url():
    assert '"resolved"' not in (ROOT / "package-lock.json").read_text()
    for lock in PYTHON_LOCKS:
        text = (ROOT / lock).read_text()
        assert not re.search(r"(?m)^\s*--(index-url|extra-index-url|find-links|trusted-host)", text)
        assert "://" not in text, lock


@pytest.mark.parametrize("lock", PYTHON_LOCKS)
def test_every_python_pin_has_a_hash(lock):
    pins = python_pins(lock)
    assert pins and all("--hash=sha256:" in pin for pin in pins)


def test_the_jupyterlab_lock_adds_packages_but_changes_no_pin():
    def versions(lock):
        return {re.match(r"([\w.-]+)==([^ ;\\]+)", pin).groups() for pin in python_pins(lock)}

    main, lab = versions("requirements.lock"), versions("requirements-lab.lock")
    assert main <= lab, f"pins that differ: {sorted(main - lab)}; see README, Maintaining the pins"
    assert ("jupyterlab" in dict(lab)) and ("jupyterlab" not in dict(main))
