"""--workers 2: two processes share the port; /metrics on either counts both; readiness waits for both."""

from __future__ import annotations

import re
import signal
import subprocess
from pathlib import Path

import httpx

from tests.servers import MODEL_NAME, SEED_ROWS, start_predictor


def children_of(pid: int) -> list[int]:
    done = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return [int(p) for p in done.stdout.split()]


def test_two_workers_share_port_metrics_and_readiness(tracking_uri: str, tmp_path: Path) -> None:
    server = start_predictor(tracking_uri, tmp_path, "--workers", "2").wait_ready()
    try:
        workers = children_of(server.pid)
        assert len(workers) == 2, workers
        for _ in range(40):  # fresh connections: the kernel spreads them across both workers
            assert (
                httpx.post(
                    f"{server.http_url}/v1/models/{MODEL_NAME}:predict", json={"instances": SEED_ROWS}
                ).status_code
                == 200
            )
        for _ in range(4):  # whichever worker answers, it reports the sum over both
            metrics = httpx.get(server.http_url + "/metrics").text
            total = re.search(rf'model_predictions_total{{model_name="{MODEL_NAME}",model_version="1"}} (\S+)', metrics)
            assert total is not None and float(total.group(1)) == 40.0
            assert f'model_loaded{{model_name="{MODEL_NAME}",model_version="1"}} 1.0' in metrics
        server.signal(signal.SIGTERM)
        assert server.popen.wait(timeout=30) == 0  # type: ignore[union-attr]
        assert all(subprocess.run(["kill", "-0", str(pid)], capture_output=True).returncode != 0 for pid in workers)
    finally:
        server.stop()
