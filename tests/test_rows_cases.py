"""Tensors → rows (``predictor.protocol.rows``), shared by v2 REST and gRPC: the column rules on typed tensors,
the datatype of each answer, and the outputs a request may ask for."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from predictor.errors import BadRequest
from predictor.protocol.rows import OUTPUT_NAMES, Rows, Tensor, datatype_of, requested_outputs, rows_from_tensors
from predictor.protocol.schema import Column, Schema
from tests.protocol_schemas import ENTITY, NUMERIC

FINITE = "a finite number (NaN, Infinity and magnitudes beyond 3.4e+38 are not accepted)"


def one(column_type: str, matrix: bool = False) -> Schema:
    return Schema((Column("s", column_type),), matrix=matrix)  # type: ignore[arg-type]


def column(datatype: str, values: Any, dtype: Any = None, name: str = "s") -> Tensor:
    array = np.array(values, dtype=dtype)
    return Tensor(name, datatype, [array.size], array)


def numeric_columns(a: Any, b: Any, c: Any) -> list[Tensor]:
    return [
        Tensor("a", "FP64", [1], np.array([a])),
        Tensor("b", "INT64", [1], np.array([b])),
        Tensor("c", "FP32", [1], np.array([c], dtype=np.float32)),
    ]


REFUSED: list[tuple[str, list[Tensor], Schema, str]] = [
    ("no tensor", [], NUMERIC, "no inputs"),
    (
        "NaN in a double column",
        numeric_columns(np.nan, 1, 1),
        NUMERIC,
        "a row 0: column a (double) is null or NaN (a missing value); it is required",
    ),
    (
        "infinity in a matrix",
        [Tensor("x", "FP64", [1, 3], np.array([1, 2, np.inf]))],
        NUMERIC,
        f"x row 0: column c (float) needs {FINITE}, got inf",
    ),
    (
        "NaN in a long column",
        [column("FP64", [1.0, np.nan])],
        one("long"),
        "s row 1: column s (long) is null or NaN (a missing value); it is required",
    ),
    (
        "BOOL matrix for a long column",
        [Tensor("x", "BOOL", [1, 3], np.array([True, False, True]))],
        NUMERIC,
        "input x is BOOL; column b (long) needs INT64, e.g. false is not a long",
    ),
    (
        "UINT8 for a string",
        [column("UINT8", [1], np.uint8)],
        one("string"),
        "input s is UINT8; column s (string) needs BYTES, e.g. 1 is not a string",
    ),
    (
        "INT8 for a boolean",
        [column("INT8", [1], np.int8)],
        one("boolean"),
        "input s is INT8; column s (boolean) needs BOOL, e.g. 1 is not a boolean",
    ),
    (
        "FP32 for a string",
        [column("FP32", [1], np.float32)],
        one("string"),
        "input s is FP32; column s (string) needs BYTES, e.g. 1.0 is not a string",
    ),
    (
        "BOOL for a string",
        [column("BOOL", [True])],
        one("string"),
        "input s is BOOL; column s (string) needs BYTES, e.g. true is not a string",
    ),
    (
        "BOOL for a long",
        [column("BOOL", [True])],
        one("long"),
        "input s is BOOL; column s (long) needs INT64, e.g. true is not a long",
    ),
    (
        "an empty FP32 for a string",
        [column("FP32", [], np.float32)],
        one("string"),
        "input s is FP32; column s (string) needs BYTES",
    ),
    (
        "a uint64 beyond a long",
        [column("UINT64", [2**64 - 1], np.uint64)],
        one("long"),
        "s row 0: column s (long) needs an integer in [-9223372036854775808, 9223372036854775807], "
        "got 18446744073709551615",
    ),
    (
        "a fraction in an integer column",
        [column("FP32", [1.0, 1.5], np.float32)],
        one("integer"),
        "s row 1: column s (integer) needs an integer, got 1.5",
    ),
    (
        "infinity in a long column",
        [column("FP64", [np.inf])],
        one("long"),
        "s row 0: column s (long) needs an integer, got inf",
    ),
]


@pytest.mark.parametrize(("tensors", "schema", "message"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_tensors_that_do_not_fit_the_columns_are_refused_naming_the_fault(
    tensors: list[Tensor], schema: Schema, message: str
) -> None:
    with pytest.raises(BadRequest) as refused:
        rows_from_tensors(tensors, schema)
    assert str(refused.value) == message


def test_typed_tensors_become_the_columns_values() -> None:
    assert rows_from_tensors([column("UINT8", [1, 2], np.uint8)], one("double", matrix=True)).values.tolist() == [
        [1],
        [2],
    ]
    longs = rows_from_tensors([column("FP64", [3.0, -4.0])], one("long")).values
    assert longs.tolist() == [[3], [-4]] and {type(v) for v in longs[:, 0]} == {int}
    binary = rows_from_tensors([column("BYTES", ["hi", b"x"], object)], one("binary")).values
    assert binary.tolist() == [[b"hi"], [b"x"]]  # BYTES elements arrive as text; the column wants bytes
    flags = rows_from_tensors([column("BOOL", [True, False])], one("boolean")).values
    assert flags.tolist() == [[True], [False]] and {type(v) for v in flags[:, 0]} == {bool}
    optional = Schema((Column("a", "double"), Column("o", "double", required=False)))
    rows = rows_from_tensors([Tensor("a", "FP64", [1], np.array([1.0]))], optional)
    np.testing.assert_array_equal(rows.values, [[1.0, np.nan]])


def test_entity_ids_in_a_column_tensor_or_an_n_by_1_tensor_name_each_row() -> None:
    ids = Tensor("id", "BYTES", [2, 1], np.array(["a", "b"], dtype=object))
    rows = rows_from_tensors([ids], ENTITY)
    assert rows.entity_ids == ["a", "b"] and rows.count == 2 and np.isnan(rows.values).all()
    assert Rows(np.zeros((3, 2))).count == 3


def test_an_answers_datatype_is_exactly_its_dtypes() -> None:
    cases = [
        (np.array([1]), "INT64"),
        (np.array([1.0]), "FP64"),
        (np.array([1.0], dtype=np.float32), "FP32"),
        (np.array([1.0], dtype=np.float16), "FP16"),
        (np.array([True]), "BOOL"),
        (np.array([1], dtype=np.uint16), "UINT16"),
        (np.array([1], dtype=np.int8), "INT8"),
        (np.array(["a"], dtype=object), "BYTES"),
        (np.array(["a"]), "BYTES"),
    ]
    assert [datatype_of(array) for array, _ in cases] == [datatype for _, datatype in cases]


def test_requested_outputs_keep_each_outputs_binary_choice() -> None:
    assert requested_outputs(None, OUTPUT_NAMES) == {}
    assert requested_outputs([], OUTPUT_NAMES) == {}
    asked = [{"name": "predictions", "parameters": {"binary_data": True}}, {"name": "probabilities"}]
    assert requested_outputs(asked, OUTPUT_NAMES) == {"predictions": True, "probabilities": None}
    assert requested_outputs([{"name": "predictions", "parameters": {}}], ("predictions",)) == {"predictions": None}
    with pytest.raises(BadRequest) as refused:
        requested_outputs([{"name": "p" * 100}], OUTPUT_NAMES)
    assert str(refused.value) == f"outputs[0] asks for '{'p' * 59}; this model has ['predictions', 'probabilities']"


def test_the_largest_float32_is_accepted_and_the_row_named_is_the_bad_one() -> None:
    top = float(np.finfo(np.float32).max)
    assert rows_from_tensors([column("FP64", [top, -top])], one("double", matrix=True)).values.tolist() == [
        [top],
        [-top],
    ]
    with pytest.raises(BadRequest, match=r"^s row 2: column s \(double\) needs a finite number"):
        rows_from_tensors([column("FP64", [1.0, 2.0, np.inf])], one("double", matrix=True))


def test_a_missing_value_in_an_optional_column_is_a_gap_and_in_a_required_one_a_400() -> None:
    """The one null rule: NaN (binary, gRPC) or null (JSON, read as NaN) is a missing value for an optional
    column, whatever the door; a required column refuses it naming row and column."""
    optional = Schema((Column("s", "double", required=False), Column("n", "long", required=False)), matrix=False)
    values = rows_from_tensors(
        [column("FP64", [1.5, np.nan], name="s"), column("FP64", [np.nan, 3.0], name="n")], optional
    ).values
    assert np.isnan(values[1, 0]) and values[0, 1] is None and values[1, 1] == 3
    with pytest.raises(
        BadRequest, match=r"^s row 1: column s \(double\) is null or NaN \(a missing value\); it is required$"
    ):
        rows_from_tensors([column("FP64", [1.5, np.nan])], one("double"))


def test_binary_columns_hold_python_bytes() -> None:
    values = rows_from_tensors([column("BYTES", ["hi", "ho"], object)], one("binary")).values
    assert [type(v) for v in values[:, 0]] == [bytes, bytes]
