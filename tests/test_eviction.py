"""More models than memory: with ``--max_loaded_models 2`` and three models, the least recently used is unloaded
to make room, a request for a model that is not loaded loads it (from the local model cache) and waits for it,
concurrent requests for it share one load, and no request fails because its model was being evicted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from predictor.demo.training import register_demo_model
from tests.servers import SEED_ROWS, PredictorProcess, scrape, start_predictor, total

MODELS = ("alpha", "beta", "gamma")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PredictorProcess]:
    root = tmp_path_factory.mktemp("eviction")
    uri = f"sqlite:///{root}/mlflow.db"
    for seed, name in enumerate(MODELS):
        register_demo_model(uri, name=name, seed=seed, n_estimators=10, artifact_root=root / "artifacts", stage=None)
    models = [arg for name in MODELS for arg in ("--model", f"{name}=models:/{name}@production")]
    process = start_predictor(uri, root, *models, "--max_loaded_models", "2", "--poll_interval_s", "0")
    try:
        yield process.wait_ready()
    finally:
        process.stop()


def states(server: PredictorProcess) -> dict[str, str]:
    index = httpx.post(f"{server.http_url}/v2/repository/index", timeout=10).json()
    return {entry["name"]: entry["state"] for entry in index}


def predict(server: PredictorProcess, name: str, client: httpx.Client | None = None) -> int:
    url = f"{server.http_url}/v1/models/{name}:predict"
    return (client or httpx).post(url, json={"instances": SEED_ROWS}, timeout=120).status_code


def loads(server: PredictorProcess, name: str) -> float:
    key = ("model_loads_total", frozenset({"model_name": name, "outcome": "ok"}.items()))
    return scrape(server.http_url).get(key, 0.0)


def test_at_most_the_limit_is_loaded_and_the_index_says_which(server: PredictorProcess) -> None:
    now = states(server)
    assert sorted(now.values()) == ["READY", "READY", "UNAVAILABLE"], now
    evicted = next(name for name, state in now.items() if state != "READY")
    reason = {e["name"]: e["reason"] for e in httpx.post(f"{server.http_url}/v2/repository/index").json()}[evicted]
    assert "evicted" in reason and "next request loads it" in reason


def test_a_request_for_a_model_not_loaded_loads_it_and_evicts_the_least_recently_used(server: PredictorProcess) -> None:
    cold = next(name for name, state in states(server).items() if state != "READY")
    warm = [name for name in MODELS if name != cold]
    assert predict(server, warm[1]) == 200  # warm[0] is now the least recently used
    assert predict(server, cold) == 200
    now = states(server)
    assert now[cold] == "READY" and now[warm[1]] == "READY" and now[warm[0]] == "UNAVAILABLE", now


def test_concurrent_requests_for_a_cold_model_share_one_load(server: PredictorProcess) -> None:
    cold = next(name for name, state in states(server).items() if state != "READY")
    before = loads(server, cold)
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda _: predict(server, cold), range(8)))
    assert statuses == [200] * 8
    assert loads(server, cold) == before + 1


def test_no_request_fails_while_models_are_evicted_and_loaded_in_turn(server: PredictorProcess) -> None:
    evictions_before = total(scrape(server.http_url), "model_evictions_total")
    statuses: Counter[int] = Counter()

    def client(offset: int) -> None:
        with httpx.Client(timeout=120) as http:
            for i in range(12):
                statuses[predict(server, MODELS[(i + offset) % len(MODELS)], http)] += 1

    with ThreadPoolExecutor(3) as pool:
        list(pool.map(client, range(3)))
    assert set(statuses) == {200}, statuses
    evictions = total(scrape(server.http_url), "model_evictions_total")
    assert evictions > evictions_before
    assert sorted(states(server).values()).count("READY") == 2
