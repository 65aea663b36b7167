"""Predict by equipment id: the real server looks features up in a real Feast repo (SQLite, then Redis)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import pytest

from predictor.demo.columns import FEATURE_NAMES
from predictor.demo.feast_setup import prepare_feature_store
from tests.feast_helpers import (
    NULL_FEATURE,
    NULL_ID,
    REPO_SOURCE,
    STALE_ID,
    RedisProcess,
    demo_telemetry,
    start_redis_process,
    wait_for_redis,
)
from tests.servers import MODEL_NAME, PredictorProcess, free_port, start_predictor, wait_until

V1 = f"/v1/models/{MODEL_NAME}:predict"
V2 = f"/v2/models/{MODEL_NAME}/infer"
IDS = ["pump-0004", "compressor-0003"]


@pytest.fixture(scope="module")
def telemetry():
    return demo_telemetry(20)


def raw_rows(telemetry, ids: list[str]) -> list[list[float]]:
    by_id = telemetry.set_index("equipment_id")
    return by_id.loc[ids, list(FEATURE_NAMES)].to_numpy(dtype=float).tolist()


@pytest.fixture(scope="module")
def sqlite_repo(tmp_path_factory: pytest.TempPathFactory, telemetry) -> Path:
    return prepare_feature_store(
        REPO_SOURCE, tmp_path_factory.mktemp("feast"), telemetry=telemetry, progress=lambda line: None
    )


@pytest.fixture(scope="module")
def server(tracking_uri: str, sqlite_repo: Path, tmp_path_factory: pytest.TempPathFactory):
    process = start_predictor(tracking_uri, tmp_path_factory.mktemp("logs"), "--feature_store", str(sqlite_repo))
    try:
        yield process.wait_ready()
    finally:
        process.stop()


def test_predict_by_id_equals_predict_on_the_stored_features(server: PredictorProcess, telemetry) -> None:
    by_id = httpx.post(server.http_url + V1, json={"instances": [{"equipment_id": i} for i in IDS]}).json()
    raw = httpx.post(server.http_url + V1, json={"instances": raw_rows(telemetry, IDS)}).json()
    assert by_id == raw


def test_v2_ids_as_a_bytes_tensor(server: PredictorProcess, telemetry) -> None:
    request = {"inputs": [{"name": "equipment_id", "shape": [2], "datatype": "BYTES", "data": IDS}]}
    body = httpx.post(server.http_url + V2, json=request).json()
    raw = httpx.post(server.http_url + V1, json={"instances": raw_rows(telemetry, IDS)}).json()
    outputs = {o["name"]: o["data"] for o in body["outputs"]}
    assert outputs["predictions"] == raw["predictions"]
    np.testing.assert_allclose(np.reshape(outputs["probabilities"], (2, 2)), raw["probabilities"])


def test_caller_features_override_stored_ones(server: PredictorProcess, telemetry) -> None:
    rows = raw_rows(telemetry, IDS[:1])
    rows[0][0] = 99.0  # temperature_c
    mixed = httpx.post(server.http_url + V1, json={"instances": [{"equipment_id": IDS[0], "temperature_c": 99.0}]})
    raw = httpx.post(server.http_url + V1, json={"instances": rows})
    assert mixed.json() == raw.json()
    # an overridden feature that is null in the store is fine: it is never fetched
    override_null = {"equipment_id": NULL_ID, NULL_FEATURE: 0.3}
    assert httpx.post(server.http_url + V1, json={"instances": [override_null]}).status_code == 200


def test_a_restart_reads_the_store_without_importing_feast(
    tracking_uri: str, sqlite_repo: Path, tmp_path: Path, telemetry
) -> None:
    """The first start imports Feast and records the view in the model cache; a restart with the repo unchanged
    reads the SQLite store directly (its imports, as Python reports them, hold no Feast) and answers the same."""
    flags = ("--feature_store", str(sqlite_repo), "--model_cache_dir", str(tmp_path / "cache"))
    importtime = {"PYTHONPROFILEIMPORTTIME": "1"}

    first = start_predictor(tracking_uri, tmp_path / "first", *flags, env=importtime)
    try:
        first.wait_ready()
        by_id_first = httpx.post(first.http_url + V1, json={"instances": [{"equipment_id": i} for i in IDS]}).json()
    finally:
        first.stop()
    assert "as an earlier start recorded it" not in first.log(10_000_000)
    assert "feast" in feast_imports(first.log(10_000_000))  # what the check below would see, had Feast come in
    second = start_predictor(tracking_uri, tmp_path / "second", *flags, env=importtime)
    try:
        second.wait_ready()
        by_id = httpx.post(second.http_url + V1, json={"instances": [{"equipment_id": i} for i in IDS]}).json()
        raw = httpx.post(second.http_url + V1, json={"instances": raw_rows(telemetry, IDS)}).json()
        unknown = httpx.post(second.http_url + V1, json={"instances": [{"equipment_id": "pump-9999"}]})
    finally:
        second.stop()
    log = second.log(10_000_000)
    assert f"reading {sqlite_repo / 'data' / 'online_store.db'} directly (as an earlier start recorded it)" in log
    assert "import time:" in log and not feast_imports(log)
    assert by_id == raw == by_id_first
    assert unknown.status_code == 404 and "pump-9999" in unknown.text


def test_unknown_ids_are_404_naming_each(server: PredictorProcess) -> None:
    response = httpx.post(
        server.http_url + V1,
        json={"instances": [{"equipment_id": "pump-9998"}, {"equipment_id": IDS[0]}, {"equipment_id": "fan-9999"}]},
    )
    assert response.status_code == 404
    assert "pump-9998" in response.json()["error"] and "fan-9999" in response.json()["error"]


def test_a_fleet_of_ids_is_scored_in_chunks_and_every_unknown_id_is_named(server: PredictorProcess, telemetry) -> None:
    """5,000 ids in one request (the store's healthy machines, over and over): looked up in chunks, the answer equal
    to the raw rows' row for row; an unknown id in the first chunk and one in the last are both named."""
    healthy = [i for i in telemetry["equipment_id"] if i not in (STALE_ID, NULL_ID)]
    fleet = [healthy[k % len(healthy)] for k in range(5000)]
    by_id = httpx.post(server.http_url + V1, json={"instances": [{"equipment_id": i} for i in fleet]}, timeout=60)
    assert by_id.status_code == 200, by_id.text
    raw = httpx.post(server.http_url + V1, json={"instances": raw_rows(telemetry, fleet)}, timeout=60).json()
    assert by_id.json()["predictions"] == raw["predictions"]
    np.testing.assert_allclose(by_id.json()["probabilities"], raw["probabilities"])
    fleet[3], fleet[4990] = "pump-9997", "fan-9996"
    unknown = httpx.post(server.http_url + V1, json={"instances": [{"equipment_id": i} for i in fleet]}, timeout=60)
    assert unknown.status_code == 404
    assert "pump-9997" in unknown.json()["error"] and "fan-9996" in unknown.json()["error"]


def test_stale_and_null_features_are_rejected_by_default(server: PredictorProcess) -> None:
    stale = httpx.post(server.http_url + V1, json={"instances": [{"equipment_id": STALE_ID}]})
    assert stale.status_code == 400 and STALE_ID in stale.json()["error"]
    null = httpx.post(server.http_url + V1, json={"instances": [{"equipment_id": NULL_ID}]})
    assert null.status_code == 400 and NULL_FEATURE in null.json()["error"]
    metrics = httpx.get(server.http_url + "/metrics").text
    assert f'feature_missing_total{{feature="{NULL_FEATURE}",reason="null"}}' in metrics
    assert 'feature_lookup_latency_seconds_count{store="sqlite"}' in metrics


def test_fill_policy_fills_from_training_defaults_and_says_so(
    tracking_uri: str, sqlite_repo: Path, tmp_path: Path
) -> None:
    sink = tmp_path / "predictions.jsonl"
    process = start_predictor(
        tracking_uri,
        tmp_path,
        "--feature_store",
        str(sqlite_repo),
        "--missing_feature_policy",
        "fill",
        "--prediction_log",
        str(sink),
    )
    try:
        process.wait_ready()
        response = httpx.post(
            process.http_url + V1,
            json={"instances": [{"equipment_id": IDS[0]}, {"equipment_id": NULL_ID}]},
            headers={"x-request-id": "fill-1"},
        )
        assert response.status_code == 200, response.text
        assert response.json()["filled_features"] == {"1": [NULL_FEATURE]}
        # the prediction log says which entity each row was looked up for, and what was filled
        wait_until(lambda: sink.exists() and len(sink.read_text().splitlines()) == 2, 20, 0.1, "two log lines")
        lines = [json.loads(line) for line in sink.read_text().splitlines()]
        assert [(line["request_id"], line["entity_id"]) for line in lines] == [("fill-1", IDS[0]), ("fill-1", NULL_ID)]
        assert "filled" not in lines[0] and lines[1]["filled"] == [NULL_FEATURE]
        assert lines[1]["features"][NULL_FEATURE] is not None  # the value the model saw: the filled one
    finally:
        process.stop()


def feast_imports(log: str) -> list[str]:
    """The Feast modules a server's log shows imported, with ``PYTHONPROFILEIMPORTTIME`` set ("import time: self |
    cumulative |   feast.x", indented by depth)."""
    names = [line.rsplit("|", 1)[-1].strip() for line in log.splitlines() if line.startswith("import time:")]
    return [name for name in names if name == "feast" or name.startswith("feast.")]


def start_redis(port: int) -> RedisProcess:
    redis = RedisProcess(start_redis_process(port), port)
    try:
        wait_for_redis(port, 10, redis.process)
    except BaseException:
        redis.stop()
        raise
    return redis


def test_redis_online_store_outage_turns_readiness_off_not_the_process(
    tracking_uri: str, tmp_path: Path, telemetry
) -> None:
    """A restart with the repo unchanged reads Redis without importing Feast (recorded by the first start) and
    answers the same; then an outage of Redis: 503 and readiness off, the process alive, back when Redis is."""
    port = free_port()
    redis = start_redis(port)
    process = None
    flags = ("--model_cache_dir", str(tmp_path / "cache"))
    try:
        online = {"type": "redis", "connection_string": redis.connection_string}
        repo = prepare_feature_store(
            REPO_SOURCE, tmp_path / "repo", telemetry=telemetry, online_store=online, progress=lambda line: None
        )
        process = start_predictor(tracking_uri, tmp_path, "--feature_store", str(repo), *flags).wait_ready()
        by_id = {"instances": [{"equipment_id": i} for i in IDS]}
        expected = httpx.post(process.http_url + V1, json={"instances": raw_rows(telemetry, IDS)}).json()
        assert httpx.post(process.http_url + V1, json=by_id).json() == expected
        process.stop()

        importtime = {"PYTHONPROFILEIMPORTTIME": "1"}
        process = start_predictor(
            tracking_uri, tmp_path / "again", "--feature_store", str(repo), *flags, env=importtime
        )
        process.wait_ready()
        assert httpx.post(process.http_url + V1, json=by_id).json() == expected
        unknown = httpx.post(process.http_url + V1, json={"instances": [{"equipment_id": "pump-9999"}]})
        assert unknown.status_code == 404 and "pump-9999" in unknown.text
        log = process.log(10_000_000)
        assert "reading its Redis store directly (as an earlier start recorded it)" in log
        assert "import time:" in log and not feast_imports(log)

        redis.stop()
        outage = httpx.post(process.http_url + V1, json=by_id, timeout=10)
        assert outage.status_code == 503 and "unreachable" in outage.json()["error"]
        wait_until(lambda: httpx.get(process.http_url + "/ready").status_code == 503, 15, 0.2, "readiness off")
        assert httpx.get(process.http_url + "/health").status_code == 200 and process.alive()
        # requests that carry their features do not need the store
        assert httpx.post(process.http_url + V1, json={"instances": raw_rows(telemetry, IDS)}).json() == expected

        redis = start_redis(port)  # back, but empty (no persistence): materialize again
        prepare_feature_store(
            REPO_SOURCE, tmp_path / "repo", telemetry=telemetry, online_store=online, progress=lambda line: None
        )
        wait_until(lambda: httpx.get(process.http_url + "/ready").status_code == 200, 20, 0.2, "readiness back")
        assert httpx.post(process.http_url + V1, json=by_id).json() == expected
    finally:
        if process is not None:
            process.stop()
        redis.stop()
