"""--allow_pickle false: a pickled model is refused with a message saying how to re-log it, a skops one is
served, and every loaded version reports how it is stored (log line, /admin/versions, a metric label)."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import pytest

from tests.own_models import PIP, _data, _signature, _target
from tests.servers import PredictorProcess, free_port, wait_until

NAME = "safe"


def save_forest(path: Path, serialization: str) -> None:
    import mlflow.sklearn
    from sklearn.ensemble import RandomForestClassifier

    frame = _data()[["temperature", "vibration", "pressure"]]
    model = RandomForestClassifier(n_estimators=5, max_depth=4, random_state=0).fit(frame, _target(_data()))
    extra = {"skops_trusted_types": ["sklearn.tree._tree.Tree"]} if serialization == "skops" else {}
    mlflow.sklearn.save_model(
        model,
        str(path),
        signature=_signature(frame, model.predict(frame)),
        serialization_format=serialization,
        pip_requirements=PIP,
        **extra,
    )


def start(model_dir: Path, tmp_path: Path, *extra: str) -> PredictorProcess:
    http_port = free_port()
    args = [
        sys.executable,
        "-m",
        "predictor",
        "--model_name",
        NAME,
        "--model_uri",
        str(model_dir),
        "--http_port",
        str(http_port),
        "--grpc_port",
        str(free_port()),
        "--model_cache_dir",
        str(tmp_path / f"cache-{http_port}"),
        *extra,
    ]
    return PredictorProcess(
        args, tmp_path / f"predictor-{http_port}.log", cwd=tmp_path, http_port=http_port, model_name=NAME
    ).start()


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("safe-models")
    saved = {}
    for serialization in ("cloudpickle", "skops"):
        directory = root / f"model-{len(saved)}"  # a path that does not itself say how the model is stored
        save_forest(directory, serialization)
        saved[serialization] = directory
    return saved


def test_a_cloudpickle_model_is_refused_with_how_to_relog_it(models: dict[str, Path], tmp_path: Path) -> None:
    server = start(models["cloudpickle"], tmp_path, "--allow_pickle", "false")
    try:
        server.wait_live()

        def refused() -> bool:
            body = httpx.get(f"{server.http_url}/ready", timeout=5).json()
            return "--allow_pickle" in body.get("error", "")

        wait_until(refused, 90, 0.3, "the refusal in /ready")
        error = httpx.get(f"{server.http_url}/ready", timeout=5).json()["error"]
        assert "cloudpickle" in error and "skops" in error, error
        assert httpx.get(f"{server.http_url}/ready", timeout=5).status_code == 503
        assert server.alive()  # readiness off, process alive
    finally:
        server.stop()


def test_a_skops_model_is_served_and_reports_its_format(models: dict[str, Path], tmp_path: Path) -> None:
    server = start(models["skops"], tmp_path, "--allow_pickle", "false")
    try:
        server.wait_ready()
        answer = httpx.post(
            f"{server.http_url}/v1/models/{NAME}:predict", json={"instances": [[70.0, 0.3, 2.0]]}, timeout=10
        )
        assert answer.status_code == 200, answer.text
        formats = httpx.get(f"{server.http_url}/admin/versions", timeout=5).json()["formats"]
        assert [f["serialization"] for f in formats.values()] == ["skops"]
        metrics = httpx.get(f"{server.http_url}/metrics", timeout=5).text
        assert any(
            line.startswith("model_format_info{") and 'serialization="skops"' in line and line.endswith(" 1.0")
            for line in metrics.splitlines()
        )
    finally:
        server.stop()
    assert "skops" in server.log(100_000)
