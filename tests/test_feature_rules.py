"""The rules of the by-id lookup (``predictor.features``) one at a time, in process: the feature cache's age and TTL
limits on an injected clock, the reject and fill policies' whole messages, the type checks of stored values against
the model's columns, and the small helpers the lookup leans on. The store is a real Feast repo (SQLite) in tmp_path
where one is needed; the end-to-end lookups are tests/test_features.py's."""

from __future__ import annotations

import asyncio
import gc
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from predictor import features
from predictor.demo.columns import FEATURE_NAMES
from predictor.demo.feast_setup import prepare_feature_store
from predictor.errors import FeatureStoreUnavailable, PredictorError, StaleFeatures
from predictor.feast_online import Cells
from predictor.features import FeastFeatureSource, FeatureCache, _as_written, _duration, as_columns
from predictor.metrics import Metrics
from predictor.protocol.schema import Column
from tests.feast_helpers import NULL_FEATURE, NULL_ID, REPO_SOURCE, STALE_ID, demo_telemetry

NAMES = ("temperature_c", "vibration_mm_s")
FRESH = 1_800_000_000  # an event time, epoch seconds


@dataclass
class Clock:
    """The two clocks the cache reads, moved by hand."""

    mono: float = 100.0
    wall: float = FRESH + 10.0

    def monotonic(self) -> float:
        return self.mono

    def time(self) -> float:
        return self.wall


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(features, "time", fake)
    return fake


def _cache(max_age_s: float = 5.0, ttl_s: float = 3600.0, max_entries: int = 100) -> tuple[FeatureCache, Metrics]:
    metrics = Metrics.create(CollectorRegistry())
    return FeatureCache(max_age_s, ttl_s, metrics, max_entries), metrics


def _cells(stamp: int = FRESH) -> Cells:
    return ((71.5, stamp), (2.5, stamp))


# --- the feature cache ---------------------------------------------------------------------------------------


def test_an_entry_is_served_up_to_its_age_limit_and_not_a_moment_after(clock: Clock) -> None:
    cache, metrics = _cache(max_age_s=5.0)
    cache.put(NAMES, {"pump-1": _cells()})
    clock.mono += 5.0
    assert cache.take(NAMES, ["pump-1"]) == ({"pump-1": _cells()}, [])
    [age_sum] = [s.value for s in metrics.feature_cache_age.collect()[0].samples if s.name.endswith("_sum")]
    assert age_sum == 5.0  # the entry's age when served
    clock.mono += 0.001
    assert cache.take(NAMES, ["pump-1"]) == ({}, ["pump-1"])


def test_an_entry_is_served_up_to_the_views_ttl_and_without_a_ttl_whatever_its_age(clock: Clock) -> None:
    cache, _ = _cache(max_age_s=1e9, ttl_s=3600.0)
    cache.put(NAMES, {"pump-1": _cells(stamp=FRESH), "pump-2": ((1.0, FRESH), (2.0, FRESH - 1))})
    clock.wall = FRESH + 3600.0  # pump-1's values exactly as old as the TTL allows; pump-2's oldest one past it
    assert cache.take(NAMES, ["pump-1", "pump-2"]) == ({"pump-1": _cells()}, ["pump-2"])
    forever, _ = _cache(max_age_s=1e9, ttl_s=0.0)
    forever.put(NAMES, {"pump-1": _cells(stamp=1)})
    assert forever.take(NAMES, ["pump-1"])[0] == {"pump-1": _cells(stamp=1)}


def test_unknown_ids_are_skipped_not_the_rest_of_the_read(clock: Clock) -> None:
    cache, _ = _cache()
    cache.put(NAMES, {"nope": (None, None), "pump-1": _cells(), "pump-2": _cells()})
    assert cache.take(NAMES, ["nope", "pump-1", "pump-2"]) == ({"pump-1": _cells(), "pump-2": _cells()}, ["nope"])


def test_a_row_without_event_times_or_with_gaps_is_kept_and_judged_by_what_it_has(clock: Clock) -> None:
    cache, _ = _cache(max_age_s=1e9, ttl_s=3600.0)
    untimed: Cells = ((71.5, 0), (2.5, 0))  # no event time: nothing to judge stale
    gappy: Cells = (None, (2.5, FRESH))  # one feature not stored, the other fresh
    cache.put(NAMES, {"pump-1": untimed, "pump-2": gappy})
    assert cache.take(NAMES, ["pump-1", "pump-2"]) == ({"pump-1": untimed, "pump-2": gappy}, [])


def test_the_cache_keeps_exactly_its_limit_dropping_the_oldest(clock: Clock) -> None:
    cache, _ = _cache(max_entries=2)
    cache.put(NAMES, {"a": _cells(), "b": _cells()})
    assert cache.take(NAMES, ["a", "b"])[1] == []  # both kept: two is the limit
    cache.put(NAMES, {"a": _cells()})  # read again: now the newest
    cache.put(NAMES, {"c": _cells()})
    assert cache.take(NAMES, ["a", "b", "c"]) == ({"a": _cells(), "c": _cells()}, ["b"])
    assert cache.take(("temperature_c",), ["a"]) == ({}, ["a"])  # another feature set: another entry


# --- the policies' messages -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return prepare_feature_store(
        REPO_SOURCE, tmp_path_factory.mktemp("rules"), demo_telemetry(30), progress=lambda m: None
    )


@pytest.fixture
def source(repo: Path, request: pytest.FixtureRequest) -> Iterator[FeastFeatureSource]:
    policy, fill_values = getattr(request, "param", ("reject", None))
    made = FeastFeatureSource(repo, Metrics.create(CollectorRegistry()), policy, fill_values)
    yield made
    made.close()


def _fetch(source: FeastFeatureSource, *ids: str, fill: dict[str, float] | None = None) -> features.FetchedFeatures:
    return asyncio.run(source.fetch(list(ids), list(FEATURE_NAMES), fill))


def test_reject_names_each_unusable_feature_by_id_and_says_how_to_fix_it(source: FeastFeatureSource) -> None:
    with pytest.raises(StaleFeatures) as caught:
        _fetch(source, "pump-0001", NULL_ID, STALE_ID)
    every = ", ".join(FEATURE_NAMES)
    assert str(caught.value) == (
        f"stored features unusable for equipment_id {NULL_ID} ({NULL_FEATURE}: null); {STALE_ID} ({every}: older "
        "than the 2 days TTL): send these features in the request, re-materialize fresh telemetry (`feast "
        "materialize`), or serve with the 'fill' feature policy"
    )


def test_reject_refuses_even_with_fill_values_at_hand(source: FeastFeatureSource) -> None:
    with pytest.raises(StaleFeatures):
        _fetch(source, NULL_ID, fill={name: 0.0 for name in FEATURE_NAMES})


@pytest.mark.parametrize("source", [("fill", {"temperature_c": 60.0})], indirect=True)
def test_fill_without_a_value_for_a_feature_names_the_features_it_lacks(source: FeastFeatureSource) -> None:
    with pytest.raises(StaleFeatures) as caught:
        _fetch(source, STALE_ID)
    lacking = ", ".join(sorted(set(FEATURE_NAMES) - {"temperature_c"}))
    assert str(caught.value) == (
        f"stored features unusable for equipment_id {STALE_ID} ({', '.join(FEATURE_NAMES)}: older than the 2 days "
        f"TTL), and no fill value for {lacking}: send these features in the request or re-materialize them"
    )


def test_each_ids_unusable_features_are_listed_together(source: FeastFeatureSource) -> None:
    problems = features._Problems()
    for feature in ("temperature_c", "vibration_mm_s"):
        problems.add("null", "pump-1", feature)
        problems.add("stale", "pump-2", feature)
    assert source._stale_message(problems, []).startswith(
        "stored features unusable for equipment_id pump-1 (temperature_c, vibration_mm_s: null); pump-2 "
        "(temperature_c, vibration_mm_s: older than the 2 days TTL): "
    )


def test_a_message_lists_twenty_ids_and_says_when_there_are_more(source: FeastFeatureSource) -> None:
    problems = features._Problems()
    for i in range(20):
        problems.add("null", f"pump-{i:02d}", "temperature_c")
    twenty = source._stale_message(problems, [])
    assert "pump-19 (temperature_c: null):" in twenty and "…" not in twenty
    problems.add("null", "pump-20", "temperature_c")
    more = source._stale_message(problems, [])
    assert "pump-19 (temperature_c: null) …:" in more and "pump-20" not in more


# --- the store's faults ----------------------------------------------------------------------------------------


def test_a_store_that_cannot_be_opened_says_which_and_what_to_check(source: FeastFeatureSource, tmp_path: Path) -> None:
    failure = source._translated(OSError("unable to open database file"))
    assert isinstance(failure, FeatureStoreUnavailable)
    assert str(failure) == (
        "feature store unreachable: OSError: unable to open database file — check the sqlite online store named in "
        "the repo's feature_store.yaml (is it running, is the address right?)"
    )
    assert str(source._late(0.25)) == (
        "feature store unreachable: the sqlite online store did not answer within 0.25 s — check that it is up and "
        "reachable"
    )
    error = ValueError("not the store's")
    assert source._translated(error) is error  # not a connection error: as it is


def test_a_probe_reads_one_feature_of_the_probe_id_and_a_pass_clears_the_failure(
    source: FeastFeatureSource, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[tuple[list[str], tuple[str, ...]]] = []
    reader = source._reader
    real = reader.read

    def spy(ids: list[str], names: tuple[str, ...]) -> dict[str, Cells]:
        asked.append((list(ids), tuple(names)))
        return real(ids, names)

    monkeypatch.setattr(reader, "read", spy)
    source._late(1.0)  # a failure remembered
    asyncio.run(source.check())
    assert asked == [([features.PROBE_ID], (FEATURE_NAMES[0],))]
    assert source._failed is None


def test_a_probe_still_running_fails_the_next_one_at_once(source: FeastFeatureSource) -> None:
    async def two_probes() -> None:
        pending: asyncio.Future[dict[str, Cells]] = asyncio.get_running_loop().create_future()
        source._probe = pending
        with pytest.raises(FeatureStoreUnavailable, match="the previous sqlite probe has not returned after 1 s"):
            await source.check()
        pending.set_result({})
        await source.check()  # the previous one answered: a new probe

    asyncio.run(two_probes())


def test_a_lookup_over_its_deadline_is_unavailable_and_its_late_answer_is_dropped_quietly(
    source: FeastFeatureSource,
) -> None:
    """The abandoned read's late error goes to a done callback that runs without error: the loop reports nothing.
    (Whether the error is *retrieved* shows only when the future is garbage-collected, after this loop is gone: the
    mutant that skips the retrieval survives this test; tests/mutation/RESULTS.md lists it.)"""
    reported: list[dict[str, object]] = []

    async def late() -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _, context: reported.append(context))
        slow: asyncio.Future[dict[str, Cells]] = loop.create_future()
        with pytest.raises(FeatureStoreUnavailable, match=r"did not answer within 0\.05 s"):
            await source._lookup(slow, 0.05)
        slow.set_exception(OSError("too late"))
        await asyncio.sleep(0)  # the done callbacks run
        del slow
        gc.collect()

    asyncio.run(late())
    assert reported == []


def test_a_probe_that_does_not_answer_in_time_is_unavailable(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    made = FeastFeatureSource(repo, Metrics.create(CollectorRegistry()), "reject", check_timeout_s=0.05)
    release = threading.Event()
    monkeypatch.setattr(made._reader, "read", lambda ids, names: release.wait(5) and {})
    monkeypatch.setattr(made, "store_type", "remote")  # a store read on the lookup threads, as Redis is
    try:
        with pytest.raises(FeatureStoreUnavailable, match=r"remote online store did not answer within 0\.05 s"):
            asyncio.run(made.check())
    finally:
        release.set()
        made.close()


def test_closing_abandons_reads_in_progress_and_cancels_those_waiting(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stopping the server does not wait for a store that hangs: close() returns while a read is still blocked, and
    the reads queued behind the four lookup threads never start."""
    made = FeastFeatureSource(repo, Metrics.create(CollectorRegistry()), "reject")
    release, started = threading.Event(), threading.Semaphore(0)

    def blocked(ids: list[str], names: tuple[str, ...]) -> dict[str, Cells]:
        started.release()
        release.wait(10)
        return {}

    monkeypatch.setattr(made._reader, "read", blocked)
    try:
        running = [made._executor.submit(made._read, NAMES, ["pump-1"]) for _ in range(4)]
        for _ in running:
            assert started.acquire(timeout=10)  # all four threads busy
        waiting = made._executor.submit(made._read, NAMES, ["pump-2"])
        made.close()
        assert not any(read.done() for read in running)  # returned without waiting for them
        assert waiting.cancelled()
        with pytest.raises(RuntimeError):
            made._executor.submit(print)
    finally:
        release.set()


# --- stored values against the model's columns ------------------------------------------------------------------


def test_an_all_number_matrix_is_passed_through_and_other_values_are_coerced_to_the_columns() -> None:
    columns = [Column("temperature_c", "double"), Column("age_months", "long")]
    numbers = np.array([[71.5, 3.0]])
    assert as_columns(numbers, columns, ["pump-1"], "equipment_id", matrix=True) is numbers
    mixed = np.array([[71.5, 3]], dtype=object)
    as_matrix = as_columns(mixed, columns, ["pump-1"], "equipment_id", matrix=True)
    assert as_matrix.dtype == np.float64 and as_matrix.tolist() == [[71.5, 3.0]]
    typed = as_columns(mixed, columns, ["pump-1"], "equipment_id", matrix=False)
    assert typed.dtype == object and typed.tolist() == [[71.5, 3]] and type(typed[0, 1]) is int


def test_a_stored_value_the_models_column_cannot_hold_is_a_server_fault_naming_both() -> None:
    columns = [Column("temperature_c", "double")]
    with pytest.raises(PredictorError) as caught:
        as_columns(np.array([["hot"]], dtype=object), columns, ["pump-7"], "equipment_id", matrix=True)
    message = str(caught.value)
    assert "stored feature temperature_c of equipment_id pump-7" in message
    assert message.endswith(
        ": the feature view's type for temperature_c does not match the model's signature (double); align the "
        "Feast schema with the model"
    )


def test_numbers_become_a_float_matrix_and_anything_else_keeps_its_type() -> None:
    numbers = features._numbers_as_float(np.array([[1, 2.5]], dtype=object))
    assert numbers.dtype == np.float64 and numbers.tolist() == [[1.0, 2.5]]
    for kept in ([[1.0, True]], [[1.0, "pump"]], [[1.0, None]]):
        values = np.array(kept, dtype=object)
        assert features._numbers_as_float(values) is values


@pytest.mark.parametrize(
    ("seconds", "said"),
    [
        (172_800, "2 days"),
        (129_600, "36 h"),
        (3600, "1 h"),
        (7200, "2 h"),
        (120, "2 min"),
        (90, "90 s"),
        (0.5, "0.5 s"),
    ],
)
def test_a_ttl_is_said_in_its_largest_whole_unit(seconds: float, said: str) -> None:
    assert _duration(seconds) == said


def test_feasts_typechecked_is_taken_as_written() -> None:
    class Plain:
        pass

    def plain() -> None:
        pass

    assert _as_written(Plain) is Plain and _as_written(plain) is plain
    assert _as_written()(Plain) is Plain  # used as @typechecked()
    assert _as_written(always=True) is _as_written
