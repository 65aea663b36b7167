"""Rows that name an equipment id, filled from a real Feast repo (SQLite, in tmp_path) in this process: what the
caller sent wins, only the gaps are looked up, a fleet goes in chunks and every unknown id is named.

In process (no server) so that ``make mutation`` can run it against each mutant of ``predictor/feature_fill.py``;
the same rules end to end over HTTP are in tests/test_features_serving.py."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from prometheus_client import CollectorRegistry

from predictor import feature_fill
from predictor.demo.columns import FEATURE_NAMES
from predictor.demo.feast_setup import prepare_feature_store
from predictor.errors import BadRequest, EntityNotFound, PredictorError
from predictor.feature_fill import fill_from_store
from predictor.features import FeastFeatureSource
from predictor.metrics import Metrics
from predictor.models.registry import LoadedModel, ModelSource
from predictor.protocol.rows import Rows
from predictor.protocol.schema import Column
from tests.feast_helpers import NULL_FEATURE, NULL_ID, REPO_SOURCE, STALE_ID, demo_telemetry

WIDTH = len(FEATURE_NAMES)


@pytest.fixture(scope="module")
def telemetry() -> pd.DataFrame:
    return demo_telemetry()


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory, telemetry: pd.DataFrame) -> Path:
    return prepare_feature_store(REPO_SOURCE, tmp_path_factory.mktemp("fill") / "repo", telemetry, progress=print)


@pytest.fixture
def store(repo: Path) -> Iterator[Reads]:
    source = Reads(repo)
    yield source
    source.close()


class Reads(FeastFeatureSource):
    """The real source over the repo, keeping the ids and names of each read of the store (what was looked up)."""

    def __init__(self, repo: Path, policy: Any = "reject") -> None:
        super().__init__(repo, Metrics.create(CollectorRegistry()), policy)
        self.reads: list[tuple[list[str], list[str]]] = []

    async def fetch(self, ids: Any, feature_names: Any, fill_values: Any = None) -> Any:
        self.reads.append((list(ids), list(feature_names)))
        return await super().fetch(ids, feature_names, fill_values)


def model(*columns: Column, matrix: bool = True, defaults: dict[str, Any] | None = None) -> LoadedModel:
    chosen = columns or tuple(Column(name, "double") for name in FEATURE_NAMES)
    return LoadedModel(ModelSource("models:/m@a", "1", "models:/m/1"), chosen, lambda rows: rows, None,
                       feature_defaults=defaults or {}, matrix=matrix)  # fmt: skip


def stored(telemetry: pd.DataFrame, *ids: str) -> np.ndarray:
    return np.asarray(telemetry.set_index("equipment_id").loc[list(ids), list(FEATURE_NAMES)], dtype=np.float64)


def gaps(count: int) -> np.ndarray:
    return np.full((count, WIDTH), np.nan)


def fill(rows: Rows, loaded: LoadedModel, source: FeastFeatureSource | None) -> dict[int, list[str]]:
    return asyncio.run(fill_from_store(rows, loaded, source))


def test_ids_alone_get_every_stored_feature_in_one_read(store: Reads, telemetry: pd.DataFrame) -> None:
    rows = Rows(gaps(3), ["pump-0000", "fan-0001", "pump-0000"])
    assert fill(rows, model(), store) == {}
    assert np.array_equal(rows.values, stored(telemetry, "pump-0000", "fan-0001", "pump-0000"))
    assert store.reads == [(["pump-0000", "fan-0001", "pump-0000"], list(FEATURE_NAMES))]


def test_what_the_caller_sent_wins_and_only_the_gaps_are_looked_up(store: Reads, telemetry: pd.DataFrame) -> None:
    rows = Rows(gaps(2), ["pump-0000", "fan-0001"])
    rows.values[0, 0] = 42.0  # the first row brings its own first feature
    rows.values[:, 3] = [7.0, 8.0]  # both rows bring the fourth: it is not looked up at all
    fill(rows, model(), store)

    expected = stored(telemetry, "pump-0000", "fan-0001")
    expected[0, 0], expected[:, 3] = 42.0, [7.0, 8.0]
    assert np.array_equal(rows.values, expected)
    assert store.reads == [(["pump-0000", "fan-0001"], [n for j, n in enumerate(FEATURE_NAMES) if j != 3])]


def test_a_complete_row_with_an_id_needs_no_read(store: Reads) -> None:
    values = np.arange(WIDTH, dtype=np.float64)[None, :]
    rows = Rows(values.copy(), ["pump-0000"])
    assert fill(rows, model(), store) == {}
    assert np.array_equal(rows.values, values) and store.reads == []


def test_rows_without_ids_are_left_as_sent(store: Reads, telemetry: pd.DataFrame) -> None:
    complete = np.arange(WIDTH, dtype=np.float64)
    rows = Rows(np.vstack([complete, gaps(1)[0], complete]), [None, "fan-0001", None])
    fill(rows, model(), store)
    assert np.array_equal(rows.values, np.vstack([complete, stored(telemetry, "fan-0001")[0], complete]))
    assert store.reads == [(["fan-0001"], list(FEATURE_NAMES))]

    untouched = Rows(gaps(1))  # no row names an id: nothing to do, even with gaps (the model's own checks judge)
    assert fill(untouched, model(), store) == {} and np.isnan(untouched.values).all()


def test_a_row_without_an_id_and_with_gaps_is_the_callers_fault(store: Reads) -> None:
    rows = Rows(np.vstack([gaps(1)[0], np.arange(WIDTH, dtype=np.float64)]), ["pump-0000", None])
    rows.values[1, 2] = np.nan
    with pytest.raises(BadRequest, match=r"^a row without an entity id is missing features$"):
        fill(rows, model(), store)
    assert store.reads == []


def test_ids_without_a_feature_store_say_how_to_start_one() -> None:
    said = (
        "this server has no feature store: send all features, or start it with --feature_store PATH to look them "
        "up by id"
    )
    with pytest.raises(BadRequest, match=f"^{re.escape(said)}$"):
        fill(Rows(gaps(1), ["pump-0000"]), model(), None)
    assert fill(Rows(gaps(1)), model(), None) == {}  # no id: no store needed


def test_an_optional_column_may_stay_empty_and_is_never_looked_up(store: Reads, telemetry: pd.DataFrame) -> None:
    columns = (*(Column(name, "double") for name in FEATURE_NAMES), Column("operator_note", "double", required=False))
    rows = Rows(np.full((1, WIDTH + 1), np.nan), ["pump-0000"])
    fill(rows, model(*columns), store)
    assert np.array_equal(rows.values[:, :WIDTH], stored(telemetry, "pump-0000")) and np.isnan(rows.values[0, WIDTH])
    assert store.reads == [(["pump-0000"], list(FEATURE_NAMES))]


def test_typed_rows_fill_their_gaps_with_typed_values(store: Reads, telemetry: pd.DataFrame) -> None:
    rows = Rows(np.full((2, WIDTH), None, dtype=object), ["pump-0000", "fan-0001"])
    rows.values[1, 0] = 5.5
    fill(rows, model(matrix=False), store)
    expected = stored(telemetry, "pump-0000", "fan-0001")
    expected[1, 0] = 5.5
    assert rows.values.dtype == object and np.array_equal(rows.values.astype(np.float64), expected)


def test_the_fill_policy_reports_per_row_what_fell_back_to_defaults(repo: Path, telemetry: pd.DataFrame) -> None:
    source = Reads(repo, policy="fill")
    defaults = {name: 1000.0 + j for j, name in enumerate(FEATURE_NAMES)}
    rows = Rows(gaps(3), ["pump-0000", NULL_ID, STALE_ID])
    try:
        filled = fill(rows, model(defaults=defaults), source)
    finally:
        source.close()

    assert filled == {1: [NULL_FEATURE], 2: list(FEATURE_NAMES)}
    assert rows.values[1, FEATURE_NAMES.index(NULL_FEATURE)] == defaults[NULL_FEATURE]
    assert np.array_equal(rows.values[2], [defaults[name] for name in FEATURE_NAMES])
    assert np.array_equal(rows.values[0], stored(telemetry, "pump-0000")[0])


def test_a_fleet_is_read_in_chunks_and_every_unknown_id_is_named(
    store: Reads, telemetry: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(feature_fill, "FLEET_CHUNK", 4)
    known = [entity for entity in telemetry["equipment_id"] if entity not in (NULL_ID, STALE_ID)][:10]
    rows = Rows(gaps(len(known)), list(known))
    fill(rows, model(), store)
    assert np.array_equal(rows.values, stored(telemetry, *known))
    assert [ids for ids, _ in store.reads] == [known[0:4], known[4:8], known[8:10]]

    store.reads.clear()
    fleet = [*known[:5], "ghost-1", *known[5:], "ghost-2", "ghost-1"]  # unknowns in the first and last chunks
    with pytest.raises(EntityNotFound) as caught:
        fill(Rows(gaps(len(fleet)), fleet), model(), store)
    assert caught.value.missing_ids == ["ghost-1", "ghost-2"]  # each once, in order, whichever chunk held it
    assert str(caught.value).startswith("no features stored for equipment_id ghost-1, ghost-2:")
    assert len(store.reads) == 4  # every chunk was read, not only up to the first unknown id


def test_exactly_one_chunk_of_ids_is_one_read(
    store: Reads, telemetry: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(feature_fill, "FLEET_CHUNK", 3)
    ids = ["pump-0000", "fan-0001", "pump-0003"]
    fill(Rows(gaps(3), list(ids)), model(), store)
    assert [read for read, _ in store.reads] == [ids]


def test_a_fleet_in_chunks_keeps_the_models_defaults_and_says_what_fell_back(
    repo: Path, telemetry: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(feature_fill, "FLEET_CHUNK", 2)
    source = Reads(repo, policy="fill")
    defaults = {name: 1000.0 + j for j, name in enumerate(FEATURE_NAMES)}
    ids = ["pump-0000", "fan-0001", NULL_ID]  # the null one in the second chunk
    rows = Rows(gaps(3), list(ids))
    try:
        filled = fill(rows, model(defaults=defaults), source)
    finally:
        source.close()
    assert len(source.reads) == 2 and filled == {2: [NULL_FEATURE]}
    assert rows.values[2, FEATURE_NAMES.index(NULL_FEATURE)] == defaults[NULL_FEATURE]
    assert np.array_equal(rows.values[:2], stored(telemetry, "pump-0000", "fan-0001"))


@pytest.mark.parametrize("caller_sends_one", [False, True], ids=["ids alone", "a caller's value beside"])
def test_a_stored_value_that_does_not_fit_the_models_column_is_a_server_fault(
    store: Reads, caller_sends_one: bool
) -> None:
    """Whether the row names only its id or brings a value of its own, the fault names the feature, the entity and
    the fix."""
    columns = tuple(Column(name, "long") for name in FEATURE_NAMES)  # the view stores doubles like 67.93
    rows = Rows(np.full((1, WIDTH), None, dtype=object), ["pump-0000"])
    if caller_sends_one:
        rows.values[0, 3] = 7
    with pytest.raises(PredictorError, match="does not match the model's signature") as caught:
        fill(rows, model(*columns, matrix=False), store)
    assert not isinstance(caught.value, BadRequest)
    assert "of equipment_id pump-0000" in str(caught.value) and "align the Feast schema" in str(caught.value)
