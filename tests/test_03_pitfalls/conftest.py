"""The fixtures that several of lesson 03's test files use (the plain helpers are
in scenes.py): ``tabs``, browser windows side by side, and ``old_client``, the
old_client demo's server, which the 2019 post's corrections talk to as well.
Module-scoped like conftest's ``serve``: each test file gets its own, per mode.
"""
import pytest


@pytest.fixture(scope="module")
def tabs(browser):
    """open(url) -> a new tab; close_all() closes them. JavaScript errors in any of
    them fail the test. Each tab gets a browser context (a window) of its own: tabs
    sharing one would be background tabs, whose timers Chromium slows down."""
    contexts, errors = [], []

    class Tabs:
        @staticmethod
        def open(url):
            contexts.append(browser.new_context())
            tab = contexts[-1].new_page()
            tab.on("pageerror", lambda error: errors.append(str(error)))
            tab.goto(url, wait_until="commit")  # the tabs load side by side
            return tab

        @staticmethod
        def close_all():
            while contexts:
                contexts.pop().close()
            failures = errors[:]
            errors.clear()
            assert not failures, f"the pages raised JavaScript errors: {failures}"

    yield Tabs
    Tabs.close_all()


@pytest.fixture(scope="module")
def old_client(serve):
    return serve("03", "old_client")
