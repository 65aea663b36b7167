"""The registry is the deployment: with ``--registry_alias production --registry_filter "name LIKE 'pm_%'"`` the
server serves every matching registered model that holds the alias, under its registered name, against a real
`mlflow server`. A model that gains the alias is served within a few polls, one that loses it is unloaded, and
the models that did not change answer every request meanwhile.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from predictor.demo.training import register_demo_model
from tests.servers import (
    SEED_ROWS,
    PredictorProcess,
    free_port,
    mlflow_server,
    scrape,
    start_predictor,
    total,
    wait_until,
)

ALIAS = "production"


def register(registry_dir: Path, name: str, seed: int, alias: str = ALIAS) -> str:
    registered = register_demo_model(
        f"sqlite:///{registry_dir}/mlflow.db",
        name=name,
        seed=seed,
        n_estimators=10,
        artifact_root=registry_dir / "artifacts",
        alias=alias,
        stage=None,
    )
    return registered.version


@pytest.fixture(scope="module")
def registry_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("discovery")
    for seed, name in enumerate(("pm_pumps", "pm_fans", "other_line")):
        register(root, name, seed)
    return root


@pytest.fixture(scope="module")
def server(registry_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PredictorProcess, str]]:
    logs = tmp_path_factory.mktemp("discovery-logs")
    port = free_port()
    registry = mlflow_server(registry_dir, port, logs).start()
    tracking = f"http://127.0.0.1:{port}"
    predictor = None
    try:
        registry.wait_http_ok(f"{tracking}/health", 120, 0.2, "mlflow server")
        predictor = start_predictor(
            tracking,
            logs,
            "--registry_alias",
            ALIAS,
            "--registry_filter",
            "name LIKE 'pm_%'",
            "--poll_interval_s",
            "1",
            *("--shadow_alias", "challenger", "--shadow_busy_share", "0"),
        )
        wait_until(lambda: served(predictor) >= {"pm_pumps", "pm_fans"}, 120, 0.5, "both pm_ models served")
        yield predictor.wait_ready(), tracking
    finally:
        if predictor is not None:
            predictor.stop()
        registry.stop()


def index(predictor: PredictorProcess) -> dict[str, dict[str, str]]:
    """The repository index by name ({} while the server is not up yet)."""
    try:
        answer = httpx.post(f"{predictor.http_url}/v2/repository/index", timeout=10)
    except httpx.TransportError:
        return {}
    return {entry["name"]: entry for entry in answer.json()} if answer.status_code == 200 else {}


def served(predictor: PredictorProcess) -> set[str]:
    return {name for name, entry in index(predictor).items() if entry["state"] == "READY"}


def predict(predictor: PredictorProcess, name: str, client: httpx.Client | None = None) -> int:
    url = f"{predictor.http_url}/v1/models/{name}:predict"
    return (client or httpx).post(url, json={"instances": SEED_ROWS}, timeout=30).status_code


def test_every_matching_model_with_the_alias_is_served_under_its_registered_name(
    server: tuple[PredictorProcess, str],
) -> None:
    predictor, _ = server
    assert {"pm_pumps", "pm_fans"} <= set(index(predictor))
    assert "other_line" not in index(predictor)  # excluded by the filter
    assert predict(predictor, "pm_pumps") == predict(predictor, "pm_fans") == 200
    assert predict(predictor, "other_line") == 404


def test_models_come_and_go_with_the_alias_while_the_others_answer_every_request(
    server: tuple[PredictorProcess, str], registry_dir: Path
) -> None:
    predictor, tracking = server
    statuses: Counter[int] = Counter()
    stop = threading.Event()

    def steady_load() -> None:
        with httpx.Client(timeout=30) as client:
            while not stop.is_set():
                statuses[predict(predictor, "pm_pumps", client)] += 1

    worker = threading.Thread(target=steady_load, daemon=True)
    worker.start()
    try:
        register(registry_dir, "pm_valves", seed=7)  # gains the alias
        wait_until(lambda: predict(predictor, "pm_valves") == 200, 60, 0.5, "pm_valves served")
        from mlflow import MlflowClient

        MlflowClient(tracking_uri=tracking, registry_uri=tracking).delete_registered_model_alias("pm_fans", ALIAS)
        wait_until(lambda: "pm_fans" not in index(predictor), 60, 0.5, "pm_fans unloaded")
        assert predict(predictor, "pm_fans") == 404
    finally:
        stop.set()
        worker.join(timeout=60)
    assert statuses[200] > 0 and set(statuses) == {200}, statuses


def test_with_shadow_alias_a_model_gaining_that_alias_is_shadow_scored_by_it_and_losing_it_stops_that(
    server: tuple[PredictorProcess, str], registry_dir: Path
) -> None:
    """``--shadow_alias challenger``: each served model is shadowed by its own @challenger, when it has one."""
    predictor, tracking = server

    def shadows() -> dict[str, dict[str, object]]:
        answer = httpx.get(f"{predictor.http_url}/admin/shadow", timeout=10).json()
        assert answer["shadow_alias"] == "challenger"
        return answer["models"]

    wait_until(lambda: shadows().get("pm_pumps", {}).get("absent") is not None, 60, 0.5, "no challenger yet")
    version = register(registry_dir, "pm_pumps", seed=11, alias="challenger")
    wait_until(lambda: shadows()["pm_pumps"]["shadow_version"] == version, 90, 0.5, "the challenger loaded")
    assert shadows()["pm_pumps"]["last_error"] is None and shadows()["pm_pumps"]["absent"] is None

    def scored() -> float:
        predict(predictor, "pm_pumps")
        return total(scrape(predictor.http_url), "model_shadow_predictions_total", model_name="pm_pumps")

    wait_until(lambda: scored() > 0, 60, 0.5, "pm_pumps shadow-scored")
    others = {name: status for name, status in shadows().items() if name != "pm_pumps"}
    assert others, "no other served model to compare with"
    for status in others.values():  # no @challenger: quietly none
        assert status["shadow_version"] is None and status["last_error"] is None and status["absent"] is not None

    from mlflow import MlflowClient

    MlflowClient(tracking_uri=tracking, registry_uri=tracking).delete_registered_model_alias("pm_pumps", "challenger")
    wait_until(lambda: shadows()["pm_pumps"]["shadow_version"] is None, 60, 0.5, "the challenger retired")
    assert shadows()["pm_pumps"]["absent"] is not None
    assert predict(predictor, "pm_pumps") == 200
