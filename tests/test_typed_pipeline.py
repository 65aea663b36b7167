"""A user's ColumnTransformer → forest Pipeline, compiled to NumPy (predictor/models/pipeline.py): it answers
exactly what the Pipeline's own ``predict_proba`` answers, refuses what the Pipeline refuses, and a Pipeline the
compiler does not read is still served, by scikit-learn.

In-process first (each Pipeline loaded the way the server loads it, rows decoded from v1 JSON as a client sends
them), then the real server on a model saved in ``tmp_path``, over v1 and v2.
"""

from __future__ import annotations

import asyncio
import dataclasses
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from predictor.models import flavors, registry
from predictor.protocol import v1
from predictor.protocol.schema import Schema, from_signature
from tests import own_models
from tests.servers import PredictorProcess, start_predictor

NAME = "typed_pipeline"
SITES = ["north", "south", "east"]
GRADES = ["A", "B", "C", "D"]


def _frame(rows: int, seed: int, unseen_sites: bool = False) -> pd.DataFrame:
    """Telemetry with two string columns, a long, an int32, a double, a float32, a bool and a date."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "site": rng.choice([*SITES, "west"] if unseen_sites else SITES, rows),
            "grade": rng.choice(GRADES, rows),
            "cycles": rng.integers(0, 5000, rows).astype(np.int64),
            "shift": rng.integers(1, 4, rows).astype(np.int32),
            "temperature": rng.normal(70, 10, rows),
            "ratio": rng.uniform(0, 1, rows).astype(np.float32),
            "alarm": rng.uniform(0, 1, rows) < 0.3,
            "installed": pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 900, rows), unit="D"),
        }
    )


def _labels(frame: pd.DataFrame) -> np.ndarray:
    score = (frame["temperature"] - 70) / 10 + frame["cycles"] / 2500 + frame["alarm"] + (frame["site"] == "north")
    return (score + (frame["grade"] == "D") > 1.5).to_numpy().astype(np.int64)


def _forest(extra: bool = False) -> Any:
    from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier

    kind = ExtraTreesClassifier if extra else RandomForestClassifier
    return kind(n_estimators=15, max_depth=8, random_state=0)


def _encoders_and_passthrough() -> Any:
    """One string column whose unseen values are ignored, one whose unseen values are refused."""
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    columns = ColumnTransformer(
        [
            ("site", OneHotEncoder(handle_unknown="ignore"), ["site"]),
            ("grade", OneHotEncoder(handle_unknown="error"), ["grade"]),
            ("date", "drop", ["installed"]),
        ],
        remainder="passthrough",  # a long, an int32, a double, a float32 and a bool: held as objects
    )
    return Pipeline([("columns", columns), ("forest", _forest())])


def _dropped_first_and_scaled() -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    columns = ColumnTransformer(
        [
            ("cats", OneHotEncoder(drop="first", handle_unknown="ignore", sparse_output=False), ["site", "grade"]),
            ("scaled", StandardScaler(), ["temperature", "cycles"]),
            ("kept", "passthrough", ["ratio"]),
        ]
    )
    return Pipeline([("columns", columns), ("scale", StandardScaler()), ("trees", _forest(extra=True))])


def _numbers_one_hot_and_sparse() -> Any:
    """A bool and an int32 column one-hot encoded (drop='if_binary'), and a sparse ColumnTransformer output."""
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    columns = ColumnTransformer(
        [
            ("flags", OneHotEncoder(drop="if_binary", handle_unknown="ignore"), ["alarm", "shift"]),
            ("site", OneHotEncoder(handle_unknown="ignore"), ["site"]),
            ("scaled", StandardScaler(with_mean=False), ["temperature"]),
            ("kept", "passthrough", ["ratio", "cycles"]),
        ],
        sparse_threshold=1.0,
    )
    return Pipeline([("columns", columns), ("forest", _forest())])


def _ordinal_encoded() -> Any:
    """An encoder the compiler does not read."""
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OrdinalEncoder

    columns = ColumnTransformer(
        [("cats", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1), ["site", "grade"])],
        remainder="drop",
    )
    return Pipeline([("columns", columns), ("forest", _forest())])


def _logistic() -> Any:
    """A last step that is no forest."""
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    columns = ColumnTransformer(
        [("site", OneHotEncoder(handle_unknown="ignore"), ["site"]), ("n", StandardScaler(), ["temperature"])]
    )
    return Pipeline([("columns", columns), ("classify", LogisticRegression())])


COMPILED: dict[str, Callable[[], Any]] = {
    "encoders_and_passthrough": _encoders_and_passthrough,
    "dropped_first_and_scaled": _dropped_first_and_scaled,
    "numbers_one_hot_and_sparse": _numbers_one_hot_and_sparse,
}
NOT_COMPILED: dict[str, Callable[[], Any]] = {"ordinal_encoded": _ordinal_encoded, "logistic": _logistic}


def _fitted(make: Callable[[], Any], train: pd.DataFrame | None = None) -> tuple[Any, pd.DataFrame]:
    train = _frame(400, seed=0) if train is None else train
    return make().fit(train, _labels(train)), train


def _load(pipeline: Any, train: pd.DataFrame, optional: str = "") -> tuple[registry.LoadedModel, Schema]:
    """What the server loads: the signature from the training frame (``optional``: a column the user's signature
    lets clients leave out), the typed path chosen by ``build``."""
    signature = own_models._signature(train, pipeline.predict(train))
    columns, tensor = from_signature(signature)
    columns = tuple(dataclasses.replace(c, required=c.name != optional) for c in columns)
    adapter = flavors.from_estimator(pipeline, "sklearn", "skops")
    example = dict(train.iloc[0].items())  # the logged input example: a warm-up row of known categories
    source = registry.ModelSource("local", "local", "local")
    loaded = registry.build(source, columns, tensor, {}, adapter, example=example)
    return loaded, Schema(columns, matrix=loaded.matrix)


def _rows(frame: pd.DataFrame, schema: Schema) -> np.ndarray:
    """The rows as a client sends them in v1 JSON, decoded as the server decodes them."""
    return v1.decode({"instances": own_models.records(frame)}, schema).values


def _own(pipeline: Any, frame: pd.DataFrame) -> np.ndarray:
    with warnings.catch_warnings():  # an unseen category beside a dropped one: "encoded as all zeros"
        warnings.simplefilter("ignore", UserWarning)
        return np.asarray(pipeline.predict_proba(frame))


@pytest.mark.parametrize("name", sorted(COMPILED))
def test_a_compiled_pipeline_answers_what_predict_proba_answers(name: str) -> None:
    pipeline, train = _fitted(COMPILED[name])
    loaded, schema = _load(pipeline, train)
    assert loaded.path == "compiled pipeline"
    # Other rows than the training ones, with a site no training row had (each such encoder ignores it).
    fresh = _frame(300, seed=1, unseen_sites=name != "encoders_and_passthrough")
    for size in (1, 7, 64, 300):
        answer = loaded.predict_fn(_rows(fresh.head(size), schema))
        assert np.array_equal(answer, _own(pipeline, fresh.head(size))), f"{size} rows"


@pytest.mark.parametrize("name", sorted(NOT_COMPILED))
def test_a_pipeline_the_compiler_does_not_read_is_served_by_scikit_learn(name: str) -> None:
    pipeline, train = _fitted(NOT_COMPILED[name])
    loaded, schema = _load(pipeline, train)
    assert loaded.path == "typed DataFrame"
    fresh = _frame(50, seed=1, unseen_sites=True)
    assert np.array_equal(loaded.predict_fn(_rows(fresh, schema)), _own(pipeline, fresh))


def test_an_unseen_category_its_encoder_refuses_is_refused_with_scikit_learns_words() -> None:
    pipeline, train = _fitted(_encoders_and_passthrough)
    loaded, schema = _load(pipeline, train)
    frame = _frame(3, seed=2)
    frame.loc[1, "grade"] = "Z"
    with pytest.raises(ValueError) as compiled:
        loaded.predict_fn(_rows(frame, schema))
    with pytest.raises(ValueError) as own:
        pipeline.predict_proba(frame)
    assert str(compiled.value) == str(own.value) == "Found unknown categories ['Z'] in column 0 during transform"


def test_a_null_in_an_optional_column_is_answered_by_the_pipeline() -> None:
    pipeline, train = _fitted(_encoders_and_passthrough)
    loaded, schema = _load(pipeline, train, optional="temperature")
    assert loaded.path == "compiled pipeline"
    fresh = _frame(20, seed=3)
    instances = own_models.records(fresh)
    for instance in instances[::3]:
        instance["temperature"] = None
    rows = v1.decode({"instances": instances}, schema).values
    fresh.loc[::3, "temperature"] = np.nan  # what the Pipeline is given for a null
    # scikit-learn's forest sends a gap it never saw in training down its larger branch; the compiled one is
    # never asked: the Pipeline answers this batch.
    assert np.array_equal(loaded.predict_fn(rows), _own(pipeline, fresh))


# ------------------------------------------------------------------------------------------ over the server


@pytest.fixture(scope="module", params=["encoders_and_passthrough", "ordinal_encoded"])
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Any, PredictorProcess]]:
    """The real server on the Pipeline saved with MLflow (skops) in ``tmp_path``: one compiled, one not."""
    import mlflow.sklearn

    pipeline, train = _fitted({**COMPILED, **NOT_COMPILED}[request.param])
    directory = tmp_path_factory.mktemp(request.param)
    mlflow.sklearn.save_model(
        pipeline,
        str(directory / "model"),
        signature=own_models._signature(train, pipeline.predict(train)),
        input_example=train.head(1),  # the warm-up row: '' is no grade the strict encoder knows
        serialization_format="skops",
        skops_trusted_types=["sklearn.tree._tree.Tree"],
        pip_requirements=own_models.PIP,
    )
    server = start_predictor(
        "sqlite:///" + str(directory / "unused.db"), directory, "--model_uri", str(directory / "model"), model_name=NAME
    )
    try:
        yield request.param, pipeline, server.wait_ready()
    finally:
        server.stop()


def _v2_inputs(frame: pd.DataFrame) -> list[dict[str, Any]]:
    datatypes = {"O": "BYTES", "M": "BYTES", "b": "BOOL", "i": "INT", "f": "FP"}
    inputs = []
    for name in frame.columns:
        dtype = frame[name].dtype
        datatype = datatypes[dtype.kind] + (str(dtype.itemsize * 8) if dtype.kind in "if" else "")
        inputs.append({"name": name, "datatype": datatype, "shape": [len(frame)], "data": _values(frame[name])})
    return inputs


def _values(series: pd.Series) -> list[Any]:
    return [own_models.json_value(v) for v in series.astype(object)]


def test_v1_and_v2_answer_what_the_pipeline_answers(served: tuple[str, Any, PredictorProcess]) -> None:
    name, pipeline, server = served
    fresh = _frame(40, seed=4, unseen_sites=True)  # 'west': ignored by both Pipelines' encoders
    expected = {"predictions": pipeline.predict(fresh).tolist(), "probabilities": _own(pipeline, fresh).tolist()}
    v1_answer = httpx.post(
        f"{server.http_url}/v1/models/{NAME}:predict", json={"instances": own_models.records(fresh)}, timeout=10
    )
    assert v1_answer.status_code == 200, v1_answer.text
    assert {key: v1_answer.json()[key] for key in expected} == expected  # exactly: JSON floats round-trip
    v2_answer = httpx.post(f"{server.http_url}/v2/models/{NAME}/infer", json={"inputs": _v2_inputs(fresh)}, timeout=10)
    assert v2_answer.status_code == 200, v2_answer.text
    outputs = {o["name"]: np.asarray(o["data"]).reshape(o["shape"]).tolist() for o in v2_answer.json()["outputs"]}
    assert outputs == expected
    path = "compiled pipeline" if name in COMPILED else "typed DataFrame"
    assert f"{path} path" in server.log(last=100_000)


def test_an_unseen_grade_is_answered_as_the_pipeline_answers_it(served: tuple[str, Any, PredictorProcess]) -> None:
    """Refused with scikit-learn's words by the strict encoder (the batch-mates it shared a call with are still
    answered), encoded as unknown by the ordinal one."""
    name, pipeline, server = served
    fresh = _frame(30, seed=5)
    bad = fresh.head(1).assign(grade="Z")
    url = f"{server.http_url}/v1/models/{NAME}:predict"

    async def all_at_once() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=10) as client:
            rows = [own_models.records(bad), *([row] for row in own_models.records(fresh))]
            return await asyncio.gather(*(client.post(url, json={"instances": instances}) for instances in rows))

    unseen, *answered = asyncio.run(all_at_once())
    if name in COMPILED:
        assert unseen.status_code == 400, unseen.text
        assert "Found unknown categories ['Z'] in column 0 during transform" in unseen.json()["error"]
        with pytest.raises(ValueError, match="Found unknown categories"):
            pipeline.predict_proba(bad)
    else:
        assert unseen.status_code == 200, unseen.text
        assert unseen.json()["probabilities"] == _own(pipeline, bad).tolist()
    assert [r.status_code for r in answered] == [200] * len(fresh)
    assert [r.json()["probabilities"][0] for r in answered] == _own(pipeline, fresh).tolist()
