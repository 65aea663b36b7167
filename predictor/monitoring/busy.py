"""How busy the serving thread is: the share of wall time it spent on a CPU lately (Linux's per-thread counters).

Shadow scoring asks before each pass: when the event loop's thread was on a CPU most of the last quarter second, live
traffic is saturating this process, and anything else that runs — even a process at the lowest priority —
costs it throughput and tail latency (measured on 2 cores: a SCHED_IDLE busy loop beside the server took ~8% of
its throughput and ~70% on p99). The shadow then scores a small sample and drops the rest, counted.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

WINDOW_S = 0.25  # the share is recomputed at most this often, over at least this long (25 ticks of 10 ms)


class ThreadBusy:
    """``share()``: CPU seconds per wall second of one thread (default: the main thread, which runs the event
    loop), over the last ``WINDOW_S`` or more; None where the counters cannot be read (not Linux)."""

    def __init__(self, native_id: int | None = None) -> None:
        tid = native_id if native_id is not None else threading.main_thread().native_id
        self._stat = Path(f"/proc/{os.getpid()}/task/{tid}/stat")
        self._ticks_per_s = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self._lock = threading.Lock()
        self._since = time.monotonic()
        self._cpu = self._cpu_s()
        self._share: float | None = None if self._cpu is None else 0.0

    def _cpu_s(self) -> float | None:
        try:
            fields = self._stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return None
        return (int(fields[11]) + int(fields[12])) / self._ticks_per_s  # utime + stime (fields 14, 15)

    def share(self) -> float | None:
        with self._lock:
            now = time.monotonic()
            if now - self._since >= WINDOW_S:
                cpu = self._cpu_s()
                if cpu is None or self._cpu is None:
                    self._share = None
                else:
                    self._share = (cpu - self._cpu) / (now - self._since)
                self._since, self._cpu = now, cpu
            return self._share

    def above(self, threshold: float) -> bool:
        share = self.share()
        return share is not None and share >= threshold
