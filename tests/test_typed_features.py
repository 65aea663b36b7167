"""Typed features from Feast: a model with a string and a long column, its features looked up by id.

A real Feast repo in ``tmp_path`` (local provider, SQLite online store) whose feature view stores ``site`` as
a String, ``cycles`` as an Int64 and ``temperature`` as a Float64; the real server serves the user's own
regressor (tests/own_models.py) with ``--feature_store``. Predicting by id must equal the model's own
``predict`` on the stored row, over v1, v2 and ``/invocations``; the caller's values override stored ones.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from tests import own_models
from tests.feast_helpers import REPO_SOURCE
from tests.servers import PredictorProcess, start_predictor

NAME = "typed_features"
ENTITY_KEY = "machine_id"
IDS = [f"machine-{i}" for i in range(5)]


def _typed_repo(root: Path, frame: pd.DataFrame) -> Path:
    """``feast apply`` + materialize of ``frame`` (one row per id) with each column's own Feast type."""
    from predictor.features import import_feast

    import_feast()
    from feast import Entity, FeatureStore, FeatureView, Field, FileSource, ValueType
    from feast.types import Float64, Int64, String

    repo = root / "feature_repo"
    repo.mkdir()
    shutil.copyfile(REPO_SOURCE / "feature_store.yaml", repo / "feature_store.yaml")  # SQLite, file registry
    now = pd.Timestamp.now(tz="UTC")
    data = frame.assign(**{ENTITY_KEY: IDS, "event_timestamp": now, "created": now})
    (repo / "data").mkdir()
    data.to_parquet(repo / "data" / "machines.parquet", index=False)
    machine = Entity(name="machine", join_keys=[ENTITY_KEY], value_type=ValueType.STRING)
    view = FeatureView(
        name="equipment_telemetry",  # the view the server reads (predictor.features.DEFAULT_FEATURE_VIEW)
        entities=[machine],
        ttl=timedelta(days=2),
        schema=[
            Field(name="temperature", dtype=Float64),
            Field(name="cycles", dtype=Int64),
            Field(name="site", dtype=String),
        ],
        source=FileSource(
            path=str(repo / "data" / "machines.parquet"),
            timestamp_field="event_timestamp",
            created_timestamp_column="created",
        ),
        online=True,
    )
    store = FeatureStore(repo_path=str(repo))
    store.apply([machine, view])
    store.materialize(
        start_date=(now - pd.Timedelta(minutes=1)).to_pydatetime(),
        end_date=(now + pd.Timedelta(minutes=1)).to_pydatetime(),
    )
    return repo


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[own_models.OwnModel, PredictorProcess]]:
    model = own_models.ridge_regressor()
    root = tmp_path_factory.mktemp("typed-features")
    model.save(root / "model")
    repo = _typed_repo(root, model.frame.reset_index(drop=True))
    server = start_predictor(
        "sqlite:///" + str(root / "unused.db"),
        root,
        "--model_uri",
        str(root / "model"),
        "--feature_store",
        str(repo),
        model_name=NAME,
    )
    try:
        yield model, server.wait_ready()
    finally:
        server.stop()


def _expected(model: own_models.OwnModel, frame: pd.DataFrame) -> list[float]:
    return [float(v) for v in model.predictions(frame)]


def test_v1_by_id_equals_the_models_predict_on_the_stored_rows(
    served: tuple[own_models.OwnModel, PredictorProcess],
) -> None:
    model, server = served
    response = httpx.post(
        f"{server.http_url}/v1/models/{NAME}:predict", json={"instances": [{ENTITY_KEY: i} for i in IDS]}, timeout=10
    )
    assert response.status_code == 200, response.text
    np.testing.assert_allclose(response.json()["predictions"], _expected(model, model.frame), rtol=1e-9)


def test_a_caller_string_overrides_the_stored_one(served: tuple[own_models.OwnModel, PredictorProcess]) -> None:
    model, server = served
    frame = model.frame.head(2).copy()
    frame["site"] = ["east", "north"]
    instances = [{ENTITY_KEY: IDS[0], "site": "east"}, {ENTITY_KEY: IDS[1], "site": "north"}]
    response = httpx.post(f"{server.http_url}/v1/models/{NAME}:predict", json={"instances": instances}, timeout=10)
    assert response.status_code == 200, response.text
    np.testing.assert_allclose(response.json()["predictions"], _expected(model, frame), rtol=1e-9)


def test_v2_and_invocations_by_id(served: tuple[own_models.OwnModel, PredictorProcess]) -> None:
    model, server = served
    expected = _expected(model, model.frame.head(3))
    ids = {"name": ENTITY_KEY, "shape": [3], "datatype": "BYTES", "data": IDS[:3]}
    v2 = httpx.post(f"{server.http_url}/v2/models/{NAME}/infer", json={"inputs": [ids]}, timeout=10)
    assert v2.status_code == 200, v2.text
    np.testing.assert_allclose(v2.json()["outputs"][0]["data"], expected, rtol=1e-9)
    records = [{ENTITY_KEY: i, "temperature": 70.0} for i in IDS[:3]]
    invocations = httpx.post(f"{server.http_url}/invocations", json={"dataframe_records": records}, timeout=10)
    assert invocations.status_code == 200, invocations.text
    frame = model.frame.head(3).assign(temperature=70.0)
    np.testing.assert_allclose(invocations.json()["predictions"], _expected(model, frame), rtol=1e-9)
