"""The direct online read (``predictor.feast_online``) against the installed Feast's own ``get_online_features``,
on a real repo in tmp_path with the SQLite store and with a real redis-server: the same value and event time for
every feature of a known id, nothing for an unknown one, a null where the store holds one, and the stale reading's
old timestamp (the server judges the TTL from it). If a Feast upgrade changes what ``online_read`` answers, this
test says so before a by-id prediction does."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from predictor.demo.columns import FEATURE_NAMES
from predictor.demo.feast_setup import prepare_feature_store
from predictor.feast_online import Cells, OnlineReader, as_python
from tests.feast_helpers import NULL_FEATURE, NULL_ID, REPO_SOURCE, STALE_ID, demo_telemetry, redis_server

UNKNOWN_ID = "no-such-pump"


@pytest.fixture(scope="module", params=["sqlite", "redis"])
def repo(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    telemetry = demo_telemetry(30)
    target = tmp_path_factory.mktemp(f"feast-{request.param}")
    if request.param == "sqlite":
        yield prepare_feature_store(REPO_SOURCE, target, telemetry, progress=lambda message: None)
        return
    with redis_server() as server:
        store = {"type": "redis", "connection_string": server.connection_string}
        yield prepare_feature_store(REPO_SOURCE, target, telemetry, online_store=store, progress=lambda m: None)


def _sdk_cells(store: Any, ids: list[str], names: list[str]) -> dict[str, Cells]:
    """What ``get_online_features`` says, in the reader's form (an id with no value set nor timestamped: nothing)."""
    answer = store.get_online_features(
        features=[f"equipment_telemetry:{name}" for name in names], entity_rows={"equipment_id": ids}
    ).proto
    position = {name: i for i, name in enumerate(answer.metadata.feature_names.val)}
    cells: dict[str, Cells] = {}
    for row, entity_id in enumerate(ids):
        found = []
        for name in names:
            vector = answer.results[position[name]]
            typed, stamp = as_python(vector.values[row]), vector.event_timestamps[row].seconds
            found.append(None if typed is None and not stamp else (typed, stamp))
        cells[entity_id] = tuple(found)
    return cells


def test_the_direct_read_answers_what_get_online_features_answers(repo: Path) -> None:
    from feast import FeatureStore

    store = FeatureStore(repo_path=str(repo))
    reader = OnlineReader(store, store.get_feature_view("equipment_telemetry"))
    known = list(demo_telemetry(30)["equipment_id"].unique()[:5])
    ids = [*known, NULL_ID, STALE_ID, UNKNOWN_ID]
    names = list(FEATURE_NAMES)

    direct = reader.read(ids, names)

    assert reader.entity_key == "equipment_id"
    assert direct == _sdk_cells(store, ids, names)
    assert direct[UNKNOWN_ID] == (None,) * len(names)
    null_cell = direct[NULL_ID][names.index(NULL_FEATURE)]
    assert null_cell is not None and null_cell[0] is None and null_cell[1] > 0  # a stored null: no value, a time
    stale, fresh = direct[STALE_ID][0], direct[known[0]][0]
    assert stale is not None and fresh is not None and stale[1] < fresh[1]  # the old reading keeps its old time
    assert all(isinstance(cell[0], float) for cell in direct[known[0]] if cell is not None)
    # a subset of features, in the order asked
    assert reader.read(known[:1], names[::-1])[known[0]] == direct[known[0]][::-1]


def test_an_unreachable_store_raises_the_stores_own_error(repo: Path, tmp_path: Path) -> None:
    """What the server turns into 503 and readiness off: the store's connection error, not a Feast wrapper."""
    import sqlite3

    import redis
    from feast import FeatureStore

    store = FeatureStore(repo_path=str(repo))
    expected: type[BaseException]
    if store.config.online_store.type == "sqlite":
        store.config.online_store.path = str(tmp_path)  # a directory: sqlite cannot open it
        expected = sqlite3.Error
    else:
        store.config.online_store.connection_string = "127.0.0.1:1,retry=null,socket_connect_timeout=0.5"
        expected = redis.exceptions.ConnectionError
    reader = OnlineReader(store, store.get_feature_view("equipment_telemetry"))
    with pytest.raises(expected):
        reader.read(["pump-0000"], ["temperature_c"])
