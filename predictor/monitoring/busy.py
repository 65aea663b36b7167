"""How busy the serving process is: CPU seconds per wall second, lately (Linux's per-process counters).

Shadow scoring asks before each pass: when this process was on a CPU half the time or more in the last quarter
second, live traffic keeps it busy — the event loop's thread at 1 row per request, the model's thread at 100 —
and anything else that runs, even a process at the lowest priority, costs it throughput and tail latency
(measured on 2 cores: a SCHED_IDLE busy loop beside the server took ~8% of its throughput and ~70% on p99). The
shadow then scores a small sample and drops the rest, counted.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

WINDOW_S = 0.25  # the share is recomputed at most this often, over at least this long (25 ticks of 10 ms)


class ProcessBusy:
    """``share()``: CPU seconds per wall second of a process (default: this one, all its threads) over the last
    ``WINDOW_S`` or more; None where the counters cannot be read (not Linux)."""

    def __init__(self, pid: int | None = None) -> None:
        self._stat = Path(f"/proc/{pid if pid is not None else os.getpid()}/stat")
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
