"""Is the message queue there? Asked once at startup, by every backend (a copy of lesson 05's)."""
from urllib.parse import urlsplit

import redis


def check_message_queue(url, timeout=2.0):
    """Raise ConnectionError, with a one-line reason, unless Redis answers PING at ``url``.

    Without this check a server starts anyway: Flask-SocketIO connects to the
    queue lazily, so a typo in the URL would only show later, as log lines,
    while messages to the other servers are silently lost.
    """
    shown = redact(url)
    if not url.startswith(("redis://", "rediss://")):
        raise ConnectionError(f"cannot reach the message queue {shown}: this lesson expects "
                              "a redis:// or rediss:// URL, e.g. redis://127.0.0.1:6379/0")
    try:
        # retry=None: one attempt. redis-py would otherwise retry a refused
        # connection 10 times with backoff, and a mistake would take seconds to show.
        redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout,
                             retry=None).ping()
    except (redis.RedisError, ValueError) as error:
        raise ConnectionError(f"cannot reach the message queue {shown}: {error}") from None


def redact(url):
    """The URL without its password, fit to print in a log."""
    password = urlsplit(url).password
    return url.replace(f":{password}@", ":***@") if password else url
