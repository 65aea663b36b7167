"""Hot swap: the alias moves in the registry while clients hammer the server — not one request fails."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from predictor.demo.training import register_challenger, register_demo_model
from tests.load import run_load
from tests.servers import MODEL_NAME, SEED_ROWS, PredictorProcess, wait_until

Start = Callable[..., PredictorProcess]


@pytest.fixture()
def own_registry(tmp_path: Path) -> str:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    register_demo_model(uri, artifact_root=tmp_path / "artifacts")
    return uri


def version_of(base_url: str) -> str | None:
    return httpx.get(f"{base_url}/v1/models/{MODEL_NAME}").json()["version"]


def test_alias_move_swaps_under_load_with_zero_failures_and_rollback_flips_back_and_forward_again(
    own_registry: str, tmp_path: Path, predictors: Start
) -> None:
    server = predictors(own_registry, "--poll_interval_s", "0.5")
    server.wait_ready()

    async def scenario():
        stop = asyncio.Event()
        load = asyncio.ensure_future(run_load(server.http_url, stop, concurrency=16, max_seconds=60))
        await asyncio.sleep(1.5)
        # a different model (logistic regression) on the same features becomes @production: version 2
        await asyncio.to_thread(
            register_demo_model, own_registry, kind="logreg", artifact_root=tmp_path / "artifacts", force=True
        )
        await asyncio.to_thread(wait_until, lambda: version_of(server.http_url) == "2", 30, 0.2, "swap to 2")
        await asyncio.sleep(1.5)
        stop.set()
        return await load

    result = asyncio.run(scenario())
    print(f"hot swap under load: {result.ok} requests ok, {result.failed} failed, versions {dict(result.versions)}")
    assert result.failed == 0 and result.refused == 0, (result.statuses, result.errors[:5])
    assert result.versions["1"] > 0 and result.versions["2"] > 0, result.versions
    metrics = httpx.get(server.http_url + "/metrics").text
    assert f'model_loaded{{model_name="{MODEL_NAME}",model_version="1"}} 0.0' in metrics
    assert f'model_loaded{{model_name="{MODEL_NAME}",model_version="2"}} 1.0' in metrics

    # both versions stay held: v2 versioned routes serve each of them
    metadata = httpx.get(f"{server.http_url}/v2/models/{MODEL_NAME}").json()
    assert sorted(metadata["versions"]) == ["1", "2"]
    infer = {"inputs": [{"name": "x", "shape": [2, 10], "datatype": "FP64", "data": SEED_ROWS}]}
    for version in ("1", "2"):
        answer = httpx.post(f"{server.http_url}/v2/models/{MODEL_NAME}/versions/{version}/infer", json=infer)
        assert answer.status_code == 200 and answer.json()["model_version"] == version
    assert httpx.post(f"{server.http_url}/v2/models/{MODEL_NAME}/versions/7/infer", json=infer).status_code == 404

    # rollback is a pointer flip (no registry round trip), and flips forward again
    status = httpx.post(f"{server.http_url}/admin/rollback").json()
    assert status["serving"] == "1" and status["previous"] == "2"
    assert version_of(server.http_url) == "1"
    metrics = httpx.get(server.http_url + "/metrics").text
    assert f'model_loaded{{model_name="{MODEL_NAME}",model_version="1"}} 1.0' in metrics
    assert f'model_loaded{{model_name="{MODEL_NAME}",model_version="2"}} 0.0' in metrics
    # the registry still names 2, but has not moved: a check (as every poll makes) keeps the rollback
    status = httpx.post(f"{server.http_url}/admin/reload").json()
    assert status["serving"] == "1" and status["last_registry_error"] is None
    status = httpx.post(f"{server.http_url}/admin/rollback").json()
    assert status["serving"] == "2" and status["previous"] == "1"
    assert version_of(server.http_url) == "2"
    answer = httpx.post(f"{server.http_url}/v1/models/{MODEL_NAME}:predict", json={"instances": SEED_ROWS})
    assert answer.json()["model_version"] == "2"


def test_an_incompatible_new_version_is_refused_and_the_old_one_keeps_serving(
    own_registry: str, predictors: Start
) -> None:
    import mlflow
    import numpy as np
    import pandas as pd
    from mlflow import MlflowClient
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    server = predictors(own_registry, "--poll_interval_s", "0")
    server.wait_ready()
    mlflow.set_tracking_uri(own_registry)
    frame = pd.DataFrame(np.random.default_rng(0).uniform(size=(20, 3)), columns=["a", "b", "c"])
    estimator = LogisticRegression().fit(frame.to_numpy(), np.arange(20) % 2)
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            estimator,
            name="model",
            signature=infer_signature(frame),
            registered_model_name=MODEL_NAME,
            serialization_format="cloudpickle",
            pip_requirements=["mlflow"],  # listed, not inferred (~20 s)
        )
    MlflowClient().set_registered_model_alias(MODEL_NAME, "production", str(info.registered_model_version))
    status = httpx.post(f"{server.http_url}/admin/reload").json()
    assert status["serving"] == "1"
    assert "expects columns ['a (double)', 'b (double)', 'c (double)']" in status["last_registry_error"]
    assert (
        httpx.post(f"{server.http_url}/v1/models/{MODEL_NAME}:predict", json={"instances": SEED_ROWS}).status_code
        == 200
    )


def test_a_restart_serves_the_cached_version_then_follows_the_registry(
    own_registry: str, tmp_path: Path, predictors: Start
) -> None:
    cache = str(tmp_path / "model-cache")
    first = predictors(own_registry, "--model_cache_dir", cache)
    first.wait_ready()
    first.stop()
    assert "local model cache" not in first.log(100_000)
    # while the server is down, the alias moves to a new version
    register_demo_model(own_registry, kind="logreg", artifact_root=tmp_path / "artifacts", force=True)
    second = predictors(own_registry, "--model_cache_dir", cache, "--poll_interval_s", "0")
    second.wait_ready()
    assert "serving version 1 from the local model cache" in second.log(100_000)
    wait_until(lambda: version_of(second.http_url) == "2", 60, 0.2, "revalidation against the registry")
    assert (
        httpx.post(f"{second.http_url}/v1/models/{MODEL_NAME}:predict", json={"instances": SEED_ROWS}).json()[
            "model_version"
        ]
        == "2"
    )


def test_a_restart_from_the_cache_with_a_challenger_still_follows_the_registry(
    own_registry: str, tmp_path: Path, predictors: Start
) -> None:
    """The restart fault: the challenger's thread and the cached start's registry check imported MLflow at once,
    deadlocked in its import locks and left it half-imported: the server stayed deaf to the registry for good."""
    challenger = register_challenger(own_registry, artifact_root=tmp_path / "artifacts")
    cache = str(tmp_path / "model-cache")
    first = predictors(own_registry, "--model_cache_dir", cache)
    first.wait_ready()
    first.stop()
    shadow = ("--shadow_model_uri", f"models:/{MODEL_NAME}@challenger")
    second = predictors(own_registry, "--model_cache_dir", cache, "--poll_interval_s", "0.5", *shadow)
    second.wait_ready()
    assert "from the local model cache" in second.log(100_000)

    def shadow_version() -> str | None:
        return httpx.get(f"{second.http_url}/admin/shadow", timeout=10).json()["shadow_version"]

    wait_until(lambda: shadow_version() == challenger.version, 60, 0.2, "the challenger loaded")
    moved = register_demo_model(own_registry, kind="logreg", artifact_root=tmp_path / "artifacts", force=True)
    wait_until(lambda: version_of(second.http_url) == moved.version, 60, 0.2, "the alias move followed")
    log = second.log(1_000_000)
    assert "partially initialized" not in log and "deadlock" not in log, log[-3000:]


@dataclass
class Flips:
    """Versions served in turn, and which answers each flip constrains.

    A request sent after flip ``k`` answered and answered before flip ``k + 1`` was sent can only have been
    served by version ``k``; one that overlaps a flip may see either side. Everything runs on one event loop,
    so the two counters need no lock.
    """

    versions: list[str]
    sent: int = 0  # flips sent (the rollback request is on its way)
    done: int = 0  # flips answered (the server has flipped)
    strict: Counter[int] = field(default_factory=Counter)  # answers within one phase, by phase
    wrong: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


async def _client(url: str, flips: Flips, stop: asyncio.Event) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        while not stop.is_set():
            phase = flips.done
            try:
                response = await http.post(url, json={"instances": SEED_ROWS})
            except httpx.HTTPError as exc:
                flips.failures.append(f"{type(exc).__name__}: {exc}")
                continue
            if response.status_code != 200:
                flips.failures.append(f"{response.status_code}: {response.text[:200]}")
                continue
            version = response.json()["model_version"]
            allowed = flips.versions[phase : flips.sent + 1]
            if version not in allowed:
                flips.wrong.append(f"phase {phase}..{flips.sent}: {version} not in {allowed}")
            elif phase == flips.sent:
                flips.strict[phase] += 1


def test_rollback_and_forward_again_under_load_with_zero_failures_and_answers_following_each_flip(
    own_registry: str, tmp_path: Path, predictors: Start
) -> None:
    server = predictors(own_registry, "--poll_interval_s", "0")
    server.wait_ready()
    register_demo_model(own_registry, kind="logreg", artifact_root=tmp_path / "artifacts", force=True)
    status = httpx.post(f"{server.http_url}/admin/reload").json()
    assert status["serving"] == "2" and status["previous"] == "1", status
    flips = Flips(["2", "1", "2", "1", "2"])  # back, forward again, back, forward again
    url = f"{server.http_url}/v1/models/{MODEL_NAME}:predict"

    def answered_in_phase(phase: int) -> bool:
        return flips.strict[phase] >= 20 or bool(flips.failures or flips.wrong)

    async def scenario() -> None:
        stop = asyncio.Event()
        clients = [asyncio.ensure_future(_client(url, flips, stop)) for _ in range(8)]
        try:
            async with httpx.AsyncClient(timeout=30) as admin:
                for phase, version in enumerate(flips.versions):
                    if phase:
                        flips.sent += 1
                        status = (await admin.post(f"{server.http_url}/admin/rollback")).json()
                        flips.done += 1
                        assert status["serving"] == version and status["previous"] == flips.versions[phase - 1]
                    await asyncio.to_thread(
                        wait_until, lambda p=phase: answered_in_phase(p), 60, 0.05, f"answers while {version} serves"
                    )
        finally:
            stop.set()
            await asyncio.gather(*clients)

    asyncio.run(scenario())
    assert not flips.failures, flips.failures[:5]
    assert not flips.wrong, flips.wrong[:5]
    assert all(flips.strict[phase] >= 20 for phase in range(len(flips.versions))), flips.strict
    assert httpx.get(f"{server.http_url}/admin/versions").json()["serving"] == "2"


def test_latest_serves_the_newest_of_two_versions_and_follows_a_third(
    own_registry: str, tmp_path: Path, predictors: Start
) -> None:
    """``latest`` is the highest version, whatever the alias and the stage say (both stay on version 1)."""
    newer = {"artifact_root": tmp_path / "artifacts", "force": True, "alias": "candidate", "stage": None}
    assert register_demo_model(own_registry, kind="logreg", **newer).version == "2"
    server = predictors(own_registry, "--model_uri", f"models:/{MODEL_NAME}/latest", "--poll_interval_s", "0.5")
    server.wait_ready()
    url = f"{server.http_url}/v1/models/{MODEL_NAME}:predict"
    assert httpx.post(url, json={"instances": SEED_ROWS}).json()["model_version"] == "2"
    assert register_demo_model(own_registry, n_estimators=10, seed=7, **newer).version == "3"
    wait_until(lambda: version_of(server.http_url) == "3", 60, 0.2, "the poll to follow latest to version 3")
    assert httpx.post(url, json={"instances": SEED_ROWS}).json()["model_version"] == "3"
    status = httpx.get(f"{server.http_url}/admin/versions").json()
    assert status["serving"] == "3" and status["previous"] == "2", status
