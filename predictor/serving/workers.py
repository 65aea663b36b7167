"""``--workers N``: N copies of the server on the same ports, one model each, metrics and readiness shared.

The supervisor (this module) starts N worker processes and forwards SIGTERM/SIGINT to them. Each worker
is a complete single-process server that binds the HTTP port with SO_REUSEPORT (gRPC does so by default),
so the kernel spreads connections across them. They share a state folder:

- ``metrics/``: prometheus-client's multiprocess mode, so /metrics on any worker reports all of them;
- ``ready-<i>``: worker i's marker, written once its model is warm; a worker reports ready only when every
  marker exists, so a load balancer never reaches a worker that is still loading.

A worker that dies unexpectedly is restarted (with backoff); the supervisor exits when all have stopped.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from predictor.config import WORKER_COUNT_ENV, WORKER_INDEX_ENV, WORKER_STATE_ENV

log = logging.getLogger(__name__)

RESTART_BACKOFF_S = (1, 2, 5, 10)


def requested(argv: list[str], environ: dict[str, str] | os._Environ[str]) -> int:
    """How many workers to supervise (0: this process serves itself), read before KServe is imported so
    the supervisor stays small (~15 MB instead of ~180 MB)."""
    if environ.get(WORKER_STATE_ENV):
        return 0  # we are one of the workers
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--workers", type=int, default=1)
    count = parser.parse_known_args(argv)[0].workers
    return count if count > 1 else 0


def metrics_dir(state_dir: Path) -> Path:
    return state_dir / "metrics"


def ready_marker(state_dir: Path, index: int) -> Path:
    return state_dir / f"ready-{index}"


def all_ready(state_dir: Path, count: int) -> bool:
    return all(ready_marker(state_dir, i).exists() for i in range(count))


def supervise(count: int, argv: list[str]) -> int:
    state_dir = Path(tempfile.mkdtemp(prefix="predictor-workers-"))
    metrics_dir(state_dir).mkdir()
    env = {
        **os.environ,
        WORKER_STATE_ENV: str(state_dir),
        WORKER_COUNT_ENV: str(count),
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir(state_dir)),
    }
    command = [sys.executable, "-m", "predictor", *argv]
    stopping: list[int] = []

    def spawn(index: int) -> subprocess.Popen[bytes]:
        return subprocess.Popen(command, env={**env, WORKER_INDEX_ENV: str(index)})

    def forward(sig: int, _frame: object) -> None:
        stopping.append(sig)
        for child in children:
            if child.poll() is None:
                child.send_signal(sig)

    children = [spawn(i) for i in range(count)]
    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    restarts = [0] * count
    log.info("supervising %d workers (pids %s)", count, [c.pid for c in children])
    try:
        while any(child.poll() is None for child in children) or not stopping:
            for index, child in enumerate(children):
                if child.poll() is not None and not stopping:
                    delay = RESTART_BACKOFF_S[min(restarts[index], len(RESTART_BACKOFF_S) - 1)]
                    log.error("worker %d exited with %s; restarting in %ss", index, child.returncode, delay)
                    ready_marker(state_dir, index).unlink(missing_ok=True)
                    time.sleep(delay)
                    restarts[index] += 1
                    children[index] = spawn(index)
            time.sleep(0.2)
        return max((child.returncode or 0) for child in children)
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)
