"""MLflow's scoring protocol (``POST /invocations`` of ``mlflow models serve``) ↔ typed rows.

Bodies: ``dataframe_split`` (``{"columns": [...], "data": [[...]]}``), ``dataframe_records`` (a list of
objects), ``instances`` (as v1) or ``inputs`` (a list, or an object of columns), plus optional ``params``.
The answer is MLflow's: ``{"predictions": [...]}`` — the model's ``predict`` (class labels for a
classifier), or one record per row when the model answers a DataFrame.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from predictor.errors import BadRequest
from predictor.protocol import v1
from predictor.protocol.rows import Rows
from predictor.protocol.schema import Schema, kind

FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")


def decode(payload: Any, schema: Schema) -> Rows:
    if not isinstance(payload, dict):
        raise BadRequest(f"body must be a JSON object with one of {list(FORMATS)}, got a JSON {kind(payload)}")
    present = [key for key in FORMATS if key in payload]
    unknown = [key for key in payload if key not in (*FORMATS, "params")]
    if len(present) != 1 or unknown:
        raise BadRequest(
            f"body must hold exactly one of {list(FORMATS)} (and optionally params); got keys {sorted(payload)[:10]}"
        )
    params = payload.get("params")
    if params is not None and not isinstance(params, dict):
        raise BadRequest(f'"params" must be a JSON object, got a JSON {kind(params)}')
    key = present[0]
    body = payload[key]
    if key == "dataframe_split":
        return v1.decode_instances(_split_records(body), schema, "dataframe_split.data")
    if key == "inputs" and isinstance(body, dict):
        return v1.decode_instances(_columns_records(body), schema, "inputs")
    return v1.decode_instances(body, schema, key)


def encode(outputs: dict[str, np.ndarray], columns: tuple[str, ...] | None) -> dict[str, Any]:
    """``columns``: the model answered a DataFrame with these columns (one record per row)."""
    if columns:
        lists = [outputs[name].tolist() for name in columns]
        return {"predictions": [dict(zip(columns, row, strict=True)) for row in zip(*lists, strict=True)]}
    return {"predictions": outputs["predictions"].tolist()}


def _split_records(body: Any) -> list[Any]:
    if not isinstance(body, dict) or not isinstance(body.get("data"), list):
        raise BadRequest('"dataframe_split" must be an object like {"columns": [...], "data": [[...], ...]}')
    columns, data = body.get("columns"), body["data"]
    if columns is None:
        return list(data)  # lists in signature order
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise BadRequest('"dataframe_split.columns" must be a list of column names')
    records = []
    for i, row in enumerate(data):
        if not isinstance(row, list) or len(row) != len(columns):
            raise BadRequest(f"dataframe_split.data[{i}] must be a list of {len(columns)} values, one per column")
        records.append(dict(zip(columns, row, strict=True)))
    return records


def _columns_records(body: dict[str, Any]) -> list[dict[str, Any]]:
    lengths = {len(v) if isinstance(v, list) else -1 for v in body.values()}
    if -1 in lengths or len(lengths) != 1:
        raise BadRequest('"inputs" as an object must map each column to a list of values, all of one length')
    count = lengths.pop()
    return [{name: values[i] for name, values in body.items()} for i in range(count)]
