"""Load generation with ``hey`` and the parsing of its summary; one plain request for a sanity check.

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

hey sends one body. To send different ones (each worker its own entity ids), ``run_hey_each`` runs one hey per body
at once, with ``-o csv``: a line per answered request (latency, status, start offset), pooled into one result.
"""

from __future__ import annotations

import csv
import dataclasses
import re
import resource
import statistics
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
class HeyResult:
    duration_s: float
    status_counts: dict[int, int] = field(default_factory=dict)
    transport_errors: int = 0  # connection resets, timeouts: hey's "Error distribution"
    percentiles_s: dict[int, float] = field(default_factory=dict)
    # hey's own CPU-seconds, user + system: on the same cores as the server it is capacity the server lacks
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


def parse_hey(text: str) -> HeyResult:
    total = _TOTAL.search(text)
    if total is None:
        raise HarnessError("hey printed no summary (no 'Total: … secs' line)")
    statuses: dict[int, int] = {}
    for status, rest in _counted(_section(text, "Status code distribution:")):
        statuses[status] = statuses.get(status, 0) + int(rest.split()[0])
    transport_errors = sum(count for count, _ in _counted(_section(text, "Error distribution:")))
    percentiles = {int(p): float(s) for p, s in _PERCENTILE.findall(text)}
    return HeyResult(float(total.group(1)), statuses, transport_errors, percentiles)


def run_hey(hey: str, url: str, body: Path, concurrency: int, duration_s: float, log: Path | None = None) -> HeyResult:
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


# hey's own percentiles (its report's "Latency distribution"), computed its way by ``pooled_percentiles``.
HEY_PERCENTILES = (10, 25, 50, 75, 90, 95, 99)


def pooled_percentiles(latencies_s: Sequence[float]) -> dict[int, float]:
    """hey's percentiles of ``latencies_s``: for p, the first sorted latency at index i with i * 100 // n ≥ p."""
    ordered, found = sorted(latencies_s), {}
    for percent in HEY_PERCENTILES:
        index = -(-percent * len(ordered) // 100)  # the smallest i with i * 100 // n ≥ p: ceil(p * n / 100)
        if index < len(ordered):
            found[percent] = ordered[index]
    return found


@dataclass(frozen=True)
class HeyCsv:
    """One hey's ``-o csv`` output: what ``parse_hey`` reads from a summary, per request."""

    latencies_s: tuple[float, ...]
    statuses: tuple[int, ...]
    end_s: float  # the last answer, from hey's start: its run's length

    @classmethod
    def parse(cls, text: str) -> HeyCsv:
        rows = list(csv.reader(text.splitlines()))
        if not rows or rows[0][:1] != ["response-time"]:
            raise HarnessError(f"hey printed no CSV header: {text.strip()[:120]!r}")
        lines = [(float(row[0]), int(row[6]), float(row[7])) for row in rows[1:] if len(row) >= 8]
        return cls(tuple(line[0] for line in lines), tuple(line[1] for line in lines),
                   max((line[2] + line[0] for line in lines), default=0.0))  # fmt: skip


def pool(runs: Sequence[HeyCsv], duration_s: float) -> HeyResult:
    """Several hey runs at once as one: statuses summed, percentiles of every latency together, the median run's
    length (each is ``duration_s`` and its last answer; not the longest: with one worker per hey, the longest is
    the slowest answer's, which would undercount the rate; ``duration_s`` if none answered).
    hey's CSV leaves out transport errors (resets, refused connections): none are counted."""
    statuses: dict[int, int] = {}
    for run in runs:
        for status in run.statuses:
            statuses[status] = statuses.get(status, 0) + 1
    latencies = [latency for run in runs for latency in run.latencies_s]
    lengths = [run.end_s for run in runs if run.end_s > 0]
    return HeyResult(statistics.median(lengths) if lengths else duration_s, statuses, 0, pooled_percentiles(latencies))


def run_hey_each(
    hey: str, url: str, bodies: Sequence[Path], concurrency: int, duration_s: float, log: Path | None = None
) -> HeyResult:
    """POST from ``concurrency`` workers split evenly over one hey per body, all at once, for ``duration_s`` seconds:
    each body is sent by its own workers only (hey sends one body per run). One body: ``run_hey``.

    Many heys cost the client more CPU per request than one (at 50 heys of one worker, measured on 2 cores: about
    0.3 ms against 0.15, taken from the server's cores): the report's hey column shows it."""
    if len(bodies) == 1:
        return run_hey(hey, url, bodies[0], concurrency, duration_s, log)
    if not bodies or concurrency % len(bodies):
        raise HarnessError(f"{concurrency} workers cannot be split evenly over {len(bodies)} bodies")
    each = concurrency // len(bodies)
    # -cpus 1: a hey of a few workers needs no second scheduler thread (measured: ~10% less client CPU per request)
    argvs = [[hey, "-z", f"{duration_s:g}s", "-c", str(each), "-cpus", "1", "-m", "POST", "-T", "application/json",
              "-o", "csv", "-D", str(body), url] for body in bodies]  # fmt: skip
    before = _children_cpu_s()
    processes = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for argv in argvs]
    outputs: list[tuple[str, str]] = []
    try:
        for process in processes:
            outputs.append(process.communicate(timeout=duration_s + 60))
    except subprocess.TimeoutExpired as exc:
        raise HarnessError(f"hey did not finish within {duration_s + 60:g} s") from exc
    finally:
        for process in processes:  # on failure, none is left running; each is waited for, so its CPU is counted
            if process.poll() is None:
                process.kill()
            process.wait()
    client_cpu_s = _children_cpu_s() - before
    failed = next(((process.returncode, err) for process, (_, err) in zip(processes, outputs, strict=True)
                   if process.returncode), None)  # fmt: skip
    runs = [] if failed else [HeyCsv.parse(out) for out, _ in outputs]
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        answers = " ".join(str(len(run.statuses)) for run in runs)
        log.write_text(f"{len(argvs)} × $ {' '.join(argvs[0])}\nanswers per hey: {answers}\n"
                       + "".join(err for _, err in outputs))  # fmt: skip
    if failed:
        raise HarnessError(f"hey exited {failed[0]}: {failed[1].strip()[:300]}")
    return dataclasses.replace(pool(runs, duration_s), client_cpu_s=client_cpu_s)


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
