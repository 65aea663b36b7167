"""Every REST endpoint, once: what answers it, who may call it, what it answers.

Three things are derived from ``ENDPOINTS`` and from nothing else: the HTTP door's matcher (the rows with a
codec are inference calls, answered by ``serving/http.py`` without FastAPI), the FastAPI registration of the
other rows (handlers of ``serving/routes.Routes`` by name), and the OpenAPI document (``serving/openapi``).
A new wire format is one codec in ``protocol/`` and one row here.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from predictor.protocol.codec import RestCodec
from predictor.protocol.mlflow import MlflowCodec
from predictor.protocol.v1 import V1Codec
from predictor.protocol.v2 import V2Codec
from predictor.serving.access import Kind

#: the REST codecs by name (a row's ``codec``)
CODECS: Mapping[str, RestCodec] = {codec.name: codec for codec in (V1Codec(), V2Codec(), MlflowCodec())}
INFERENCE_ERRORS = ("400", "401", "404", "413", "415", "429", "503")
ADMIN_ERRORS = ("401", "429")


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str  # Starlette's template: {model_name}, {model_version} match one path segment
    handler: str  # the Routes method (non-inference rows), and the OpenAPI operation's name
    tag: str
    summary: str
    codec: str | None = None  # an inference call, decoded and encoded by this codec (CODECS)
    verb: Literal["predict", "explain"] = "predict"
    access: Kind | None = None  # the access policy's kind (None: anyone, e.g. probes)
    errors: tuple[str, ...] = ()  # the error statuses it answers with, besides 200
    ok: str | None = None  # the 200 body's schema (codec rows: the codec's own unless set)
    not_ready: str | None = None  # the 503 body's schema of a readiness probe
    documented: bool = True

    @property
    def inference(self) -> bool:
        return self.codec is not None


def _probe(path: str, handler: str, summary: str, ok: str, not_ready: str | None = None) -> Endpoint:
    return Endpoint("GET", path, handler, "probes", summary, ok=ok, not_ready=not_ready)


ENDPOINTS: tuple[Endpoint, ...] = (
    # ---- inference: the HTTP door, one codec each
    Endpoint(
        "POST", "/v1/models/{model_name}:predict", "v1_predict", "v1", "v1 predict",
        codec="v1", access="inference", errors=INFERENCE_ERRORS,
    ),
    Endpoint(
        "POST", "/v2/models/{model_name}/infer", "v2_infer", "v2", "OIP inference",
        codec="v2", access="inference", errors=INFERENCE_ERRORS,
    ),
    Endpoint(
        "POST", "/v2/models/{model_name}/versions/{model_version}/infer", "v2_infer", "v2", "OIP inference",
        codec="v2", access="inference", errors=INFERENCE_ERRORS,
    ),
    Endpoint(
        "POST", "/invocations", "invocations", "mlflow", "MLflow scoring protocol: predict",
        codec="mlflow", access="inference", errors=INFERENCE_ERRORS,
    ),
    Endpoint(
        "POST", "/v1/models/{model_name}:explain", "v1_explain", "v1",
        "Explain predictions: per instance, how much each input column moved the predicted class's probability",
        codec="v1", verb="explain", access="inference", errors=(*INFERENCE_ERRORS, "501"), ok="V1ExplainResponse",
    ),
    # ---- probes and metrics
    _probe("/health", "live", "Liveness: the process is up", "Liveness"),
    _probe("/health/live", "live", "Liveness: the process is up", "Liveness"),
    _probe("/ready", "ready", "Readiness: the model is loaded, warmed up and its feature store reachable",
           "Readiness", "NotReady"),
    _probe("/health/ready", "ready", "Readiness: the model is loaded, warmed up and its feature store reachable",
           "Readiness", "NotReady"),
    _probe("/v2/health/live", "v2_live", "OIP server liveness", "ServerLive"),
    _probe("/v2/health/ready", "v2_ready", "OIP server readiness (follows the model's)", "ServerReady",
           "ServerNotReady"),
    Endpoint("GET", "/metrics", "metrics", "metrics", "Prometheus metrics", access="metrics", errors=("401",)),
    Endpoint("GET", "/ping", "ping", "mlflow", "MLflow scoring server health: 200 once the model serves",
             not_ready="NotReady"),
    # ---- model status and metadata
    Endpoint("GET", "/v1/models/{model_name}", "v1_status", "v1", "v1 model status", errors=("404",),
             ok="V1ModelStatus", not_ready="V1ModelStatus"),
    Endpoint("GET", "/v2/models/{model_name}", "v2_metadata", "v2", "OIP model metadata", errors=("404", "503"),
             ok="MetadataModelResponse"),
    Endpoint("GET", "/v2/models/{model_name}/ready", "v2_model_ready", "v2", "OIP model readiness", errors=("404",),
             ok="ModelReady", not_ready="ModelNotReady"),
    Endpoint("GET", "/v2/models/{model_name}/versions/{model_version}", "v2_metadata", "v2", "OIP model metadata",
             errors=("404", "503"), ok="MetadataModelResponse"),
    Endpoint("GET", "/v2/models/{model_name}/versions/{model_version}/ready", "v2_model_ready", "v2",
             "OIP model readiness", errors=("404",), ok="ModelReady", not_ready="ModelNotReady"),
    # Answered here rather than by KServe, so that they share our error policy; not part of the document.
    Endpoint("GET", "/", "live", "probes", "Liveness", documented=False),
    Endpoint("GET", "/v1/models", "v1_models", "v1", "The models served", documented=False),
    Endpoint("GET", "/v2", "v2_server_metadata", "v2", "OIP server metadata", documented=False),
    Endpoint("GET", "/v2/models", "v2_models", "v2", "The models served", documented=False),
    # ---- admin
    Endpoint("GET", "/admin/versions", "admin_versions", "admin",
             "The versions held and the registry reference followed", access="admin", errors=ADMIN_ERRORS,
             ok="AdminStatus"),
    Endpoint("POST", "/admin/rollback", "admin_rollback", "admin", "Serve the previously held version again",
             access="admin", errors=("400", *ADMIN_ERRORS), ok="AdminStatus"),
    Endpoint("POST", "/admin/reload", "admin_reload", "admin", "Ask the registry now instead of at the next poll",
             access="admin", errors=ADMIN_ERRORS, ok="AdminStatus"),
    Endpoint("POST", "/admin/webhook/mlflow", "mlflow_webhook", "admin",
             "MLflow registry webhook: check the registry now", errors=("400", "401", "404")),
    Endpoint("GET", "/admin/drift", "admin_drift", "admin",
             "Live rows against the training baseline: population stability index per column and for the "
             "predictions", access="metrics", errors=(*ADMIN_ERRORS, "503")),
    Endpoint("GET", "/admin/shadow", "admin_shadow", "admin",
             "The shadow model (--shadow_model_uri): its version, agreement with the served model, errors",
             access="metrics", errors=("401", "404", "429")),
    # The repository extension's (OIP, as Triton and tritonclient speak it): load and unload guarded like /admin.
    Endpoint("POST", "/v2/repository/index", "repository_index", "v2", "Every model with its state",
             documented=False),
    Endpoint("POST", "/v2/repository/models/{model_name}/load", "repository_load", "admin", "Load a model",
             access="admin", documented=False),
    Endpoint("POST", "/v2/repository/models/{model_name}/unload", "repository_unload", "admin", "Unload a model",
             access="admin", documented=False),
)  # fmt: skip


@dataclass(frozen=True)
class Match:
    endpoint: Endpoint
    model_name: str | None
    model_version: str | None


@dataclass
class InferenceMatcher:
    """Finds the inference row of a POST path, as Starlette's routing would (``{name}``: ``[^/]+``)."""

    endpoints: tuple[Endpoint, ...] = field(default=ENDPOINTS)
    _patterns: list[tuple[str, re.Pattern[str], Endpoint]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._patterns = [
            (e.path.split("{", 1)[0], _compile(e.path), e) for e in self.endpoints if e.inference and e.method == "POST"
        ]
        # Clients call the same few paths over and over: remembered, a match costs a dictionary lookup.
        self.match = functools.lru_cache(maxsize=1024)(self._match)  # type: ignore[method-assign]

    def match(self, path: str) -> Match | None:
        return self._match(path)

    def _match(self, path: str) -> Match | None:
        for prefix, pattern, endpoint in self._patterns:
            if path.startswith(prefix) and (found := pattern.fullmatch(path)) is not None:
                groups = found.groupdict()
                return Match(endpoint, groups.get("model_name"), groups.get("model_version"))
        return None


def _compile(template: str) -> re.Pattern[str]:
    parts = re.split(r"{(\w+)}", template)
    return re.compile("".join(re.escape(p) if i % 2 == 0 else f"(?P<{p}>[^/]+)" for i, p in enumerate(parts)))
