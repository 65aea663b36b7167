"""Admission of inference calls, the same on every door: at most ``--max_concurrency`` in flight per worker (past
it, 503 at once with Retry-After, so the calls admitted keep their latency), and a deadline per call.

The deadline is the smallest of ``--request_timeout_s``, the caller's ``X-Request-Timeout`` header (seconds) and
gRPC's own deadline. Past it the caller gets 504 (gRPC ``DEADLINE_EXCEEDED``) and the work not yet started for
the call is dropped: the waiting coroutine is cancelled, and the micro-batcher skips a call nobody waits for.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from predictor.errors import BadRequest, DeadlineExceeded, Overloaded

T = TypeVar("T")
TIMEOUT_HEADER = "x-request-timeout"


class Admission:
    def __init__(self, max_concurrency: int = 0, request_timeout_s: float = 0.0) -> None:
        """0: no limit, no server-wide deadline."""
        self.max_concurrency = max_concurrency
        self.request_timeout_s = request_timeout_s
        self.in_flight = 0  # on the event loop's thread only: no lock

    @property
    def unlimited(self) -> bool:
        """Neither a concurrency limit nor a server-wide deadline (a caller may still set its own)."""
        return not self.max_concurrency and not self.request_timeout_s

    def timeout_s(self, header: str | None = None, remaining_s: float | None = None) -> float | None:
        """The call's time budget in seconds (None: none): the smallest of the server's, the header's and what
        gRPC says remains."""
        budgets = [b for b in (self.request_timeout_s or None, _seconds(header), remaining_s) if b is not None]
        return min(budgets) if budgets else None

    async def run(self, call: Callable[[], Awaitable[T]], timeout_s: float | None) -> T:
        if self.max_concurrency and self.in_flight >= self.max_concurrency:
            raise Overloaded(
                f"{self.in_flight} calls in flight, the limit of this worker (--max_concurrency "
                f"{self.max_concurrency}): retry after the Retry-After seconds, or add replicas"
            )
        self.in_flight += 1
        try:
            if timeout_s is None:
                return await call()
            try:
                async with asyncio.timeout(timeout_s) as budget:
                    return await call()
            except TimeoutError as exc:
                if not budget.expired():
                    raise
                raise DeadlineExceeded(
                    f"no answer within the call's deadline of {timeout_s:g} s (the smallest of --request_timeout_s, "
                    "X-Request-Timeout and a gRPC deadline); its work not yet started was dropped"
                ) from exc
        finally:
            self.in_flight -= 1


def _seconds(header: str | None) -> float | None:
    if header is None:
        return None
    try:
        value = float(header)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):
        raise BadRequest(f"X-Request-Timeout must be a number of seconds above 0, e.g. 0.5; got {header!r:.40}")
    return value
