"""KServe v1: ``{"instances": [...]}`` (or ``"inputs"``) ↔ typed rows.

Each instance is a list in signature order or an object keyed by column, with JSON values of each
column's type; with a feature store, an object may carry the entity id and any features to override.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson

from predictor.errors import BadRequest
from predictor.protocol.codec import JSON_TYPES, Decoded, Description, DocumentContext, Reply, RestRequest, Result
from predictor.protocol.document import FEATURE, JSON, NUMBER, OPTIONAL_STRING, STRING, Json, json_content, obj, ref
from predictor.protocol.rows import Rows
from predictor.protocol.schema import MAX_MAGNITUDE, Schema, check_count, coerce, kind, parse_json, show


class V1Codec:
    """``POST /v1/models/NAME:predict`` (and ``:explain``, which takes the same bodies)."""

    name = "v1"
    media_types: tuple[str, ...] = JSON_TYPES
    expects = 'JSON like {"instances": [[...], ...]}'
    binary_header: str | None = None

    def decode(self, raw: RestRequest, schema: Schema, outputs: Sequence[str]) -> Decoded:
        return Decoded(decode(parse_json(raw.body), schema))

    def encode(self, decoded: Decoded, result: Result) -> Reply:
        if result.explanations is not None:
            body: dict[str, Any] = {
                "explanations": result.explanations,
                "model_name": result.model_name,
                "model_version": result.version,
            }
        else:
            body = encode(result.outputs, result.model_name, result.version, result.filled, result.frame_columns)
        return Reply(orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY))

    def describe(self, context: DocumentContext) -> Description:
        body = {"required": True, "content": {JSON: {"schema": ref("V1PredictRequest")}}}
        return Description(
            body, json_content(ref("V1PredictResponse"), "Predictions, one per instance."), schemas(context)
        )


def decode(payload: Any, schema: Schema) -> Rows:
    if not isinstance(payload, dict):
        raise BadRequest(f'body must be a JSON object like {{"instances": [[...]]}}, got a JSON {kind(payload)}')
    key = "instances" if "instances" in payload else "inputs" if "inputs" in payload else None
    if key is None:
        raise BadRequest(f'missing key "instances": send {{"instances": [[...], ...]}} with {schema.expected()}')
    return decode_instances(payload[key], schema, key)


def decode_instances(instances: Any, schema: Schema, key: str) -> Rows:
    if not isinstance(instances, list):
        raise BadRequest(f'"{key}" must be a list of instances, got a JSON {kind(instances)}')
    check_count(len(instances), schema, key)
    fast = _as_matrix(instances, schema) if schema.matrix else None
    if fast is not None:
        return Rows(fast)
    values = schema.empty(len(instances))
    entity_ids: list[str | None] = [None] * len(instances)
    for i, instance in enumerate(instances):
        where = f"{key}[{i}]"
        if isinstance(instance, list):
            values[i] = _list_row(instance, schema, where)
        elif isinstance(instance, dict):
            entity_ids[i] = _keyed_row(instance, schema, values[i], where)
        else:
            raise BadRequest(
                f"{where} must be a list of {schema.width} values or an object keyed by column "
                f"name, got a JSON {kind(instance)}"
            )
    return Rows(values, entity_ids if any(e is not None for e in entity_ids) else None)


def encode(
    outputs: dict[str, np.ndarray],
    model_name: str,
    version: str,
    filled: dict[int, list[str]] | None = None,
    frame_columns: tuple[str, ...] | None = None,
) -> dict[str, Any]:
    """``predictions`` (and ``probabilities`` for a classifier); a model answering a DataFrame or a dict has its
    columns as records under ``predictions``, so a stock v1 client finds its answer where it always looks."""
    if frame_columns:
        extra = {name: array.tolist() for name, array in outputs.items() if name not in frame_columns}
        response: dict[str, Any] = {"predictions": records(outputs, frame_columns), **extra}
    else:
        response = {name: array.tolist() for name, array in outputs.items()}
        if "predictions" not in response and response:  # an output the signature names: v1 says predictions
            response = {"predictions": response.pop(next(iter(outputs))), **response}
    response["model_name"] = model_name
    response["model_version"] = version
    if filled:
        response["filled_features"] = {str(row): names for row, names in sorted(filled.items())}
    return response


def records(outputs: dict[str, np.ndarray], columns: tuple[str, ...]) -> list[dict[str, Any]]:
    """One object per row, keyed by column."""
    lists = [outputs[name].tolist() for name in columns]
    return [dict(zip(columns, row, strict=True)) for row in zip(*lists, strict=True)]


def _as_matrix(instances: list[Any], schema: Schema) -> np.ndarray | None:
    """The fast path: a clean list of equal-length numeric lists becomes one array without a Python loop."""
    try:
        array = np.asarray(instances)
    except (ValueError, TypeError):
        return None
    if array.ndim != 2 or array.shape[1] != schema.width or array.dtype.kind not in "fiub":
        return None
    array = array.astype(np.float64, copy=False)
    if not np.abs(array).max() <= MAX_MAGNITUDE:  # also not for NaN and ±inf
        return None  # the slow path names the offending value
    integral = schema.integral
    if integral:
        whole = array[:, integral]
        if (whole != np.round(whole)).any():
            return None  # 1.5 in a long column: the slow path names it
    return array


def _list_row(instance: list[Any], schema: Schema, where: str) -> list[Any]:
    if len(instance) != schema.width:
        raise BadRequest(f"{where} has {len(instance)} values; the model expects {schema.expected()}")
    row = [coerce(value, column, where) for value, column in zip(instance, schema.columns, strict=True)]
    return [np.nan if v is None else v for v in row] if schema.matrix else row


def _keyed_row(instance: dict[str, Any], schema: Schema, out: np.ndarray, where: str) -> str | None:
    key = schema.entity_key
    unknown = [k for k in instance if k not in schema.index and k != key]
    if unknown:
        hint = f" or {key}" if key else ""
        raise BadRequest(f"{where} has unknown keys {unknown}; expected {schema.expected()}{hint}")
    for name, given in instance.items():  # the row's keys, not every column: a by-id row names one
        j = schema.index.get(name)
        if j is not None and (value := coerce(given, schema.columns[j], where)) is not None:
            out[j] = value
    entity_id = instance.get(key) if key else None
    if entity_id is not None:
        if not isinstance(entity_id, str) or not entity_id or len(entity_id) > 256:
            raise BadRequest(f"{where}.{key} must be a non-empty string id, got {show(entity_id)}")
        return entity_id
    missing = [c.name for c in schema.columns if c.required and c.name not in instance]
    if missing:
        hint = f" (or send {key} to fetch them from the feature store)" if key else ""
        raise BadRequest(f"{where} is missing required columns {missing}{hint}")
    return None


# ------------------------------------------------------------------------------------ the OpenAPI document


def schemas(context: DocumentContext) -> dict[str, Json]:
    """v1's request and response schemas, narrowed to the model's features once it has loaded."""
    names, entity_key, max_instances = context.feature_names, context.entity_key, context.max_instances
    if names:
        row: Json = {
            "type": "array",
            "items": FEATURE,
            "minItems": len(names),
            "maxItems": len(names),
            "description": f"The {len(names)} features in this order: {', '.join(names)}.",
        }
        keyed: Json = {
            "type": "object",
            "properties": {name: FEATURE for name in names},
            "additionalProperties": False,
            "required": list(names),
        }
    else:  # the model is still loading: its signature, hence the features, is not known yet
        row, keyed = {"type": "array", "items": FEATURE}, {"type": "object", "additionalProperties": FEATURE}
    if entity_key:
        keyed["properties"][entity_key] = {"type": "string", "minLength": 1, "maxLength": 256}
        keyed["anyOf"] = [{"required": keyed.pop("required")}, {"required": [entity_key]}]
        keyed["description"] = f"Features by name; with {entity_key}, the missing ones come from the feature store."
    instances: Json = {"type": "array", "items": {"anyOf": [ref("V1Row"), ref("V1KeyedInstance")]}, "minItems": 1}
    if max_instances:
        instances["maxItems"] = max_instances
    return {
        "V1Row": row,
        "V1KeyedInstance": keyed,
        "V1PredictRequest": {
            "type": "object",
            "properties": {"instances": instances, "inputs": instances},
            "anyOf": [{"required": ["instances"]}, {"required": ["inputs"]}],
            "description": '"inputs" is accepted as another name for "instances".',
        },
        "V1PredictResponse": obj(
            {
                "predictions": {
                    "type": "array",
                    "items": {"type": ["number", "string", "boolean", "array", "object"]},
                    "description": "One per instance: a label or number, a list (several targets), or an "
                    "object keyed by column (a model answering a DataFrame).",
                },
                "probabilities": {
                    "type": "array",
                    "items": {"type": "array", "items": NUMBER},
                    "description": "Per instance, one probability per class (classifiers only).",
                },
                "model_name": STRING,
                "model_version": STRING,
                "filled_features": {
                    "type": "object",
                    "additionalProperties": {"type": "array", "items": STRING},
                    "description": "Row index → features filled from defaults (feature store only).",
                },
            },
            "predictions",
            "model_name",
            "model_version",
        ),
        "V1ExplainResponse": obj(
            {
                "explanations": {
                    "type": "array",
                    "items": obj(
                        {
                            "class": {"type": ["number", "string", "boolean"]},
                            "base_value": NUMBER,
                            "contributions": {"type": "object", "additionalProperties": NUMBER},
                        },
                        "class",
                        "base_value",
                        "contributions",
                    ),
                },
                "model_name": STRING,
                "model_version": STRING,
            },
            "explanations",
            "model_name",
            "model_version",
        ),
        "V1ModelStatus": obj(
            {
                "name": STRING,
                "version": OPTIONAL_STRING,
                "platform": STRING,
                "ready": {"type": "boolean"},
                "error": STRING,
            },
            "name",
            "version",
            "platform",
            "ready",
        ),
    }
