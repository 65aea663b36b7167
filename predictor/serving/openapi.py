"""The OpenAPI 3.1 document at ``GET /openapi.json``, derived from the endpoint table and the codecs.

Inference bodies are read raw (the codecs parse them), so FastAPI's generated document would have no request
schemas and promise 422s we never send. This module replaces ``app.openapi`` with a builder that walks
``endpoints.ENDPOINTS``: each inference row is described by its codec (request and response, narrowed to the
served model's features once it has loaded), every other row by its 200 schema, and each lists the status
codes it really answers with, every error carrying ``{"error": "..."}``. Rows marked undocumented (the
repository extension's load/unload, KServe-compatible listings) are left out: a fuzzer driven by this
document must never call ``unload``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from importlib import metadata

from fastapi import FastAPI

from predictor import errors
from predictor.protocol.codec import DocumentContext
from predictor.protocol.document import JSON, OPTIONAL_STRING, STRING, Json, json_content, obj, ref
from predictor.serving.endpoints import CODECS, ENDPOINTS, Endpoint

FeatureNames = Sequence[str] | Callable[[], Sequence[str]]


def install_openapi(
    app: FastAPI,
    model_names: str | Callable[[], list[str]],
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
    models = model_names if callable(model_names) else (lambda: [model_names])
    built: dict[tuple[tuple[str, ...], tuple[str, ...]], Json] = {}

    def openapi() -> Json:
        served, features = tuple(models()), tuple(names())
        if (served, features) not in built:
            built.clear()
            built[served, features] = build_document(served, DocumentContext(features, entity_key, max_instances))
        return built[served, features]

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to replace the document


def build_document(model_names: Sequence[str], context: DocumentContext) -> Json:
    """``model_names``: the models served (the first one's features narrow the bodies)."""
    paths: dict[str, dict[str, Json]] = {}
    schemas = _schemas()
    for endpoint in ENDPOINTS:
        if not endpoint.documented:
            continue
        operation, parameters = _operation(endpoint, context, schemas)
        operation["operationId"] = re.sub(r"[^A-Za-z0-9]+", "_", f"{endpoint.handler} {endpoint.path}").strip("_")
        parameters = [*_path_parameters(endpoint.path, model_names), *parameters, *operation.pop("parameters", [])]
        if parameters:
            operation["parameters"] = parameters
        paths.setdefault(endpoint.path, {})[endpoint.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": f"{', '.join(model_names) or 'MLflow models'} predictor",
            "version": _version(),
            "description": DESCRIPTION,
        },
        "tags": TAGS,
        "paths": paths,
        "components": {"schemas": schemas, "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    }


def _operation(endpoint: Endpoint, context: DocumentContext, schemas: dict[str, Json]) -> tuple[Json, list[Json]]:
    """The operation of one row (its codec's bodies for an inference call), and its header parameters."""
    parameters: list[Json] = []
    if endpoint.codec is not None:
        described = CODECS[endpoint.codec].describe(context)
        schemas.update(described.schemas)
        ok = described.ok if endpoint.ok is None else json_content(ref(endpoint.ok), "The explanations.")
        operation: Json = {"requestBody": described.request_body}
        parameters = list(described.parameters)
    else:
        ok = json_content(ref(endpoint.ok) if endpoint.ok else {"type": "object"}, "OK.")
        operation = {}
    operation.update({"tags": [endpoint.tag], "summary": endpoint.summary, "responses": {"200": ok}})
    operation["responses"].update(_errors(*endpoint.errors))
    if endpoint.not_ready is not None:
        operation["responses"]["503"] = json_content(ref(endpoint.not_ready), "Not ready; `error` says why.")
    if "401" in endpoint.errors:
        operation["security"] = BEARER
    special = SPECIAL.get(endpoint.handler)
    if special is not None:
        special(operation)
    return operation, parameters


DESCRIPTION = (
    "KServe v1 and v2 (Open Inference Protocol) REST endpoints of one MLflow model, MLflow's own scoring protocol "
    "(`/invocations`, `/ping`), with its probes and metrics. "
    'Every error is JSON `{"error": "..."}`: 400 malformed body, 401 bearer token missing or wrong (when tokens are '
    "configured), 404 unknown model or version (or entity id, with a feature store), 413 body or instance count over "
    "the limit, 415 unsupported Content-Type, 429 rate limited (when a rate is set), 503 not ready. "
    "Also served, with the same error shape, and not described here: `/`, `/v1/models`, `/v2`, `/v2/models`, "
    "and the repository extension's `/v2/repository/models/{name}/load` and `unload` (guarded like /admin)."
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


def _error_descriptions() -> dict[str, str]:
    """Per HTTP status, what errors.py says of every class answered with it (and its gRPC code)."""
    by_status: dict[str, list[str]] = {}
    for cls in errors.error_classes():
        text = f"{' '.join((cls.__doc__ or '').split())} (`{cls.error_type}`; gRPC {cls.grpc_code.name})"
        by_status.setdefault(str(int(cls.status)), []).append(text)
    return {status: " ".join(texts) for status, texts in by_status.items()}


ERRORS = _error_descriptions()
ERROR_HEADERS = {
    "401": {"WWW-Authenticate": {"description": "The bearer challenge.", "schema": {"type": "string"}}},
    "429": {"Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer"}}},
}
BEARER: list[dict[str, list[str]]] = [{}, {"bearer": []}]  # optional: tokens are off unless configured


def _errors(*codes: str) -> dict[str, Json]:
    responses = {code: json_content(ref("Error"), ERRORS[code]) for code in codes}
    for code, headers in ERROR_HEADERS.items():
        if code in responses:
            responses[code]["headers"] = headers
    return responses


def _path_parameters(path: str, model_names: Sequence[str]) -> list[Json]:
    parameters = []
    for name in re.findall(r"{(\w+)}", path):
        if name == "model_name":
            schema: Json = {"type": "string"}
            if model_names:  # none yet while registry discovery has found nothing
                schema.update({"enum": list(model_names), "example": model_names[0]})
            text = "A served model's name; any other answers 404."
        else:
            schema, text = {"type": "string", "example": "1"}, "A version held: the serving one or the previous one."
        parameters.append({"name": name, "in": "path", "required": True, "schema": schema, "description": text})
    return parameters


def _ping(operation: Json) -> None:
    operation["responses"]["200"] = {
        "description": "Serving; the body is one newline, as mlflow models serve sends it."
    }


def _metrics(operation: Json) -> None:
    operation["responses"]["200"] = {
        "description": "Prometheus text exposition format.",
        "content": {"text/plain": {"schema": {"type": "string"}}},
    }


def _invocations(operation: Json) -> None:
    operation.setdefault("parameters", []).append(
        {
            "name": "X-Model-Name",
            "in": "header",
            "required": False,
            "schema": {"type": "string"},
            "description": "The model to call when this server serves several; absent: the first one.",
        }
    )
    operation["description"] = (
        "One of dataframe_split, dataframe_records, instances or inputs, and optionally params (accepted, ignored). "
        "Values are checked against the model's signature like every other format; errors are "
        '`{"error": "..."}` (not MLflow\'s error object).'
    )


def _webhook(operation: Json) -> None:
    """Signed by MLflow (X-MLflow-Signature), not by a bearer token: 401 here means a bad signature."""
    operation.pop("security", None)
    operation["requestBody"] = {"required": True, "content": {JSON: {"schema": {"type": "object"}}}}
    operation["responses"]["200"] = json_content(
        obj({"accepted": {"type": "boolean"}, "checking_registry": {"type": "boolean"}}), "Accepted."
    )


def _drift(operation: Json) -> None:
    operation["responses"]["200"] = json_content(
        {"type": "object"}, "This worker's window; monitored is false for a version without a baseline."
    )


def _shadow(operation: Json) -> None:
    operation["responses"]["200"] = json_content({"type": "object"}, "Status of the challenger.")


# What a row's fields cannot say, by handler.
SPECIAL: dict[str, Callable[[Json], None]] = {
    "ping": _ping,
    "metrics": _metrics,
    "invocations": _invocations,
    "mlflow_webhook": _webhook,
    "admin_drift": _drift,
    "admin_shadow": _shadow,
}


# ------------------------------------------------------------------------------------------ schemas


def _schemas() -> dict[str, Json]:
    """The schemas of the rows without a codec (the codecs add theirs as their rows are described)."""
    return {
        "Error": obj({"error": STRING}, "error"),
        "AdminStatus": obj(
            {
                "model_name": STRING,
                "model_uri": STRING,
                "serving": OPTIONAL_STRING,
                "previous": OPTIONAL_STRING,
                "versions": {"type": "array", "items": STRING},
                "last_registry_error": OPTIONAL_STRING,
            }
        ),
        "Liveness": obj({"status": {"const": "alive"}}, "status"),
        "Readiness": obj(
            {"status": {"const": "ready"}, "model_name": STRING, "model_version": STRING},
            "status",
            "model_name",
            "model_version",
        ),
        "NotReady": obj({"status": {"const": "not ready"}, "error": STRING}, "status", "error"),
        "ServerLive": obj({"live": {"type": "boolean"}}, "live"),
        "ServerReady": obj({"ready": {"const": True}}, "ready"),
        "ServerNotReady": obj({"ready": {"const": False}, "error": STRING}, "ready", "error"),
        "ModelReady": obj({"name": STRING, "ready": {"const": True}}, "name", "ready"),
        "ModelNotReady": obj({"name": STRING, "ready": {"const": False}, "error": STRING}, "name", "ready", "error"),
    }
