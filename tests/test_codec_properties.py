"""Properties of the v1 / v2 decoders, checked with Hypothesis on the functions themselves (no server).

1. Whatever JSON arrives, ``decode_v1`` and ``decode_v2_rest`` either return rows — a float64 [N, F]
   array of finite values within float32's range (NaN only where a feature store fills it in) — or raise
   ``BadRequest``/``PayloadTooLarge``.
   Any other exception would be a 500 and a closed connection.
2. Valid matrices come back unchanged, through every way of sending them (v1 lists or objects, v2 one
   tensor or one per feature, the binary extension in FP32 and FP64).

Runs are derandomized (the same cases on every run) and keep no example database in the source tree.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir
from hypothesis.extra.numpy import arrays

from predictor.errors import BadRequest, PayloadTooLarge
from predictor.protocol import v1, v2
from predictor.protocol.rows import NUMERIC_DATATYPES, OUTPUT_NAMES, Rows
from predictor.protocol.schema import MAX_MAGNITUDE, Column, Schema

# Hypothesis keeps caches in ./.hypothesis by default; tests never write into the source tree.
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "predictor-hypothesis")

PROPERTY = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
ROUND_TRIP = settings(PROPERTY, max_examples=100)

NAMES = ("temperature_c", "age_months", "load_ratio")


def _doubles(names: tuple[str, ...], **options: Any) -> Schema:
    return Schema(tuple(Column(name, "double") for name in names), **options)


decode_v1 = v1.decode


def decode_v2_rest(body: bytes, header_length: str | None, schema: Schema) -> Any:
    return v2.decode(body, header_length, schema, OUTPUT_NAMES)


SCHEMAS = [_doubles(NAMES), _doubles(NAMES, entity_key="equipment_id"), _doubles(("x",), max_instances=3)]
SCHEMA_IDS = ["plain", "entity", "narrow"]
KEYS = [
    "instances",
    "inputs",
    "name",
    "shape",
    "datatype",
    "data",
    "parameters",
    "binary_data_size",
    "id",
    "outputs",
    "binary_data",
    "binary_data_output",
    "equipment_id",
    *NAMES,
]
DATATYPES = [*NUMERIC_DATATYPES, "BYTES", "FP128", "fp32", ""]

# --------------------------------------------------------------------------------------- strategies

# What orjson can parse: ints within 64 bits (bigger ones arrive as floats), finite floats, any text.
json_ints = st.integers(min_value=-(2**63), max_value=2**64 - 1)
json_scalars = st.none() | st.booleans() | json_ints | st.floats(allow_nan=False, allow_infinity=False) | st.text()
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=6) | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=5), inner, max_size=6)
    ),
    max_leaves=40,
)
finite = st.floats(allow_nan=False, allow_infinity=False)
numbers = st.integers(-(2**63), 2**63) | st.floats(allow_nan=False, allow_infinity=False) | st.booleans()
junk = (
    st.none()
    | st.text(max_size=3)
    | st.lists(json_ints, max_size=2)
    | st.dictionaries(st.text(max_size=2), json_ints, max_size=1)
)


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place inside a JSON value, as a key/index path."""
    found = [prefix]
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in items:
        found += paths(child, (*prefix, key))
    return found


@st.composite
def broken_once(draw: st.DrawFn, valid: Any) -> Any:
    """A valid body, or the same body wrong in exactly one place (replaced, removed or wrapped)."""
    if draw(st.booleans()):
        return valid
    body = orjson.loads(orjson.dumps(valid))  # a deep copy
    path = draw(st.sampled_from(paths(body)))
    if not path:
        return draw(junk)
    parent = body
    for key in path[:-1]:
        parent = parent[key]
    action = draw(st.sampled_from(["replace", "remove", "wrap"]))
    if action == "remove":
        del parent[path[-1]]
    else:
        parent[path[-1]] = [parent[path[-1]]] if action == "wrap" else draw(junk | numbers | st.text(max_size=300))
    return body


@st.composite
def v1_bodies(draw: st.DrawFn, schema: Schema) -> Any:
    """Valid v1 bodies for ``schema`` (rows, objects, entity ids), then maybe broken in one place."""
    rows = st.lists(finite, min_size=schema.width, max_size=schema.width)
    keyed = st.fixed_dictionaries({name: finite for name in schema.feature_names})
    if schema.entity_key:  # some features given, the rest from the store
        keyed |= st.fixed_dictionaries(
            {schema.entity_key: st.text(min_size=1, max_size=8)},
            optional={name: finite for name in schema.feature_names},
        )
    key = draw(st.sampled_from(["instances", "inputs"]))
    return draw(broken_once({key: draw(st.lists(rows | keyed, min_size=1, max_size=5))}))


@st.composite
def v2_bodies(draw: st.DrawFn, schema: Schema) -> Any:
    """Valid v2 JSON bodies for ``schema`` (one [N, F] tensor or one per feature), then maybe broken."""
    n = draw(st.integers(1, 5))
    datatype = draw(st.sampled_from(["FP64", "FP32", "INT64", "BOOL"]))
    element = st.booleans() if datatype == "BOOL" else st.integers(-100, 100) if datatype == "INT64" else finite
    if draw(st.booleans()):
        inputs = [
            {
                "name": "input-0",
                "shape": [n, schema.width],
                "datatype": datatype,
                "data": draw(st.lists(element, min_size=n * schema.width, max_size=n * schema.width)),
            }
        ]
    else:
        inputs = [
            {"name": name, "shape": [n], "datatype": datatype, "data": draw(st.lists(element, min_size=n, max_size=n))}
            for name in schema.feature_names
        ]
    if schema.entity_key and draw(st.booleans()):
        inputs.append(
            {
                "name": schema.entity_key,
                "shape": [n],
                "datatype": "BYTES",
                "data": draw(st.lists(st.text(min_size=1, max_size=5), min_size=n, max_size=n)),
            }
        )
    body: dict[str, Any] = {"inputs": draw(st.permutations(inputs))}
    if draw(st.booleans()):
        body["outputs"] = [{"name": "probabilities", "parameters": {"binary_data": draw(st.booleans())}}]
    if draw(st.booleans()):
        body["id"], body["parameters"] = draw(st.text(max_size=5)), {"binary_data_output": draw(st.booleans())}
    return draw(broken_once(body))


@st.composite
def binary_bodies(draw: st.DrawFn, schema: Schema) -> tuple[Any, bytes]:
    """A binary-extension header and its raw tensor (well-formed or random bytes), then maybe broken."""
    n = draw(st.integers(1, 5))
    datatype = draw(st.sampled_from(["FP64", "FP32", "FP16", "INT32", "UINT8", "BOOL"]))
    dtype = np.dtype(NUMERIC_DATATYPES[datatype]).newbyteorder("<")
    if draw(st.booleans()):
        finite_only = {"allow_nan": False, "allow_infinity": False} if dtype.kind == "f" else None
        raw = draw(arrays(dtype, (n, schema.width), elements=finite_only)).tobytes()
    else:
        raw = draw(st.binary(max_size=dtype.itemsize * n * schema.width + 3))
    header = {
        "inputs": [
            {
                "name": "input-0",
                "shape": [n, schema.width],
                "datatype": datatype,
                "parameters": {"binary_data_size": len(raw)},
            }
        ]
    }
    return draw(broken_once(header)), raw


# ------------------------------------------------------------------------------------------ property 1


def assert_rows_or_rejected(decode: Any, schema: Schema) -> None:
    try:
        rows = decode()
    except (BadRequest, PayloadTooLarge) as exc:
        assert str(exc)  # every rejection says something
        event(f"rejected: {type(exc).__name__}")
        return
    event("decoded" if rows.entity_ids is None else "decoded with entity ids")
    assert isinstance(rows, Rows)
    values = rows.values
    assert isinstance(values, np.ndarray) and values.dtype == np.float64 and values.ndim == 2
    assert values.shape[1] == schema.width and 1 <= values.shape[0] <= schema.max_instances
    present = values[~np.isnan(values)]
    assert (np.abs(present) <= MAX_MAGNITUDE).all()  # what the model (float32 inside) can take
    if rows.entity_ids is None:
        assert np.isfinite(values).all()
    else:  # NaN only in rows whose features come from the store
        assert schema.entity_key is not None and len(rows.entity_ids) == values.shape[0]
        without_id = [i for i, entity in enumerate(rows.entity_ids) if entity is None]
        assert np.isfinite(values[without_id]).all()


@pytest.mark.parametrize("schema", SCHEMAS, ids=SCHEMA_IDS)
@PROPERTY
@given(data=st.data())
def test_decode_v1_returns_rows_or_rejects(schema: Schema, data: st.DataObject) -> None:
    payload = data.draw(json_values | v1_bodies(schema), label="payload")
    assert_rows_or_rejected(lambda: decode_v1(payload, schema), schema)


@pytest.mark.parametrize("schema", SCHEMAS, ids=SCHEMA_IDS)
@PROPERTY
@given(data=st.data())
def test_decode_v2_json_returns_rows_or_rejects(schema: Schema, data: st.DataObject) -> None:
    payload = data.draw(json_values | v2_bodies(schema), label="payload")
    body = orjson.dumps(payload)
    assert_rows_or_rejected(lambda: decode_v2_rest(body, None, schema).rows, schema)


@pytest.mark.parametrize("schema", SCHEMAS, ids=SCHEMA_IDS)
@PROPERTY
@given(data=st.data(), lie=st.none() | st.integers(-2, 400).map(str) | st.text(max_size=4))
def test_decode_v2_binary_returns_rows_or_rejects(schema: Schema, data: st.DataObject, lie: str | None) -> None:
    header, raw = data.draw(binary_bodies(schema), label="header and raw tensor")
    encoded = orjson.dumps(header)
    honest = data.draw(st.booleans(), label="honest Inference-Header-Content-Length")
    header_length = str(len(encoded)) if honest or lie is None else lie
    assert_rows_or_rejected(lambda: decode_v2_rest(encoded + raw, header_length, schema).rows, schema)


@PROPERTY
@given(body=st.binary(max_size=200))
def test_any_bytes_decode_or_reject(body: bytes) -> None:
    assert_rows_or_rejected(lambda: decode_v2_rest(body, None, SCHEMAS[0]).rows, SCHEMAS[0])
    assert_rows_or_rejected(lambda: decode_v2_rest(body, str(len(body) // 2), SCHEMAS[0]).rows, SCHEMAS[0])


def test_more_instances_than_allowed_is_payload_too_large() -> None:
    with pytest.raises(PayloadTooLarge):
        decode_v1({"instances": [[1.0]] * 4}, SCHEMAS[2])
    with pytest.raises(PayloadTooLarge):
        decode_v2_rest(
            orjson.dumps({"inputs": [{"name": "m", "shape": [4, 1], "datatype": "FP64", "data": [1, 2, 3, 4]}]}),
            None,
            SCHEMAS[2],
        )


# ------------------------------------------------------------------------------------------ property 2

WIDTH = len(NAMES)
in_range = st.floats(-MAX_MAGNITUDE, MAX_MAGNITUDE)
matrices = st.integers(1, 12).flatmap(lambda n: arrays(np.float64, (n, WIDTH), elements=in_range))
fp32_matrices = st.integers(1, 12).flatmap(
    lambda n: arrays(np.float32, (n, WIDTH), elements=st.floats(width=32, allow_nan=False, allow_infinity=False))
)


def binary_request(matrix: np.ndarray, datatype: str) -> tuple[bytes, str]:
    raw = np.ascontiguousarray(matrix, dtype=np.dtype(NUMERIC_DATATYPES[datatype]).newbyteorder("<")).tobytes()
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "input-0",
                    "shape": list(matrix.shape),
                    "datatype": datatype,
                    "parameters": {"binary_data_size": len(raw)},
                }
            ]
        }
    )
    return header + raw, str(len(header))


@ROUND_TRIP
@given(matrix=matrices)
def test_v1_rows_round_trip(matrix: np.ndarray) -> None:
    payload = orjson.loads(orjson.dumps({"instances": matrix.tolist()}))
    np.testing.assert_array_equal(decode_v1(payload, SCHEMAS[0]).values, matrix)


@ROUND_TRIP
@given(matrix=matrices)
def test_v1_objects_round_trip(matrix: np.ndarray) -> None:
    payload = orjson.loads(orjson.dumps({"inputs": [dict(zip(NAMES, row, strict=False)) for row in matrix.tolist()]}))
    np.testing.assert_array_equal(decode_v1(payload, SCHEMAS[0]).values, matrix)


@ROUND_TRIP
@given(matrix=matrices, nested=st.booleans())
def test_v2_matrix_tensor_round_trips(matrix: np.ndarray, nested: bool) -> None:
    data = matrix.tolist() if nested else matrix.reshape(-1).tolist()
    body = orjson.dumps(
        {"inputs": [{"name": "input-0", "shape": list(matrix.shape), "datatype": "FP64", "data": data}]}
    )
    np.testing.assert_array_equal(decode_v2_rest(body, None, SCHEMAS[0]).rows.values, matrix)


@ROUND_TRIP
@given(matrix=matrices)
def test_v2_tensor_per_feature_round_trips(matrix: np.ndarray) -> None:
    body = orjson.dumps(
        {
            "inputs": [
                {"name": name, "shape": [matrix.shape[0]], "datatype": "FP64", "data": matrix[:, j].tolist()}
                for j, name in enumerate(NAMES)
            ][::-1]
        }
    )
    np.testing.assert_array_equal(decode_v2_rest(body, None, SCHEMAS[0]).rows.values, matrix)


@ROUND_TRIP
@given(matrix=matrices)
def test_v2_binary_fp64_round_trips(matrix: np.ndarray) -> None:
    body, header_length = binary_request(matrix, "FP64")
    np.testing.assert_array_equal(decode_v2_rest(body, header_length, SCHEMAS[0]).rows.values, matrix)


@ROUND_TRIP
@given(matrix=fp32_matrices)
def test_v2_binary_fp32_round_trips(matrix: np.ndarray) -> None:
    body, header_length = binary_request(matrix, "FP32")
    decoded = decode_v2_rest(body, header_length, SCHEMAS[0]).rows.values
    assert decoded.dtype == np.float64
    np.testing.assert_array_equal(decoded, matrix.astype(np.float64))


# ------------------------------------------------------------------------------------------ regressions
# Each of these was a 500 found by the fuzz pass (a TypeError or RecursionError escaping the codec).


def nested(depth: int, leaf: Any = 1.0) -> Any:
    for _ in range(depth):
        leaf = [leaf]
    return leaf


@pytest.mark.parametrize("datatype", [[], {}, ["FP64"]], ids=repr)
def test_an_unhashable_datatype_is_a_bad_request(datatype: Any) -> None:
    body = orjson.dumps({"inputs": [{"name": "input-0", "shape": [1, 3], "datatype": datatype, "data": [1, 2, 3]}]})
    with pytest.raises(BadRequest, match="not a v2 datatype"):
        decode_v2_rest(body, None, SCHEMAS[0])


@pytest.mark.parametrize("case", ["v1 feature", "v1 keyed feature", "v2 binary_data_size", "v1 entity id"])
def test_a_deeply_nested_value_is_a_bad_request(case: str) -> None:
    deep = nested(1000)  # orjson.loads accepts this depth (its limit is 1024) but writes only 254 levels
    with pytest.raises(BadRequest):
        if case == "v1 feature":
            decode_v1({"instances": [[deep, 1.0, 1.0]]}, SCHEMAS[0])
        elif case == "v1 keyed feature":
            decode_v1({"instances": [{"temperature_c": deep}]}, SCHEMAS[0])
        elif case == "v1 entity id":
            decode_v1({"instances": [{"equipment_id": deep}]}, SCHEMAS[1])
        else:
            body = (
                b'{"inputs": [{"name": "x", "shape": [1], "datatype": "FP64", "parameters": {"binary_data_size": '
                + b"[" * 1000
                + b"1"
                + b"]" * 1000
                + b"}}]}"
            )
            decode_v2_rest(body, None, SCHEMAS[0])


@pytest.mark.parametrize("value", [1e39, -3.5e38, 1e300])
def test_a_magnitude_beyond_float32_is_a_bad_request(value: float) -> None:
    with pytest.raises(BadRequest, match="beyond"):
        decode_v1({"instances": [[value, 1.0, 1.0]]}, SCHEMAS[0])
    body = orjson.dumps({"inputs": [{"name": "m", "shape": [1, 3], "datatype": "FP64", "data": [value, 1, 1]}]})
    with pytest.raises(BadRequest, match="beyond"):
        decode_v2_rest(body, None, SCHEMAS[0])
