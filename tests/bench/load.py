"""Load generation with ``hey`` (one body) or ``wrk`` (bodies in turn), and the parsing of their reports; one plain
request for a sanity check.

``hey`` is run with ``-z`` (a fixed duration), keep-alive connections and the body from a file. Its summary looks like:

    Summary:
      Total:        10.0123 secs
      Requests/sec: 1234.5678
    Latency distribution:
      50% in 0.0020 secs
      99% in 0.0090 secs
    Status code distribution:
      [200] 12345 responses
    Error distribution:
      [12]  Post "http://...": read: connection reset by peer

Only successful responses enter its latency distribution; ``Requests/sec`` counts every response, so we compute
throughput from the 2xx count ourselves. Sections are absent when nothing of their kind happened.

hey sends one body. Requests by id must each name their own ids (so that concurrent lookups carry different ones):
``run_wrk`` sends several bodies in turn from one ``wrk`` (its Lua script ``rotate.lua`` prints one JSON line at
the end). One light client for many bodies: fifty heys of one connection each, the way this was measured before,
took three times hey's CPU per request from the server's cores. A by-id row is compared with its raw twin measured
by the same tool (``tests/bench/plan.py``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import resource
import subprocess
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

_TOTAL = re.compile(r"^\s*Total:\s+([\d.]+)\s+secs", re.MULTILINE)
_PERCENTILE = re.compile(r"^\s*(\d+)% in ([\d.]+) secs", re.MULTILINE)
_COUNTED_LINE = re.compile(r"^\s*\[(\d+)\]\s+(.*)$")


class HarnessError(Exception):
    """The benchmark itself cannot run (as opposed to a server doing badly)."""


@dataclass(frozen=True)
class LoadResult:
    """One timed load run, by hey or wrk."""

    duration_s: float
    status_counts: dict[int, int] = field(default_factory=dict)
    transport_errors: int = 0  # connection resets, timeouts: hey's "Error distribution", wrk's socket errors
    percentiles_s: dict[int, float] = field(default_factory=dict)
    # the load generator's own CPU-seconds, user + system: on the same cores as the server, capacity it lacks
    client_cpu_s: float | None = None

    @property
    def ok(self) -> int:
        return sum(count for status, count in self.status_counts.items() if 200 <= status < 300)

    @property
    def errors(self) -> int:
        return sum(self.status_counts.values()) - self.ok + self.transport_errors

    @property
    def ok_per_s(self) -> float:
        return self.ok / self.duration_s if self.duration_s > 0 else 0.0

    def percentile_ms(self, percent: int) -> float | None:
        seconds = self.percentiles_s.get(percent)
        return None if seconds is None else seconds * 1000


def _section(text: str, title: str) -> list[str]:
    """The lines of one summary section, up to the next blank line."""
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if line.strip() == title:
            body = []
            for following in lines[index + 1 :]:
                if not following.strip():
                    break
                body.append(following)
            return body
    return []


def _counted(lines: list[str]) -> list[tuple[int, str]]:
    found = []
    for line in lines:
        match = _COUNTED_LINE.match(line)
        if match:
            found.append((int(match.group(1)), match.group(2)))
    return found


def parse_hey(text: str) -> LoadResult:
    total = _TOTAL.search(text)
    if total is None:
        raise HarnessError("hey printed no summary (no 'Total: … secs' line)")
    statuses: dict[int, int] = {}
    for status, rest in _counted(_section(text, "Status code distribution:")):
        statuses[status] = statuses.get(status, 0) + int(rest.split()[0])
    transport_errors = sum(count for count, _ in _counted(_section(text, "Error distribution:")))
    percentiles = {int(p): float(s) for p, s in _PERCENTILE.findall(text)}
    return LoadResult(float(total.group(1)), statuses, transport_errors, percentiles)


def run_hey(hey: str, url: str, body: Path, concurrency: int, duration_s: float, log: Path | None = None) -> LoadResult:
    """POST ``body`` to ``url`` from ``concurrency`` workers for ``duration_s`` seconds."""
    argv = [hey, "-z", f"{duration_s:g}s", "-c", str(concurrency), "-m", "POST", "-T", "application/json",
            "-D", str(body), url]  # fmt: skip
    before = _children_cpu_s()  # hey is the only child waited for meanwhile: the difference is its CPU
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=duration_s + 60, check=False)
    except subprocess.TimeoutExpired as exc:
        raise HarnessError(f"hey did not finish within {duration_s + 60:g} s") from exc
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(f"$ {' '.join(argv)}\n{done.stdout}\n{done.stderr}")
    if done.returncode != 0:
        raise HarnessError(f"hey exited {done.returncode}: {done.stderr.strip()[:300]}")
    return dataclasses.replace(parse_hey(done.stdout), client_cpu_s=_children_cpu_s() - before)


ROTATE_SCRIPT = Path(__file__).with_name("rotate.lua")
WRK_PERCENTILES = (10, 25, 50, 75, 90, 95, 99)


def parse_wrk(text: str) -> LoadResult:
    """The JSON line ``rotate.lua`` prints when wrk is done: responses (2xx/3xx vs the rest), socket errors and
    latency percentiles (µs) of every response."""
    line = next((line for line in reversed(text.splitlines()) if line.startswith('{"wrk"')), None)
    if line is None:
        raise HarnessError(f"wrk printed no summary line: {text.strip()[-200:]!r}")
    report = json.loads(line)
    failed = int(report["non_2xx_3xx"])
    statuses = {200: int(report["responses"]) - failed, **({500: failed} if failed else {})}
    transport = sum(int(report[kind]) for kind in ("connect", "read", "write", "timeout"))
    percentiles = {int(p): int(us) / 1e6 for p, us in report["percentiles_us"].items()}
    return LoadResult(int(report["duration_us"]) / 1e6, statuses, transport, percentiles)


def run_wrk(
    wrk: str, url: str, bodies: Sequence[Path], concurrency: int, duration_s: float, log: Path | None = None
) -> LoadResult:
    """POST ``bodies`` in turn (request k carries body k mod n) over ``concurrency`` keep-alive connections of one
    wrk thread, for ``duration_s`` seconds (rounded up to whole ones). wrk counts the responses that are not
    2xx/3xx but not their codes: they are reported as 500s (errors either way)."""
    if not bodies:
        raise HarnessError("wrk needs at least one body")
    seconds = max(1, math.ceil(duration_s))  # wrk takes whole seconds only
    argv = [wrk, "-t", "1", "-c", str(concurrency), "-d", f"{seconds}s", "--timeout", "60s",
            "-s", str(ROTATE_SCRIPT), url, "--", *map(str, bodies)]  # fmt: skip
    before = _children_cpu_s()
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 90, check=False)
    except subprocess.TimeoutExpired as exc:
        raise HarnessError(f"wrk did not finish within {seconds + 90} s") from exc
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        shown = argv if len(bodies) <= 3 else [*argv[: -len(bodies)], str(bodies[0]), f"… ({len(bodies)} bodies)"]
        log.write_text(f"$ {' '.join(shown)}\n{done.stdout}\n{done.stderr}")
    if done.returncode != 0:
        raise HarnessError(f"wrk exited {done.returncode}: {done.stderr.strip()[:300]}")
    return dataclasses.replace(parse_wrk(done.stdout), client_cpu_s=_children_cpu_s() - before)


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# Loopback only: never let an HTTP(S)_PROXY from the environment see benchmark traffic.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http(url: str, body: bytes | None = None, timeout_s: float = 10.0) -> tuple[int, str]:
    """One request (POST with a JSON body when given, else GET); (status, text), status 0 when unreachable."""
    headers = {"Content-Type": "application/json"} if body is not None else {}
    request = urllib.request.Request(url, data=body, headers=headers, method="POST" if body is not None else "GET")
    try:
        with _DIRECT.open(request, timeout=timeout_s) as response:
            return int(response.status), response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8", "replace")
    except (urllib.error.URLError, OSError):
        return 0, ""
