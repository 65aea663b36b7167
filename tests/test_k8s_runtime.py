"""KServe's MLflow runtime (manifests/runtime) and the InferenceServices that use it (manifests/examples).

Rendered by the real `kubectl kustomize`, checked strictly against the kserve SDK models, the examples against the
published CRD (../shared/reference; skipped without it). There is no cluster here: what KServe would do with the
runtime — substitute ``{{.Name}}``, download a storageUri into /mnt/models, run the image with the runtime's args —
is done by the last test with the real server on a real MLflow model directory, started with exactly those args.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from predictor.config import ModelSpec, load_settings
from tests import model_zoo
from tests.k8s.crd import errors
from tests.k8s.kube import MANIFESTS, render, the
from tests.k8s.strict import validate
from tests.servers import PredictorProcess, free_port

EXAMPLES = ("storage-uri", "registry-model", "fleet")
MLSERVER_MLFLOW_PRIORITY = 1  # kserve-mlserver's priority for the mlflow format (KServe's runtimes)


def runtime() -> dict[str, Any]:
    return the(render(MANIFESTS / "runtime"), "ClusterServingRuntime")


def example(name: str) -> dict[str, Any]:
    return the(render(MANIFESTS / "examples" / name), "InferenceService")


def runtime_args(isvc_name: str) -> list[str]:
    """The container's args as KServe runs them: ``{{.Name}}`` is the InferenceService's name."""
    (container,) = runtime()["spec"]["containers"]
    return [arg.replace("{{.Name}}", isvc_name) for arg in container["args"]]


def test_the_runtime_is_valid_and_declares_every_mlflow_format_version_above_mlserver() -> None:
    assert validate(runtime()) == []
    spec = runtime()["spec"]
    formats = spec["supportedModelFormats"]
    assert {f["version"] for f in formats if f["name"] == "mlflow"} == {"1", "2", "3"}
    assert all(f["autoSelect"] and f["priority"] > MLSERVER_MLFLOW_PRIORITY for f in formats)
    assert set(spec["protocolVersions"]) == {"v1", "v2", "grpc-v2"}
    (container,) = spec["containers"]
    assert container["name"] == "kserve-container"
    assert {"--model_name={{.Name}}", "--model_dir=/mnt/models", "--http_port=8080"} <= set(container["args"])


@pytest.mark.parametrize("name", EXAMPLES)
def test_every_example_fits_the_crd_and_uses_the_mlflow_format(name: str) -> None:
    isvc = example(name)
    assert validate(isvc) == []
    assert errors(isvc) == []
    assert isvc["spec"]["predictor"]["model"]["modelFormat"]["name"] == "mlflow"


@pytest.mark.parametrize(
    ("name", "models", "alias"),
    [
        ("storage-uri", (ModelSpec("pumps", "/mnt/models"),), None),
        ("registry-model", (ModelSpec("pumps", "models:/pumps@production"),), None),
        ("fleet", (), "production"),  # the registry names them
    ],
)
def test_the_runtime_args_and_each_examples_env_mean_what_the_example_says(
    name: str, models: tuple[ModelSpec, ...], alias: str | None
) -> None:
    """KServe's conventions parsed by the server's own settings: the storage initializer's directory, or the
    registry URI or alias the InferenceService's env names (which wins over the directory)."""
    isvc = example(name)
    env = {e["name"]: e["value"] for e in isvc["spec"]["predictor"]["model"].get("env", [])}
    settings = load_settings(runtime_args(isvc["metadata"]["name"]), env)
    assert settings.model_specs == models
    assert settings.registry_alias == alias
    assert settings.http_port == 8080


def test_the_image_serves_a_downloaded_model_directory_run_as_kserve_runs_it(tmp_path: Path) -> None:
    """What the storage-uri example does in a cluster: an MLflow model directory at --model_dir, the server started
    with the runtime's args (ports made free), answering v1 and v2 under the InferenceService's name."""
    model = model_zoo.zoo_builders()["forest-columns"]()
    model.save(tmp_path / "mnt-models")
    http_port, grpc_port = free_port(), free_port()
    args = [
        arg.replace("/mnt/models", str(tmp_path / "mnt-models"))
        .replace("--http_port=8080", f"--http_port={http_port}")
        .replace("--grpc_port=8081", f"--grpc_port={grpc_port}")
        for arg in runtime_args("pumps")
    ]
    command = [sys.executable, "-m", "predictor", *args, "--model_cache_dir", str(tmp_path / "cache")]
    server = PredictorProcess(
        command, tmp_path / "predictor.log", cwd=tmp_path, http_port=http_port, grpc_port=grpc_port, model_name="pumps"
    ).start()
    try:
        server.wait_ready()
        rows = model.rows.head(2).to_dict(orient="records")
        v1 = httpx.post(f"{server.http_url}/v1/models/pumps:predict", json={"instances": rows}, timeout=30)
        assert v1.status_code == 200, v1.text
        assert len(v1.json()["predictions"]) == 2 and v1.json()["model_name"] == "pumps"
        assert httpx.get(f"{server.http_url}/v2/models/pumps/ready", timeout=10).json()["ready"] is True
    finally:
        server.stop()
