"""Online features by equipment id from a real Feast repo in tmp_path: SQLite, then a real redis-server."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from prometheus_client import CollectorRegistry

from predictor.demo.columns import FEATURE_NAMES
from predictor.demo.feast_setup import prepare_feature_store
from predictor.errors import EntityNotFound, FeatureStoreUnavailable, StaleFeatures
from predictor.features import FeastFeatureSource, FetchedFeatures, Policy
from predictor.metrics import Metrics
from tests.feast_helpers import (
    NULL_FEATURE,
    NULL_ID,
    REPO_SOURCE,
    STALE_ID,
    RedisProcess,
    demo_telemetry,
    redis_server,
)

MEANS = {name: 1000.0 + i for i, name in enumerate(FEATURE_NAMES)}  # recognisable fill values


@pytest.fixture(scope="module")
def telemetry() -> pd.DataFrame:
    return demo_telemetry()


@pytest.fixture(scope="module")
def sqlite_repo(tmp_path_factory: pytest.TempPathFactory, telemetry: pd.DataFrame) -> Path:
    return prepare_feature_store(REPO_SOURCE, tmp_path_factory.mktemp("sqlite") / "repo", telemetry, progress=_quiet)


def _quiet(message: str) -> None:
    pass


def _row(telemetry: pd.DataFrame, entity_id: str, names: tuple[str, ...] | list[str] = FEATURE_NAMES) -> np.ndarray:
    return np.asarray(telemetry.set_index("equipment_id").loc[entity_id, list(names)], dtype=np.float64)


class Lookup:
    """A source on a fresh metrics registry, used synchronously the way a test reads best."""

    def __init__(
        self, repo: Path, policy: Policy = "reject", fill_values: dict[str, float] | None = None, cache_s: float = 0
    ) -> None:
        self.registry = CollectorRegistry()
        self.source = FeastFeatureSource(repo, Metrics.create(self.registry), policy, fill_values, cache_s=cache_s)

    def fetch(self, *ids: str, names: tuple[str, ...] | list[str] = FEATURE_NAMES) -> FetchedFeatures:
        return asyncio.run(self.source.fetch(list(ids), list(names)))

    def check(self) -> None:
        asyncio.run(self.source.check())

    def metric(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0

    def close(self) -> None:
        self.source.close()


@pytest.fixture
def lookup(sqlite_repo: Path) -> Iterator[Lookup]:
    source = Lookup(sqlite_repo)
    yield source
    source.close()


# --- preparing the repo ---------------------------------------------------------------------------------


def test_prepare_builds_the_repo_outside_the_source_tree(sqlite_repo: Path) -> None:
    assert (sqlite_repo / "feature_store.yaml").read_text() == (REPO_SOURCE / "feature_store.yaml").read_text()
    assert {p.name for p in (sqlite_repo / "data").iterdir()} >= {"registry.db", "online_store.db", "telemetry.parquet"}
    assert not (REPO_SOURCE / "data").exists()


def test_prepare_again_is_idempotent_and_reports_progress(sqlite_repo: Path, telemetry: pd.DataFrame) -> None:
    messages: list[str] = []
    assert prepare_feature_store(REPO_SOURCE, sqlite_repo, telemetry, progress=messages.append) == sqlite_repo
    assert [m.split()[1] for m in messages] == ["writing", "wrote", "apply", "materialize", "ready"]
    assert np.array_equal(Lookup(sqlite_repo).fetch("pump-0000").values[0], _row(telemetry, "pump-0000"))


# --- lookups ----------------------------------------------------------------------------------------------


def test_fetch_returns_the_stored_rows_in_the_order_asked(lookup: Lookup, telemetry: pd.DataFrame) -> None:
    names = list(reversed(FEATURE_NAMES[:4]))
    fetched = lookup.fetch("fan-0003", "pump-0000", "fan-0003", names=names)
    assert fetched.values.dtype == np.float64 and fetched.values.shape == (3, 4)
    for row, entity_id in enumerate(["fan-0003", "pump-0000", "fan-0003"]):
        assert np.array_equal(fetched.values[row], _row(telemetry, entity_id, names))
    assert fetched.filled == {}
    assert lookup.source.entity_key == "equipment_id"
    assert lookup.source.feature_names == FEATURE_NAMES


def test_one_online_read_per_fetch(lookup: Lookup, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _count_store_calls(lookup.source, monkeypatch)
    ids = [f"pump-{i:04d}" for i in range(5)]
    assert lookup.fetch(*ids).values.shape == (5, len(FEATURE_NAMES))
    assert calls == [ids]


def test_concurrent_fetches_share_lookups_and_each_reads_its_own_ids(
    lookup: Lookup, telemetry: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Forty requests at once: far fewer online reads than requests (one in flight, the rest gathering), each
    request answered its own rows in its own order, an id asked twice looked up once, and an unknown id failing
    only the request that named it."""
    calls = _count_store_calls(lookup.source, monkeypatch)
    requests = [[f"pump-{i % 5:04d}", f"fan-{(i + 2) % 5:04d}"] for i in range(40)]

    async def all_at_once() -> list[Any]:
        fetches = [lookup.source.fetch(ids, list(FEATURE_NAMES)) for ids in requests]
        fetches.append(lookup.source.fetch(["pump-0001", "no-such-pump"], list(FEATURE_NAMES)))
        return await asyncio.gather(*fetches, return_exceptions=True)

    *answers, unknown = asyncio.run(all_at_once())
    assert len(calls) <= 3, [len(c) for c in calls]
    assert all(len(call) == len(set(call)) for call in calls)  # an id asked twice is looked up once
    for ids, answer in zip(requests, answers, strict=True):
        assert isinstance(answer, FetchedFeatures), answer
        assert np.array_equal(answer.values, np.stack([_row(telemetry, entity_id) for entity_id in ids]))
    assert isinstance(unknown, EntityNotFound) and "no-such-pump" in str(unknown) and "pump-0001" not in str(unknown)


def _count_store_calls(source: FeastFeatureSource, monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The ids of each read of the online store, in order."""
    reader = source._reader
    real = reader.read
    calls: list[list[str]] = []

    def spy(ids: list[str], names: list[str]) -> Any:
        calls.append(list(ids))
        return real(ids, names)

    monkeypatch.setattr(reader, "read", spy)
    return calls


def test_the_feature_cache_serves_repeats_from_memory_until_they_age_out(
    sqlite_repo: Path, telemetry: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    cached = Lookup(sqlite_repo, cache_s=0.5)
    calls = _count_store_calls(cached.source, monkeypatch)
    try:
        first = cached.fetch("pump-0001", "fan-0002")
        again = cached.fetch("fan-0002", "pump-0001", "pump-0003")  # two from memory, one from the store
        assert calls == [["pump-0001", "fan-0002"], ["pump-0003"]]
        assert np.array_equal(again.values[:2], first.values[::-1])
        assert np.array_equal(again.values[2], _row(telemetry, "pump-0003"))
        assert cached.metric("feature_cache_lookups_total", result="hit") == 2
        assert cached.metric("feature_cache_lookups_total", result="miss") == 3
        assert cached.metric("feature_cache_age_seconds_count") == 2
        time.sleep(0.6)  # past --feature_cache_s: read from the store again
        cached.fetch("pump-0001")
        assert calls[-1] == ["pump-0001"]
        # A stale row never outlives the view's TTL in memory: read again each time (and refused each time).
        for _ in range(2):
            with pytest.raises(StaleFeatures):
                cached.fetch(STALE_ID)
        assert calls[-2:] == [[STALE_ID], [STALE_ID]]
        # An unknown id is not remembered either: it may be materialized a moment later.
        for _ in range(2):
            with pytest.raises(EntityNotFound):
                cached.fetch("pump-9999")
        assert calls[-1] == ["pump-9999"] and calls[-2] == ["pump-9999"]
    finally:
        cached.close()


def test_lookup_latency_is_recorded_by_store(lookup: Lookup) -> None:
    lookup.fetch("pump-0000", "fan-0003")
    assert lookup.metric("feature_lookup_latency_seconds_count", store="sqlite") == 1


def test_no_ids_need_no_lookup(lookup: Lookup) -> None:
    assert lookup.fetch().values.shape == (0, len(FEATURE_NAMES))


def test_unknown_ids_are_all_named(lookup: Lookup) -> None:
    with pytest.raises(EntityNotFound) as caught:
        lookup.fetch("pump-0000", "pump-9999", "nope", "pump-9999")
    assert caught.value.missing_ids == ["pump-9999", "nope"]
    assert "pump-9999, nope" in str(caught.value)


def test_a_feature_the_view_lacks_is_a_programming_error(lookup: Lookup) -> None:
    with pytest.raises(ValueError, match="no features"):
        lookup.fetch("pump-0000", names=["temperature_c", "colour"])


# --- stale and null features --------------------------------------------------------------------------------


def test_stale_rows_are_rejected_by_default(lookup: Lookup) -> None:
    with pytest.raises(StaleFeatures) as caught:
        lookup.fetch("pump-0000", STALE_ID, names=["temperature_c", "age_months"])
    message = str(caught.value)
    assert f"{STALE_ID} (temperature_c, age_months: older than the 2 days TTL)" in message
    assert "pump-0000" not in message
    assert "re-materialize" in message and "'fill'" in message
    assert lookup.metric("feature_missing_total", feature="temperature_c", reason="stale") == 1


def test_null_features_are_rejected_by_default(lookup: Lookup) -> None:
    with pytest.raises(StaleFeatures, match=f"{NULL_ID} \\({NULL_FEATURE}: null\\)"):
        lookup.fetch(NULL_ID)
    assert lookup.metric("feature_missing_total", feature=NULL_FEATURE, reason="null") == 1
    assert lookup.metric("feature_missing_total", feature="temperature_c", reason="null") == 0


def test_fill_policy_uses_the_fill_values_and_says_which(sqlite_repo: Path, telemetry: pd.DataFrame) -> None:
    lookup = Lookup(sqlite_repo, "fill", MEANS)
    fetched = lookup.fetch("pump-0000", STALE_ID, NULL_ID)
    assert fetched.filled == {STALE_ID: list(FEATURE_NAMES), NULL_ID: [NULL_FEATURE]}
    assert np.array_equal(fetched.values[0], _row(telemetry, "pump-0000"))
    assert np.array_equal(fetched.values[1], [MEANS[name] for name in FEATURE_NAMES])
    column = FEATURE_NAMES.index(NULL_FEATURE)
    expected = _row(telemetry, NULL_ID)
    expected[column] = MEANS[NULL_FEATURE]
    assert np.array_equal(fetched.values[2], expected)
    assert lookup.metric("feature_missing_total", feature=NULL_FEATURE, reason="stale") == 1
    assert lookup.metric("feature_missing_total", feature=NULL_FEATURE, reason="null") == 1


def test_fill_policy_without_a_fill_value_rejects(sqlite_repo: Path) -> None:
    lookup = Lookup(sqlite_repo, "fill", {"temperature_c": 60.0})
    with pytest.raises(StaleFeatures, match=f"no fill value for {NULL_FEATURE}"):
        lookup.fetch(NULL_ID)


def test_unknown_policy_is_refused(sqlite_repo: Path) -> None:
    with pytest.raises(ValueError, match="policy"):
        Lookup(sqlite_repo, "guess")  # type: ignore[arg-type]


# --- an unreachable or missing store -----------------------------------------------------------------------


def test_check_passes_on_a_healthy_store(lookup: Lookup) -> None:
    lookup.check()


def test_a_feature_view_the_repo_lacks_is_named_with_the_ones_it_has(sqlite_repo: Path) -> None:
    with pytest.raises(FeatureStoreUnavailable, match=r"no feature view 'telemetry'; it has \['equipment_telemetry'\]"):
        FeastFeatureSource(sqlite_repo, Metrics.create(CollectorRegistry()), feature_view="telemetry")


def test_an_unprepared_repo_is_unavailable_and_left_untouched() -> None:
    with pytest.raises(FeatureStoreUnavailable, match="prepare it"):
        Lookup(REPO_SOURCE)
    assert not (REPO_SOURCE / "data").exists()


def test_an_unreadable_sqlite_store_is_unavailable(sqlite_repo: Path, tmp_path: Path) -> None:
    broken = shutil.copytree(sqlite_repo, tmp_path / "repo")
    (broken / "data" / "online_store.db").unlink()
    (broken / "data" / "online_store.db").mkdir()  # sqlite cannot open a directory
    lookup = Lookup(broken)
    with pytest.raises(FeatureStoreUnavailable, match="feature store unreachable: OperationalError") as caught:
        lookup.fetch("pump-0000")
    assert caught.value.__cause__ is not None
    with pytest.raises(FeatureStoreUnavailable):
        lookup.check()


# --- Redis ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisProcess]:
    with redis_server() as server:
        yield server


@pytest.fixture(scope="module")
def redis_repo(tmp_path_factory: pytest.TempPathFactory, telemetry: pd.DataFrame, redis: RedisProcess) -> Path:
    store = {"type": "redis", "connection_string": redis.connection_string}
    target = tmp_path_factory.mktemp("redis") / "repo"
    return prepare_feature_store(REPO_SOURCE, target, telemetry, online_store=store, progress=_quiet)


def test_redis_serves_the_same_rows(redis_repo: Path, telemetry: pd.DataFrame) -> None:
    lookup = Lookup(redis_repo)
    fetched = lookup.fetch("pump-0000", "fan-0003")
    assert np.array_equal(fetched.values, np.stack([_row(telemetry, "pump-0000"), _row(telemetry, "fan-0003")]))
    assert lookup.metric("feature_lookup_latency_seconds_count", store="redis") == 1
    with pytest.raises(EntityNotFound):
        lookup.fetch("pump-9999")
    with pytest.raises(StaleFeatures, match="older than"):
        lookup.fetch(STALE_ID)
    with pytest.raises(StaleFeatures, match=f"{NULL_FEATURE}: null"):
        lookup.fetch(NULL_ID)
    lookup.check()


def test_redis_chosen_by_the_shipped_yaml_and_an_env_var(
    redis_repo: Path, redis: RedisProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, telemetry: pd.DataFrame
) -> None:
    repo = shutil.copytree(redis_repo, tmp_path / "repo")
    shutil.copyfile(REPO_SOURCE / "feature_store.redis.yaml", repo / "feature_store.yaml")
    monkeypatch.setenv("REDIS_CONNECTION_STRING", redis.connection_string)
    assert np.array_equal(Lookup(repo).fetch("pump-0004").values[0], _row(telemetry, "pump-0004"))


def test_a_hung_store_fails_every_request_of_the_shared_lookup_at_its_deadline(
    redis_repo: Path, redis: RedisProcess
) -> None:
    """Redis paused (SIGSTOP: it holds the connection and never answers). Ten requests joined to one lookup are all
    answered 503 at the lookup's deadline (0.2 s, before the client's own 0.5 s socket timeout); the read's late
    failure is dropped; once Redis runs again and the breaker's second has passed, a lookup answers. One event
    loop throughout, as in the server."""
    source = FeastFeatureSource(redis_repo, Metrics.create(CollectorRegistry()), timeout_s=0.2, retry_after_s=1.0)
    names = list(FEATURE_NAMES)

    async def session() -> tuple[list[Any], FetchedFeatures]:
        await source.fetch(["pump-0000"], names)  # connected
        os.kill(redis.process.pid, signal.SIGSTOP)
        try:
            answers = await asyncio.gather(*(source.fetch([f"pump-{i:04d}"], names) for i in range(10)),
                                           return_exceptions=True)  # fmt: skip
        finally:
            os.kill(redis.process.pid, signal.SIGCONT)
        deadline = time.monotonic() + 10
        while True:
            try:
                return answers, await source.fetch(["pump-0001"], names)
            except FeatureStoreUnavailable:  # the breaker's second, then the store answers again
                assert time.monotonic() < deadline, "the store never answered again after SIGCONT"
                await asyncio.sleep(0.2)

    answers, fetched = asyncio.run(session())
    assert all(isinstance(answer, FeatureStoreUnavailable) for answer in answers), answers
    assert all("did not answer within 0.2 s" in str(answer) for answer in answers), answers
    assert fetched.values.shape == (1, len(FEATURE_NAMES))
    source.close()


def test_a_stopped_redis_is_unavailable(redis_repo: Path, redis: RedisProcess) -> None:
    # Last of the Redis tests: it stops the module's server.
    import redis as redis_client

    lookup = Lookup(redis_repo)
    lookup.fetch("pump-0000")
    redis.stop()
    with pytest.raises(FeatureStoreUnavailable, match="feature store unreachable: ConnectionError") as caught:
        lookup.fetch("pump-0000")
    assert isinstance(caught.value.__cause__, redis_client.exceptions.ConnectionError)
    with pytest.raises(FeatureStoreUnavailable, match="retrying"):
        lookup.fetch("pump-0000")  # fails fast for a moment instead of queueing another lookup
    with pytest.raises(FeatureStoreUnavailable, match="feature store unreachable"):
        lookup.check()


def test_feast_is_imported_without_typeguards_instrumentation_and_the_decorator_is_put_back(tmp_path: Path) -> None:
    """``import_feast`` against the installed Feast and typeguard, in a fresh interpreter: Feast's classes are as
    written (typeguard recompiles a decorated method with calls into ``typeguard`` in it), and a class decorated
    after the import is instrumented again."""
    script = """
import json, typeguard
from predictor.features import import_feast
import_feast()
import feast

@typeguard.typechecked
class Later:
    def method(self, x: int) -> int:
        return x

def instrumented(function):
    return any("typeguard" in name or "TypeCheck" in name for name in function.__code__.co_names)

print(json.dumps([instrumented(feast.FeatureView.__init__), instrumented(feast.Entity.__init__),
                  instrumented(Later.method)]))
"""
    probe = tmp_path / "probe.py"  # a file: typeguard reads the source of what it instruments
    probe.write_text(script)
    done = subprocess.run([sys.executable, str(probe)], capture_output=True, text=True, timeout=120, check=True)
    feature_view, entity, later = json.loads(done.stdout.strip().splitlines()[-1])
    assert not feature_view and not entity, "Feast's classes were recompiled by typeguard"
    assert later, "typeguard's decorator was not put back"
