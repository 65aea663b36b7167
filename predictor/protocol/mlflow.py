"""MLflow's scoring protocol (``POST /invocations`` of ``mlflow models serve``) ↔ typed rows.

Bodies: ``dataframe_split`` (``{"columns": [...], "data": [[...]]}``), ``dataframe_records`` (a list of
objects), ``instances`` (as v1) or ``inputs`` (a list, or an object of columns), plus optional ``params``.
The answer is MLflow's: ``{"predictions": [...]}`` — the model's ``predict`` (class labels for a
classifier), or one record per row when the model answers a DataFrame.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson

from predictor.errors import BadRequest
from predictor.protocol import v1
from predictor.protocol.codec import JSON_TYPES, Decoded, Description, DocumentContext, Reply, RestRequest, Result
from predictor.protocol.document import JSON, STRING, Json, json_content, obj, ref
from predictor.protocol.rows import Rows
from predictor.protocol.schema import Schema, kind, parse_json

FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")


class MlflowCodec:
    """``POST /invocations``, as ``mlflow models serve`` answers it."""

    name = "mlflow"
    media_types: tuple[str, ...] = JSON_TYPES
    expects = "JSON (dataframe_split, dataframe_records, instances or inputs)"
    binary_header: str | None = None

    def decode(self, raw: RestRequest, schema: Schema, outputs: Sequence[str]) -> Decoded:
        payload = parse_json(raw.body)
        return Decoded(decode(payload, schema), params=payload.get("params"))

    def encode(self, decoded: Decoded, result: Result) -> Reply:
        body = encode(result.outputs, result.frame_columns, result.dict_answer)
        return Reply(orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY))

    def describe(self, context: DocumentContext) -> Description:
        body: Json = {"required": True, "content": {JSON: {"schema": ref("InvocationsRequest")}}}
        if context.feature_names:
            body["content"][JSON]["examples"] = _examples(context.feature_names)
        ok = json_content(
            ref("InvocationsResponse"), "What the model's predict answers, as mlflow models serve writes it."
        )
        return Description(body, ok, {**v1.schemas(context), **schemas(context.max_instances)})


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


def encode(outputs: dict[str, np.ndarray], columns: tuple[str, ...] | None, by_column: bool = False) -> dict[str, Any]:
    """``columns``: the model answered a DataFrame with these columns (one record per row, as MLflow writes it),
    or, ``by_column``, a dict of them (written back as that dict)."""
    if columns and by_column:
        return {"predictions": {name: outputs[name].tolist() for name in columns}}
    if columns:
        return {"predictions": v1.records(outputs, columns)}
    return {"predictions": outputs.get("predictions", next(iter(outputs.values()))).tolist()}


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


# ------------------------------------------------------------------------------------ the OpenAPI document


def _examples(names: Sequence[str]) -> Json:
    """A request of each shape MLflow's clients send, for the model's columns (0 stands for each value)."""
    row = [0.0 for _ in names]
    record = dict(zip(names, row, strict=True))
    bodies = {
        "dataframe_split": {"dataframe_split": {"columns": list(names), "data": [row]}},
        "dataframe_records": {"dataframe_records": [record]},
        "instances": {"instances": [row]},
        "inputs": {"inputs": {name: [value] for name, value in record.items()}, "params": {}},
    }
    return {shape: {"summary": f"MLflow's {shape} shape", "value": body} for shape, body in bodies.items()}


def schemas(max_instances: int | None) -> dict[str, Json]:
    """MLflow's scoring bodies, built from the v1 rows (lists in signature order, or objects keyed by column)."""
    bounds: Json = {"minItems": 1, **({"maxItems": max_instances} if max_instances else {})}
    instances = {"type": "array", "items": {"anyOf": [ref("V1Row"), ref("V1KeyedInstance")]}, **bounds}
    scalar = {"type": ["number", "string", "boolean", "null"]}
    split = obj(
        {
            "columns": {"type": "array", "items": STRING, "description": "Omitted: the rows are in signature order."},
            "index": {"type": "array", "description": "pandas' row labels (ignored)."},
            "data": {"type": "array", "items": {"type": "array", "items": scalar}, **bounds},
        },
        "data",
        description='pandas\' DataFrame.to_dict(orient="split").',
    )
    columns = {
        "type": "object",
        "additionalProperties": {"type": "array", "items": scalar},
        "minProperties": 1,
        "description": "Column name → its values, one per row.",
    }
    return {
        "InvocationsRequest": {
            "type": "object",
            "properties": {
                "dataframe_split": split,
                "dataframe_records": {"type": "array", "items": ref("V1KeyedInstance"), **bounds},
                "instances": instances,
                "inputs": {"anyOf": [instances, columns]},
                "params": {"type": "object", "description": "Accepted and ignored."},
            },
            "additionalProperties": False,
            "oneOf": [{"required": [name]} for name in FORMATS],
            "description": "Exactly one of dataframe_split, dataframe_records, instances or inputs.",
        },
        "InvocationsResponse": obj(
            {
                "predictions": {
                    "type": "array",
                    "items": {"type": ["number", "string", "boolean", "object"]},
                    "description": "One per row: the model's prediction, or an object of its outputs when it "
                    "answers a DataFrame.",
                }
            },
            "predictions",
        ),
    }
