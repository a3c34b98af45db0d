"""Waiting for a condition in a test, with a failure that says what was awaited."""

from __future__ import annotations

import time


def wait_for(predicate, timeout: float, what: str, interval: float = 0.5):
    """The first truthy value of `predicate()` within `timeout` seconds, else a failure that
    shows the last value seen. Each wait prints how long it took: a slow test's captured output
    then says where its time went."""
    started = time.monotonic()
    deadline = started + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            print(f"[wait] {time.monotonic() - started:5.1f}s for {what}")
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last seen: {last!r})")
