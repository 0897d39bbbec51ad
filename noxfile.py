"""The test suite on every Python the project supports, 3.10 to 3.13, with nox.

    nox -s tests                     `lesson test --full` on each Python, one after the other
    nox -s tests-3.13                on one of them
    nox -s tests-3.12 -- -k gevent   arguments go to `lesson test`
    nox -s smoke                     a quick subset on each Python: installs, imports, serves

Each session makes its own venv and installs exactly what ./lesson installs: the
hashed lock, then the project, editable, with the build backend the lock brought.

nox looks for python3.10 ... python3.13 on PATH and through version managers. pyenv
shows only its active versions: make them all active for the run, for instance
`PYENV_VERSION=3.11.7:3.10.13:3.12.1:3.13.0 nox` (or `pyenv global` with that list).
A Python nox cannot find fails the session; it is not skipped.
"""
import nox

PYTHONS = ["3.10", "3.11", "3.12", "3.13"]  # pyproject.toml: requires-python = ">=3.10"

nox.options.error_on_missing_interpreters = True
nox.options.sessions = ["tests"]


def install(session):
    session.install("--require-hashes", "--no-deps", "-r", "requirements.lock")
    session.install("--no-deps", "--no-build-isolation", "--editable", ".")


@nox.session(python=PYTHONS)
def tests(session):
    """The whole suite, as CI runs it (the everyday tests and the stress and install ones)."""
    install(session)
    session.run("lesson", "test", "--full", *session.posargs)


# What differs between Python versions is the wheels the lock picks (numpy, gevent,
# greenlet...) and the language and standard library the launcher and the lessons use:
# every lesson's server in every mode, the launcher's contract, and an install from a
# wheelhouse cover both. The browser, the stress tests and the notebooks do not
# depend on the Python version: they are left to the full run on one version.
SMOKE = ["tests/test_01_basic.py", "tests/test_02_background.py", "tests/test_04_broadcast.py",
         "tests/test_05_scale_out.py", "tests/test_launcher.py", "tests/test_offline_install.py"]


@nox.session(python=PYTHONS)
def smoke(session):
    """Every lesson and the launcher in every mode, without the browser; and the offline install."""
    install(session)
    session.run("lesson", "test", "-m", "not browser and not stress", *(session.posargs or SMOKE))
