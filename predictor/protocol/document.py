"""Building blocks of the OpenAPI document that the codecs' ``describe`` and ``serving/openapi`` share."""

from __future__ import annotations

from typing import Any

from predictor.protocol.schema import MAX_MAGNITUDE

Json = dict[str, Any]

JSON = "application/json"
BINARY = "application/octet-stream"
STRING: Json = {"type": "string"}
BOOLEAN: Json = {"type": "boolean"}
NUMBER: Json = {"type": "number"}
OPTIONAL_STRING: Json = {"type": ["string", "null"]}
# What the schema accepts for a double: scikit-learn's trees compare in float32.
FEATURE: Json = {"type": "number", "minimum": -MAX_MAGNITUDE, "maximum": MAX_MAGNITUDE}


def ref(name: str) -> Json:
    return {"$ref": f"#/components/schemas/{name}"}


def json_content(schema: Json, description: str) -> Json:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def obj(properties: dict[str, Json], *required: str, **extra: Any) -> Json:
    return {"type": "object", "properties": properties, "required": list(required), **extra}
