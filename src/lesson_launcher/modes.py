"""Async modes: which one to use, and the monkey patching it needs.

Everything here must run before Flask, Flask-SocketIO or the lesson is
imported: eventlet and gevent replace the standard library's blocking
functions (sockets, sleep, threads) with cooperative ones, and any module
imported earlier keeps references to the blocking originals.
"""
import importlib.util
import sys

MODES = ("eventlet", "gevent", "threading")
# The order python-engineio tries when async_mode is not given
# (engineio.base_server.BaseServer.async_modes, minus gevent_uwsgi, which only
# applies inside a uWSGI server).
AUTO_ORDER = ("eventlet", "gevent", "threading")
# When the launcher monkey patches (`lesson run --patch`): before Flask and the lesson
# are imported (early, the default and the right way), after them (late: the 2019
# post's first try, shown by lesson 03's monkey_patch demo), or not at all (none).
PATCHING = ("early", "late", "none")


class ModeUnavailable(RuntimeError):
    pass


def installed(mode: str) -> bool:
    return mode == "threading" or importlib.util.find_spec(mode) is not None


def pick(requested: str) -> str:
    """The mode to run: the one asked for, or for ``auto`` the first installed."""
    if requested != "auto":
        if not installed(requested):
            raise ModeUnavailable(f"async mode {requested} is not installed (pip install {requested})")
        return requested
    return next(mode for mode in AUTO_ORDER if installed(mode))


def import_quietly(mode: str) -> None:
    """Import eventlet with its ten-line deprecation warning said in one line."""
    if mode == "eventlet" and "eventlet" not in sys.modules:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import eventlet  # noqa: F401
        print("lesson: note: eventlet is deprecated by its own maintainers; "
              "prefer --mode gevent or --mode threading for new work", file=sys.stderr)


def patch(mode: str) -> None:
    """Make the standard library cooperative for eventlet or gevent; nothing for threading."""
    if mode == "eventlet":
        import_quietly(mode)
        import eventlet

        eventlet.monkey_patch()
    elif mode == "gevent":
        from gevent import monkey

        monkey.patch_all()
