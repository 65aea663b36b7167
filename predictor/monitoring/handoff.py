"""Items handed from the event loop's thread to one worker thread, with no lock on the handing side.

The drift and shadow workers were fed through ``queue.Queue``: a lock and a condition per request, shared with a
worker draining hundreds of items under the same lock. Side by side at 1 row / 50 concurrent that cost the live
path 17% of its throughput and ~25% on p99, though py-spy showed both workers holding the GIL only ~3% of the
time: the cost was the threads waking and contending, not their work. Here the producer appends to a deque
(atomic in CPython, no lock) and never wakes the worker; the worker looks every ``poll_s`` and takes everything
at once. Control items (a flush's event, a stop) wake it at once.
"""

from __future__ import annotations

import collections
import queue
import threading
import time
from typing import Any


class Handoff:
    def __init__(self, capacity: int, poll_s: float) -> None:
        self.capacity = capacity
        self.poll_s = poll_s
        self._items: collections.deque[Any] = collections.deque()
        self._wake = threading.Event()

    def put_nowait(self, item: Any) -> None:
        """Hand one item over; ``queue.Full`` when ``capacity`` items wait (the bound is approximate)."""
        if len(self._items) >= self.capacity:
            raise queue.Full
        self._items.append(item)

    def put_control(self, item: Any) -> None:
        """A flush's event or a stop: never refused, and the worker wakes for it now."""
        self._items.append(item)
        self._wake.set()

    def take(self, timeout_s: float | None = None, gather_s: float = 0.0) -> list[Any]:
        """Everything waiting, once something is (or [] after ``timeout_s``). When the first item is data, wait
        ``gather_s`` more first, so that one pass serves what arrives meanwhile."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while not self._items:
            wait = self.poll_s if deadline is None else min(self.poll_s, deadline - time.monotonic())
            if wait <= 0:
                return []
            self._wake.wait(wait)
            self._wake.clear()
        if gather_s > 0 and isinstance(self._items[0], tuple):
            self._wake.wait(gather_s)  # a flush or a stop ends the gathering early
            self._wake.clear()
        taken = []
        while self._items:
            taken.append(self._items.popleft())
        return taken
