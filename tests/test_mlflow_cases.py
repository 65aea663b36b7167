"""MLflow's scoring protocol (``POST /invocations``), case by case: each body format, and each refusal whole."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from predictor.errors import BadRequest
from predictor.protocol import mlflow
from tests.protocol_schemas import NUMERIC, NUMERIC_COLUMNS

FORMATS = "['dataframe_split', 'dataframe_records', 'instances', 'inputs']"
SPLIT_SHAPE = '"dataframe_split" must be an object like {"columns": [...], "data": [[...], ...]}'
COLUMNS_OF_ONE_LENGTH = '"inputs" as an object must map each column to a list of values, all of one length'
REJECTED: list[tuple[str, Any, str]] = [
    ("array body", [1], f"body must be a JSON object with one of {FORMATS}, got a JSON array"),
    ("no format", {}, f"body must hold exactly one of {FORMATS} (and optionally params); got keys []"),
    (
        "two formats",
        {"instances": [[1, 2, 3]], "inputs": [[1, 2, 3]]},
        f"body must hold exactly one of {FORMATS} (and optionally params); got keys ['inputs', 'instances']",
    ),
    (
        "an unknown key",
        {"instances": [[1, 2, 3]], "extra": 1},
        f"body must hold exactly one of {FORMATS} (and optionally params); got keys ['extra', 'instances']",
    ),
    (
        "params not an object",
        {"instances": [[1, 2, 3]], "params": [1]},
        '"params" must be a JSON object, got a JSON array',
    ),
    ("split not an object", {"dataframe_split": [[1, 2, 3]]}, SPLIT_SHAPE),
    ("split without data", {"dataframe_split": {"columns": ["a"]}}, SPLIT_SHAPE),
    ("split data not a list", {"dataframe_split": {"data": {"a": 1}}}, SPLIT_SHAPE),
    (
        "split columns not a list",
        {"dataframe_split": {"columns": "abc", "data": [[3, 1, 2]]}},
        '"dataframe_split.columns" must be a list of column names',
    ),
    (
        "split column not a string",
        {"dataframe_split": {"columns": ["a", 1, "c"], "data": [[3, 1, 2]]}},
        '"dataframe_split.columns" must be a list of column names',
    ),
    (
        "split row too short",
        {"dataframe_split": {"columns": ["c", "a", "b"], "data": [[3, 1, 2], [1, 2]]}},
        "dataframe_split.data[1] must be a list of 3 values, one per column",
    ),
    (
        "split row an object",
        {"dataframe_split": {"columns": ["c", "a", "b"], "data": [{"a": 1}]}},
        "dataframe_split.data[0] must be a list of 3 values, one per column",
    ),
    (
        "split without rows",
        {"dataframe_split": {"columns": ["c", "a", "b"], "data": []}},
        f'"dataframe_split.data" is empty: send at least one instance with {NUMERIC_COLUMNS}',
    ),
    ("column lists of two lengths", {"inputs": {"a": [1, 4], "b": [2], "c": [3, 6]}}, COLUMNS_OF_ONE_LENGTH),
    ("a column as a scalar", {"inputs": {"a": 1, "b": [2], "c": [3]}}, COLUMNS_OF_ONE_LENGTH),
    (
        "records not a list",
        {"dataframe_records": {"a": 1}},
        '"dataframe_records" must be a list of instances, got a JSON object',
    ),
]


@pytest.mark.parametrize(("payload", "message"), [c[1:] for c in REJECTED], ids=[c[0] for c in REJECTED])
def test_a_wrong_body_is_refused_with_a_message_naming_the_fault(payload: Any, message: str) -> None:
    with pytest.raises(BadRequest) as refused:
        mlflow.decode(payload, NUMERIC)
    assert str(refused.value) == message


DECODED: list[tuple[str, Any, list[list[float]]]] = [
    ("instances", {"instances": [[1, 2, 3]]}, [[1, 2, 3]]),
    ("instances with params", {"instances": [[1, 2, 3]], "params": {"k": 1}}, [[1, 2, 3]]),
    ("null params", {"instances": [[1, 2, 3]], "params": None}, [[1, 2, 3]]),
    ("split in signature order", {"dataframe_split": {"data": [[1, 2, 3], [4, 5, 6]]}}, [[1, 2, 3], [4, 5, 6]]),
    (
        "split with its own column order",
        {"dataframe_split": {"columns": ["c", "a", "b"], "data": [[3, 1, 2]]}},
        [[1, 2, 3]],
    ),
    ("records", {"dataframe_records": [{"a": 1, "b": 2, "c": 3}]}, [[1, 2, 3]]),
    ("inputs as columns", {"inputs": {"a": [1, 4], "b": [2, 5], "c": [3, 6]}}, [[1, 2, 3], [4, 5, 6]]),
    ("inputs as rows", {"inputs": [[1, 2, 3]]}, [[1, 2, 3]]),
]


@pytest.mark.parametrize(("payload", "values"), [c[1:] for c in DECODED], ids=[c[0] for c in DECODED])
def test_each_format_decodes_to_the_same_rows(payload: Any, values: list[list[float]]) -> None:
    rows = mlflow.decode(payload, NUMERIC)
    assert rows.values.tolist() == values and rows.entity_ids is None


def test_a_split_error_names_the_split_data_and_its_row() -> None:
    with pytest.raises(BadRequest) as refused:
        mlflow.decode({"dataframe_split": {"data": [[1, 2, 3], [1, "x", 3]]}}, NUMERIC)
    assert str(refused.value) == "dataframe_split.data[1]: column b (long) needs an integer, got 'x'"


def test_the_answer_is_mlflows_predictions_list_or_one_record_per_row() -> None:
    assert mlflow.encode({"predictions": np.array([1, 0]), "probabilities": np.ones((2, 2))}, None) == {
        "predictions": [1, 0]
    }
    assert mlflow.encode({"predictions": np.array([1, 0])}, ()) == {"predictions": [1, 0]}
    assert mlflow.encode({"p": np.array([1, 0]), "q": np.array([0.5, 0.25]), "r": np.zeros(2)}, ("p", "q")) == {
        "predictions": [{"p": 1, "q": 0.5}, {"p": 0, "q": 0.25}]
    }


def test_a_body_of_many_keys_is_answered_with_the_first_ten_sorted() -> None:
    payload = {f"k{i:02d}": 1 for i in range(12)}
    with pytest.raises(BadRequest) as refused:
        mlflow.decode(payload, NUMERIC)
    shown = [f"k{i:02d}" for i in range(10)]
    assert str(refused.value) == f"body must hold exactly one of {FORMATS} (and optionally params); got keys {shown}"


def test_columns_of_one_value_each_are_one_row_and_scalars_are_no_columns() -> None:
    assert mlflow.decode({"inputs": {"a": [1], "b": [2], "c": [3]}}, NUMERIC).values.tolist() == [[1, 2, 3]]
    with pytest.raises(BadRequest) as refused:
        mlflow.decode({"inputs": {"a": 1, "b": 2, "c": 3}}, NUMERIC)
    assert str(refused.value) == COLUMNS_OF_ONE_LENGTH


def test_an_error_in_inputs_as_columns_names_the_row_under_inputs() -> None:
    with pytest.raises(BadRequest) as refused:
        mlflow.decode({"inputs": {"a": [1, 4], "b": [2, "x"], "c": [3, 6]}}, NUMERIC)
    assert str(refused.value) == "inputs[1]: column b (long) needs an integer, got 'x'"
