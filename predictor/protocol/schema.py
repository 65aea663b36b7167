"""The model's input columns, read once from its MLflow signature, and the one set of type rules.

Every wire format decodes against this ``Schema``; every type error is raised here, so a string in a
long column reads the same whether it came as v1 JSON, a v2 tensor or an ``/invocations`` record.

Rows travel in one of two shapes (``Schema.matrix`` says which):
- a float64 ``[N, F]`` matrix — every column numeric and the model happy with NumPy (the fast path the
  compiled forest runs on); NaN marks a gap the feature store must fill;
- an object ``[N, F]`` array of Python values already checked against their column (``None`` = null or
  gap); ``frame`` turns a micro-batch of them into one DataFrame with the signature's dtypes.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import orjson
import pandas as pd

from predictor.errors import BadRequest, PayloadTooLarge

ColumnType = Literal["double", "float", "long", "integer", "boolean", "string", "datetime", "binary"]
COLUMN_TYPES: tuple[ColumnType, ...] = ("double", "float", "long", "integer", "boolean", "string", "datetime", "binary")
NUMERIC: frozenset[str] = frozenset({"double", "float", "long", "integer"})
# The Open Inference Protocol datatype that carries each column type.
COLUMN_DATATYPES: dict[str, str] = {
    "double": "FP64",
    "float": "FP32",
    "long": "INT64",
    "integer": "INT32",
    "boolean": "BOOL",
    "string": "BYTES",
    "datetime": "BYTES",
    "binary": "BYTES",
}
# scikit-learn's trees compare in float32: a larger finite value would overflow inside the model.
MAX_MAGNITUDE = float(np.finfo(np.float32).max)
_INT_RANGE = {"long": (-(2**63), 2**63 - 1), "integer": (-(2**31), 2**31 - 1)}
_DTYPES = {"double": "float64", "float": "float32", "long": "int64", "integer": "int32", "boolean": "bool"}


@dataclass(frozen=True)
class Column:
    name: str
    type: ColumnType
    required: bool = True

    @property
    def datatype(self) -> str:
        return COLUMN_DATATYPES[self.type]


@dataclass(frozen=True)
class Schema:
    """What a request must match: the model's columns (and the entity key when Feast is on)."""

    columns: tuple[Column, ...]
    entity_key: str | None = None
    max_instances: int = 10_000
    matrix: bool = True  # rows travel as a float64 [N, F] matrix (see the module docstring)
    tensor: bool = False  # the signature is one unnamed [N, F] tensor: only lists / [N, F] tensors fit
    index: dict[str, int] = field(init=False, repr=False, compare=False)
    # positions of the integer columns (long, integer): what the matrix fast path checks for whole numbers
    integral: list[int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "index", {c.name: j for j, c in enumerate(self.columns)})
        object.__setattr__(self, "integral", [j for j, c in enumerate(self.columns) if c.type in ("long", "integer")])

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def width(self) -> int:
        return len(self.columns)

    @property
    def numeric(self) -> bool:
        return all(c.type in NUMERIC for c in self.columns)

    def expected(self) -> str:
        if self.numeric and all(c.type == "double" for c in self.columns):
            return f"{self.width} features in this order: {', '.join(self.feature_names)}"
        return f"{self.width} columns in this order: {', '.join(f'{c.name} ({c.type})' for c in self.columns)}"

    def empty(self, count: int) -> np.ndarray:
        """Rows with every value still to come (NaN / None)."""
        if self.matrix:
            return np.full((count, self.width), np.nan)
        return np.full((count, self.width), None, dtype=object)

    def frame(self, rows: np.ndarray) -> pd.DataFrame:
        """One DataFrame with the signature's dtypes (for models that select columns by name)."""
        return pd.DataFrame({c.name: _series(rows[:, j], c) for j, c in enumerate(self.columns)})


def check_count(count: int, schema: Schema, key: str) -> None:
    if count == 0:
        raise BadRequest(f'"{key}" is empty: send at least one instance with {schema.expected()}')
    if count > schema.max_instances:
        raise PayloadTooLarge(
            f"{count} instances in one request; the limit is {schema.max_instances} "
            "(split the request, or raise --max_instances)"
        )


# ------------------------------------------------------------------------------------ type rules


def coerce(value: Any, column: Column, where: str) -> Any:
    """A JSON (or tensor element) value checked against its column: the Python value the row holds.

    ``where`` names the row (``instances[3]``); the message adds the column, its type and the value."""
    if value is None:
        if column.required:
            raise BadRequest(f"{where}: column {column.name} ({column.type}) is null; it is required")
        return None
    kind = column.type
    if kind in ("double", "float"):
        # true/false count as 1.0/0.0 here, as they always have (and as the matrix fast path reads them).
        if not isinstance(value, (bool, int, float, np.bool_, np.integer, np.floating)):
            raise _wrong(value, column, where, "a number")
        number = float(value)
        if not abs(number) <= MAX_MAGNITUDE:  # also refuses NaN
            raise _wrong(
                value,
                column,
                where,
                f"a finite number (NaN, Infinity and magnitudes beyond {MAX_MAGNITUDE:.3g} are not accepted)",
            )
        return number
    if kind in ("long", "integer"):
        return _integer(value, column, where)
    if kind == "boolean":
        if not isinstance(value, (bool, np.bool_)):
            raise _wrong(value, column, where, "true or false")
        return bool(value)
    if kind == "string":
        if not isinstance(value, str):
            raise _wrong(value, column, where, "a string")
        return value
    if kind == "datetime":
        return _datetime(value, column, where)
    return _binary(value, column, where)


def _integer(value: Any, column: Column, where: str) -> int:
    # 3.0 is accepted (JSON writers often add the .0); 1.5 is not: it would be silently truncated.
    # true/false count as 1/0, as in number columns: NumPy reads them so in every [N, F] or INT64 tensor and
    # in the matrix fast path, so refusing them here alone would make the answer depend on the format.
    if isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        if not math.isfinite(value) or not float(value).is_integer():
            raise _wrong(value, column, where, "an integer")
        value = int(value)
    if not isinstance(value, (int, np.integer)):
        raise _wrong(value, column, where, "an integer")
    low, high = _INT_RANGE[column.type]
    if not low <= int(value) <= high:
        raise _wrong(value, column, where, f"an integer in [{low}, {high}]")
    return int(value)


def _datetime(value: Any, column: Column, where: str) -> np.datetime64:
    if isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value)
        except ValueError:
            parsed = None
        if parsed is not None:
            if parsed.tzinfo is not None:  # a zone given: kept as the same instant in UTC (naive)
                parsed = parsed.astimezone(dt.UTC).replace(tzinfo=None)
            return np.datetime64(parsed, "ns")
    raise _wrong(value, column, where, "an ISO-8601 date-time string such as 2024-05-01T12:30:00")


def _binary(value: Any, column: Column, where: str) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            pass
    raise _wrong(value, column, where, "base64-encoded bytes")


def _wrong(value: Any, column: Column, where: str, expected: str) -> BadRequest:
    return BadRequest(f"{where}: column {column.name} ({column.type}) needs {expected}, got {show(value)}")


def _series(values: np.ndarray, column: Column) -> pd.Series:
    dtype = _DTYPES.get(column.type)
    if column.type == "datetime":
        return pd.Series(values, dtype="datetime64[ns]")
    if dtype is None:
        return pd.Series(values, dtype=object)
    if values.dtype == object and any(v is None for v in values):
        # An optional column left out: numbers become NaN (what scikit-learn's imputers expect).
        return pd.Series(values, dtype="float64" if column.type in NUMERIC else object)
    return pd.Series(values, dtype=dtype)


# ------------------------------------------------------------------------------------ helpers


def parse_json(body: bytes) -> Any:
    if not body.strip():
        raise BadRequest('empty request body: send JSON such as {"instances": [[...features...]]}')
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(
            f"body is not valid JSON ({exc.msg} at character {exc.pos}); NaN and Infinity are "
            "not JSON: send null-free finite numbers"
        ) from exc


def kind(value: Any) -> str:
    return {
        dict: "object",
        list: "array",
        str: "string",
        bool: "boolean",
        type(None): "null",
        int: "number",
        float: "number",
    }.get(type(value), type(value).__name__)


def show(value: Any) -> str:
    """A short rendering of a client's value for an error message (never fails, whatever the value)."""
    if isinstance(value, str):
        text = repr(value[:80])
    elif isinstance(value, (float, np.floating)) and not math.isfinite(value):
        text = str(float(value))  # nan, inf: orjson would write null
    elif isinstance(value, int) and not isinstance(value, bool):
        text = str(value)  # orjson refuses integers beyond 64 bits
    else:
        try:
            text = orjson.dumps(value, default=str, option=orjson.OPT_SERIALIZE_NUMPY).decode()
        except (orjson.JSONEncodeError, TypeError, RecursionError):  # nested deeper than orjson writes
            text = f"a deeply nested JSON {kind(value)}"
    return text if len(text) <= 60 else text[:57] + "..."


def flatten(data: Sequence[Any]) -> list[Any]:
    flat: list[Any] = []
    stack = [iter(data)]
    while stack:  # iterative: a deeply nested body must not exhaust the recursion limit
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            flat.append(item)
        else:
            stack.pop()
    return flat


def object_or_empty(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadRequest(f"{where} must be a JSON object")
    return value


# ------------------------------------------------------------------------------------ from MLflow


def from_signature(signature: Any) -> tuple[tuple[Column, ...], bool]:
    """The columns of an MLflow signature's inputs, and whether it is one unnamed tensor.

    A tensor signature ``[-1, F]`` becomes F double columns named ``x0 … x{F-1}``: it keeps working as
    one ``[N, F]`` matrix (lists and v2 ``[N, F]`` tensors)."""
    from predictor.errors import ModelLoadError

    inputs = signature.inputs
    if inputs.is_tensor_spec():
        specs = inputs.inputs
        shape = tuple(specs[0].shape) if len(specs) == 1 else ()
        if len(shape) != 2 or shape[1] is None or shape[1] < 1:
            raise ModelLoadError(
                f"the tensor signature {inputs.to_dict()} is not one [N, F] tensor; log the model with a "
                "column-based signature (infer_signature on a DataFrame)"
            )
        return tuple(Column(f"x{j}", "double") for j in range(shape[1])), True
    columns = []
    for spec in inputs.inputs:
        type_name = getattr(getattr(spec, "type", None), "name", None)
        if spec.name is None or type_name not in COLUMN_TYPES:
            raise ModelLoadError(
                f"input {spec.name or '(unnamed)'} has type {getattr(spec, 'type', '?')}, which this server "
                f"does not serve; supported column types: {', '.join(COLUMN_TYPES)}"
            )
        columns.append(Column(spec.name, type_name, bool(getattr(spec, "required", True))))
    return tuple(columns), False
