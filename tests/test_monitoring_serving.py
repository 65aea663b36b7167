"""Explanations, drift and shadow scoring on the real server, as an operator meets them: the demo registry
with its champion (carrying its drift baseline) and a challenger under ``@challenger``; traffic over v1, v2
and gRPC; what /admin/drift, /admin/shadow, /metrics and the prediction log then say.

No timing is asserted: waits only guard against hangs (the drift and shadow workers run off the request path).
"""

from __future__ import annotations

import os
import signal
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.infer_type import InferResponse
from sklearn.linear_model import LogisticRegression

from predictor.demo.columns import FEATURE_NAMES
from predictor.demo.training import generate_telemetry, register_challenger, register_demo_model
from tests.grpc_calls import stub
from tests.servers import PredictorProcess, start_predictor

NAME = "pm_watch"
WINDOW = 400
SHIFTED = "temperature_c"


@pytest.fixture(scope="module")
def tracking_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('watch-registry')}/mlflow.db"


@pytest.fixture(scope="module")
def server(tracking_uri: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PredictorProcess, Path]]:
    root = tmp_path_factory.mktemp("watch")
    register_demo_model(tracking_uri, name=NAME, artifact_root=root / "artifacts")
    register_challenger(tracking_uri, name=NAME, artifact_root=root / "artifacts")
    log_path = root / "predictions.jsonl"
    process = start_predictor(
        tracking_uri,
        root,
        "--model_uri",
        f"models:/{NAME}/1",
        "--shadow_model_uri",
        f"models:/{NAME}@challenger",
        "--drift_window_rows",
        str(WINDOW),
        "--prediction_log",
        str(log_path),
        "--poll_interval_s",
        "1",  # the challenger's alias is moved by the last test
        # Never shed: these tests count every request scored, which a busy CI machine must not change (shedding
        # is driven both ways by tests/test_shadow.py with the process's real CPU share).
        "--shadow_busy_share",
        "0",
        model_name=NAME,
    )
    try:
        yield process.wait_ready(), log_path
    finally:
        process.stop()


def until(condition: Callable[[], Any], what: str, timeout_s: float = 30.0) -> Any:
    """The first truthy value of ``condition()``; the bound only guards against a hang."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def send(server: PredictorProcess, rows: np.ndarray, per_request: int = 20) -> None:
    url = f"{server.http_url}/v1/models/{NAME}:predict"
    with httpx.Client(timeout=10) as client:
        for start in range(0, len(rows), per_request):
            response = client.post(url, json={"instances": rows[start : start + per_request].tolist()})
            assert response.status_code == 200, response.text


def drift(server: PredictorProcess) -> dict[str, Any]:
    response = httpx.get(f"{server.http_url}/admin/drift", timeout=10)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def metric(server: PredictorProcess, name: str, **labels: str) -> float | None:
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{server.http_url}/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return None


class BreaksOnBatches(LogisticRegression):
    """A challenger that loads and warms up (one row) but fails on every real request (several rows)."""

    def predict_proba(self, X: Any) -> Any:
        if len(X) > 1:
            raise RuntimeError("the challenger broke")
        return super().predict_proba(X)


def register_broken_challenger(tracking_uri: str) -> str:
    """Version 3 of NAME, a BreaksOnBatches, moved under @challenger; returns its version."""
    import cloudpickle
    import mlflow
    from mlflow import MlflowClient
    from mlflow.models import infer_signature

    features, labels = generate_telemetry(500, seed=41)
    model = BreaksOnBatches(max_iter=500).fit(features, labels)
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the server cannot import the tests package
    mlflow.set_tracking_uri(tracking_uri)
    with mlflow.start_run(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=infer_signature(features, model.predict_proba(features.head(1))),
            serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_CLOUDPICKLE,
            registered_model_name=NAME,
            pip_requirements=["mlflow"],
        )
    version = str(info.registered_model_version)
    MlflowClient(tracking_uri).set_registered_model_alias(NAME, "challenger", version)
    return version


def test_explanations_of_the_demo_forest_add_up_over_v1_v2_and_grpc(
    server: tuple[PredictorProcess, Path],
) -> None:
    process, _ = server
    features, _ = generate_telemetry(3, seed=11)
    rows = features.to_numpy()
    predicted = httpx.post(
        f"{process.http_url}/v1/models/{NAME}:predict", json={"instances": rows.tolist()}, timeout=10
    ).json()
    explained = httpx.post(
        f"{process.http_url}/v1/models/{NAME}:explain", json={"instances": rows.tolist()}, timeout=30
    )
    assert explained.status_code == 200, explained.text
    body = explained.json()
    assert (body["model_name"], body["model_version"]) == (NAME, "1")
    for row, explanation in enumerate(body["explanations"]):
        assert explanation["class"] == predicted["predictions"][row]
        assert list(explanation["contributions"]) == list(FEATURE_NAMES)
        total = explanation["base_value"] + sum(explanation["contributions"].values())
        assert total == pytest.approx(max(predicted["probabilities"][row]), abs=1e-6)
    v2 = httpx.post(
        f"{process.http_url}/v2/models/{NAME}/infer",
        json={
            "inputs": [
                {"name": "input-0", "datatype": "FP64", "shape": list(rows.shape), "data": rows.ravel().tolist()}
            ],
            "outputs": [{"name": "predictions"}, {"name": "contributions"}],
        },
        timeout=30,
    )
    assert v2.status_code == 200, v2.text
    outputs = {o["name"]: o for o in v2.json()["outputs"]}
    assert set(outputs) == {"predictions", "contributions"}
    assert outputs["contributions"]["shape"] == [3, 1 + len(FEATURE_NAMES)]
    contributions = np.asarray(outputs["contributions"]["data"]).reshape(3, -1)
    np.testing.assert_allclose(contributions.sum(axis=1), np.max(predicted["probabilities"], axis=1), atol=1e-6)
    request = pb.ModelInferRequest(
        model_name=NAME,
        inputs=[
            pb.ModelInferRequest.InferInputTensor(
                name="input-0",
                datatype="FP64",
                shape=list(rows.shape),
                contents=pb.InferTensorContents(fp64_contents=rows.ravel().tolist()),
            )
        ],
        outputs=[pb.ModelInferRequest.InferRequestedOutputTensor(name="contributions")],
    )
    with stub(process.grpc_target) as client:
        answer = InferResponse.from_grpc(client.ModelInfer(request, timeout=30))
    (output,) = answer.outputs
    assert output.name == "contributions"
    grpc_contributions = output.as_numpy()
    np.testing.assert_allclose(grpc_contributions, contributions, atol=1e-12)


def test_a_bad_explain_body_is_a_400_naming_the_fault(server: tuple[PredictorProcess, Path]) -> None:
    process, _ = server
    response = httpx.post(f"{process.http_url}/v1/models/{NAME}:explain", json={"instances": [[1.0, "x"]]}, timeout=10)
    assert response.status_code == 400
    # the same message :predict gives for that body: the row, its count, what the model expects
    assert response.json()["error"].startswith("instances[0] has 2 values; the model expects 10 features")


def test_unshifted_traffic_keeps_psi_low_and_a_shifted_column_raises_it(server: tuple[PredictorProcess, Path]) -> None:
    process, _ = server
    before = drift(process)
    assert before["monitored"] is True and before["window_rows"] == WINDOW
    observed = before["observed_rows"]
    features, _ = generate_telemetry(WINDOW, seed=21)
    send(process, features.to_numpy())
    calm = until(lambda: (d := drift(process))["observed_rows"] >= observed + WINDOW and d, "the window to fill")
    psi = {name: column["psi"] for name, column in calm["features"].items()}
    assert max(psi.values()) < 0.1, psi
    assert calm["prediction"]["psi"] < 0.1

    shifted, _ = generate_telemetry(WINDOW, seed=22)
    shifted[SHIFTED] += 20.0  # a sensor recalibrated upstream: every reading 20 °C too hot
    send(process, shifted.to_numpy())
    alarmed = until(lambda: (d := drift(process))["observed_rows"] >= observed + 2 * WINDOW and d, "the shift")
    psi = {name: column["psi"] for name, column in alarmed["features"].items()}
    assert psi[SHIFTED] > 0.2, psi
    assert max(v for name, v in psi.items() if name != SHIFTED) < 0.1, psi
    gauge = until(
        lambda: (v := metric(process, "model_feature_drift_psi", feature=SHIFTED, model_version="1")) and v > 0.2 and v,
        "the gauge to follow",
    )
    assert gauge > 0.2


def test_the_challenger_scores_live_traffic_and_its_answers_are_logged_beside_the_live_ones(
    server: tuple[PredictorProcess, Path],
) -> None:
    process, log_path = server
    status = until(
        lambda: (s := httpx.get(f"{process.http_url}/admin/shadow", timeout=10).json())["shadow_version"] and s,
        "the challenger to load",
    )
    assert status["shadow_version"] == "2" and status["last_error"] is None
    features, _ = generate_telemetry(100, seed=31)
    rows = features.to_numpy()
    with httpx.Client(timeout=10) as client:
        for start in range(0, 100, 10):
            response = client.post(
                f"{process.http_url}/v1/models/{NAME}:predict",
                json={"instances": rows[start : start + 10].tolist()},
                headers={"x-request-id": f"shadowed-{start}"},
            )
            assert response.status_code == 200, response.text
    labels = {"model_name": NAME, "model_version": "1", "shadow_version": "2"}
    scored = until(
        lambda: (v := metric(process, "model_shadow_predictions_total", **labels)) and v >= 100 and v,
        "the shadow to score 100 rows",
    )
    assert scored >= 100
    agreement = metric(process, "model_shadow_agreement_ratio", **labels)
    assert agreement is not None and 0.5 < agreement <= 1.0

    def shadow_lines() -> list[dict[str, Any]]:
        lines = [orjson.loads(line) for line in log_path.read_bytes().splitlines()] if log_path.exists() else []
        return [line for line in lines if line["protocol"] == "shadow" and line["request_id"].startswith("shadowed-")]

    shadowed = until(lambda: len(found := shadow_lines()) >= 100 and found, "the shadow's log lines")
    assert {line["shadow_version"] for line in shadowed} == {"2"}
    assert {line["request_id"] for line in shadowed} == {f"shadowed-{start}" for start in range(0, 100, 10)}
    live = [
        orjson.loads(line)
        for line in log_path.read_bytes().splitlines()
        if b'"shadowed-' in line and b'"protocol":"v1"' in line
    ]
    assert len(live) == 100  # the live lines are there too, one per row


def test_the_challenger_runs_in_a_low_priority_process_of_its_own_and_comes_back_when_killed(
    server: tuple[PredictorProcess, Path],
) -> None:
    """Shadow scoring takes the CPU the live process leaves: the challenger lives in a child that loads at nice 19
    and scores under SCHED_IDLE. Killing that child loses no live request; the challenger is loaded again and
    scores again."""
    process, _ = server
    status = until(
        lambda: (s := httpx.get(f"{process.http_url}/admin/shadow", timeout=10).json())["shadow_pid"] and s,
        "the challenger to load",
    )
    child = status["shadow_pid"]
    assert process.popen is not None and child != process.popen.pid
    assert niceness(child) == 19
    until(lambda: scheduling_policy(child) == SCHED_IDLE, "the loaded challenger to score under SCHED_IDLE")
    os.kill(child, signal.SIGKILL)
    features, _ = generate_telemetry(60, seed=41)
    send(process, features.to_numpy(), per_request=6)  # every live answer a 200 while the challenger is gone
    status = until(
        lambda: (
            (s := httpx.get(f"{process.http_url}/admin/shadow", timeout=10).json())["shadow_pid"] not in (None, child)
            and s
        ),
        "the challenger's process to be started again",
    )
    assert niceness(status["shadow_pid"]) == 19
    labels = {"model_name": NAME, "model_version": "1", "shadow_version": status["shadow_version"]}
    before = metric(process, "model_shadow_predictions_total", **labels) or 0.0
    send(process, features.to_numpy(), per_request=6)
    until(
        lambda: (metric(process, "model_shadow_predictions_total", **labels) or 0.0) >= before + 60,
        "the new challenger process to score",
    )


SCHED_IDLE = 5  # Linux's policy number (os.SCHED_IDLE)


def niceness(pid: int) -> int:
    """The nice value of a process (field 19 of /proc/PID/stat)."""
    return int(stat_fields(pid)[16])


def scheduling_policy(pid: int) -> int:
    """The scheduling policy of a process (field 41 of /proc/PID/stat)."""
    return int(stat_fields(pid)[38])


def stat_fields(pid: int) -> list[str]:
    """/proc/PID/stat from field 3 on (after the parenthesised command name, which may hold spaces)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def test_a_failing_challenger_never_fails_a_live_request(
    server: tuple[PredictorProcess, Path], tracking_uri: str
) -> None:
    """The alias moves to a challenger that raises on every request: it is followed, its errors are counted, and
    every live answer is still a 200 with the champion's prediction."""
    process, _ = server
    broken = register_broken_challenger(tracking_uri)
    until(
        lambda: httpx.get(f"{process.http_url}/admin/shadow", timeout=10).json()["shadow_version"] == broken,
        "the challenger's alias to be followed",
    )
    features, _ = generate_telemetry(50, seed=51)
    rows = features.to_numpy()
    expected = httpx.post(
        f"{process.http_url}/v1/models/{NAME}:explain", json={"instances": rows[:5].tolist()}, timeout=30
    ).json()["explanations"]
    with httpx.Client(timeout=10) as client:
        for start in range(0, 50, 5):
            response = client.post(
                f"{process.http_url}/v1/models/{NAME}:predict", json={"instances": rows[start : start + 5].tolist()}
            )
            assert response.status_code == 200, response.text
            assert response.json()["model_version"] == "1"
            if start == 0:
                assert response.json()["predictions"] == [e["class"] for e in expected]
    labels = {"model_name": NAME, "model_version": "1", "shadow_version": broken}
    errors = until(lambda: (v := metric(process, "model_shadow_errors_total", **labels)) and v >= 10 and v, "errors")
    assert errors >= 10
    status = httpx.get(f"{process.http_url}/admin/shadow", timeout=10).json()
    (scorer,) = [s for s in status["scorers"] if s["shadow_version"] == broken]
    assert scorer["errors"] >= 10 and scorer["scored_rows"] == 0
    assert httpx.get(f"{process.http_url}/ready", timeout=10).status_code == 200
