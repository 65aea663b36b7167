"""Properties of the typed decoder (predictor/protocol), checked with Hypothesis on the functions (no server).

For generated typed schemas (any mix of double, float, long, integer, boolean, string, datetime, binary) and
generated rows:

1. Every way of sending the rows — v1 objects, v1 lists, v2 one JSON tensor per column, the same tensors in
   the binary extension, and ``/invocations`` (dataframe_split, dataframe_records, inputs as columns) —
   decodes to the same rows, equal to the values sent.
2. A value that does not fit its column raises ``BadRequest`` naming the row and the column (v2 tensors name
   the column), never any other exception: anything else would be a 500.

Value rules the generators follow (the README's "Serving your own model", item 4): numbers within float32's range;
``float`` values exactly representable in float32 (an FP32 tensor carries no more); integers within their
column's range; date-times naive, ISO-8601; binary values base64 in JSON, UTF-8 text in v2 BYTES tensors.
Runs are derandomized and keep no example database in the source tree.
"""

from __future__ import annotations

import base64
import datetime as dt
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

from predictor.errors import BadRequest
from predictor.protocol import mlflow, v1, v2
from predictor.protocol.rows import OUTPUT_NAMES
from predictor.protocol.schema import COLUMN_TYPES, MAX_MAGNITUDE, NUMERIC, Column, Schema, parse_json

set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "predictor-hypothesis")

PROPERTY = settings(
    max_examples=120,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

NAME = st.from_regex(r"[a-z][a-z0-9_]{0,7}", fullmatch=True)
TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)  # no lone surrogates: not UTF-8
INTS = st.integers(-(2**63), 2**63 - 1)  # what a JSON writer (orjson) writes as an integer
DATETIMES = st.datetimes(min_value=dt.datetime(1700, 1, 1), max_value=dt.datetime(2250, 12, 31))


@st.composite
def schemas(draw: st.DrawFn) -> Schema:
    names = draw(st.lists(NAME, min_size=1, max_size=6, unique=True))
    columns = tuple(Column(name, draw(st.sampled_from(COLUMN_TYPES))) for name in names)
    numeric = all(c.type in NUMERIC for c in columns)
    # All-numeric schemas may travel as the float64 matrix (the fast path) or as typed objects.
    return Schema(columns, matrix=numeric and draw(st.booleans()))


def _values(column: Column) -> st.SearchStrategy[Any]:
    """Python values that fit the column, as the decoded row must hold them."""
    bound = 2.0**100  # well inside float32's range, and exact in float32
    return {
        "double": st.floats(-bound, bound) | st.integers(-(2**53), 2**53).map(float),
        "float": st.floats(-bound, bound, width=32),
        "long": st.integers(-(2**63), 2**63 - 1),
        "integer": st.integers(-(2**31), 2**31 - 1),
        "boolean": st.booleans(),
        "string": TEXT,
        "datetime": DATETIMES,
        "binary": TEXT.map(str.encode),  # v2 BYTES elements are text: binary values must be UTF-8 to travel there
    }[column.type]


@st.composite
def typed_rows(draw: st.DrawFn) -> tuple[Schema, list[list[Any]]]:
    schema = draw(schemas())
    count = draw(st.integers(1, 5))
    rows = [[draw(_values(c)) for c in schema.columns] for _ in range(count)]
    return schema, rows


def _json(value: Any, column: Column) -> Any:
    if column.type == "datetime":
        return value.isoformat()
    if column.type == "binary":
        return base64.b64encode(value).decode()
    return value


def _tensor_element(value: Any, column: Column) -> Any:
    if column.type == "datetime":
        return value.isoformat()
    if column.type == "binary":
        return value.decode()
    return value


def _expected(schema: Schema, rows: list[list[Any]]) -> np.ndarray:
    if schema.matrix:
        return np.asarray(rows, dtype=np.float64).reshape(len(rows), schema.width)
    out = schema.empty(len(rows))
    for i, row in enumerate(rows):
        for j, (value, column) in enumerate(zip(row, schema.columns, strict=True)):
            out[i, j] = np.datetime64(value, "ns") if column.type == "datetime" else value
    return out


def _same(got: np.ndarray, expected: np.ndarray, how: str) -> None:
    assert got.shape == expected.shape, how
    if expected.dtype == np.float64:
        assert got.dtype == np.float64 and np.array_equal(got, expected), how
        return
    for got_value, want in zip(got.reshape(-1).tolist(), expected.reshape(-1).tolist(), strict=True):
        assert type(got_value) is type(want) and got_value == want, f"{how}: {got_value!r} != {want!r}"


def _through_json(payload: Any) -> Any:
    return parse_json(orjson.dumps(payload))


def _v2_json(schema: Schema, rows: list[list[Any]]) -> bytes:
    inputs = [
        {
            "name": c.name,
            "datatype": c.datatype,
            "shape": [len(rows)],
            "data": [_tensor_element(row[j], c) for row in rows],
        }
        for j, c in enumerate(schema.columns)
    ]
    return orjson.dumps({"inputs": inputs})


def _v2_binary(schema: Schema, rows: list[list[Any]]) -> tuple[bytes, str]:
    inputs, raw = [], b""
    for j, c in enumerate(schema.columns):
        values = [_tensor_element(row[j], c) for row in rows]
        if c.datatype == "BYTES":
            chunk = b"".join(len(e).to_bytes(4, "little") + e for e in (v.encode() for v in values))
        else:
            dtype = {"FP64": "<f8", "FP32": "<f4", "INT64": "<i8", "INT32": "<i4", "BOOL": "?"}[c.datatype]
            chunk = np.asarray(values, dtype=dtype).tobytes()
        inputs.append(
            {
                "name": c.name,
                "datatype": c.datatype,
                "shape": [len(rows)],
                "parameters": {"binary_data_size": len(chunk)},
            }
        )
        raw += chunk
    header = orjson.dumps({"inputs": inputs})
    return header + raw, str(len(header))


def _every_format(schema: Schema, rows: list[list[Any]]) -> dict[str, np.ndarray]:
    names = schema.feature_names
    lists = [[_json(v, c) for v, c in zip(row, schema.columns, strict=True)] for row in rows]
    records = [dict(zip(names, row, strict=True)) for row in lists]
    binary, header_length = _v2_binary(schema, rows)
    return {
        "v1 objects": v1.decode(_through_json({"instances": records}), schema).values,
        "v1 lists": v1.decode(_through_json({"instances": lists}), schema).values,
        "v2 JSON": v2.decode(_v2_json(schema, rows), None, schema, OUTPUT_NAMES).rows.values,
        "v2 binary": v2.decode(binary, header_length, schema, OUTPUT_NAMES).rows.values,
        "dataframe_split": mlflow.decode(
            _through_json({"dataframe_split": {"columns": list(names), "data": lists}}), schema
        ).values,
        "dataframe_records": mlflow.decode(_through_json({"dataframe_records": records}), schema).values,
        "inputs as columns": mlflow.decode(
            _through_json({"inputs": {n: [r[n] for r in records] for n in names}}), schema
        ).values,
    }


@PROPERTY
@given(case=typed_rows())
def test_every_format_decodes_to_the_rows_sent(case: tuple[Schema, list[list[Any]]]) -> None:
    schema, rows = case
    expected = _expected(schema, rows)
    for how, values in _every_format(schema, rows).items():
        _same(values, expected, how)


# ------------------------------------------------------------------------------------------ wrong values


def _misfits(column: Column) -> st.SearchStrategy[Any]:
    """JSON values that do not fit the column (null counts: every generated column is required)."""
    nested = st.lists(INTS, max_size=2) | st.dictionaries(NAME, INTS, max_size=1)
    beyond = st.floats(MAX_MAGNITUDE * 2, 1e300) | st.floats(-1e300, -MAX_MAGNITUDE * 2)
    text = TEXT
    common = st.none() | nested
    if column.type in ("double", "float"):
        return common | text | beyond
    if column.type in ("long", "integer"):
        high = 2**63 if column.type == "long" else 2**31
        out_of_range = st.integers(high, 2**62 * 3).map(float) if column.type == "long" else st.integers(high, 2**62)
        fractions = st.floats(-1e12, 1e12).filter(lambda f: not f.is_integer())
        return common | text | fractions | out_of_range  # true/false are 1/0 here, as in number columns
    if column.type == "boolean":
        return common | text | INTS | st.floats(-1e9, 1e9)
    if column.type == "string":
        return common | st.booleans() | st.integers(-(2**60), 2**60) | st.floats(-1e9, 1e9)
    if column.type == "datetime":
        return common | st.booleans() | INTS | text.filter(lambda s: not _is_iso(s))
    return common | st.booleans() | INTS | text.filter(lambda s: not _is_base64(s))


def _is_iso(text: str) -> bool:
    try:
        dt.datetime.fromisoformat(text)
    except ValueError:
        return False
    return True


def _is_base64(text: str) -> bool:
    try:
        base64.b64decode(text, validate=True)
    except ValueError:
        return False
    return True


@st.composite
def one_misfit(draw: st.DrawFn) -> tuple[Schema, list[list[Any]], int, int, Any]:
    schema, rows = draw(typed_rows())
    i = draw(st.integers(0, len(rows) - 1))
    j = draw(st.integers(0, schema.width - 1))
    return schema, rows, i, j, draw(_misfits(schema.columns[j]))


@PROPERTY
@given(case=one_misfit())
def test_a_value_that_does_not_fit_is_a_bad_request_naming_row_and_column(
    case: tuple[Schema, list[list[Any]], int, int, Any],
) -> None:
    schema, rows, i, j, misfit = case
    column = schema.columns[j]
    names = schema.feature_names
    lists = [[_json(v, c) for v, c in zip(row, schema.columns, strict=True)] for row in rows]
    lists[i][j] = misfit
    records = [dict(zip(names, row, strict=True)) for row in lists]
    bodies = {
        "instances": (v1.decode, {"instances": lists}),
        "instances ": (v1.decode, {"instances": records}),
        "dataframe_split.data": (mlflow.decode, {"dataframe_split": {"columns": list(names), "data": lists}}),
        "dataframe_records": (mlflow.decode, {"dataframe_records": records}),
    }
    for key, (decode, payload) in bodies.items():
        with pytest.raises(BadRequest) as raised:
            decode(_through_json(payload), schema)
        message = str(raised.value)
        assert f"{key.strip()}[{i}]" in message and column.name in message, f"{key}: {message}"


@PROPERTY
@given(case=one_misfit())
def test_a_misfit_in_a_v2_tensor_is_a_bad_request(case: tuple[Schema, list[list[Any]], int, int, Any]) -> None:
    schema, rows, i, j, misfit = case
    # A v2 BYTES element is the binary value itself (UTF-8 text), not base64: any string fits a binary column.
    assume(not (schema.columns[j].type == "binary" and isinstance(misfit, str)))
    # v2 JSON data may nest (row-major, flattened): [x] in place of x is the same element, not a misfit.
    assume(not (isinstance(misfit, list) and len(misfit) == 1))
    body = orjson.loads(_v2_json(schema, rows))
    body["inputs"][j]["data"][i] = misfit
    with pytest.raises(BadRequest) as raised:
        v2.decode(orjson.dumps(body), None, schema, OUTPUT_NAMES)
    message = str(raised.value)
    # a tensor is one column: the message names it (by name, or by its place in "inputs")
    assert schema.columns[j].name in message or f"inputs[{j}]" in message, message
