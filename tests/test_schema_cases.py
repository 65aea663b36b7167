"""The one set of type rules (``predictor.protocol.schema``), value by value, with each refusal's message whole."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, TensorSpec
from mlflow.types import Schema as MlflowSchema
from mlflow.types.schema import Array, DataType

from predictor.errors import BadRequest, ModelLoadError, PayloadTooLarge
from predictor.protocol.schema import (
    Column,
    Schema,
    check_count,
    coerce,
    flatten,
    from_signature,
    kind,
    object_or_empty,
    parse_json,
    show,
)
from tests.protocol_schemas import ENTITY, MIXED, NUMERIC, NUMERIC_COLUMNS

COLUMN = {c.name: c for c in MIXED.columns}
FINITE = "a finite number (NaN, Infinity and magnitudes beyond 3.4e+38 are not accepted)"
LONG_RANGE = "an integer in [-9223372036854775808, 9223372036854775807]"
INTEGER_RANGE = "an integer in [-2147483648, 2147483647]"
ISO = "an ISO-8601 date-time string such as 2024-05-01T12:30:00"

ACCEPTED: list[tuple[str, Any, Any]] = [
    ("x", 1, 1.0),
    ("x", True, 1.0),  # true/false count as 1/0 in number columns, as the matrix fast path reads them
    ("n", True, 1),  # and in integer columns (as mlflow models serve reads them; README "Type rules")
    ("n", np.bool_(False), 0),
    ("x", np.float32(2.5), 2.5),
    ("x", 3.4e38, 3.4e38),
    ("x", -3.4e38, -3.4e38),
    ("n", 3.0, 3),
    ("n", np.int64(4), 4),
    ("n", np.float64(-5.0), -5),
    ("n", 2**63 - 1, 2**63 - 1),
    ("n", -(2**63), -(2**63)),
    ("i", 2**31 - 1, 2**31 - 1),
    ("i", -(2**31), -(2**31)),
    ("flag", False, False),
    ("flag", np.bool_(True), True),
    ("s", "", ""),
    ("t", "2024-05-01T12:30:00", np.datetime64("2024-05-01T12:30:00", "ns")),
    ("t", "2024-05-01T12:30:00+02:00", np.datetime64("2024-05-01T10:30:00", "ns")),  # the same instant, in UTC
    ("t", "2024-05-01T12:30:00-01:00", np.datetime64("2024-05-01T13:30:00", "ns")),
    ("blob", "aGk=", b"hi"),
    ("blob", b"raw", b"raw"),
    ("opt", None, None),
]


@pytest.mark.parametrize(("name", "value", "expected"), ACCEPTED, ids=[f"{c[0]}={c[1]!r}" for c in ACCEPTED])
def test_a_value_of_the_columns_type_is_accepted_as_this_python_value(name: str, value: Any, expected: Any) -> None:
    coerced = coerce(value, COLUMN[name], "w")
    assert coerced == expected and type(coerced) is type(expected)


REFUSED: list[tuple[str, Any, str]] = [
    ("x", "1", "x (double) needs a number, got '1'"),
    ("x", [1], "x (double) needs a number, got [1]"),
    ("x", None, "x (double) is null; it is required"),
    ("x", float("nan"), f"x (double) needs {FINITE}, got nan"),
    ("x", float("-inf"), f"x (double) needs {FINITE}, got -inf"),
    ("x", -1e39, f"x (double) needs {FINITE}, got -1e+39"),
    ("x", 3.5e38, f"x (double) needs {FINITE}, got 3.5e+38"),
    ("n", 1.5, "n (long) needs an integer, got 1.5"),
    ("n", float("inf"), "n (long) needs an integer, got inf"),
    ("n", "3", "n (long) needs an integer, got '3'"),
    ("n", 2**63, f"n (long) needs {LONG_RANGE}, got 9223372036854775808"),
    ("n", -(2**63) - 1, f"n (long) needs {LONG_RANGE}, got -9223372036854775809"),
    ("i", 2**31, f"i (integer) needs {INTEGER_RANGE}, got 2147483648"),
    ("i", -(2**31) - 1, f"i (integer) needs {INTEGER_RANGE}, got -2147483649"),
    ("flag", 1, "flag (boolean) needs true or false, got 1"),
    ("flag", "true", "flag (boolean) needs true or false, got 'true'"),
    ("s", 1, "s (string) needs a string, got 1"),
    ("t", "nope", f"t (datetime) needs {ISO}, got 'nope'"),
    ("t", 5, f"t (datetime) needs {ISO}, got 5"),
    ("blob", "a?", "blob (binary) needs base64-encoded bytes, got 'a?'"),
    ("blob", 5, "blob (binary) needs base64-encoded bytes, got 5"),
]


@pytest.mark.parametrize(("name", "value", "message"), REFUSED, ids=[f"{c[0]}={c[1]!r}" for c in REFUSED])
def test_a_value_of_another_type_is_refused_naming_row_column_type_and_value(
    name: str, value: Any, message: str
) -> None:
    with pytest.raises(BadRequest) as refused:
        coerce(value, COLUMN[name], "instances[3]")
    assert str(refused.value) == f"instances[3]: column {message}"


def test_the_count_of_instances_is_at_least_one_and_at_most_max_instances() -> None:
    with pytest.raises(BadRequest) as empty:
        check_count(0, NUMERIC, "inputs")
    assert str(empty.value) == f'"inputs" is empty: send at least one instance with {NUMERIC_COLUMNS}'
    with pytest.raises(PayloadTooLarge) as large:
        check_count(4, ENTITY, "inputs")
    assert (
        str(large.value) == "4 instances in one request; the limit is 3 (split the request, or raise --max_instances)"
    )
    check_count(1, ENTITY, "inputs")
    check_count(3, ENTITY, "inputs")


def test_a_schema_describes_its_columns_and_makes_empty_rows() -> None:
    assert NUMERIC.expected() == NUMERIC_COLUMNS
    assert ENTITY.expected() == "2 features in this order: a, b"  # all doubles: names only
    mixed_doubles = Schema((Column("a", "double"), Column("b", "float")))
    assert mixed_doubles.expected() == "2 columns in this order: a (double), b (float)"
    assert MIXED.expected().startswith("8 columns in this order: x (double), n (long), i (integer), flag (boolean)")
    assert (NUMERIC.numeric, ENTITY.numeric, MIXED.numeric) == (True, True, False)
    assert NUMERIC.width == 3 and NUMERIC.feature_names == ("a", "b", "c")
    assert NUMERIC.index == {"a": 0, "b": 1, "c": 2}
    assert [c.datatype for c in MIXED.columns] == ["FP64", "INT64", "INT32", "BOOL", "BYTES", "BYTES", "BYTES", "FP64"]
    empty = NUMERIC.empty(2)
    assert empty.shape == (2, 3) and empty.dtype == np.float64 and np.isnan(empty).all()
    objects = MIXED.empty(1)
    assert objects.shape == (1, 8) and objects.dtype == object and objects.tolist() == [[None] * 8]


def test_a_frame_carries_the_signatures_dtypes_and_nan_for_an_optional_column_left_out() -> None:
    rows = MIXED.empty(2)
    rows[0] = [1.5, 2, 3, True, "s", np.datetime64("2024-05-01T10:30:00", "ns"), b"hi", None]
    rows[1] = [2.5, 4, 5, False, "t", np.datetime64("2024-05-02T10:30:00", "ns"), b"ho", 0.5]
    frame = MIXED.frame(rows)
    assert list(frame.columns) == list(MIXED.feature_names)
    assert {name: str(dtype) for name, dtype in frame.dtypes.items()} == {
        "x": "float64",
        "n": "int64",
        "i": "int32",
        "flag": "bool",
        "s": "object",
        "t": "datetime64[ns]",
        "blob": "object",
        "opt": "float64",
    }
    assert frame["opt"].isna().tolist() == [True, False] and frame["opt"][1] == 0.5
    assert frame["blob"].tolist() == [b"hi", b"ho"] and frame["s"].tolist() == ["s", "t"]
    optional_text = Schema((Column("s", "string", required=False),), matrix=False)
    text = optional_text.frame(np.array([[None], ["a"]], dtype=object))
    assert str(text.dtypes["s"]) == "object" and text["s"].tolist() == [None, "a"]
    assert {n: str(d) for n, d in NUMERIC.frame(np.array([[1.0, 2.0, 3.0]])).dtypes.items()} == {
        "a": "float64",
        "b": "int64",
        "c": "float32",
    }


def test_show_renders_any_client_value_short_and_without_failing() -> None:
    assert show("s" * 100) == "'" + "s" * 56 + "..."
    assert show("s" * 57) == "'" + "s" * 57 + "'"  # 59 characters with the quotes: whole
    assert show(5) == "5" and show(None) == "null" and show(np.float32(1.5)) == "1.5"
    assert show([1, [2]]) == "[1,[2]]" and show({"a": 1}) == '{"a":1}'
    assert show(float("nan")) == "nan" and show(np.float64("inf")) == "inf"
    assert show(2**70) == str(2**70) and show(True) == "true"
    nested: list[Any] = []
    innermost = nested
    for _ in range(2000):
        innermost.append([])
        innermost = innermost[0]
    assert show(nested) == "a deeply nested JSON array"


def test_kind_names_json_types_the_way_a_client_wrote_them() -> None:
    assert [kind(v) for v in ({}, [], "s", True, None, 1, 1.5)] == [
        "object",
        "array",
        "string",
        "boolean",
        "null",
        "number",
        "number",
    ]
    assert kind(b"x") == "bytes"


def test_json_helpers_flatten_parse_and_default_to_an_empty_object() -> None:
    assert flatten([1, [2, [3, [4]], 5], [], 6]) == [1, 2, 3, 4, 5, 6]
    deep: list[Any] = [7]
    for _ in range(5000):
        deep = [deep]
    assert flatten(deep) == [7]  # no recursion limit
    assert parse_json(b' {"a": 1} ') == {"a": 1}
    with pytest.raises(BadRequest) as empty:
        parse_json(b" \n ")
    assert str(empty.value) == 'empty request body: send JSON such as {"instances": [[...features...]]}'
    with pytest.raises(BadRequest) as broken:
        parse_json(b"{x")
    assert str(broken.value) == (
        "body is not valid JSON (unexpected character, expected a string key at character 1); NaN and "
        "Infinity are not JSON: send null-free finite numbers"
    )
    assert object_or_empty(None, "w") == {} and object_or_empty({"a": 1}, "w") == {"a": 1}
    with pytest.raises(BadRequest) as refused:
        object_or_empty([], '"parameters"')
    assert str(refused.value) == '"parameters" must be a JSON object'


def _signature(*specs: Any) -> ModelSignature:
    return ModelSignature(inputs=MlflowSchema(list(specs)))


def test_a_column_signature_gives_its_columns_in_order_with_their_types_and_requiredness() -> None:
    signature = _signature(
        ColSpec("double", "a"),
        ColSpec("long", "b", required=False),
        ColSpec("float", "f"),
        ColSpec("integer", "i"),
        ColSpec("boolean", "flag"),
        ColSpec("string", "s"),
        ColSpec("datetime", "t"),
        ColSpec("binary", "y"),
    )
    columns, tensor = from_signature(signature)
    assert tensor is False
    assert columns == (
        Column("a", "double"),
        Column("b", "long", required=False),
        Column("f", "float"),
        Column("i", "integer"),
        Column("flag", "boolean"),
        Column("s", "string"),
        Column("t", "datetime"),
        Column("y", "binary"),
    )


def test_an_n_by_f_tensor_signature_becomes_f_double_columns() -> None:
    columns, tensor = from_signature(_signature(TensorSpec(np.dtype("float64"), (-1, 3))))
    assert tensor is True and columns == (Column("x0", "double"), Column("x1", "double"), Column("x2", "double"))
    columns, _ = from_signature(_signature(TensorSpec(np.dtype("float32"), (-1, 1))))
    assert columns == (Column("x0", "double"),)


def _spec(shape: str, name: str | None = None) -> str:
    named = f"'name': '{name}', " if name else ""
    return f"{{{named}'type': 'tensor', 'tensor-spec': {{'dtype': 'float64', 'shape': {shape}}}}}"


def _not_one_tensor(specs: str) -> str:
    return (
        f"the tensor signature [{specs}] is not one [N, F] tensor; log the model with a column-based signature "
        "(infer_signature on a DataFrame)"
    )


SERVED_TYPES = "supported column types: double, float, long, integer, boolean, string, datetime, binary"


@pytest.mark.parametrize(
    ("signature", "message"),
    [
        (_signature(TensorSpec(np.dtype("float64"), (-1, 3, 2))), _not_one_tensor(_spec("(-1, 3, 2)"))),
        (_signature(TensorSpec(np.dtype("float64"), (-1,))), _not_one_tensor(_spec("(-1,)"))),
        (_signature(TensorSpec(np.dtype("float64"), (-1, 0))), _not_one_tensor(_spec("(-1, 0)"))),
        (
            _signature(TensorSpec(np.dtype("float64"), (-1, 2), "a"), TensorSpec(np.dtype("float64"), (-1, 2), "b")),
            _not_one_tensor(_spec("(-1, 2)", "a") + ", " + _spec("(-1, 2)", "b")),
        ),
        (
            _signature(ColSpec("double")),
            f"input (unnamed) has type DataType.double, which this server does not serve; {SERVED_TYPES}",
        ),
        (
            _signature(ColSpec("double", "a"), ColSpec(Array(DataType.double), "arr")),
            f"input arr has type Array(double), which this server does not serve; {SERVED_TYPES}",
        ),
    ],
    ids=["3-d tensor", "1-d tensor", "no features", "two tensors", "unnamed", "array column"],
)
def test_a_signature_the_server_cannot_serve_is_refused_at_load_saying_why(signature: Any, message: str) -> None:
    with pytest.raises(ModelLoadError) as refused:
        from_signature(signature)
    assert str(refused.value) == message


def test_date_times_are_nanosecond_utc_whatever_the_servers_own_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        zoned = coerce("2024-05-01T12:30:00+02:00", COLUMN["t"], "w")
        naive = coerce("2024-05-01T12:30:00", COLUMN["t"], "w")
    finally:
        monkeypatch.undo()
        time.tzset()
    assert zoned == np.datetime64("2024-05-01T10:30:00", "ns") and zoned.dtype == np.dtype("datetime64[ns]")
    assert naive == np.datetime64("2024-05-01T12:30:00", "ns") and naive.dtype == np.dtype("datetime64[ns]")


def test_base64_with_characters_outside_its_alphabet_is_refused() -> None:
    with pytest.raises(BadRequest) as refused:
        coerce("aGk=!", COLUMN["blob"], "w")
    assert str(refused.value) == "w: column blob (binary) needs base64-encoded bytes, got 'aGk=!'"


def test_a_frames_values_are_the_rows_and_optional_columns_left_out_are_gaps() -> None:
    rows = MIXED.empty(2)
    rows[0] = [1.5, 2, 3, True, "s", np.datetime64("2024-05-01T10:30:00", "ns"), b"hi", None]
    rows[1] = [2.5, 4, 5, False, "t", np.datetime64("2024-05-02T10:30:00", "ns"), b"ho", 0.5]
    frame = MIXED.frame(rows)
    assert [str(t) for t in frame["t"]] == ["2024-05-01 10:30:00", "2024-05-02 10:30:00"]
    assert frame["n"].tolist() == [2, 4] and frame["flag"].tolist() == [True, False]
    optional = Schema((Column("n", "long", required=False), Column("flag", "boolean", required=False)), matrix=False)
    gaps = optional.frame(np.array([[None, None], [4, True]], dtype=object))
    assert str(gaps.dtypes["n"]) == "float64" and gaps["n"].isna().tolist() == [True, False] and gaps["n"][1] == 4
    assert str(gaps.dtypes["flag"]) == "object" and gaps["flag"].tolist() == [None, True]


def test_the_edges_exactly_float32s_largest_value_and_the_cut_offs_of_shown_values() -> None:
    top = float(np.finfo(np.float32).max)
    assert coerce(top, COLUMN["x"], "w") == top and coerce(-top, COLUMN["x"], "w") == -top
    assert show("s" * 58) == "'" + "s" * 58 + "'"  # 60 characters with the quotes: whole
    assert show("s" * 59) == "'" + "s" * 56 + "..."  # 61: cut
    assert show([1] * 29) == "[" + ",".join(["1"] * 29) + "]"  # 59 characters
    assert show([1] * 30) == "[" + ",".join(["1"] * 28) + ",..."
