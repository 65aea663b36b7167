"""Real Feast repos and a real redis-server for tests (no mocks): telemetry with known bad rows, a Redis process."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

import predictor
from predictor.demo.training import telemetry_with_ids
from tests.servers import scratch_dir, track

REPO_SOURCE = Path(predictor.__file__).resolve().parent / "demo" / "feature_repo"
REDIS_SERVER = "/usr/bin/redis-server"
#: rows of ``demo_telemetry``: one read 3 days ago (TTL is 2 days), one with a null vibration_rms
STALE_ID = "compressor-0001"
NULL_ID = "turbine-0002"
NULL_FEATURE = "vibration_rms"


def demo_telemetry(count: int = 20) -> pd.DataFrame:
    """``telemetry_with_ids(count)`` read now, except ``STALE_ID`` (3 days old) and ``NULL_ID``'s null feature."""
    frame = telemetry_with_ids(count)
    now = pd.Timestamp.now(tz="UTC")
    frame["event_timestamp"] = now
    frame["created"] = now
    stale = frame["equipment_id"] == STALE_ID
    frame.loc[stale, ["event_timestamp", "created"]] = now - pd.Timedelta(days=3)
    frame.loc[frame["equipment_id"] == NULL_ID, NULL_FEATURE] = np.nan
    return frame


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class RedisProcess:
    process: subprocess.Popen[bytes]
    port: int

    @property
    def connection_string(self) -> str:
        # The recommended client settings (see feature_repo/feature_store.redis.yaml): fail fast, no retries.
        return f"127.0.0.1:{self.port},retry=null,socket_timeout=0.5,socket_connect_timeout=0.5"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def start_redis_process(port: int) -> subprocess.Popen[bytes]:
    """``redis-server`` on ``port`` without persistence, in a scratch directory and a session of its own."""
    return track(
        subprocess.Popen(
            [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=scratch_dir("redis-"),
            start_new_session=True,
        )
    )


def wait_for_redis(port: int, wait_s: float, process: subprocess.Popen[bytes] | None = None) -> None:
    """Until the ``redis-server`` on ``port`` answers PING (at most ``wait_s``; at once if ``process`` died)."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    deadline = time.monotonic() + wait_s
    try:
        while True:
            try:
                client.ping()
                return
            except redis.exceptions.ConnectionError:
                if (process is not None and process.poll() is not None) or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not answer PING on port {port}") from None
                time.sleep(0.05)
    finally:
        client.close()


@contextmanager
def redis_server(wait_s: float = 10.0) -> Iterator[RedisProcess]:
    """A throw-away ``redis-server`` on a free loopback port, without persistence; stopped by PID on exit."""
    port = free_port()
    server = RedisProcess(start_redis_process(port), port)
    try:
        wait_for_redis(port, wait_s, server.process)
        yield server
    finally:
        server.stop()
