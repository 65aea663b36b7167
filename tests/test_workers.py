"""--workers 2: two processes share the port and both serve; /metrics on either counts both; readiness waits
for every worker; a worker that dies is restarted and readiness is off until it has loaded again."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector

from tests.servers import MODEL_NAME, SEED_ROWS, PredictorProcess, wait_until

PREDICT = f"/v1/models/{MODEL_NAME}:predict"


def children_of(pid: int) -> list[int]:
    done = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return sorted(int(p) for p in done.stdout.split())


def state_dir_of(worker: int) -> Path:
    environ = Path(f"/proc/{worker}/environ").read_bytes().split(b"\0")
    value = next(item for item in environ if item.startswith(b"PREDICTOR_WORKER_STATE_DIR="))
    return Path(value.split(b"=", 1)[1].decode())


def predictions_served_by(worker: int, state_dir: Path, scratch: Path) -> float:
    """model_predictions_total as counted by one worker alone: its own multiprocess file, read on its own."""
    alone = scratch / str(worker)
    alone.mkdir()
    for path in (state_dir / "metrics").glob(f"*_{worker}.db"):
        shutil.copy(path, alone)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(alone))
    return registry.get_sample_value("model_predictions_total", {"model_name": MODEL_NAME, "model_version": "1"}) or 0


def total_predictions(metrics: str) -> float:
    found = re.search(rf'model_predictions_total{{model_name="{MODEL_NAME}",model_version="1"}} (\S+)', metrics)
    assert found is not None, metrics
    return float(found.group(1))


def predict(server: PredictorProcess) -> int:
    """One request on a fresh connection: the kernel picks a worker for each."""
    return httpx.post(server.http_url + PREDICT, json={"instances": SEED_ROWS}, timeout=30).status_code


def ready_status(server: PredictorProcess) -> int | None:
    """/ready's status; None when the connection was reset (it had been queued on the worker just killed)."""
    try:
        return httpx.get(server.http_url + "/ready", timeout=5).status_code
    except httpx.TransportError:
        return None


def test_two_workers_both_serve_share_metrics_and_readiness_and_a_dead_one_is_restarted(
    tracking_uri: str, tmp_path: Path, predictors: Callable[..., PredictorProcess]
) -> None:
    server = predictors(tracking_uri, "--workers", "2")
    server.wait_ready()
    workers = children_of(server.pid)
    assert len(workers) == 2, workers
    assert [predict(server) for _ in range(40)] == [200] * 40

    # each worker served some of the 40 (SO_REUSEPORT spreads connections); together exactly 40
    state_dir = state_dir_of(workers[0])
    per_worker = [predictions_served_by(pid, state_dir, tmp_path) for pid in workers]
    assert all(count > 0 for count in per_worker) and sum(per_worker) == 40, per_worker
    for _ in range(4):  # whichever worker answers, it reports the sum over both
        metrics = httpx.get(server.http_url + "/metrics").text
        assert total_predictions(metrics) == 40.0
        assert f'model_loaded{{model_name="{MODEL_NAME}",model_version="1"}} 1.0' in metrics
    for _ in range(4):  # every worker explains, and watches drift over its own window
        explained = httpx.post(f"{server.http_url}/v1/models/{MODEL_NAME}:explain", json={"instances": SEED_ROWS})
        assert explained.status_code == 200 and len(explained.json()["explanations"]) == len(SEED_ROWS)
        assert httpx.get(server.http_url + "/admin/drift").json()["monitored"] is True

    # a worker dies: readiness turns off until its replacement has loaded, then back on
    os.kill(workers[0], signal.SIGKILL)
    wait_until(lambda: ready_status(server) == 503, 30, 0.05, "readiness off")
    assert "waiting for the other workers" in httpx.get(server.http_url + "/ready").json()["error"]
    assert predict(server) == 200  # the survivor keeps serving meanwhile
    server.wait_ready()
    replaced = children_of(server.pid)
    assert len(replaced) == 2 and workers[1] in replaced and workers[0] not in replaced, (workers, replaced)
    assert [predict(server) for _ in range(10)] == [200] * 10

    server.signal(signal.SIGTERM)
    assert server.popen.wait(timeout=30) == 0  # type: ignore[union-attr]
    assert all(subprocess.run(["kill", "-0", str(pid)], capture_output=True).returncode != 0 for pid in replaced)
