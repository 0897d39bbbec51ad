"""The test client itself: what the lesson tests take for granted about it."""
import random
import threading
import time

from harness import InOrderEngineIOClient


def test_received_messages_are_handled_in_arrival_order_even_when_handlers_are_slow():
    # python-engineio gives each message its own thread; a slow handler for an
    # early message must still finish before a later message is handled, else
    # "the reply arrives before the ack" could be recorded the other way round.
    eio = InOrderEngineIOClient()
    handled, done = [], threading.Event()

    def on_message(n):
        time.sleep(random.uniform(0, 0.003))  # the jitter that reorders bare threads
        handled.append(n)
        if n == 49:
            done.set()

    eio.on("message", on_message)
    for n in range(50):
        eio._trigger_event("message", n, run_async=True)

    assert done.wait(5), f"only {len(handled)} of 50 messages handled"
    assert handled == list(range(50))
