"""Processes of the benchmark: free loopback ports, resident memory of a process tree, the CPU time of a process
group, stopping by group.

Every server is started in its own session (``start_new_session=True``), so its process-group id is the PID we
spawned; stopping signals that group and nothing else.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _stat_fields(pid: int | str) -> list[str] | None:
    """/proc/PID/stat from field 3 (state) on, so that field N of proc(5) is at index N - 3; None once gone."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may contain spaces: split after the last ')'.
    return stat[stat.rindex(")") + 2 :].split()


def _parent_of(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return None if fields is None else int(fields[4 - 3])


def descendants(root: int) -> list[int]:
    """``root`` and every live process below it."""
    children: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            parent = _parent_of(int(entry.name))
            if parent is not None:
                children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def rss_kib(pid: int) -> int:
    """VmRSS of one process in KiB; 0 once it is gone (or a zombie, which has no VmRSS line)."""
    try:
        for line in (PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


@dataclass(frozen=True)
class Memory:
    total_mb: float  # summed over the process tree
    largest_mb: float  # the biggest single process
    processes: int  # live processes with memory

    @classmethod
    def of_tree(cls, root: int) -> Memory:
        sizes = [size for size in (rss_kib(pid) for pid in descendants(root)) if size > 0]
        if not sizes:
            return cls(0.0, 0.0, 0)
        return cls(sum(sizes) / 1024, max(sizes) / 1024, len(sizes))


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")  # the unit of /proc/PID/stat's times (100 per second on Linux)


def group_cpu_s(pgid: int) -> float:
    """CPU-seconds (user + system) used so far by the live processes of process group ``pgid``.

    Each one's own utime + stime (fields 14, 15) plus cutime + cstime (16, 17): the time of children it has
    already waited for, so that a worker which exits between two readings is still counted — by its reaper, which
    in a server's group is the supervisor. Subtract two readings to charge a timed run; 0.0 once the group is gone.
    """
    ticks = 0
    for entry in PROC.iterdir():
        fields = _stat_fields(entry.name) if entry.name.isdigit() else None
        if fields is not None and int(fields[5 - 3]) == pgid:
            ticks += sum(int(fields[n - 3]) for n in (14, 15, 16, 17))
    return ticks / _CLOCK_TICKS


def settle(root: int, timeout_s: float = 8.0, interval_s: float = 0.5, tolerance_mb: float = 3.0) -> Memory:
    """Wait until the tree's memory stops growing (late workers still loading the model), at most ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    previous = Memory.of_tree(root)
    while time.monotonic() < deadline:
        time.sleep(interval_s)
        current = Memory.of_tree(root)
        if current.processes == previous.processes and abs(current.total_mb - previous.total_mb) < tolerance_mb:
            return current
        previous = current
    return previous


def _signal_group(pgid: int, sig: signal.Signals) -> bool:
    try:
        os.killpg(pgid, sig)
        return True
    except ProcessLookupError:
        return False


def stop_group(proc: subprocess.Popen[bytes], grace_s: float = 5.0) -> None:
    """SIGTERM the process group we started, then SIGKILL whatever is left after ``grace_s``."""
    pgid = proc.pid  # the leader of its own session: its group id is its PID
    if proc.poll() is None:
        _signal_group(pgid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace_s)
    # Children (uvicorn workers, inference pools) may outlive the leader: the group id stays valid while they do.
    _signal_group(pgid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace_s)
