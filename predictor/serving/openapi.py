"""The OpenAPI 3.1 document at ``GET /openapi.json``: our routes, with the bodies FastAPI cannot see.

Our handlers read raw bodies (the protocol modules parse them), so FastAPI's generated document has no request
schemas and promises 422s we never send. This module replaces ``app.openapi`` with a builder that walks the
routes ``routes.Routes`` registered and ``fast_path.ROUTES`` (the lists of paths) and describes each handler:
request and response schemas (the Open Inference Protocol's, written from its specification and narrowed to what this
server accepts), and the status codes it really answers with, every 4xx carrying ``{"error": "..."}``.

KServe's remaining routes (``/``, ``/v1/models``, ``:explain``, ``/v2``, ``/v2/models``, the repository
extension's load/unload) are left out on purpose: they answer with KServe's own handlers and error
shapes, which this document cannot vouch for, and a fuzzer driven by it must never call ``unload``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from importlib import metadata
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute

from predictor import errors
from predictor.protocol.mlflow import FORMATS
from predictor.protocol.rows import NUMERIC_DATATYPES, OUTPUT_NAMES
from predictor.protocol.schema import MAX_MAGNITUDE

JSON = "application/json"
BINARY = "application/octet-stream"
BINARY_HEADER = "Inference-Header-Content-Length"
FeatureNames = Sequence[str] | Callable[[], Sequence[str]]
Json = dict[str, Any]  # a piece of the OpenAPI document


def install_openapi(
    app: FastAPI,
    model_name: str,
    feature_names: FeatureNames,
    *,
    entity_key: str | None = None,
    max_instances: int | None = None,
) -> None:
    """Serve our document at ``app.openapi_url`` (``/openapi.json``).

    ``feature_names`` may be a callable: the names come from the signature of the model loaded in the
    background, so the document is rebuilt when they change (before the load, any feature is allowed).
    """
    names = feature_names if callable(feature_names) else (lambda: feature_names)
    built: dict[tuple[str, ...], Json] = {}

    def openapi() -> Json:
        key = tuple(names())
        if key not in built:
            built.clear()
            built[key] = build_document(app, model_name, key, entity_key=entity_key, max_instances=max_instances)
        return built[key]

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to replace the document


def build_document(
    app: FastAPI,
    model_name: str,
    feature_names: Sequence[str],
    *,
    entity_key: str | None = None,
    max_instances: int | None = None,
) -> Json:
    paths: dict[str, dict[str, Json]] = {}
    for method, path, handler in our_operations(app):
        operation = OPERATIONS.get(handler, _undocumented)()
        operation["operationId"] = re.sub(r"[^A-Za-z0-9]+", "_", f"{handler} {path}").strip("_")
        parameters = _path_parameters(path, model_name)
        if handler == "v2_infer":
            parameters.append(_binary_header_parameter())
        if handler == "invocations" and feature_names:
            operation["requestBody"]["content"][JSON]["examples"] = _invocations_examples(feature_names)
        if parameters:
            operation["parameters"] = parameters
        paths.setdefault(path, {})[method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": f"{model_name} predictor", "version": _version(), "description": DESCRIPTION},
        "tags": TAGS,
        "paths": paths,
        "components": {
            "schemas": _schemas(feature_names, entity_key, max_instances),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def our_operations(app: FastAPI) -> list[tuple[str, str, str]]:
    """(method, path, handler name) of every route we answer: the fast path's, then ``our_routes``'."""
    from predictor.serving.fast_path import ROUTES  # here, not at import: it pulls in kserve and the model

    registered = [(m, r.path, r.endpoint.__name__) for r in our_routes(app) for m in sorted(r.methods or ())]
    return [*ROUTES, *registered]


def our_routes(app: FastAPI) -> list[APIRoute]:
    """The routes ``rest.Routes`` registered: their endpoints are bound methods of a ``Routes``."""
    from predictor.serving.routes import Routes  # here, not at import: rest pulls in kserve and the model

    return [
        route
        for route in app.routes
        if isinstance(route, APIRoute)
        and route.include_in_schema
        and isinstance(getattr(route.endpoint, "__self__", None), Routes)
    ]


DESCRIPTION = (
    "KServe v1 and v2 (Open Inference Protocol) REST endpoints of one MLflow model, MLflow's own scoring protocol "
    "(`/invocations`, `/ping`), with its probes and metrics. "
    'Every error is JSON `{"error": "..."}`: 400 malformed body, 401 bearer token missing or wrong (when tokens are '
    "configured), 404 unknown model or version (or entity id, with a feature store), 413 body or instance count over "
    "the limit, 415 unsupported Content-Type, 429 rate limited (when a rate is set), 503 not ready. "
    "KServe's own routes served beside these (`/`, `/v1/models`, `:explain`, `/v2`, `/v2/models`, "
    "`/v2/repository/...`, the last guarded like /admin) are not described here."
)
TAGS = [
    {"name": "probes", "description": "Liveness and readiness for Kubernetes and load balancers."},
    {"name": "metrics", "description": "Prometheus exposition."},
    {"name": "v1", "description": "KServe v1 protocol."},
    {"name": "v2", "description": "Open Inference Protocol (KServe v2) REST."},
    {"name": "admin", "description": "Hot swap: the versions held, rollback, reload."},
    {
        "name": "mlflow",
        "description": "MLflow's scoring protocol, as `mlflow models serve` answers it: clients switch with no change.",
    },
]


def _version() -> str:
    try:
        return metadata.version("predictive-maintenance-predictor")
    except metadata.PackageNotFoundError:
        return "0+unknown"


# ------------------------------------------------------------------------------------------ operations


def _ref(name: str) -> Json:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: Json, description: str) -> Json:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _error_descriptions() -> dict[str, str]:
    """Per HTTP status, what errors.py says of every class answered with it (and its gRPC code)."""
    by_status: dict[str, list[str]] = {}
    for cls in errors.error_classes():
        text = f"{(cls.__doc__ or '').strip()} (`{cls.error_type}`; gRPC {cls.grpc_code.name})"
        by_status.setdefault(str(int(cls.status)), []).append(text)
    return {status: " ".join(texts) for status, texts in by_status.items()}


ERRORS = _error_descriptions()
ERROR_HEADERS = {
    "401": {"WWW-Authenticate": {"description": "The bearer challenge.", "schema": {"type": "string"}}},
    "429": {"Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer"}}},
}
BEARER: list[dict[str, list[str]]] = [{}, {"bearer": []}]  # optional: tokens are off unless configured


def _errors(*codes: str) -> dict[str, Json]:
    responses = {code: _json(_ref("Error"), ERRORS[code]) for code in codes}
    for code, headers in ERROR_HEADERS.items():
        if code in responses:
            responses[code]["headers"] = headers
    return responses


def _op(tag: str, summary: str, ok: Json, *errors: str, body: Json | None = None) -> Callable[[], Json]:
    def describe() -> Json:
        operation: Json = {"tags": [tag], "summary": summary, "responses": {"200": ok, **_errors(*errors)}}
        if body is not None:
            operation["requestBody"] = body
        if "401" in errors:
            operation["security"] = BEARER
        return operation

    return describe


def _ready_op(tag: str, summary: str, ok: str, not_ready: str, *errors: str) -> Callable[[], Json]:
    plain = _op(tag, summary, _json(_ref(ok), "Ready to serve."), *errors)

    def describe() -> Json:
        operation = plain()
        operation["responses"]["503"] = _json(_ref(not_ready), "Not ready; `error` says why.")
        return operation

    return describe


def _undocumented() -> Json:
    return {"summary": "Not yet described", "responses": {"200": {"description": "OK"}}}


def _binary_header_parameter() -> Json:
    return {
        "name": BINARY_HEADER,
        "in": "header",
        "required": False,
        "schema": {"type": "integer", "minimum": 0},
        "description": f"Binary tensor extension: the length of the JSON header that starts an {BINARY} body; "
        "the raw tensors follow it.",
    }


def _path_parameters(path: str, model_name: str) -> list[Json]:
    parameters = []
    for name in re.findall(r"{(\w+)}", path):
        if name == "model_name":
            schema: Json = {"type": "string", "enum": [model_name], "example": model_name}
            text = "The served model's name; any other answers 404."
        else:
            schema, text = {"type": "string", "example": "1"}, "A version held: the serving one or the previous one."
        parameters.append({"name": name, "in": "path", "required": True, "schema": schema, "description": text})
    return parameters


V1_BODY = {"required": True, "content": {JSON: {"schema": _ref("V1PredictRequest")}}}
V2_BODY = {
    "required": True,
    "content": {
        JSON: {"schema": _ref("InferenceRequest")},
        BINARY: {
            "schema": {
                "type": "string",
                "format": "binary",
                "description": (
                    f"Binary tensor extension: a JSON InferenceRequest of {BINARY_HEADER} bytes, whose inputs give "
                    "parameters.binary_data_size instead of data, followed by the raw little-endian tensors."
                ),
            }
        },
    },
}
V2_OK = {
    "description": "Predictions.",
    "content": {
        JSON: {"schema": _ref("InferenceResponse")},
        BINARY: {
            "schema": {
                "type": "string",
                "format": "binary",
                "description": ("When binary output was asked for: the JSON response header, then the raw tensors."),
            }
        },
    },
    "headers": {
        BINARY_HEADER: {
            "description": "Length of the JSON header (binary responses only).",
            "schema": {"type": "integer"},
        }
    },
}

INFERENCE_ERRORS = ("400", "401", "404", "413", "415", "429", "503")
OPERATIONS: dict[str, Callable[[], Json]] = {
    "live": _op("probes", "Liveness: the process is up", _json(_ref("Liveness"), "Alive.")),
    "ready": _ready_op(
        "probes", "Readiness: the model is loaded, warmed up and its feature store reachable", "Readiness", "NotReady"
    ),
    "v2_live": _op("probes", "OIP server liveness", _json(_ref("ServerLive"), "Alive.")),
    "v2_ready": _ready_op("probes", "OIP server readiness (follows the model's)", "ServerReady", "ServerNotReady"),
    "metrics": _op(
        "metrics",
        "Prometheus metrics",
        {
            "description": "Prometheus text exposition format.",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        },
        "401",
    ),
    "v1_status": _ready_op("v1", "v1 model status", "V1ModelStatus", "V1ModelStatus", "404"),
    "v1_predict": _op(
        "v1",
        "v1 predict",
        _json(_ref("V1PredictResponse"), "Predictions, one per instance."),
        *INFERENCE_ERRORS,
        body=V1_BODY,
    ),
    "v2_metadata": _op(
        "v2", "OIP model metadata", _json(_ref("MetadataModelResponse"), "Model metadata."), "404", "503"
    ),
    "v2_model_ready": _ready_op("v2", "OIP model readiness", "ModelReady", "ModelNotReady", "404"),
    "v2_infer": _op("v2", "OIP inference", V2_OK, *INFERENCE_ERRORS, body=V2_BODY),
    "admin_versions": _op(
        "admin",
        "The versions held and the registry reference followed",
        _json(_ref("AdminStatus"), "Status."),
        "401",
        "429",
    ),
    "admin_rollback": _op(
        "admin",
        "Serve the previously held version again",
        _json(_ref("AdminStatus"), "Rolled back; the status after it."),
        "400",
        "401",
        "429",
    ),
    "admin_reload": _op(
        "admin",
        "Ask the registry now instead of at the next poll",
        _json(_ref("AdminStatus"), "Checked; last_registry_error says if it failed."),
        "401",
        "429",
    ),
    "mlflow_webhook": lambda: _webhook_op(),
    "v1_explain": _op(
        "v1",
        "Explain predictions: per instance, how much each input column moved the predicted class's probability",
        _json(_ref("V1ExplainResponse"), "base_value + the contributions = the predicted class's probability."),
        *INFERENCE_ERRORS,
        "501",
        body=V1_BODY,
    ),
    "admin_drift": _op(
        "admin",
        "Live rows against the training baseline: population stability index per column and for the predictions",
        _json({"type": "object"}, "This worker's window; monitored is false for a version without a baseline."),
        "401",
        "429",
        "503",
    ),
    "admin_shadow": _op(
        "admin",
        "The shadow model (--shadow_model_uri): its version, agreement with the served model, errors",
        _json({"type": "object"}, "Status of the challenger."),
        "401",
        "404",
        "429",
    ),
    "invocations": lambda: _invocations_op(),
    "ping": lambda: _ping_op(),
}


def _ping_op() -> Json:
    operation = _op(
        "mlflow",
        "MLflow scoring server health: 200 once the model serves",
        {"description": "Serving; the body is one newline, as mlflow models serve sends it."},
    )()
    operation["responses"]["503"] = _json(_ref("NotReady"), "Not serving yet; `error` says why.")
    return operation


def _invocations_examples(names: Sequence[str]) -> Json:
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


def _invocations_op() -> Json:
    """``POST /invocations`` with an example of each of MLflow's four body shapes, filled in when requested."""
    operation = _op(
        "mlflow",
        "MLflow scoring protocol: predict",
        _json(_ref("InvocationsResponse"), "What the model's predict answers, as mlflow models serve writes it."),
        *INFERENCE_ERRORS,
        body={"required": True, "content": {JSON: {"schema": _ref("InvocationsRequest")}}},
    )()
    operation["description"] = (
        "One of dataframe_split, dataframe_records, instances or inputs, and optionally params (accepted, ignored). "
        "Values are checked against the model's signature like every other format; errors are "
        '`{"error": "..."}` (not MLflow\'s error object).'
    )
    return operation


def _webhook_op() -> Json:
    """Signed by MLflow (X-MLflow-Signature), not by a bearer token: 401 here means a bad signature."""
    operation = _op(
        "admin",
        "MLflow registry webhook: check the registry now",
        _json(_object({"accepted": {"type": "boolean"}, "checking_registry": {"type": "boolean"}}), "Accepted."),
        "400",
        "404",
        body={"required": True, "content": {"application/json": {"schema": {"type": "object"}}}},
    )()
    operation["responses"].update(_errors("401"))
    return operation


# ------------------------------------------------------------------------------------------ schemas


def _object(properties: dict[str, Json], *required: str, **extra: Any) -> Json:
    return {"type": "object", "properties": properties, "required": list(required), **extra}


STRING, BOOLEAN = {"type": "string"}, {"type": "boolean"}
NUMBER = {"type": "number"}
FEATURE = {
    "type": "number",
    "minimum": -MAX_MAGNITUDE,
    "maximum": MAX_MAGNITUDE,
}  # what the schema accepts for a double
OPTIONAL_STRING = {"type": ["string", "null"]}
DATATYPES = [*NUMERIC_DATATYPES, "BYTES"]


def _schemas(feature_names: Sequence[str], entity_key: str | None, max_instances: int | None) -> dict[str, Json]:
    return {
        "Error": _object({"error": STRING}, "error"),
        "AdminStatus": _object(
            {
                "model_name": STRING,
                "model_uri": STRING,
                "serving": OPTIONAL_STRING,
                "previous": OPTIONAL_STRING,
                "versions": {"type": "array", "items": STRING},
                "last_registry_error": OPTIONAL_STRING,
            }
        ),
        **_probe_schemas(),
        **_v1_schemas(feature_names, entity_key, max_instances),
        **_v2_schemas(),
        **_mlflow_schemas(max_instances),
    }


def _probe_schemas() -> dict[str, Json]:
    return {
        "Liveness": _object({"status": {"const": "alive"}}, "status"),
        "Readiness": _object(
            {"status": {"const": "ready"}, "model_name": STRING, "model_version": STRING},
            "status",
            "model_name",
            "model_version",
        ),
        "NotReady": _object({"status": {"const": "not ready"}, "error": STRING}, "status", "error"),
        "ServerLive": _object({"live": BOOLEAN}, "live"),
        "ServerReady": _object({"ready": {"const": True}}, "ready"),
        "ServerNotReady": _object({"ready": {"const": False}, "error": STRING}, "ready", "error"),
        "ModelReady": _object({"name": STRING, "ready": {"const": True}}, "name", "ready"),
        "ModelNotReady": _object(
            {"name": STRING, "ready": {"const": False}, "error": STRING}, "name", "ready", "error"
        ),
    }


def _v1_schemas(names: Sequence[str], entity_key: str | None, max_instances: int | None) -> dict[str, Json]:
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
    instances: Json = {"type": "array", "items": {"anyOf": [_ref("V1Row"), _ref("V1KeyedInstance")]}, "minItems": 1}
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
        "V1PredictResponse": _object(
            {
                "predictions": {"type": "array", "items": {"type": ["number", "string", "boolean"]}},
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
        "V1ExplainResponse": _object(
            {
                "explanations": {
                    "type": "array",
                    "items": _object(
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
        "V1ModelStatus": _object(
            {"name": STRING, "version": OPTIONAL_STRING, "platform": STRING, "ready": BOOLEAN, "error": STRING},
            "name",
            "version",
            "platform",
            "ready",
        ),
    }


def _v2_schemas() -> dict[str, Json]:
    scalar = {"anyOf": [FEATURE, STRING, BOOLEAN]}
    # OIP's tensor_data is recursive; two levels of nesting cover row-major [N, F] data and keep generators finite.
    tensor_data = {
        "type": "array",
        "items": {
            "anyOf": [scalar, {"type": "array", "items": {"anyOf": [scalar, {"type": "array", "items": scalar}]}}]
        },
    }
    parameters = {"type": "object", "description": "Free-form parameters (OIP)."}
    binary_size = {"type": "object", "properties": {"binary_data_size": {"type": "integer", "minimum": 0}}}
    shape = {"type": "array", "items": {"type": "integer", "minimum": 0}}
    return {
        "TensorData": tensor_data,
        "Parameters": parameters,
        "MetadataTensor": _object(
            {
                "name": STRING,
                "datatype": {"enum": DATATYPES},
                "shape": {"type": "array", "items": {"type": "integer", "minimum": -1}},
                "parameters": _ref("Parameters"),
            },
            "name",
            "datatype",
            "shape",
        ),
        "MetadataModelResponse": _object(
            {
                "name": STRING,
                "versions": {"type": "array", "items": STRING},
                "platform": STRING,
                "inputs": {"type": "array", "items": _ref("MetadataTensor")},
                "outputs": {"type": "array", "items": _ref("MetadataTensor")},
            },
            "name",
            "platform",
            "inputs",
            "outputs",
        ),
        "RequestInput": _object(
            {
                "name": STRING,
                "shape": shape,
                "datatype": {"enum": DATATYPES},
                "parameters": {
                    **binary_size,
                    "description": "binary_data_size: bytes of this tensor in the binary "
                    "part of the body (binary extension).",
                },
                "data": _ref("TensorData"),
            },
            "name",
            "shape",
            "datatype",
            description="One FP32/FP64 tensor [N, F], or one [N] tensor per feature named "
            "after it; data, or binary_data_size with the binary extension.",
        ),
        "RequestOutput": _object(
            {
                "name": {"enum": list(OUTPUT_NAMES)},
                "parameters": {"type": "object", "properties": {"binary_data": BOOLEAN}},
            },
            "name",
        ),
        "InferenceRequest": _object(
            {
                "id": STRING,
                "parameters": {"type": "object", "properties": {"binary_data_output": BOOLEAN}},
                "inputs": {"type": "array", "items": _ref("RequestInput"), "minItems": 1},
                "outputs": {"type": "array", "items": _ref("RequestOutput")},
            },
            "inputs",
        ),
        "ResponseOutput": _object(
            {
                "name": STRING,
                "shape": {"type": "array", "items": {"type": "integer"}},
                "datatype": {"enum": DATATYPES},
                "parameters": binary_size,
                "data": {"type": "array"},
            },
            "name",
            "shape",
            "datatype",
        ),
        "InferenceResponse": _object(
            {
                "id": STRING,
                "model_name": STRING,
                "model_version": STRING,
                "parameters": _ref("Parameters"),
                "outputs": {"type": "array", "items": _ref("ResponseOutput")},
            },
            "id",
            "model_name",
            "model_version",
            "outputs",
        ),
    }


def _mlflow_schemas(max_instances: int | None) -> dict[str, Json]:
    """MLflow's scoring bodies, built from the v1 rows (lists in signature order, or objects keyed by column)."""
    bounds: Json = {"minItems": 1, **({"maxItems": max_instances} if max_instances else {})}
    instances = {"type": "array", "items": {"anyOf": [_ref("V1Row"), _ref("V1KeyedInstance")]}, **bounds}
    scalar = {"type": ["number", "string", "boolean", "null"]}
    split = _object(
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
                "dataframe_records": {"type": "array", "items": _ref("V1KeyedInstance"), **bounds},
                "instances": instances,
                "inputs": {"anyOf": [instances, columns]},
                "params": {"type": "object", "description": "Accepted and ignored."},
            },
            "additionalProperties": False,
            "oneOf": [{"required": [name]} for name in FORMATS],
            "description": "Exactly one of dataframe_split, dataframe_records, instances or inputs.",
        },
        "InvocationsResponse": _object(
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
