"""Typed features from Feast: a model with a string and a long column, its features looked up by id.

A real Feast repo in ``tmp_path`` (local provider, SQLite online store) whose feature view stores ``site`` as
a String, ``cycles`` as an Int64 and ``temperature`` as a Float64; the real server serves the user's own
regressor (tests/own_models.py) with ``--feature_store``. Predicting by id must equal the model's own
``predict`` on the stored row, over v1, v2 and ``/invocations``; the caller's values override stored ones.
A second repo stores ``cycles`` as a String where the model says long: a 500 naming both, on every door.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import grpc
import httpx
import numpy as np
import pandas as pd
import pytest

from tests import own_models
from tests.feast_helpers import REPO_SOURCE
from tests.grpc_calls import stub
from tests.servers import PredictorProcess, scrape, start_predictor, total

NAME = "typed_features"
ENTITY_KEY = "machine_id"
IDS = [f"machine-{i}" for i in range(5)]


FEAST_TYPES = {"temperature": "Float64", "cycles": "Int64", "site": "String"}  # each column's own type


def _typed_repo(root: Path, frame: pd.DataFrame, types: dict[str, str] = FEAST_TYPES) -> Path:
    """``feast apply`` + materialize of ``frame`` (one row per id) with each column's Feast type in ``types``."""
    from predictor.features import import_feast

    import_feast()
    from feast import Entity, FeatureStore, FeatureView, Field, FileSource, ValueType
    from feast import types as feast_types

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
        schema=[Field(name=name, dtype=getattr(feast_types, kind)) for name, kind in types.items()],
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


# ------------------------------------------------------------------------ a feature view the model disagrees with
@pytest.fixture(scope="module")
def mismatched(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PredictorProcess]:
    """The same model over a feature view that stores ``cycles`` as a String ("about 40") where the model's
    signature says long: the store and the model disagree, which no caller can fix."""
    model = own_models.ridge_regressor()
    root = tmp_path_factory.mktemp("mismatched-features")
    model.save(root / "model")
    frame = model.frame.reset_index(drop=True)
    frame["cycles"] = [f"about {cycles}" for cycles in frame["cycles"]]
    repo = _typed_repo(root, frame, FEAST_TYPES | {"cycles": "String"})
    server = start_predictor(
        "sqlite:///" + str(root / "unused.db"), root, "--model_uri", str(root / "model"), "--feature_store",
        str(repo), model_name=NAME,
    )  # fmt: skip
    try:
        yield server.wait_ready()
    finally:
        server.stop()


def internal_errors(server: PredictorProcess) -> float:
    return total(scrape(server.http_url), "model_prediction_errors_total", error_type="internal")


MISMATCH = "the feature view's type for cycles does not match the model's signature (long)"


@pytest.mark.parametrize("door", ["v1", "v2", "invocations"])
def test_a_feature_view_type_the_model_disagrees_with_is_a_500_naming_both_on_every_rest_door(
    mismatched: PredictorProcess, door: str
) -> None:
    bodies = {
        "v1": (f"/v1/models/{NAME}:predict", {"instances": [{ENTITY_KEY: IDS[0]}]}),
        "v2": (
            f"/v2/models/{NAME}/infer",
            {"inputs": [{"name": ENTITY_KEY, "shape": [1], "datatype": "BYTES", "data": [IDS[0]]}]},
        ),
        "invocations": ("/invocations", {"dataframe_records": [{ENTITY_KEY: IDS[0]}]}),
    }
    path, body = bodies[door]
    before = internal_errors(mismatched)
    answer = httpx.post(mismatched.http_url + path, json=body, timeout=30)
    assert answer.status_code == 500, answer.text
    error = answer.json()["error"]
    assert MISMATCH in error and "align the Feast schema with the model" in error, error
    assert f"{ENTITY_KEY} {IDS[0]}" in error  # which stored row
    assert internal_errors(mismatched) == before + 1
    # a caller who sends the value itself is served: only the stored feature is at fault
    fixed = httpx.post(
        f"{mismatched.http_url}/v1/models/{NAME}:predict",
        json={"instances": [{ENTITY_KEY: IDS[0], "cycles": 40}]},
        timeout=30,
    )
    assert fixed.status_code == 200, fixed.text


def test_a_feature_view_type_the_model_disagrees_with_is_internal_over_grpc_naming_both(
    mismatched: PredictorProcess,
) -> None:
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb

    ids = pb.ModelInferRequest.InferInputTensor(
        name=ENTITY_KEY, datatype="BYTES", shape=[1], contents=pb.InferTensorContents(bytes_contents=[IDS[0].encode()])
    )
    before = internal_errors(mismatched)
    with stub(mismatched.grpc_target) as client, pytest.raises(grpc.RpcError) as failure:
        client.ModelInfer(pb.ModelInferRequest(model_name=NAME, inputs=[ids]), timeout=30)
    assert failure.value.code() == grpc.StatusCode.INTERNAL
    assert MISMATCH in (failure.value.details() or "")
    assert internal_errors(mismatched) == before + 1
