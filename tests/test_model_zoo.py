"""The generated zoo (tests/model_zoo.py) served by one real server, every model under its own name
(``--model NAME=PATH``), and asked over every door: each answer must equal what ``mlflow.pyfunc`` answers for
the same rows in this process (and the estimator's own ``predict_proba`` where it has one). A failure names the
model, the door and the output.

Deliberate differences from ``mlflow models serve`` (README, "Serving your own model") are asserted as such:
v1 has no inference parameters (the signature's defaults apply); a frame or dict answer is records under
``predictions`` on v1 and one output per column on v2.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import httpx
import numpy as np
import orjson
import pandas as pd
import pytest
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.infer_type import InferResponse

from tests import model_zoo
from tests.grpc_calls import stub
from tests.servers import PredictorProcess, start_predictor

BUILDERS = model_zoo.zoo_builders()


@dataclass
class Served:
    model: model_zoo.ZooModel
    expected: dict[str, np.ndarray]  # output name -> values, as v2 names them
    expected_default: dict[str, np.ndarray]  # the same without the request's params (v1 has none)
    invocations: Any  # what mlflow models serve writes under "predictions"


@pytest.fixture(scope="module")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PredictorProcess, dict[str, Served]]]:
    root = tmp_path_factory.mktemp("zoo")
    served: dict[str, Served] = {}
    arguments: list[str] = []
    for name, build in BUILDERS.items():
        model = build()
        path = root / name
        model.save(path)
        answer = model_zoo.oracle(path, model, model.params)
        default = model_zoo.oracle(path, model, None) if model.params else answer
        served[name] = Served(model, _outputs(answer, model), _outputs(default, model), _mlflow_json(answer))
        arguments += ["--model", f"{name}={path}"]
    server = start_predictor("sqlite:///" + str(root / "unused.db"), root, *arguments, model_name="zoo")
    try:
        yield server.wait_ready(timeout_s=180), served
    finally:
        server.stop()


def _outputs(answer: Any, model: model_zoo.ZooModel) -> dict[str, np.ndarray]:
    """As v2 names them: a DataFrame's or dict's columns; a named Series (its signature names the output) by its
    name; else predictions (and probabilities)."""
    if isinstance(answer, pd.Series) and answer.name is not None:
        return {str(answer.name): answer.to_numpy()}
    if isinstance(answer, pd.DataFrame):
        return {str(name): answer[name].to_numpy() for name in answer.columns}
    if isinstance(answer, dict):
        return {str(name): np.asarray(values) for name, values in answer.items()}
    outputs = {"predictions": np.asarray(answer)}
    if model.probabilities is not None:
        outputs["probabilities"] = model.probabilities(model.rows)
    return outputs


def _mlflow_json(answer: Any) -> Any:
    """``predictions`` as ``mlflow models serve`` writes it."""
    if isinstance(answer, pd.DataFrame):
        return orjson.loads(answer.to_json(orient="records"))
    if isinstance(answer, dict):
        return {name: np.asarray(values).tolist() for name, values in answer.items()}
    return np.asarray(answer).tolist()


# ------------------------------------------------------------------------------------ requests


def _value(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    return value.item() if isinstance(value, np.generic) else value


def _records(rows: pd.DataFrame) -> list[dict[str, Any]]:
    return [{k: _value(v) for k, v in row.items()} for row in rows.to_dict(orient="records")]


def _lists(rows: pd.DataFrame) -> list[list[Any]]:
    return [[_value(v) for v in row] for row in rows.itertuples(index=False)]


def _v2_inputs(model: model_zoo.ZooModel) -> list[dict[str, Any]]:
    rows = model.rows
    if not model.named:
        return [{"name": "input-0", "datatype": "FP64", "shape": list(rows.shape), "data": _lists(rows)}]
    return [
        {"name": str(c), "datatype": "FP64", "shape": [len(rows)], "data": [_value(v) for v in rows[c]]}
        for c in rows.columns
    ]


def _v2_answer(body: dict[str, Any]) -> dict[str, np.ndarray]:
    return {o["name"]: np.asarray(o["data"]).reshape(o["shape"]) for o in body["outputs"]}


def _v1_answer(body: dict[str, Any], model: model_zoo.ZooModel) -> dict[str, np.ndarray]:
    predictions = body["predictions"]
    if model.answers in ("frame", "dict"):  # records, one per row
        return {name: np.asarray([row[name] for row in predictions]) for name in predictions[0]}
    answer = {"predictions": np.asarray(predictions)}
    if "probabilities" in body:
        answer["probabilities"] = np.asarray(body["probabilities"])
    return answer


def _post(server: PredictorProcess, path: str, body: Any, **options: Any) -> dict[str, Any]:
    response = httpx.post(f"{server.http_url}{path}", timeout=30, **options, **({"json": body} if body else {}))
    assert response.status_code == 200, response.text
    return dict(response.json())


def v1_records(server: PredictorProcess, served: Served) -> dict[str, np.ndarray]:
    body = _post(server, f"/v1/models/{served.model.name}:predict", {"instances": _records(served.model.rows)})
    return _v1_answer(body, served.model)


def v1_lists(server: PredictorProcess, served: Served) -> dict[str, np.ndarray]:
    body = _post(server, f"/v1/models/{served.model.name}:predict", {"instances": _lists(served.model.rows)})
    return _v1_answer(body, served.model)


def v2_json(server: PredictorProcess, served: Served) -> dict[str, np.ndarray]:
    request: dict[str, Any] = {"inputs": _v2_inputs(served.model)}
    if served.model.params:
        request["parameters"] = served.model.params
    return _v2_answer(_post(server, f"/v2/models/{served.model.name}/infer", request))


def v2_binary(server: PredictorProcess, served: Served) -> dict[str, np.ndarray]:
    inputs, raw = [], b""
    for tensor in _v2_inputs(served.model):
        values = np.asarray(tensor.pop("data"), dtype=float)  # None -> NaN: the binary form has no null
        chunk = values.astype("<f8").tobytes()
        inputs.append({**tensor, "parameters": {"binary_data_size": len(chunk)}})
        raw += chunk
    request: dict[str, Any] = {"inputs": inputs}
    if served.model.params:
        request["parameters"] = served.model.params
    header = orjson.dumps(request)
    body = _post(
        server,
        f"/v2/models/{served.model.name}/infer",
        None,
        content=header + raw,
        headers={"Inference-Header-Content-Length": str(len(header)), "Content-Type": "application/octet-stream"},
    )
    return _v2_answer(body)


def _grpc_parameter(value: Any) -> pb.InferParameter:
    """The protocol's gRPC parameters are bool, int64 or string: a fractional number travels as text."""
    if isinstance(value, bool):
        return pb.InferParameter(bool_param=value)
    if isinstance(value, int):
        return pb.InferParameter(int64_param=value)
    return pb.InferParameter(string_param=str(value))


def grpc_tensors(server: PredictorProcess, served: Served) -> dict[str, np.ndarray]:
    tensors = []
    for tensor in _v2_inputs(served.model):
        values = np.asarray(tensor["data"], dtype=float).ravel()
        tensors.append(
            pb.ModelInferRequest.InferInputTensor(
                name=tensor["name"],
                datatype="FP64",
                shape=tensor["shape"],
                contents=pb.InferTensorContents(fp64_contents=values),
            )
        )
    parameters = {k: _grpc_parameter(v) for k, v in (served.model.params or {}).items()}
    request = pb.ModelInferRequest(model_name=served.model.name, inputs=tensors, parameters=parameters)
    with stub(server.grpc_target) as client:
        response = InferResponse.from_grpc(client.ModelInfer(request, timeout=30))
    return {
        o.name: np.asarray([v.decode() for v in o.as_numpy().ravel()]).reshape(o.shape)
        if o.datatype == "BYTES"
        else o.as_numpy()
        for o in response.outputs
    }


def _invocations(server: PredictorProcess, served: Served, body: dict[str, Any]) -> Any:
    if served.model.params:
        body["params"] = served.model.params
    return _post(server, "/invocations", body, headers={"X-Model-Name": served.model.name})["predictions"]


def inv_split(server: PredictorProcess, served: Served) -> Any:
    rows = served.model.rows
    return _invocations(server, served, {"dataframe_split": {"columns": list(rows.columns), "data": _lists(rows)}})


def inv_records(server: PredictorProcess, served: Served) -> Any:
    return _invocations(server, served, {"dataframe_records": _records(served.model.rows)})


def inv_instances(server: PredictorProcess, served: Served) -> Any:
    rows = served.model.rows
    return _invocations(server, served, {"instances": _records(rows) if served.model.named else _lists(rows)})


def inv_inputs(server: PredictorProcess, served: Served) -> Any:
    rows = served.model.rows
    if served.model.named:
        return _invocations(server, served, {"inputs": {str(c): [_value(v) for v in rows[c]] for c in rows.columns}})
    return _invocations(server, served, {"inputs": _lists(rows)})


Door = Callable[[PredictorProcess, Served], Any]
KSERVE_DOORS: dict[str, Door] = {
    "v1 records": v1_records,
    "v1 lists": v1_lists,
    "v2 JSON": v2_json,
    "v2 binary": v2_binary,
    "gRPC": grpc_tensors,
}
MLFLOW_DOORS: dict[str, Door] = {
    "invocations split": inv_split,
    "invocations records": inv_records,
    "invocations instances": inv_instances,
    "invocations inputs": inv_inputs,
}
NAMED_ONLY = {"v1 records", "invocations split", "invocations records"}


def _cases() -> list[Any]:
    cases = []
    for name in BUILDERS:
        tensor = name.endswith("-tensor")
        for door in (*KSERVE_DOORS, *MLFLOW_DOORS):
            if tensor and door in NAMED_ONLY:
                continue
            cases.append(pytest.param(name, door, id=f"{name}|{door}"))
    return cases


def _same(got: Any, expected: Any, where: str) -> None:
    got_array, expected_array = np.asarray(got), np.asarray(expected)
    assert got_array.shape == expected_array.shape, f"{where}: shape {got_array.shape} != {expected_array.shape}"
    if expected_array.dtype.kind in "fc":
        np.testing.assert_allclose(got_array.astype(float), expected_array, rtol=1e-6, atol=1e-9, err_msg=where)
    else:
        assert got_array.tolist() == expected_array.tolist(), where


@pytest.mark.parametrize(("name", "door"), _cases())
def test_every_model_answers_as_mlflow_over_every_door(
    zoo: tuple[PredictorProcess, dict[str, Served]], name: str, door: str
) -> None:
    server, served = zoo
    case = served[name]
    if door in MLFLOW_DOORS:
        got = MLFLOW_DOORS[door](server, case)
        if isinstance(case.invocations, list) and case.invocations and isinstance(case.invocations[0], dict):
            assert len(got) == len(case.invocations), f"{name} over {door}"
            for row, (answer, expected) in enumerate(zip(got, case.invocations, strict=True)):
                assert set(answer) == set(expected), f"{name} over {door}: row {row}"
                for column, value in expected.items():
                    _same(answer[column], value, f"{name} over {door}: row {row}, {column}")
        elif isinstance(case.invocations, dict):
            assert set(got) == set(case.invocations), f"{name} over {door}"
            for output, values in case.invocations.items():
                _same(got[output], values, f"{name} over {door}: {output}")
        else:
            _same(got, case.invocations, f"{name} over {door}")
        return
    answer = KSERVE_DOORS[door](server, case)
    expected = case.expected_default if door.startswith("v1") else case.expected
    if door.startswith("v1") and case.model.answers == "array" and "predictions" not in expected:
        expected = {"predictions": next(iter(expected.values()))}  # v1 answers predictions whatever v2 calls it
    for output, values in expected.items():
        assert output in answer, f"{name} over {door}: no {output!r} in the answer (got {sorted(answer)})"
        _same(answer[output], values, f"{name} over {door}: {output}")


def test_every_model_of_the_zoo_is_served(zoo: tuple[PredictorProcess, dict[str, Served]]) -> None:
    server, served = zoo
    index = httpx.post(f"{server.http_url}/v2/repository/index", timeout=10).json()
    states = {entry["name"]: (entry["state"], entry["reason"]) for entry in index}
    not_ready = {name: reason for name, (state, reason) in states.items() if state != "READY"}
    assert not not_ready, not_ready
    assert set(states) == set(served)


# ------------------------------------------------------------------------------------ what is refused, and said


def _error(response: httpx.Response) -> str:
    assert response.status_code == 400, response.text
    return str(response.json()["error"])


def test_a_parameter_of_the_wrong_type_or_name_is_a_400_naming_it_on_every_door(
    zoo: tuple[PredictorProcess, dict[str, Served]],
) -> None:
    server, served = zoo
    rows = served["pyfunc_params"].model.rows
    split = {"columns": list(rows.columns), "data": _lists(rows)}
    headers = {"X-Model-Name": "pyfunc_params"}
    wrong_type = httpx.post(
        f"{server.http_url}/invocations", json={"dataframe_split": split, "params": {"factor": "much"}}, headers=headers
    )
    assert _error(wrong_type) == "parameter factor needs a double, got 'much'"
    inputs = _v2_inputs(served["pyfunc_params"].model)
    unknown = httpx.post(
        f"{server.http_url}/v2/models/pyfunc_params/infer", json={"inputs": inputs, "parameters": {"factr": 2}}
    )
    assert _error(unknown) == "parameter 'factr' is not one this model takes; it takes factor (double, default 1.0)"
    request = pb.ModelInferRequest(
        model_name="pyfunc_params",
        inputs=[
            pb.ModelInferRequest.InferInputTensor(
                name=t["name"],
                datatype="FP64",
                shape=t["shape"],
                contents=pb.InferTensorContents(fp64_contents=t["data"]),
            )
            for t in inputs
        ],
        parameters={"factor": pb.InferParameter(bool_param=True)},
    )
    with stub(server.grpc_target) as client, pytest.raises(grpc.RpcError) as refused:
        client.ModelInfer(request, timeout=30)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert refused.value.details() == "parameter factor needs a double, got true"


def test_a_null_in_a_required_column_is_a_400_naming_row_and_column_on_every_door(
    zoo: tuple[PredictorProcess, dict[str, Served]],
) -> None:
    """An optional column's null is a missing value the pipeline imputes (the zoo's imputing model, above); a
    required column's null is refused the same way over v1, v2 JSON and /invocations."""
    server, served = zoo
    record = _records(served["imputing-columns"].model.rows.head(1))[0] | {"temperature": None}
    v1 = httpx.post(f"{server.http_url}/v1/models/imputing-columns:predict", json={"instances": [record]})
    assert _error(v1) == "instances[0]: column temperature (double) is null; it is required"
    inputs = [{"name": k, "datatype": "FP64", "shape": [1], "data": [v]} for k, v in record.items()]
    v2 = httpx.post(f"{server.http_url}/v2/models/imputing-columns/infer", json={"inputs": inputs})
    assert (
        _error(v2) == "temperature row 0: column temperature (double) is null or NaN (a missing value); it is required"
    )
    invocations = httpx.post(
        f"{server.http_url}/invocations",
        json={"dataframe_records": [record]},
        headers={"X-Model-Name": "imputing-columns"},
    )
    assert _error(invocations) == "dataframe_records[0]: column temperature (double) is null; it is required"


def test_a_model_logged_without_a_signature_is_served_saying_so(
    zoo: tuple[PredictorProcess, dict[str, Served]],
) -> None:
    """Served on the columns its estimator kept (names where it has them), with a warning at load that type
    checks beyond numbers are off; its metadata lists those columns."""
    server, _ = zoo
    log = server.log(last=10**7)
    for name in ("forest-none", "xgb_native-none", "lgb_native-none", "catboost-none"):
        metadata = httpx.get(f"{server.http_url}/v2/models/{name}", timeout=10).json()
        listed = next(i for i in metadata["inputs"] if i["name"] == "input-0")
        assert listed["parameters"]["feature_names"] == ",".join(model_zoo.COLUMNS), (name, metadata)
        assert f"{name} (version local) was logged without a signature: serving it on the 4 column names" in log


def test_v2_names_an_output_as_the_output_schema_does_and_v1_still_says_predictions(
    zoo: tuple[PredictorProcess, dict[str, Served]],
) -> None:
    """pyfunc_series was logged with infer_signature(X, pd.Series(..., name="failure_score")): its v2 output and
    metadata say failure_score (a request may ask for it by that name); v1 and /invocations answer predictions."""
    server, served = zoo
    metadata = httpx.get(f"{server.http_url}/v2/models/pyfunc_series", timeout=10).json()
    assert [o["name"] for o in metadata["outputs"]] == ["failure_score"]
    request = {"inputs": _v2_inputs(served["pyfunc_series"].model), "outputs": [{"name": "failure_score"}]}
    answer = _post(server, "/v2/models/pyfunc_series/infer", request)
    assert [o["name"] for o in answer["outputs"]] == ["failure_score"]
    records = _records(served["pyfunc_series"].model.rows)
    assert "predictions" in _post(server, "/v1/models/pyfunc_series:predict", {"instances": records})
