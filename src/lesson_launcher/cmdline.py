"""What every command line here shares: a wrong one gets one line on stderr and
status 2, never a traceback. Used by `lesson` (cli.py), `lesson bench` and the
benchmark's bare server, so none of them imports another to get it."""
import argparse

USAGE_HINT = "run `lesson --help` for usage"


class Parser(argparse.ArgumentParser):
    """argparse, but a wrong command line gets one line on stderr and status 2."""

    def error(self, message):
        self.exit(2, f"lesson: {message}; {USAGE_HINT}\n")


def port_number(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"port must be a number from 0 to 65535, not {text!r}")
    return int(text)
