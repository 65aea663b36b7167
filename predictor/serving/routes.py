"""Our HTTP routes, registered ahead of KServe's so they take precedence, and the one error mapping.

The two inference routes (v1 ``:predict``, v2 ``/infer``) are not here: ``fast_path`` answers them in front
of FastAPI. The checks both share (model name, media type, body size) are the functions at the end.

KServe's own handlers stay for everything we do not override (/v2 server metadata, /v1/models, the
repository extension). Ours exist because KServe's answer 422 on bad bodies, refuse tritonclient's JSON
(no Content-Type), report ready before a model can serve, and cannot echo the resolved registry version.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import orjson
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.exceptions import HTTPException as StarletteHTTPException

from predictor import errors, logs
from predictor.errors import (
    BadRequest,
    ModelNotFoundError,
    ModelNotReadyError,
    PayloadTooLarge,
    PredictorError,
    UnsupportedMediaType,
)
from predictor.model import MlflowBody, PredictorModel, V1Body
from predictor.protocol.schema import parse_json
from predictor.serving import webhook
from predictor.serving.access import AccessControl


class Admin(Protocol):
    def status(self) -> dict[str, Any]: ...

    def drift(self) -> dict[str, Any]: ...

    def shadow(self) -> dict[str, Any]: ...

    def reload(self) -> None: ...

    def wake(self) -> None: ...


JSON_TYPES = ("application/json", "application/cloudevents+json", "application/ld+json")
BINARY_HEADER = "inference-header-content-length"


def json_response(content: Any, status_code: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY),
        status_code=status_code,
        headers=headers,
        media_type="application/json",
    )


def error_response(exc: Exception) -> Response:
    answer = errors.answer(exc)
    return json_response({"error": answer.message}, status_code=int(answer.status), headers=answer.headers)


def add_exception_handlers(app: FastAPI, count: Callable[[str], None]) -> None:
    async def predictor_error(_: Request, exc: Exception) -> Response:
        count(errors.answer(exc).error_type)
        return error_response(exc)

    async def validation_error(_: Request, exc: Exception) -> Response:
        # The Open Inference Protocol wants 400 {"error": ...}, not FastAPI's 422 {"detail": ...}.
        assert isinstance(exc, RequestValidationError)
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", ()))
        return json_response({"error": f"invalid request: {where}: {first.get('msg', 'malformed')}"}, status_code=400)

    async def http_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        return json_response({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    app.add_exception_handler(PredictorError, predictor_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)


class Routes:
    def __init__(
        self,
        model: PredictorModel,
        max_body_bytes: int,
        readiness: Callable[[], str | None],
        access: AccessControl,
        admin: Admin,
        draining: Callable[[], bool],
        exposition: Callable[[], bytes],
    ) -> None:
        self.model = model
        self.max_body_bytes = max_body_bytes
        self.not_ready_reason = readiness  # None when ready, else why not
        self.access = access
        self.admin = admin
        self.draining = draining
        self.exposition = exposition

    def register(self, app: FastAPI) -> None:
        get, post = ["GET"], ["POST"]
        for path in ("/health", "/health/live"):
            app.add_api_route(path, self.live, methods=get, tags=["probes"], summary="Liveness")
        for path in ("/ready", "/health/ready"):
            app.add_api_route(path, self.ready, methods=get, tags=["probes"], summary="Readiness")
        app.add_api_route("/v2/health/live", self.v2_live, methods=get, tags=["probes"])
        app.add_api_route("/v2/health/ready", self.v2_ready, methods=get, tags=["probes"])
        app.add_api_route("/metrics", self.metrics, methods=get, tags=["metrics"])
        app.add_api_route("/v1/models/{model_name}", self.v1_status, methods=get, tags=["v1"])
        for prefix in ("/v2/models/{model_name}", "/v2/models/{model_name}/versions/{model_version}"):
            app.add_api_route(prefix, self.v2_metadata, methods=get, tags=["v2"])
            app.add_api_route(prefix + "/ready", self.v2_model_ready, methods=get, tags=["v2"])
        # MLflow's scoring protocol, so clients of `mlflow models serve` switch with no change.
        app.add_api_route("/invocations", self.invocations, methods=post, tags=["mlflow"])
        app.add_api_route("/ping", self.ping, methods=get, tags=["mlflow"])
        app.add_api_route("/admin/versions", self.admin_versions, methods=get, tags=["admin"])
        app.add_api_route("/admin/rollback", self.admin_rollback, methods=post, tags=["admin"])
        app.add_api_route("/admin/reload", self.admin_reload, methods=post, tags=["admin"])
        app.add_api_route("/admin/webhook/mlflow", self.mlflow_webhook, methods=post, tags=["admin"])
        app.add_api_route("/v1/models/{model_name}:explain", self.v1_explain, methods=post, tags=["v1"])
        app.add_api_route("/admin/drift", self.admin_drift, methods=get, tags=["admin"])
        app.add_api_route("/admin/shadow", self.admin_shadow, methods=get, tags=["admin"])
        # KServe's model-repository extension would unload the only model without any access check.
        app.add_api_route(
            "/v2/repository/models/{model_name}/load", self.repository_load, methods=post, include_in_schema=False
        )
        app.add_api_route(
            "/v2/repository/models/{model_name}/unload", self.repository_unload, methods=post, include_in_schema=False
        )

    # ------------------------------------------------------------------------------ probes
    async def live(self) -> dict[str, str]:
        return {"status": "alive"}

    async def ready(self) -> Response:
        reason = self.not_ready_reason()
        if reason is not None:
            return json_response({"status": "not ready", "error": reason}, status_code=503)
        return json_response({"status": "ready", "model_name": self.model.name, "model_version": self._version()})

    async def v2_live(self) -> dict[str, bool]:
        return {"live": True}

    async def v2_ready(self) -> Response:
        reason = self.not_ready_reason()
        if reason is not None:
            return json_response({"ready": False, "error": reason}, status_code=503)
        return json_response({"ready": True})

    async def metrics(self, request: Request) -> Response:
        self.access.check(request, "metrics")
        return Response(self.exposition(), media_type=CONTENT_TYPE_LATEST)

    # ------------------------------------------------------------------------------ v1
    async def v1_status(self, model_name: str) -> Response:
        self._check_name(model_name)
        reason = self.not_ready_reason()
        body: dict[str, Any] = {
            "name": self.model.name,
            "version": self._version(),
            "platform": "mlflow",
            "ready": reason is None,
        }
        if reason is not None:
            body["error"] = reason
        return json_response(body, status_code=200 if reason is None else 503)

    # ------------------------------------------------------------------------------ MLflow scoring
    async def ping(self) -> Response:
        # `mlflow models serve` answers 200 once its model is loaded: so do we (503 before).
        reason = self.not_ready_reason()
        if reason is not None:
            return json_response({"status": "not ready", "error": reason}, status_code=503)
        return Response("\n", media_type="application/json")

    async def invocations(self, request: Request) -> Response:
        payload = await self._inference_json(request, "JSON (dataframe_split, dataframe_records, instances or inputs)")
        response, _ = await self.model(MlflowBody(payload), dict(request.headers))
        return json_response(response, headers=self._closing())

    # ------------------------------------------------------------------------------ v2
    async def v2_metadata(self, model_name: str, model_version: str | None = None) -> Response:
        self._check_name(model_name, model_version)
        if self.model.serving is None:
            raise ModelNotReadyError(f"model {model_name} is still loading; its metadata comes from its signature")
        return json_response(
            {
                "name": self.model.name,
                "versions": self.model.versions(),
                "platform": "mlflow",
                "inputs": self.model.metadata_inputs(),
                "outputs": self.model.metadata_outputs(),
            }
        )

    async def v2_model_ready(self, model_name: str, model_version: str | None = None) -> Response:
        self._check_name(model_name, model_version)
        reason = self.not_ready_reason()
        if reason is not None:
            return json_response({"name": model_name, "ready": False, "error": reason}, status_code=503)
        return json_response({"name": model_name, "ready": True})

    # ------------------------------------------------------------------------------ admin
    async def admin_versions(self, request: Request) -> Response:
        self.access.check(request, "admin")
        return json_response(self.admin.status())

    async def admin_rollback(self, request: Request) -> Response:
        self.access.check(request, "admin")
        self.model.rollback()
        return json_response(self.admin.status())

    async def admin_reload(self, request: Request) -> Response:
        """Ask the registry now (e.g. from a CI job right after moving the alias) instead of at the next poll."""
        self.access.check(request, "admin")
        await asyncio.to_thread(self.admin.reload)
        return json_response(self.admin.status())

    async def admin_drift(self, request: Request) -> Response:
        """Live rows against the training baseline, per column (this worker's window)."""
        self.access.check(request, "metrics")
        return json_response(self.admin.drift())

    async def admin_shadow(self, request: Request) -> Response:
        """The challenger (--shadow_model_uri): its version, agreement with the served model, errors."""
        self.access.check(request, "metrics")
        return json_response(self.admin.shadow())

    # ------------------------------------------------------------------------------ explanations
    async def v1_explain(self, model_name: str, request: Request) -> Response:
        """The same bodies as :predict; per row the predicted class, a base value and each input column's
        contribution, adding up to the predicted probability."""
        self._check_name(model_name)
        payload = await self._inference_json(request, "the JSON of :predict")
        return json_response(await self.model.explanations(V1Body(payload)))

    async def mlflow_webhook(self, request: Request) -> Response:
        """MLflow's signed registry events (the signature is the credential: MLflow sends no bearer token)."""
        secret = self.model.settings.webhook_secret
        if not secret:
            raise ModelNotFoundError(
                "no webhook is configured here: set PREDICTOR_WEBHOOK_SECRET to the secret of the MLflow webhook"
            )
        body = await self._body(request)
        webhook.verify(secret, request.headers, body)
        serving = self.model.serving
        relevant = webhook.concerns(body, serving.model.source.registered_name if serving else None)
        if relevant:
            self.admin.wake()
        return json_response({"accepted": True, "checking_registry": relevant})

    async def repository_load(self, model_name: str, request: Request) -> Response:
        self._check_name(model_name)
        self.access.check(request, "admin")
        await asyncio.to_thread(self.admin.reload)
        return json_response({"name": model_name, "load": True})

    async def repository_unload(self, model_name: str, request: Request) -> Response:
        self._check_name(model_name)
        self.access.check(request, "admin")
        raise BadRequest(
            "this server serves exactly one model and does not unload it: stop the process, or "
            "move the registry alias to change what it serves"
        )

    # ------------------------------------------------------------------------------ helpers
    def _check_name(self, model_name: str, model_version: str | None = None) -> None:
        check_name(self.model, model_name, model_version)

    def _closing(self) -> dict[str, str]:
        # While draining, ask keep-alive clients to reconnect (elsewhere) before the listener closes.
        return {"connection": "close"} if self.draining() else {}

    def _version(self) -> str | None:
        serving = self.model.serving
        return serving.version if serving else None

    async def _inference_json(self, request: Request, expected: str) -> Any:
        """An inference call's parsed JSON body, after its request id, access check and Content-Type check."""
        logs.request_id.set(request.headers.get("x-request-id"))
        self.access.check(request, "inference")
        content_type = media_type(request.headers.get("content-type"))
        if content_type is not None and content_type not in JSON_TYPES:
            raise UnsupportedMediaType(
                f"Content-Type {content_type} is not supported here: send {expected} "
                "with -H 'Content-Type: application/json'"
            )
        return parse_json(await self._body(request))

    async def _body(self, request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            raise too_large(int(declared), self.max_body_bytes)
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_body_bytes:
                raise too_large(size, self.max_body_bytes)
            chunks.append(chunk)
        return b"".join(chunks)


def check_name(model: PredictorModel, model_name: str, model_version: str | None = None) -> None:
    """404 unless the request names the model served here (and, if it names one, a loaded version)."""
    if model_name != model.name:
        raise ModelNotFoundError(
            f"model {model_name!r:.80} is not served here; this server serves "
            f"{model.name!r} (GET /v2/models lists them)"
        )
    if model_version is not None and model.held(model_version) is None:
        raise ModelNotFoundError(
            f"version {model_version!r:.40} of {model_name} is not loaded; "
            f"loaded: {', '.join(model.versions()) or 'none yet'}"
        )


def too_large(size: int, limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"request body of {size}+ bytes exceeds the limit of {limit} bytes "
        "(split the request, or raise --max_body_bytes)"
    )


def media_type(content_type: str | None) -> str | None:
    """The Content-Type header without its parameters, lower-cased (None when absent or empty)."""
    if not content_type:
        return None
    return content_type.split(";", 1)[0].strip().lower()
