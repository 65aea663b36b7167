"""The README's first command, `make serve`, takes a fresh data folder to a ready server that answers the
seed's curl session as written (only the port differs: the test picks free ones)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.servers import MODEL_NAME, PROJECT_ROOT, PredictorProcess, free_port

SEED_BODY = ('{"instances": [[75.3, 24, 0.15, 0.65, 0.8, 2.5, 1, 0, 0, 0], '
             '[60.2, 36, 0.25, 0.45, 1.2, 5.0, 0, 1, 1, 1]]}')


def curl(*args: str) -> tuple[int, str]:
    done = subprocess.run(["curl", "-s", "-w", "\n%{http_code}", *args], capture_output=True, text=True, timeout=30)
    body, _, status = done.stdout.rpartition("\n")
    return int(status), body


@pytest.fixture(scope="module")
def make_serve(tmp_path_factory: pytest.TempPathFactory):
    data_dir = tmp_path_factory.mktemp("quickstart-data")
    http_port, grpc_port = free_port(), free_port()
    process = PredictorProcess(
        ["make", "--no-print-directory", "serve", f"DATA_DIR={data_dir}", f"HTTP_PORT={http_port}",
         f"GRPC_PORT={grpc_port}"],
        tmp_path_factory.mktemp("logs") / "make-serve.log", cwd=PROJECT_ROOT, http_port=http_port, grpc_port=grpc_port)
    process.start()
    try:
        yield process.wait_ready(timeout_s=240), data_dir
    finally:
        process.stop()


def test_make_serve_prints_progress_and_serves_the_seed_session(make_serve) -> None:
    server, data_dir = make_serve
    log = server.log(20_000)
    for step in ("[1/2] demo model", "[2/2] Feast feature repo", "serving predictive_maintenance"):
        assert step in log
    base = server.http_url.replace("127.0.0.1", "localhost")
    assert curl(f"{base}/health") == (200, '{"status":"alive"}')
    assert curl(f"{base}/ready")[0] == 200
    status, body = curl(f"{base}/v1/models/{MODEL_NAME}")
    assert status == 200 and json.loads(body)["ready"] is True
    status, body = curl("-X", "POST", f"{base}/v1/models/{MODEL_NAME}:predict", "-H", "Content-Type: application/json",
                        "-d", SEED_BODY)
    assert status == 200 and len(json.loads(body)["predictions"]) == 2
    status, body = curl(f"{base}/metrics")
    assert status == 200 and "model_predictions_total" in body
    assert (Path(data_dir) / "mlflow.db").exists()


def test_make_serve_answers_the_feast_issue_curl_by_equipment_id(make_serve) -> None:
    server, _ = make_serve
    status, body = curl("-X", "POST", f"{server.http_url}/v1/models/{MODEL_NAME}:predict", "-H",
                        "Content-Type: application/json", "-d",
                        '{"instances": [{"equipment_id": "pump-0017"}, {"equipment_id": "compressor-0042"}]}')
    assert status == 200, body
    assert len(json.loads(body)["probabilities"]) == 2
