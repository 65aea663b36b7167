"""The server-side failure paths, provoked end to end over every door: a model whose warm-up fails, a model whose
registry answers garbage, beside a model that serves. Each is answered 503 (gRPC ``UNAVAILABLE``) with a message
that names the model, the kind of fault and where to read the rest, counted on model_prediction_errors_total, and
shown by the model's readiness; a repository load of the broken model answers ``load_failed`` with the reason;
the healthy model keeps serving. (A model that raises on a valid request — the 500 — is tests/test_one_door.py.)

The "registry" is a real HTTP server of this test that answers every call with a page that is not MLflow's.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
import httpx
import numpy as np
import pandas as pd
import pytest

from tests import pyfunc_models
from tests.grpc_calls import infer_request, stub
from tests.pyfunc_models import save_pyfunc
from tests.servers import PredictorProcess, free_port, scrape, start_predictor, total, wait_until

ROW = {"temperature": 20.0, "vibration": 0.1}


def cannot_warm_up(model_input: pd.DataFrame) -> np.ndarray:
    """A user's model that needs a file it was never shipped with: it fails on every row, the warm-up's first."""
    raise FileNotFoundError("/opt/site-7/calibration.parquet")


def serves(model_input: pd.DataFrame) -> np.ndarray:
    return model_input["temperature"].to_numpy(dtype=float) / 100.0


@pytest.fixture(scope="module")
def garbage_registry() -> Iterator[str]:
    class NotMlflow(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            body = b"<html><body>Welcome to nginx!</body></html>"
            self.send_response(200)
            self.send_header("content-type", "text/html")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _answer

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), NotMlflow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def server(garbage_registry: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PredictorProcess]:
    root = tmp_path_factory.mktemp("failure-paths")
    save_pyfunc(root / "broken", cannot_warm_up)
    save_pyfunc(root / "fine", serves)
    process = start_predictor(
        garbage_registry,
        root,
        *("--model", f"fine={root / 'fine'}", "--model", f"broken={root / 'broken'}"),
        *("--model", "lost=models:/lost@production", "--poll_interval_s", "1"),
    )
    try:
        yield process.wait_ready()
    finally:
        process.stop()


def every_door(server: PredictorProcess, name: str) -> dict[str, tuple[int | str, str]]:
    """(status or gRPC code, error message) of one valid one-row call to ``name`` over each door."""
    seen: dict[str, tuple[int | str, str]] = {}
    for door, (path, body) in pyfunc_models.rest_bodies(name, ROW).items():
        headers = {"x-model-name": name} if door == "invocations" else {}
        reply = httpx.post(server.http_url + path, json=body, headers=headers, timeout=30)
        seen[door] = (reply.status_code, reply.json().get("error", ""))
    with stub(server.grpc_target) as client:
        request = infer_request(name, [[ROW["temperature"], ROW["vibration"]]])
        try:
            client.ModelInfer(request, timeout=30)
            seen["grpc"] = ("OK", "")
        except grpc.RpcError as exc:
            seen["grpc"] = (exc.code().name, exc.details() or "")
    return seen


def errors(server: PredictorProcess, name: str) -> float:
    return total(scrape(server.http_url), "model_prediction_errors_total", model_name=name, error_type="not_ready")


def ready_reason(server: PredictorProcess, name: str) -> str:
    reply = httpx.get(f"{server.http_url}/v2/models/{name}/ready", timeout=10)
    assert reply.status_code == 503
    return str(reply.json())


def test_a_model_whose_warm_up_fails_is_503_on_every_door_and_its_readiness_says_why(server: PredictorProcess) -> None:
    wait_until(lambda: "warm-up" in ready_reason(server, "broken"), 60, 0.5, "the warm-up failure in readiness")
    before = errors(server, "broken")

    answers = every_door(server, "broken")

    for door, (status, message) in answers.items():
        assert status in (503, "UNAVAILABLE"), (door, status, message)
        assert "model broken failed to load" in message and "/v2/models/broken/ready" in message, (door, message)
        assert "calibration.parquet" not in message  # the model's own exception stays in readiness and the log
    assert errors(server, "broken") == before + len(answers)
    assert "calibration.parquet" in ready_reason(server, "broken")


def test_a_registry_that_answers_garbage_is_503_naming_the_registry_on_every_door(server: PredictorProcess) -> None:
    wait_until(lambda: "cannot resolve" in ready_reason(server, "lost"), 60, 0.5, "the registry failure in readiness")
    before = errors(server, "lost")

    answers = every_door(server, "lost")

    for door, (status, message) in answers.items():
        assert status in (503, "UNAVAILABLE"), (door, status, message)
        assert "model lost cannot be loaded: its registry is unreachable" in message, (door, message)
    assert errors(server, "lost") == before + len(answers)
    assert httpx.get(f"{server.http_url}/ready", timeout=10).status_code == 200  # fine serves: the pod stays in


def test_a_repository_load_of_the_broken_model_answers_load_failed_with_the_reason(server: PredictorProcess) -> None:
    reply = httpx.post(f"{server.http_url}/v2/repository/models/broken/load", timeout=60)

    assert reply.status_code == 503
    assert "model broken" in reply.json()["error"] and "warm-up" in reply.json()["error"]
    index = {e["name"]: e for e in httpx.post(f"{server.http_url}/v2/repository/index", timeout=10).json()}
    assert index["broken"]["state"] == "UNAVAILABLE" and "warm-up" in index["broken"]["reason"]


def test_the_healthy_model_beside_them_answers_on_every_door(server: PredictorProcess) -> None:
    assert {door: status for door, (status, _) in every_door(server, "fine").items()} == {
        "v1": 200,
        "v2": 200,
        "invocations": 200,
        "grpc": "OK",
    }
