"""A user's own models, trained here and served by the real server: every request format answers what the
model itself answers (``predict`` / ``predict_proba``) on the same DataFrame.

One server serves them all, each under its own name (``--model NAME=PATH``); each model is asked over v1 objects,
v1 lists, v2 per-column JSON, v2 binary, gRPC and ``/invocations`` (split and records, with ``X-Model-Name``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import orjson
import pandas as pd
import pytest
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.infer_type import InferResponse

from tests import own_models
from tests.grpc_calls import stub
from tests.servers import PredictorProcess, start_predictor


@pytest.fixture(scope="module")
def all_served(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[dict[str, own_models.OwnModel], PredictorProcess]]:
    root = tmp_path_factory.mktemp("own-models")
    models, arguments = {}, []
    for name, build in own_models.ALL.items():
        model = models[name] = build()
        model.save(root / name)
        arguments += ["--model", f"{model.name}={root / name}"]
    server = start_predictor("sqlite:///" + str(root / "unused.db"), root, *arguments, model_name=next(iter(models)))
    try:
        yield models, server.wait_ready(timeout_s=180)
    finally:
        server.stop()


@pytest.fixture(params=list(own_models.ALL))
def served(
    request: pytest.FixtureRequest, all_served: tuple[dict[str, own_models.OwnModel], PredictorProcess]
) -> tuple[own_models.OwnModel, PredictorProcess]:
    models, server = all_served
    return models[request.param], server


def _datatype(series: pd.Series) -> str:
    kind = series.dtype.kind
    if kind == "b":
        return "BOOL"
    if kind in "iu":
        return "INT64" if series.dtype.itemsize == 8 else "INT32"
    if kind == "f":
        return "FP64" if series.dtype.itemsize == 8 else "FP32"
    return "BYTES"


def _column_values(series: pd.Series) -> list[Any]:
    return [own_models.json_value(v) for v in series.astype(object)]


def _expected(model: own_models.OwnModel) -> dict[str, np.ndarray]:
    frame = model.frame
    if model.extra_outputs:
        result = own_models._score(frame)
        return {name: result[name].to_numpy() for name in model.extra_outputs}
    expected = {"predictions": np.asarray(model.predictions(frame))}
    if model.probabilities is not None:
        expected["probabilities"] = np.asarray(model.probabilities(frame))
    return expected


def _same(answer: dict[str, Any], expected: dict[str, np.ndarray], how: str) -> None:
    for name, values in expected.items():
        got = np.asarray(answer[name])
        if values.dtype.kind in "fc":
            np.testing.assert_allclose(got.astype(float), values, rtol=1e-9, err_msg=f"{how}: {name}")
        else:
            assert got.tolist() == values.tolist(), f"{how}: {name}"


def test_v1_objects_and_lists(served: tuple[own_models.OwnModel, PredictorProcess]) -> None:
    model, server = served
    url = f"{server.http_url}/v1/models/{model.name}:predict"
    for how, instances in (
        ("v1 objects", own_models.records(model.frame)),
        ("v1 lists", own_models.lists(model.frame)),
    ):
        response = httpx.post(url, json={"instances": instances}, timeout=10)
        assert response.status_code == 200, f"{how}: {response.text}"
        answer = response.json()
        if model.extra_outputs:  # a DataFrame answer: records under "predictions", where v1 clients look
            answer = {name: [row[name] for row in answer["predictions"]] for name in model.extra_outputs}
        _same(answer, _expected(model), how)


def _v2_columns(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [
        {"name": name, "datatype": _datatype(frame[name]), "shape": [len(frame)], "data": _column_values(frame[name])}
        for name in frame.columns
    ]


def _v2_outputs(body: dict[str, Any]) -> dict[str, Any]:
    return {o["name"]: np.asarray(o["data"]).reshape(o["shape"]) for o in body["outputs"]}


def test_v2_per_column_json(served: tuple[own_models.OwnModel, PredictorProcess]) -> None:
    model, server = served
    response = httpx.post(
        f"{server.http_url}/v2/models/{model.name}/infer", json={"inputs": _v2_columns(model.frame)}, timeout=10
    )
    assert response.status_code == 200, response.text
    _same(_v2_outputs(response.json()), _expected(model), "v2 JSON")


def _binary(values: list[Any], datatype: str) -> bytes:
    if datatype == "BYTES":
        encoded = [str(v).encode() for v in values]
        return b"".join(len(e).to_bytes(4, "little") + e for e in encoded)
    dtype = {"FP64": "<f8", "FP32": "<f4", "INT64": "<i8", "INT32": "<i4", "BOOL": "?"}[datatype]
    return np.asarray(values, dtype=dtype).tobytes()


def test_v2_binary_extension(served: tuple[own_models.OwnModel, PredictorProcess]) -> None:
    model, server = served
    inputs, raw = [], b""
    for tensor in _v2_columns(model.frame):
        chunk = _binary(tensor.pop("data"), tensor["datatype"])
        inputs.append({**tensor, "parameters": {"binary_data_size": len(chunk)}})
        raw += chunk
    header = orjson.dumps({"inputs": inputs})
    response = httpx.post(
        f"{server.http_url}/v2/models/{model.name}/infer",
        content=header + raw,
        headers={"Inference-Header-Content-Length": str(len(header)), "Content-Type": "application/octet-stream"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    _same(_v2_outputs(response.json()), _expected(model), "v2 binary")


def _grpc_tensor(name: str, series: pd.Series) -> pb.ModelInferRequest.InferInputTensor:
    datatype = _datatype(series)
    values = _column_values(series)
    contents = {
        "FP64": {"fp64_contents": values},
        "FP32": {"fp32_contents": values},
        "INT64": {"int64_contents": values},
        "INT32": {"int_contents": values},
        "BOOL": {"bool_contents": values},
        "BYTES": {"bytes_contents": [str(v).encode() for v in values]},
    }[datatype]
    return pb.ModelInferRequest.InferInputTensor(
        name=name, datatype=datatype, shape=[len(values)], contents=pb.InferTensorContents(**contents)
    )


def test_grpc_per_column(served: tuple[own_models.OwnModel, PredictorProcess]) -> None:
    model, server = served
    request = pb.ModelInferRequest(
        model_name=model.name, inputs=[_grpc_tensor(name, model.frame[name]) for name in model.frame.columns]
    )
    with stub(server.grpc_target) as client:
        response = InferResponse.from_grpc(client.ModelInfer(request, timeout=10))
    answer = {}
    for output in response.outputs:
        array = output.as_numpy()
        answer[output.name] = [v.decode() for v in array] if output.datatype == "BYTES" else array
    _same(answer, _expected(model), "gRPC")


def test_invocations_split_and_records(served: tuple[own_models.OwnModel, PredictorProcess]) -> None:
    model, server = served
    frame = model.frame
    split = {"dataframe_split": {"columns": list(frame.columns), "data": own_models.lists(frame)}}
    records = {"dataframe_records": own_models.records(frame)}
    expected = _expected(model)
    for how, body in (("split", split), ("records", records)):
        headers = {"X-Model-Name": model.name}
        response = httpx.post(f"{server.http_url}/invocations", json=body, headers=headers, timeout=10)
        assert response.status_code == 200, f"{how}: {response.text}"
        predictions = response.json()["predictions"]
        if model.extra_outputs:  # a DataFrame answer: one record per row, as MLflow writes it
            _same({name: [row[name] for row in predictions] for name in model.extra_outputs}, expected, how)
        else:
            _same({"predictions": predictions}, {"predictions": expected["predictions"]}, how)
    assert httpx.get(f"{server.http_url}/ping", timeout=5).status_code == 200


def test_v2_metadata_lists_typed_inputs(served: tuple[own_models.OwnModel, PredictorProcess]) -> None:
    model, server = served
    metadata = httpx.get(f"{server.http_url}/v2/models/{model.name}", timeout=5).json()
    per_column = {i["name"]: i["datatype"] for i in metadata["inputs"] if i["name"] in model.frame.columns}
    if per_column:  # listed per column whenever some column is not a double
        assert per_column == {name: _datatype(model.frame[name]) for name in model.frame.columns}
    outputs = {o["name"]: o["datatype"] for o in metadata["outputs"]}
    expected = _expected(model)
    # a classifier also offers its explanations, as an output a request must name (tests/test_monitoring_serving)
    assert ("contributions" in outputs) == (model.probabilities is not None and not model.extra_outputs)
    assert set(outputs) - {"contributions"} == set(expected)
    if "predictions" in expected and expected["predictions"].dtype.kind in "OU":
        assert outputs["predictions"] == "BYTES"  # string class labels keep their type
    if model.probabilities is None and not model.extra_outputs:  # a regressor: its numbers, nothing more
        assert outputs == {"predictions": "FP64"}


def test_v2_outputs_name_what_comes_back(served: tuple[own_models.OwnModel, PredictorProcess]) -> None:
    model, server = served
    expected = _expected(model)
    url = f"{server.http_url}/v2/models/{model.name}/infer"
    for name in expected:
        body = {"inputs": _v2_columns(model.frame), "outputs": [{"name": name}]}
        response = httpx.post(url, json=body, timeout=10)
        assert response.status_code == 200, f"{name}: {response.text}"
        answer = _v2_outputs(response.json())
        assert list(answer) == [name]
        _same(answer, {name: expected[name]}, f"outputs={name}")
    # An output the model does not have (a regressor's probabilities) is the client's mistake, named.
    absent = "probabilities" if "probabilities" not in expected else "labels"
    body = {"inputs": _v2_columns(model.frame), "outputs": [{"name": absent}]}
    response = httpx.post(url, json=body, timeout=10)
    assert response.status_code == 400 and absent in response.json()["error"], response.text


def test_wrong_typed_value_is_a_400_naming_it(served: tuple[own_models.OwnModel, PredictorProcess]) -> None:
    model, server = served
    row = own_models.records(model.frame.head(1))[0]
    column = next(iter(row))
    row[column] = "not-a-number" if model.frame[column].dtype.kind in "fiu" else 12.5
    response = httpx.post(f"{server.http_url}/v1/models/{model.name}:predict", json={"instances": [row]}, timeout=5)
    assert response.status_code == 400, response.text
    assert column in response.json()["error"] and "instances[0]" in response.json()["error"]


def test_explanations_add_up_to_the_probability_or_answer_501(
    served: tuple[own_models.OwnModel, PredictorProcess],
) -> None:
    """:explain (v1) and the v2 "contributions" output: base value + contributions = the model's own
    probability of the predicted class; a model that cannot be explained exactly answers 501 naming what can."""
    model, server = served
    url = f"{server.http_url}/v1/models/{model.name}:explain"
    response = httpx.post(url, json={"instances": own_models.records(model.frame)}, timeout=30)
    if model.probabilities is None or model.extra_outputs:
        assert response.status_code == 501, response.text
        assert "Supported:" in response.json()["error"]
        return
    assert response.status_code == 200, response.text
    body = response.json()
    proba = np.asarray(model.probabilities(model.frame))
    labels = list(np.asarray(model.predictions(model.frame)))
    classes = [labels[i] for i in range(len(labels))]
    for row, explanation in enumerate(body["explanations"]):
        assert set(explanation["contributions"]) == set(model.frame.columns)  # input columns, not one-hot ones
        assert explanation["class"] == own_models.json_value(classes[row])
        total = explanation["base_value"] + sum(explanation["contributions"].values())
        assert total == pytest.approx(proba[row].max(), abs=1e-6)
    v2 = httpx.post(
        f"{server.http_url}/v2/models/{model.name}/infer",
        json={"inputs": _v2_columns(model.frame), "outputs": [{"name": "contributions"}]},
        timeout=30,
    )
    assert v2.status_code == 200, v2.text
    (output,) = v2.json()["outputs"]
    contributions = np.asarray(output["data"]).reshape(output["shape"])
    np.testing.assert_allclose(contributions.sum(axis=1), proba.max(axis=1), atol=1e-6)
