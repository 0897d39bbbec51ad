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


def patch(mode: str) -> None:
    """Make the standard library cooperative for eventlet or gevent; nothing for threading."""
    if mode == "eventlet":
        import warnings

        with warnings.catch_warnings():  # we say it in one line instead of ten
            warnings.simplefilter("ignore")
            import eventlet
        eventlet.monkey_patch()
        print("lesson: note: eventlet is deprecated by its own maintainers; "
              "prefer --mode gevent or --mode threading for new work", file=sys.stderr)
    elif mode == "gevent":
        from gevent import monkey

        monkey.patch_all()
