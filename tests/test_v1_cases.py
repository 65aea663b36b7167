"""KServe v1 decoding, case by case: what each body becomes, and the exact message a wrong one gets.

The messages are the API's answer to a client's mistake (they name the row, the column, its type and the
value), so they are compared whole.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from predictor.errors import BadRequest, PayloadTooLarge
from predictor.protocol import v1
from predictor.protocol.schema import Schema
from tests.protocol_schemas import ENTITY, MIXED, NUMERIC, NUMERIC_COLUMNS

NAN = float("nan")
REJECTED: list[tuple[str, Any, Schema, str]] = [
    ("array body", [[1, 2, 3]], NUMERIC, 'body must be a JSON object like {"instances": [[...]]}, got a JSON array'),
    (
        "no instances",
        {"rows": []},
        NUMERIC,
        f'missing key "instances": send {{"instances": [[...], ...]}} with {NUMERIC_COLUMNS}',
    ),
    (
        "instances not a list",
        {"instances": {"a": 1}},
        NUMERIC,
        '"instances" must be a list of instances, got a JSON object',
    ),
    ("inputs not a list", {"inputs": 3}, NUMERIC, '"inputs" must be a list of instances, got a JSON number'),
    (
        "no instance",
        {"instances": []},
        NUMERIC,
        f'"instances" is empty: send at least one instance with {NUMERIC_COLUMNS}',
    ),
    ("1.5 in a long", {"instances": [[1, 1.5, 3]]}, NUMERIC, "instances[0]: column b (long) needs an integer, got 1.5"),
    (
        "beyond float32",
        {"instances": [[1, 2, 3], [1e39, 3, 3]]},
        NUMERIC,
        "instances[1]: column a (double) needs a finite number (NaN, Infinity and magnitudes beyond 3.4e+38 are "
        "not accepted), got 1e+39",
    ),
    (
        "short row",
        {"instances": [[1, 2, 3], [1, 2]]},
        NUMERIC,
        f"instances[1] has 2 values; the model expects {NUMERIC_COLUMNS}",
    ),
    (
        "scalar instance",
        {"instances": [5]},
        NUMERIC,
        "instances[0] must be a list of 3 values or an object keyed by column name, got a JSON number",
    ),
    (
        "string in a long",
        {"instances": [[1, "2", 3]]},
        NUMERIC,
        "instances[0]: column b (long) needs an integer, got '2'",
    ),
    ("null in a long", {"inputs": [[1, None, 3]]}, NUMERIC, "inputs[0]: column b (long) is null; it is required"),
    (
        "unknown key",
        {"instances": [{"a": 1, "b": 2, "c": 3, "d": 4}]},
        NUMERIC,
        f"instances[0] has unknown keys ['d']; expected {NUMERIC_COLUMNS}",
    ),
    (
        "an entity key where there is none",
        {"instances": [{"id": "x", "a": 1, "b": 2, "c": 3}]},
        NUMERIC,
        f"instances[0] has unknown keys ['id']; expected {NUMERIC_COLUMNS}",
    ),
    (
        "unknown key with an entity key",
        {"instances": [{"a": 1, "b": 2, "z": 4}]},
        ENTITY,
        "instances[0] has unknown keys ['z']; expected 2 features in this order: a, b or id",
    ),
    ("missing columns", {"instances": [{"a": 1}]}, NUMERIC, "instances[0] is missing required columns ['b', 'c']"),
    (
        "missing column, no entity id",
        {"instances": [{"a": 1}]},
        ENTITY,
        "instances[0] is missing required columns ['b'] (or send id to fetch them from the feature store)",
    ),
    ("empty id", {"instances": [{"id": ""}]}, ENTITY, "instances[0].id must be a non-empty string id, got ''"),
    ("number id", {"instances": [{"id": 7}]}, ENTITY, "instances[0].id must be a non-empty string id, got 7"),
    (
        "257-character id",
        {"instances": [{"id": "x" * 257}]},
        ENTITY,
        "instances[0].id must be a non-empty string id, got '" + "x" * 56 + "...",
    ),
    (
        "null in a required column of object rows",
        {"instances": [{"x": None, "n": 2, "i": 3, "flag": False, "s": "s", "t": "2024-05-01", "blob": "aGk="}]},
        MIXED,
        "instances[0]: column x (double) is null; it is required",
    ),
]


@pytest.mark.parametrize(("payload", "schema", "message"), [c[1:] for c in REJECTED], ids=[c[0] for c in REJECTED])
def test_a_wrong_body_is_refused_with_a_message_naming_the_fault(payload: Any, schema: Schema, message: str) -> None:
    with pytest.raises(BadRequest) as refused:
        v1.decode(payload, schema)
    assert str(refused.value) == message


def test_more_rows_than_max_instances_is_payload_too_large() -> None:
    with pytest.raises(PayloadTooLarge) as refused:
        v1.decode({"instances": [[1, 2]] * 4}, ENTITY)
    assert (
        str(refused.value) == "4 instances in one request; the limit is 3 (split the request, or raise --max_instances)"
    )
    assert v1.decode({"instances": [[1, 2]] * 3}, ENTITY).count == 3  # the limit itself is allowed


DECODED: list[tuple[str, Any, Schema, list[list[Any]], list[str | None] | None]] = [
    ("matrix", {"instances": [[1, 2, 3.5], [0, -1, 2]]}, NUMERIC, [[1, 2, 3.5], [0, -1, 2]], None),
    ("inputs instead of instances", {"inputs": [[1, 2, 3.5]]}, NUMERIC, [[1, 2, 3.5]], None),
    ("instances win over inputs", {"instances": [[1, 2, 3]], "inputs": "ignored"}, NUMERIC, [[1, 2, 3]], None),
    ("true and false are 1 and 0", {"instances": [[True, 2, False]]}, NUMERIC, [[1, 2, 0]], None),
    ("3.0 in a long", {"instances": [[1, 3.0, 3]]}, NUMERIC, [[1, 3, 3]], None),
    ("objects", {"instances": [{"c": 3, "a": 1, "b": 2}]}, NUMERIC, [[1, 2, 3]], None),
    ("rows and objects", {"instances": [[1, 2, 3], {"a": 4, "b": 5, "c": 6}]}, NUMERIC, [[1, 2, 3], [4, 5, 6]], None),
    (
        "an entity id fills the rest",
        {"instances": [{"id": "e1", "a": 5}, [1, 2]]},
        ENTITY,
        [[5, NAN], [1, 2]],
        ["e1", None],
    ),
    ("an entity id alone", {"instances": [{"id": "e1"}]}, ENTITY, [[NAN, NAN]], ["e1"]),
    ("a 256-character id", {"instances": [{"id": "x" * 256}]}, ENTITY, [[NAN, NAN]], ["x" * 256]),
    ("complete objects with ids", {"instances": [{"id": "e", "a": 1, "b": 2}]}, ENTITY, [[1, 2]], ["e"]),
]


@pytest.mark.parametrize(
    ("payload", "schema", "values", "entity_ids"), [c[1:] for c in DECODED], ids=[c[0] for c in DECODED]
)
def test_a_body_decodes_to_these_rows(
    payload: Any, schema: Schema, values: list[list[Any]], entity_ids: list[str | None] | None
) -> None:
    rows = v1.decode(payload, schema)
    assert rows.values.dtype == np.float64
    np.testing.assert_array_equal(rows.values, np.asarray(values, dtype=np.float64))
    assert rows.entity_ids == entity_ids


def test_object_rows_hold_each_columns_python_value() -> None:
    listed = [1.5, 2, 3, True, "s", "2024-05-01T12:30:00+02:00", "aGk=", None]
    keyed = {"x": 1.5, "n": 2, "i": 3, "flag": False, "s": "s", "t": "2024-05-01", "blob": "aGk=", "opt": 0.25}
    rows = v1.decode({"instances": [listed, keyed]}, MIXED)
    assert rows.values.dtype == object and rows.entity_ids is None
    assert rows.values[0].tolist() == [1.5, 2, 3, True, "s", np.datetime64("2024-05-01T10:30:00", "ns"), b"hi", None]
    assert rows.values[1].tolist() == [1.5, 2, 3, False, "s", np.datetime64("2024-05-01T00:00:00", "ns"), b"hi", 0.25]
    assert [type(v) for v in rows.values[0][:4]] == [float, int, int, bool]


def test_the_fast_path_leaves_nan_and_fractions_in_long_columns_to_the_checked_path() -> None:
    """A float NaN cannot come from JSON, but numpy arrays reach decode_instances from /invocations too."""
    with pytest.raises(BadRequest, match=r"instances\[0\]: column a \(double\) needs a finite number"):
        v1.decode_instances([[NAN, 1, 2]], NUMERIC, "instances")
    with pytest.raises(BadRequest, match=r"column b \(long\) needs an integer, got 2.5"):
        v1.decode_instances([[1, 2.5, 2]], NUMERIC, "instances")
    assert v1.decode_instances([[1, -4.0, 2]], NUMERIC, "instances").values.tolist() == [[1, -4, 2]]


def test_encode_answers_outputs_name_and_version_and_the_filled_features_by_row() -> None:
    outputs = {"predictions": np.array([1, 0]), "probabilities": np.array([[0.25, 0.75], [1.0, 0.0]])}
    assert v1.encode(outputs, "m", "3") == {
        "predictions": [1, 0],
        "probabilities": [[0.25, 0.75], [1.0, 0.0]],
        "model_name": "m",
        "model_version": "3",
    }
    filled = v1.encode({"predictions": np.array([1, 0])}, "m", "3", {1: ["b"], 0: ["a"]})
    assert filled["filled_features"] == {"0": ["a"], "1": ["b"]}
    assert list(filled["filled_features"]) == ["0", "1"]
    assert "filled_features" not in v1.encode({"predictions": np.array([1])}, "m", "3", {})
