"""Waiting for a condition in a test, with a failure that says what was awaited."""

from __future__ import annotations

import time


def wait_for(predicate, timeout: float, what: str, interval: float = 0.5):
    """The first truthy value of `predicate()` within `timeout` seconds, else a failure that
    shows the last value seen."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last seen: {last!r})")
