"""Several models in one process: each answers under its own name over every door, a model that cannot load is
not ready and says why while the others serve, and the repository extension (index, load, unload) works with
tritonclient over HTTP and gRPC — an unloaded model answers the same 404 over every door until it is loaded.

Real parts: a SQLite MLflow registry with three registered models (two forests of different seeds and a
logistic regression), and one server started with ``--model NAME=URI`` for each plus one that does not exist.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from predictor.demo.training import register_demo_model
from tests.grpc_calls import infer_request, stub
from tests.servers import SEED_ROWS, PredictorProcess, scrape, start_predictor, wait_until

MODELS = ("pumps", "fans", "valves")
GHOST = "ghost"  # named on the command line, never registered


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, str]]:
    root = tmp_path_factory.mktemp("many")
    uri = f"sqlite:///{root}/mlflow.db"
    versions = {}
    for name, kind, seed in (("pumps", "forest", 1), ("fans", "logreg", 2), ("valves", "forest", 3)):
        registered = register_demo_model(
            uri, name=name, kind=kind, seed=seed, n_estimators=20, artifact_root=root / "artifacts", stage=None
        )
        versions[name] = registered.version
    return uri, versions


@pytest.fixture(scope="module")
def server(
    registry: tuple[str, dict[str, str]], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PredictorProcess]:
    uri, _ = registry
    models = [arg for name in (*MODELS, GHOST) for arg in ("--model", f"{name}=models:/{name}@production")]
    process = start_predictor(uri, tmp_path_factory.mktemp("many-logs"), *models, "--poll_interval_s", "0")
    try:
        yield process.wait_ready()
    finally:
        process.stop()


def v1(server: PredictorProcess, name: str, client: httpx.Client | None = None) -> httpx.Response:
    return (client or httpx).post(
        f"{server.http_url}/v1/models/{name}:predict", json={"instances": SEED_ROWS}, timeout=30
    )


def v2(server: PredictorProcess, name: str) -> httpx.Response:
    body = {"inputs": [{"name": "input-0", "shape": [len(SEED_ROWS), 10], "datatype": "FP64", "data": SEED_ROWS}]}
    return httpx.post(f"{server.http_url}/v2/models/{name}/infer", json=body, timeout=30)


def invocations(server: PredictorProcess, name: str | None) -> httpx.Response:
    headers = {"X-Model-Name": name} if name else {}
    return httpx.post(f"{server.http_url}/invocations", json={"instances": SEED_ROWS}, headers=headers, timeout=30)


def grpc_infer(server: PredictorProcess, name: str) -> tuple[grpc.StatusCode, Any]:
    with stub(server.grpc_target) as client:
        try:
            return grpc.StatusCode.OK, client.ModelInfer(infer_request(name, SEED_ROWS), timeout=30)
        except grpc.RpcError as exc:
            return exc.code(), exc.details()


# ------------------------------------------------------------------------------------ every model, every door


def test_each_model_answers_under_its_own_name_over_every_door(
    server: PredictorProcess, registry: tuple[str, dict[str, str]]
) -> None:
    _, versions = registry
    answers = {}
    for name in MODELS:
        by_v1 = v1(server, name).json()
        assert by_v1["model_name"] == name and by_v1["model_version"] == versions[name]
        by_v2 = v2(server, name).json()
        assert by_v2["model_name"] == name
        v2_predictions = next(o for o in by_v2["outputs"] if o["name"] == "predictions")["data"]
        assert v2_predictions == by_v1["predictions"], name
        assert invocations(server, name).json()["predictions"] == by_v1["predictions"], name
        code, response = grpc_infer(server, name)
        assert code == grpc.StatusCode.OK and response.model_name == name
        answers[name] = by_v1["probabilities"]
    distinct = {json.dumps(probabilities) for probabilities in answers.values()}
    assert len(distinct) == len(MODELS)  # three different models, not one thrice


def test_invocations_without_a_model_name_serves_the_first_model(server: PredictorProcess) -> None:
    assert invocations(server, None).json()["predictions"] == v1(server, "pumps").json()["predictions"]
    unknown = invocations(server, "nope")
    assert unknown.status_code == 404 and "'nope' is not served here" in unknown.json()["error"]


def test_each_model_has_its_own_metric_series(server: PredictorProcess) -> None:
    for name in MODELS:
        v1(server, name)
    samples = scrape(server.http_url)
    served = {
        dict(labels)["model_name"]
        for (metric, labels), value in samples.items()
        if metric == "model_predictions_total" and value > 0
    }
    assert served >= set(MODELS)


def test_loads_are_counted_per_model_and_outcome(server: PredictorProcess) -> None:
    samples = scrape(server.http_url)

    def loads(name: str, outcome: str) -> float:
        return samples.get(("model_loads_total", frozenset({"model_name": name, "outcome": outcome}.items())), 0.0)

    assert all(loads(name, "ok") >= 1 for name in MODELS)
    assert loads(GHOST, "failed") >= 1 and loads(GHOST, "ok") == 0
    assert all(
        samples.get(("model_load_seconds_count", frozenset({"model_name": name}.items())), 0) >= 1 for name in MODELS
    )


def test_a_model_that_cannot_load_is_not_ready_and_says_why_while_the_others_serve(server: PredictorProcess) -> None:
    assert httpx.get(f"{server.http_url}/ready", timeout=10).status_code == 200
    ghost = httpx.get(f"{server.http_url}/v2/models/{GHOST}/ready", timeout=10)
    assert ghost.status_code == 503 and "ghost" in ghost.json()["error"]
    assert v1(server, GHOST).status_code == 503
    for name in MODELS:
        assert httpx.get(f"{server.http_url}/v2/models/{name}/ready", timeout=10).json()["ready"] is True
    assert sorted(httpx.get(f"{server.http_url}/v2/models", timeout=10).json()["models"]) == sorted((*MODELS, GHOST))


def test_the_repository_index_lists_every_model_with_its_state(server: PredictorProcess) -> None:
    index = {entry["name"]: entry for entry in httpx.post(f"{server.http_url}/v2/repository/index", timeout=10).json()}
    assert set(index) == {*MODELS, GHOST}
    assert all(index[name]["state"] == "READY" and index[name]["version"] for name in MODELS)
    assert index[GHOST]["state"] == "UNAVAILABLE" and "ghost" in index[GHOST]["reason"]


# ------------------------------------------------------------------------------------ load and unload

TRITON_HTTP = """
import json, sys
import tritonclient.http as httpclient
client = httpclient.InferenceServerClient(sys.argv[1])
name = sys.argv[2]
before = client.get_model_repository_index()
client.unload_model(name)
unloaded = client.get_model_repository_index()
print(json.dumps({"before": before, "unloaded": unloaded}))
"""

TRITON_GRPC = """
import json, sys
import tritonclient.grpc as grpcclient
client = grpcclient.InferenceServerClient(sys.argv[1])
name, step = sys.argv[2], sys.argv[3]
if step == "unload":
    client.unload_model(name)
elif step == "load":
    client.load_model(name)
index = client.get_model_repository_index(as_json=True)
print(json.dumps({"index": index.get("models", []), "ready": client.is_model_ready(name)}))
"""


def run_client(script: str, *args: str) -> Any:
    done = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def unloaded_everywhere(server: PredictorProcess, name: str) -> None:
    """The same 404 over every door, saying how to load it again."""
    for answer in (v1(server, name), v2(server, name), invocations(server, name)):
        assert answer.status_code == 404, answer.text
        assert f"model '{name}' is unloaded" in answer.json()["error"]
    code, details = grpc_infer(server, name)
    assert code == grpc.StatusCode.NOT_FOUND and f"model '{name}' is unloaded" in details


def test_tritonclient_http_unloads_and_the_model_answers_404_on_every_door_until_loaded(
    server: PredictorProcess,
) -> None:
    seen = run_client(TRITON_HTTP, server.http_url.removeprefix("http://"), "fans")
    before = {entry["name"]: entry["state"] for entry in seen["before"]}
    after = {entry["name"]: entry for entry in seen["unloaded"]}
    assert before["fans"] == "READY"
    assert after["fans"]["state"] == "UNAVAILABLE" and "unloaded" in after["fans"]["reason"]
    unloaded_everywhere(server, "fans")
    assert v1(server, "pumps").status_code == 200  # the others are untouched
    loaded = httpx.post(f"{server.http_url}/v2/repository/models/fans/load", timeout=120)
    assert loaded.status_code == 200, loaded.text
    assert v1(server, "fans").status_code == 200


def test_tritonclient_grpc_unloads_and_loads(server: PredictorProcess) -> None:
    unloaded = run_client(TRITON_GRPC, server.grpc_target, "valves", "unload")
    assert unloaded["ready"] is False
    assert {entry["name"]: entry["state"] for entry in unloaded["index"]}["valves"] == "UNAVAILABLE"
    unloaded_everywhere(server, "valves")
    loaded = run_client(TRITON_GRPC, server.grpc_target, "valves", "load")
    assert loaded["ready"] is True
    assert {entry["name"]: entry["state"] for entry in loaded["index"]}["valves"] == "READY"
    wait_until(lambda: v1(server, "valves").status_code == 200, 30, 0.2, "valves answering again")


def test_unknown_models_are_404_for_the_repository_too(server: PredictorProcess) -> None:
    for verb in ("load", "unload"):
        answer = httpx.post(f"{server.http_url}/v2/repository/models/nope/{verb}", timeout=10)
        assert answer.status_code == 404 and "'nope' is not served here" in answer.json()["error"]


def test_loading_a_model_that_cannot_load_is_a_503_naming_why(server: PredictorProcess) -> None:
    answer = httpx.post(f"{server.http_url}/v2/repository/models/{GHOST}/load", timeout=120)
    assert answer.status_code == 503, answer.text
    assert "model ghost: model load failed: cannot resolve models:/ghost@production" in answer.json()["error"]
    assert v1(server, "pumps").status_code == 200


def test_a_bad_model_entry_stops_the_server_with_a_clear_error(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "predictor", "--model", "pumps", "--http_port", "0"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode != 0
    assert "--model 'pumps' is not NAME=URI" in done.stderr
