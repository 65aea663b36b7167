"""Decoded rows, and tensors → rows: what v2 REST and gRPC share once each has read its wire format.

A v2 request carries one ``[N, F]`` tensor (every column numeric), or one ``[N]`` tensor per column with
the datatype that fits it (``schema.COLUMN_DATATYPES``), and/or a BYTES tensor named after the entity key.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from predictor.errors import BadRequest
from predictor.protocol.schema import MAX_MAGNITUDE, Column, Schema, check_count, coerce, show

OUTPUT_NAMES = ("predictions", "probabilities")
NUMERIC_DATATYPES: dict[str, type[Any]] = {
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "BOOL": np.bool_,
}
#: every datatype of the Open Inference Protocol
DATATYPES: tuple[str, ...] = (*NUMERIC_DATATYPES, "BYTES")


@dataclass
class Rows:
    """Decoded rows (``Schema.matrix`` says float64 or object); NaN / None where the feature store fills."""

    values: np.ndarray  # [N, F]
    entity_ids: list[str | None] | None = None  # per row; None when no row names an entity

    @property
    def count(self) -> int:
        return int(self.values.shape[0])


@dataclass
class V2Request:
    """The parts of a v2 request that shape its response."""

    rows: Rows
    id: str
    binary_outputs: bool = False
    requested: dict[str, bool | None] = field(default_factory=dict)  # output name -> binary_data, if asked
    params: dict[str, Any] | None = None  # the request's parameters (the model's, and the protocol's own)


@dataclass(frozen=True)
class Tensor:
    name: str
    datatype: str
    shape: list[int]
    array: np.ndarray  # flat; BYTES tensors hold Python str objects


def rows_from_tensors(tensors: Sequence[Tensor], schema: Schema) -> Rows:
    ids = next((t for t in tensors if schema.entity_key and t.name == schema.entity_key), None)
    features = [t for t in tensors if t is not ids]
    count = None if ids is None else len(ids.array)
    if len(features) == 1 and features[0].name not in schema.index:
        values = _matrix_tensor(features[0], schema)
    elif features:
        values = _column_tensors(features, schema, count)
    elif ids is not None:
        values = schema.empty(len(ids.array))
    else:
        raise BadRequest("no inputs")
    check_count(values.shape[0], schema, "inputs")
    if ids is None:
        return Rows(values)
    if len(ids.array) != values.shape[0] or len(ids.shape) > 2:
        raise BadRequest(f"{schema.entity_key} has {len(ids.array)} ids but the features have {values.shape[0]} rows")
    if ids.datatype != "BYTES":
        raise BadRequest(f"input {schema.entity_key} must be BYTES (one string id per row)")
    return Rows(values, [str(v) for v in ids.array])


def _matrix_tensor(tensor: Tensor, schema: Schema) -> np.ndarray:
    shape = tensor.shape
    if len(shape) == 1 and shape[0] == schema.width:
        shape = [1, schema.width]
    if not schema.numeric or len(shape) != 2 or shape[1] != schema.width:
        per_column = "one [N] tensor per column, named after it"
        raise BadRequest(
            f"input {tensor.name} has shape {tensor.shape}; send "
            + (
                f"shape [N, {schema.width}] with {schema.expected()} (or {per_column})"
                if schema.numeric
                else per_column
            )
            + ("" if schema.numeric else f": {schema.expected()}")
        )
    if tensor.datatype == "BYTES":
        raise BadRequest(f"input {tensor.name} is BYTES; an [N, F] tensor must be numeric (FP64, FP32, INT64, ...)")
    matrix = tensor.array.reshape(shape)
    return _assemble([_column_values(matrix[:, j], c, tensor.name) for j, c in enumerate(schema.columns)], schema)


def _column_tensors(tensors: Sequence[Tensor], schema: Schema, count: int | None) -> np.ndarray:
    by_name = {t.name: t for t in tensors}
    unknown = [name for name in by_name if name not in schema.index]
    if unknown:
        raise BadRequest(f"inputs {unknown} are not columns of this model; expected {schema.expected()}")
    missing = [c.name for c in schema.columns if c.required and c.name not in by_name]
    if missing and count is None:
        raise BadRequest(
            f"missing inputs {missing}; send one [N] tensor per column"
            + (f" or one [N, {schema.width}] tensor" if schema.numeric else "")
        )
    lengths = {t.array.size for t in tensors} | ({count} if count is not None else set())
    if len(lengths) != 1:
        raise BadRequest(f"column tensors disagree on the number of rows: {sorted(lengths)}")
    rows = lengths.pop()
    columns = [
        _column_values(by_name[c.name].array, c, c.name, by_name[c.name].datatype) if c.name in by_name else None
        for c in schema.columns
    ]
    return _assemble(columns, schema, rows)


def _column_values(array: np.ndarray, column: Column, where: str, datatype: str | None = None) -> np.ndarray:
    """One column's values checked at once (vectorised where the type allows it)."""
    kind = array.dtype.kind
    # A null (JSON) or NaN (binary, gRPC) is a missing value: the model's imputer fills an optional column's.
    missing = np.isnan(array) if kind == "f" else np.zeros(array.shape, dtype=bool)
    if missing.any() and column.required:
        row = int(np.argmax(missing))
        raise BadRequest(
            f"{where} row {row}: column {column.name} ({column.type}) is null or NaN (a missing value); it is required"
        )
    if column.type in ("double", "float") and kind in "fiub":
        values = array.astype(np.float64)
        bad = ~(np.abs(values) <= MAX_MAGNITUDE) & ~missing
        if bad.any():
            row = int(np.argmax(bad))
            coerce(float(values[row]), column, f"{where} row {row}")  # raises, naming the value
        return values
    if column.type in ("long", "integer") and kind in "iuf":
        if kind == "f":
            bad = (~np.isfinite(array) | (array != np.round(array))) & ~missing
            if bad.any():
                row = int(np.argmax(bad))
                coerce(float(array[row]), column, f"{where} row {row}")
        return np.asarray(
            [
                None if gap else coerce(int(v), column, f"{where} row {i}")
                for i, (v, gap) in enumerate(zip(array.tolist(), missing, strict=True))
            ]
        )
    if column.type == "boolean" and kind == "b":
        return array.astype(bool)
    if kind == "O" and column.type in ("string", "datetime", "binary"):
        if column.type == "binary":  # BYTES elements arrive as text (UTF-8): the column wants bytes
            return np.asarray([v.encode() if isinstance(v, str) else v for v in array], dtype=object)
        out = np.empty(array.size, dtype=object)
        out[:] = [coerce(v, column, f"{where} row {i}") for i, v in enumerate(array)]
        return out
    raise BadRequest(
        f"input {where} is {datatype or _datatype_name(kind)}; column {column.name} ({column.type}) "
        f"needs {column.datatype}" + (f", e.g. {show(array[0])} is not a {column.type}" if array.size else "")
    )


def _assemble(columns: Sequence[np.ndarray | None], schema: Schema, rows: int | None = None) -> np.ndarray:
    count = rows if rows is not None else next(len(c) for c in columns if c is not None)
    values = schema.empty(count)
    for j, column in enumerate(columns):
        if column is not None:
            values[:, j] = column
    return values


def _datatype_name(kind: str) -> str:
    return {"f": "a float tensor", "i": "an integer tensor", "u": "an integer tensor", "b": "BOOL"}.get(kind, "BYTES")


def requested_outputs(outputs: Any, available: Sequence[str]) -> dict[str, bool | None]:
    if outputs is None:
        return {}
    if not isinstance(outputs, list):
        raise BadRequest('"outputs" must be a list like [{"name": "probabilities"}]')
    requested: dict[str, bool | None] = {}
    for i, spec in enumerate(outputs):
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise BadRequest(f'outputs[{i}] must be an object with a "name"')
        if spec["name"] not in available:
            raise BadRequest(f"outputs[{i}] asks for {spec['name']!r:.60}; this model has {list(available)}")
        parameters = spec.get("parameters") or {}
        if not isinstance(parameters, dict):
            raise BadRequest(f"outputs[{i}].parameters must be a JSON object")
        binary = parameters.get("binary_data")
        requested[spec["name"]] = None if binary is None else bool(binary)
    return requested


def datatype_of(array: np.ndarray) -> str:
    """The v2 datatype of exactly this dtype (XGBoost answers float32: FP64 would make gRPC pack it wrongly)."""
    for name, dtype in NUMERIC_DATATYPES.items():
        if array.dtype == np.dtype(dtype):
            return name
    return "BYTES"
