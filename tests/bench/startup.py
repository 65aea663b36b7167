"""Where a cold start's seconds go, read from our server's own log: each milestone's time after the spawn.

Our server logs with timestamps (``2026-12-07 21:27:29,112 INFO ...``, the machine's clock to the millisecond), and
the bench knows the wall-clock time of the spawn, so each milestone's offset needs no instrumentation in the server:

- ``first log line``: the interpreter, the imports and the configuration are done (the first component speaks);
- ``model serving``: the first model is loaded (from the local cache or the registry) and answers;
- ``HTTP listening``: uvicorn has bound its port;
- ``ready``: the readiness route's first 200, as polled by the bench (every 0.1 s).

A peer's log has none of these lines: no breakdown for it.
"""

from __future__ import annotations

import re
from datetime import datetime

_STAMPED = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ", re.MULTILINE)
MILESTONES = {
    "model serving": re.compile(r" model \S+ version \S+ is serving"),
    "HTTP listening": re.compile(r"Uvicorn running on "),
}


def milestones(log_text: str, spawned_wall: float, ready_after_s: float) -> dict[str, float]:
    """Seconds after the spawn of each milestone found in ``log_text`` (first occurrence), in start order; empty
    when the log has no timestamped line (a peer)."""
    first = _STAMPED.search(log_text)
    if first is None:
        return {}
    found = {"first log line": _seconds(first.group(1)) - spawned_wall}
    for name, pattern in MILESTONES.items():
        for line in log_text.splitlines():
            if pattern.search(line) and (stamp := _STAMPED.match(line)):
                found[name] = _seconds(stamp.group(1)) - spawned_wall
                break
    found["ready"] = ready_after_s
    return {name: round(max(0.0, seconds), 3) for name, seconds in found.items()}


def _seconds(stamp: str) -> float:
    """A log timestamp (the logging module's ``asctime``: local time) as seconds since the epoch."""
    return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()
