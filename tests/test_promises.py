"""README promises that need a server started their own way: each model URI form, and the flags that change
behaviour (batching, gRPC, the forest, limits, client identity, the prediction log, log level, registry
timeout, the model cache), each observed through what a user sees — answers, /metrics, logs, files.

Several flags share one server start where they do not interfere, to keep starts (~10 s each) few.
"""

from __future__ import annotations

import asyncio
import json
import socket
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.servers import MODEL_NAME, SEED_ROWS, PredictorProcess, sample, scrape, start_predictor, wait_until

V1 = f"/v1/models/{MODEL_NAME}:predict"


def started(tracking_uri: str, log_dir: Path, *flags: str, **kwargs: Any) -> Iterator[PredictorProcess]:
    server = start_predictor(tracking_uri, log_dir, *flags, **kwargs)
    try:
        yield server.wait_ready()
    finally:
        server.stop()


async def concurrently(url: str, bodies: list[dict[str, Any]], headers: list[dict[str, str]]) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=60) as client:
        return await asyncio.gather(
            *(client.post(url, json=b, headers=h) for b, h in zip(bodies, headers, strict=True))
        )


def batch_histogram(server: PredictorProcess, model_name: str = MODEL_NAME) -> dict[str, float]:
    samples = scrape(server.http_url)
    buckets = {
        le: sample(samples, "model_batch_rows_bucket", model_name=model_name, le=le) for le in ("1.0", "4.0", "+Inf")
    }
    return {**buckets, "sum": sample(samples, "model_batch_rows_sum", model_name=model_name)}


def delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {key: after[key] - before[key] for key in after}


# ------------------------------------------------------------------------------------------------ runs:/
@pytest.fixture(scope="module")
def run_id(tracking_uri: str) -> str:
    from mlflow import MlflowClient

    return str(
        MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri).get_model_version(MODEL_NAME, "1").run_id
    )


@pytest.fixture(scope="module")
def runs_server(tracking_uri: str, run_id: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PredictorProcess]:
    """runs:/ URI; batching off; no gRPC; the prediction log on stdout; warnings only; no model cache."""
    yield from started(
        tracking_uri,
        tmp_path_factory.mktemp("runs-server"),
        "--model_uri",
        f"runs:/{run_id}/model",
        "--max_batch_wait_ms",
        "0",
        "--enable_grpc",
        "false",
        "--prediction_log",
        "-",
        "--log_level",
        "WARNING",
        "--model_cache_dir",
        "",
    )


def test_a_runs_uri_serves_the_runs_model_and_reports_the_run(
    runs_server: PredictorProcess, run_id: str, demo_server: PredictorProcess
) -> None:
    answer = httpx.post(runs_server.http_url + V1, json={"instances": SEED_ROWS}).json()
    assert answer["model_version"] == f"run-{run_id[:8]}"
    assert httpx.get(f"{runs_server.http_url}/v1/models/{MODEL_NAME}").json()["version"] == f"run-{run_id[:8]}"
    reference = httpx.post(demo_server.http_url + V1, json={"instances": SEED_ROWS}).json()  # the same model
    assert answer["predictions"] == reference["predictions"]
    np.testing.assert_allclose(answer["probabilities"], reference["probabilities"])


def test_max_batch_wait_0_gives_every_request_its_own_model_call(runs_server: PredictorProcess) -> None:
    before = batch_histogram(runs_server)
    responses = asyncio.run(concurrently(runs_server.http_url + V1, [{"instances": SEED_ROWS[:1]}] * 24, [{}] * 24))
    assert [r.status_code for r in responses] == [200] * 24
    change = delta(batch_histogram(runs_server), before)
    assert change == {"1.0": 24, "4.0": 24, "+Inf": 24, "sum": 24}, change  # 24 calls of one row each


def test_enable_grpc_false_leaves_the_grpc_port_closed(runs_server: PredictorProcess) -> None:
    with socket.socket() as probe, pytest.raises(ConnectionRefusedError):
        probe.connect(("127.0.0.1", runs_server.grpc_port))


def test_prediction_log_dash_writes_json_lines_to_stdout(runs_server: PredictorProcess) -> None:
    headers = {"x-request-id": "to-stdout-1"}
    assert httpx.post(runs_server.http_url + V1, json={"instances": SEED_ROWS}, headers=headers).status_code == 200

    def logged() -> list[dict[str, Any]]:
        lines = [line for line in runs_server.log(1_000_000).splitlines() if line.startswith("{")]
        return [entry for entry in map(json.loads, lines) if entry.get("request_id") == "to-stdout-1"]

    wait_until(lambda: len(logged()) == 2, 20, 0.1, "two prediction lines on stdout")
    assert [(entry["row"], entry["protocol"]) for entry in logged()] == [(0, "v1"), (1, "v1")]


def test_log_level_warning_keeps_info_lines_out(runs_server: PredictorProcess) -> None:
    assert httpx.post(runs_server.http_url + V1, json={"instances": SEED_ROWS}).status_code == 200
    log = runs_server.log(1_000_000)
    assert [line for line in log.splitlines() if " INFO " in line] == []
    started_line = f"model {MODEL_NAME} version run-"  # logged at INFO when the model starts serving
    assert started_line not in log


def test_an_empty_model_cache_dir_writes_no_cache(runs_server: PredictorProcess) -> None:
    assert runs_server.cwd is not None
    assert list(runs_server.cwd.iterdir()) == []  # not even the default .data/model-cache


# ------------------------------------------------------------------------------------- local directory
@pytest.fixture(scope="module")
def local_server(tracking_uri: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PredictorProcess]:
    """A local directory; batches of at most 4 rows with a long wait; scikit-learn's own predict_proba;
    clients told apart by X-Forwarded-For, 2 requests each; small body and row limits."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)  # another module's registry may still be this process's default
    directory = tmp_path_factory.mktemp("local-model")
    mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{MODEL_NAME}/1", dst_path=str(directory))
    yield from started(
        tracking_uri,
        tmp_path_factory.mktemp("local-server"),
        "--model_uri",
        str(directory),
        "--max_batch_size",
        "4",
        "--max_batch_wait_ms",
        "200",
        "--compile_forest",
        "false",
        "--trust_forwarded_for",
        "true",
        "--rate_limit_rps",
        "0.001",
        "--rate_limit_burst",
        "2",
        "--max_body_bytes",
        "3000",
        "--max_instances",
        "3",
    )


def client(n: int) -> dict[str, str]:
    """A distinct client behind the (trusted) proxy."""
    return {"X-Forwarded-For": f"198.51.100.{n}, 10.0.0.1"}


def test_a_local_directory_is_served_as_version_local(local_server: PredictorProcess) -> None:
    answer = httpx.post(local_server.http_url + V1, json={"instances": SEED_ROWS}, headers=client(1))
    assert answer.status_code == 200 and answer.json()["model_version"] == "local"


def test_concurrent_requests_are_merged_into_batches_of_at_most_max_batch_size(local_server: PredictorProcess) -> None:
    before = batch_histogram(local_server)
    responses = asyncio.run(
        concurrently(
            local_server.http_url + V1, [{"instances": SEED_ROWS[:1]}] * 24, [client(10 + i) for i in range(24)]
        )
    )
    assert [r.status_code for r in responses] == [200] * 24
    change = delta(batch_histogram(local_server), before)
    assert change["sum"] == 24  # every row went through exactly one model call
    assert change["1.0"] < change["+Inf"], change  # some call took several requests (micro-batching happened)
    assert change["4.0"] == change["+Inf"], change  # and none took more than --max_batch_size rows


def test_trusted_forwarded_for_gives_each_forwarded_client_its_own_bucket(local_server: PredictorProcess) -> None:
    limited_before = sample(scrape(local_server.http_url), "requests_rate_limited_total")
    statuses = [httpx.post(local_server.http_url + V1, json={"instances": SEED_ROWS}, headers=client(50)).status_code]
    statuses += [httpx.post(local_server.http_url + V1, json={"instances": SEED_ROWS}, headers=client(50)).status_code]
    statuses += [httpx.post(local_server.http_url + V1, json={"instances": SEED_ROWS}, headers=client(50)).status_code]
    other = httpx.post(local_server.http_url + V1, json={"instances": SEED_ROWS}, headers=client(51))
    assert statuses == [200, 200, 429]  # the same address throughout: one bucket without the header
    assert other.status_code == 200
    assert sample(scrape(local_server.http_url), "requests_rate_limited_total") == limited_before + 1


def test_non_default_body_and_instance_limits_are_enforced(local_server: PredictorProcess) -> None:
    url = local_server.http_url + V1
    assert httpx.post(url, json={"instances": SEED_ROWS + SEED_ROWS[:1]}, headers=client(60)).status_code == 200
    too_many = httpx.post(url, json={"instances": SEED_ROWS * 2}, headers=client(61))
    assert too_many.status_code == 413
    assert "4 instances in one request; the limit is 3" in too_many.json()["error"]
    body = json.dumps({"instances": SEED_ROWS[:1]}).encode() + b" " * 3000  # valid JSON, 3000+ bytes
    too_big = httpx.post(url, content=body, headers={"Content-Type": "application/json", **client(62)})
    assert too_big.status_code == 413
    assert "exceeds the limit of 3000 bytes" in too_big.json()["error"]


def test_compile_forest_false_leaves_the_forest_to_scikit_learn(
    local_server: PredictorProcess, demo_server: PredictorProcess
) -> None:
    compiled = "forest of 100 trees compiled to NumPy"
    assert compiled in demo_server.log(10_000_000)  # the default compiles …
    assert compiled not in local_server.log(10_000_000)  # … the flag does not
    ours = httpx.post(local_server.http_url + V1, json={"instances": SEED_ROWS}, headers=client(70)).json()
    reference = httpx.post(demo_server.http_url + V1, json={"instances": SEED_ROWS}).json()
    np.testing.assert_array_equal(ours["probabilities"], reference["probabilities"])  # exact either way


# ------------------------------------------------------------------------------- latest, sampled log
def test_latest_and_a_sampled_prediction_log_with_grpc_lines(tracking_uri: str, tmp_path: Path) -> None:
    from tests.grpc_calls import infer_request, stub

    sink = tmp_path / "predictions.jsonl"
    server = start_predictor(
        tracking_uri,
        tmp_path,
        "--model_uri",
        f"models:/{MODEL_NAME}/latest",
        "--prediction_log",
        str(sink),
        "--prediction_log_sample_rate",
        "0.5",
        "--drain_delay_s",
        "0",
    )
    try:
        server.wait_ready()
        for i in range(60):
            headers = {"x-request-id": f"rest-{i}"}
            answer = httpx.post(server.http_url + V1, json={"instances": SEED_ROWS}, headers=headers)
            assert answer.json()["model_version"] == "1"
        with stub(server.grpc_target) as grpc_client:
            for i in range(30):
                request = infer_request(MODEL_NAME, SEED_ROWS)
                request.id = f"grpc-{i}"
                assert grpc_client.ModelInfer(request, timeout=30).model_version == "1"
        server.stop()  # SIGTERM: the log is flushed before the process exits
    finally:
        server.stop()
    lines = [json.loads(line) for line in sink.read_text().splitlines()]
    by_request: dict[str, list[dict[str, Any]]] = {}
    for line in lines:
        by_request.setdefault(line["request_id"], []).append(line)
    rest = [r for r in by_request if r.startswith("rest-")]
    grpc = [r for r in by_request if r.startswith("grpc-")]
    assert 0 < len(rest) < 60 and 0 < len(grpc) < 30, (len(rest), len(grpc))  # sampled: some, not all
    assert set(by_request) == set(rest) | set(grpc)
    for request_id, rows in by_request.items():
        assert [row["row"] for row in rows] == [0, 1]  # a sampled request keeps all its rows
        assert {row["protocol"] for row in rows} == {"grpc" if request_id.startswith("grpc-") else "v1"}
        assert {row["model_version"] for row in rows} == {"1"}


# ------------------------------------------------------------------------- pyfunc, a numeric version
RULE = '''
import mlflow


class OverheatRule(mlflow.pyfunc.PythonModel):
    """Not scikit-learn: served through pyfunc, predictions only."""

    def predict(self, context, model_input, params=None):
        return (model_input["temperature_c"] > 70).astype("int64").to_numpy()


mlflow.models.set_model(OverheatRule())
'''


@pytest.fixture(scope="module")
def pyfunc_registry(tmp_path_factory: pytest.TempPathFactory) -> str:
    import mlflow
    import pandas as pd
    from mlflow.models import infer_signature

    from predictor.demo.columns import FEATURE_NAMES

    root = tmp_path_factory.mktemp("pyfunc-registry")
    uri = f"sqlite:///{root}/mlflow.db"
    code = root / "overheat_rule.py"
    code.write_text(RULE)
    frame = pd.DataFrame(np.asarray(SEED_ROWS, dtype=np.float64), columns=list(FEATURE_NAMES))
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    experiment = mlflow.create_experiment("pyfunc", artifact_location=(root / "artifacts").as_uri())
    with mlflow.start_run(experiment_id=experiment), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mlflow.pyfunc.log_model(
            name="model",
            python_model=str(code),
            signature=infer_signature(frame, np.array([1, 0])),
            registered_model_name="overheat_rule",
            pip_requirements=["mlflow"],  # listed, not inferred (~20 s)
        )
    return uri


# MLflow warns, when the model is logged, that predict() has no type hints (they would add its own validation).
@pytest.mark.filterwarnings("ignore:Add type hints to the `predict` method:UserWarning")
def test_a_pyfunc_model_at_a_numeric_version_answers_predictions_only_and_log_drops_are_counted(
    pyfunc_registry: str, tmp_path: Path
) -> None:
    unwritable = tmp_path / "a-directory"  # the prediction log cannot open a directory: every record drops
    unwritable.mkdir()
    server = start_predictor(
        pyfunc_registry,
        tmp_path,
        "--model_uri",
        "models:/overheat_rule/1",
        "--prediction_log",
        str(unwritable),
        model_name="overheat_rule",
    )
    try:
        server.wait_ready()
        url = f"{server.http_url}/v1/models/overheat_rule:predict"
        rows = [[75.3, *SEED_ROWS[0][1:]], [60.2, *SEED_ROWS[1][1:]], [70.5, *SEED_ROWS[1][1:]]]
        for _ in range(5):
            answer = httpx.post(url, json={"instances": rows})
            assert answer.status_code == 200, answer.text
            assert answer.json()["predictions"] == [1, 0, 1] and answer.json()["model_version"] == "1"
            assert "probabilities" not in answer.json()
        wait_until(
            lambda: sample(scrape(server.http_url), "prediction_log_dropped_total") == 5, 20, 0.2, "5 drops counted"
        )
        assert (
            sample(
                scrape(server.http_url), "model_prediction_rows_total", model_name="overheat_rule", model_version="1"
            )
            == 15
        )
    finally:
        server.stop()


# ----------------------------------------------------------------------------- a registry that hangs
def test_registry_timeout_reaches_mlflow_and_model_loaded_none_is_exported_before_a_load(tmp_path: Path) -> None:
    with socket.socket() as hanging:  # accepts connections (the kernel does) and never answers
        hanging.bind(("127.0.0.1", 0))
        hanging.listen(64)
        port = hanging.getsockname()[1]
        # 0.5 s reaches MLflow as 1 s (its timeout is whole seconds; truncated it was 0: no wait at all)
        server = start_predictor(f"http://127.0.0.1:{port}", tmp_path, "--registry_timeout_s", "0.5")
        try:
            server.wait_live()

            def reason() -> str:
                return str(httpx.get(server.http_url + "/ready").json().get("error", ""))

            wait_until(lambda: "timed out" in reason(), 60, 0.3, "the registry timeout in /ready")
            assert "read timeout=1)" in reason(), reason()  # MLflow's own wording, with our timeout
            samples = scrape(server.http_url)
            assert ("model_loaded", frozenset({"model_name": MODEL_NAME, "model_version": "none"}.items())) in samples
            assert sample(samples, "model_loaded", model_name=MODEL_NAME, model_version="none") == 0
            assert httpx.get(server.http_url + "/ready").status_code == 503 and server.alive()
        finally:
            server.stop()


# --------------------------------------------------------------------------- on the shared demo server
def test_rows_are_counted_in_model_prediction_rows_total(demo_server: PredictorProcess) -> None:
    labels = {"model_name": MODEL_NAME, "model_version": "1"}
    before = scrape(demo_server.http_url)
    assert httpx.post(demo_server.http_url + V1, json={"instances": SEED_ROWS * 3}).status_code == 200
    assert httpx.post(demo_server.http_url + V1, json={"instances": SEED_ROWS[:1]}).status_code == 200
    after = scrape(demo_server.http_url)
    assert (
        sample(after, "model_prediction_rows_total", **labels) - sample(before, "model_prediction_rows_total", **labels)
        == 7
    )


def test_rollback_without_a_previous_version_is_refused_and_changes_nothing(demo_server: PredictorProcess) -> None:
    refused = httpx.post(demo_server.http_url + "/admin/rollback")
    assert refused.status_code == 400 and "no previous version" in refused.json()["error"]
    status = httpx.get(demo_server.http_url + "/admin/versions").json()
    assert status["serving"] == "1" and status["previous"] is None
    assert httpx.post(demo_server.http_url + V1, json={"instances": SEED_ROWS}).json()["model_version"] == "1"
