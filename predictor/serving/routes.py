"""The REST routes that are not inference calls (probes, metrics, status and metadata, admin), registered on
FastAPI from ``endpoints.ENDPOINTS``, and the error handlers of that app.

Inference calls never reach FastAPI: ``serving/http.py`` answers them. KServe's own routes are not
registered at all (``kserve_seam``): every route answers with our error shape and policy.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import orjson
from fastapi import Depends, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.exceptions import HTTPException as StarletteHTTPException

from predictor import errors
from predictor.errors import ModelNotFoundError, ModelNotReadyError, PredictorError
from predictor.model import PredictorModel
from predictor.models.table import ModelTable
from predictor.protocol import v2
from predictor.serving import webhook
from predictor.serving.access import AccessControl, Kind
from predictor.serving.endpoints import ENDPOINTS
from predictor.serving.http import read_body


class Admin(Protocol):
    def status(self) -> dict[str, Any]: ...

    def drift(self) -> dict[str, Any]: ...

    def shadow(self) -> dict[str, Any]: ...

    def reload(self) -> None: ...

    def wake(self) -> None: ...

    def model_not_ready_reason(self, name: str) -> str | None: ...

    def index(self) -> list[dict[str, str]]: ...

    def load(self, name: str) -> None: ...

    def unload(self, name: str) -> None: ...


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


def add_exception_handlers(app: FastAPI) -> None:
    """Errors of these routes are answered, never counted: model_prediction_errors_total counts inference
    calls only (``serving/http.py``)."""

    async def predictor_error(_: Request, exc: Exception) -> Response:
        return error_response(exc)

    async def unexpected_error(_: Request, exc: Exception) -> Response:
        return error_response(exc)  # the generic 500: no exception text leaves the server

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
    app.add_exception_handler(Exception, unexpected_error)


class Routes:
    def __init__(
        self,
        table: ModelTable[PredictorModel],
        max_body_bytes: int,
        readiness: Callable[[], str | None],
        access: AccessControl,
        admin: Admin,
        exposition: Callable[[], bytes],
        webhook_secret: str | None = None,
    ) -> None:
        self.table = table
        self.max_body_bytes = max_body_bytes
        self.not_ready_reason = readiness  # None when ready, else why not
        self.access = access
        self.admin = admin
        self.exposition = exposition
        self.webhook_secret = webhook_secret

    def register(self, app: FastAPI) -> None:
        """Every row of the endpoint table without a codec, bound to the handler it names."""
        for endpoint in ENDPOINTS:
            if endpoint.inference:
                continue
            guard = [Depends(self._guard(endpoint.access))] if endpoint.access else None
            app.add_api_route(
                endpoint.path,
                getattr(self, endpoint.handler),
                dependencies=guard,
                methods=[endpoint.method],
                tags=[endpoint.tag],
                summary=endpoint.summary,
                include_in_schema=endpoint.documented,
            )

    @property
    def model(self) -> PredictorModel:
        """The admin routes' model: the first one."""
        return self.table.default

    def _guard(self, kind: Kind) -> Callable[[Request], Awaitable[None]]:
        async def guard(request: Request) -> None:
            self.access.check(request, kind)

        return guard

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
        return Response(self.exposition(), media_type=CONTENT_TYPE_LATEST)

    # ------------------------------------------------------------------------------ v1
    async def v1_status(self, model_name: str) -> Response:
        model = self._known(model_name)
        reason = self.admin.model_not_ready_reason(model.name)
        body: dict[str, Any] = {
            "name": model.name,
            "version": model.serving.version if model.serving is not None else None,
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

    # ------------------------------------------------------------------------------ v2
    async def v2_metadata(self, model_name: str, model_version: str | None = None) -> Response:
        model = self._check_name(model_name, model_version)
        serving = model.serving
        if serving is None:
            raise ModelNotReadyError(f"model {model_name} is still loading; its metadata comes from its signature")
        return json_response(v2.model_metadata(model.name, model.versions(), serving.schema, serving.model))

    async def v2_server_metadata(self) -> Response:
        return json_response(v2.server_metadata())

    async def v2_models(self) -> Response:
        return json_response({"models": self.table.names()})

    async def v1_models(self) -> Response:
        return json_response({"models": self.table.names()})

    async def v2_model_ready(self, model_name: str, model_version: str | None = None) -> Response:
        model = self._known(model_name, model_version)  # an unloaded model is known, and not ready
        reason = self.admin.model_not_ready_reason(model.name)
        if reason is not None:
            return json_response({"name": model_name, "ready": False, "error": reason}, status_code=503)
        return json_response({"name": model_name, "ready": True})

    # ------------------------------------------------------------------------------ admin
    async def admin_versions(self, request: Request) -> Response:
        return json_response(self.admin.status())

    async def admin_rollback(self, request: Request) -> Response:
        self.model.rollback()
        return json_response(self.admin.status())

    async def admin_reload(self, request: Request) -> Response:
        """Ask the registry now (e.g. from a CI job right after moving the alias) instead of at the next poll."""
        await asyncio.to_thread(self.admin.reload)
        return json_response(self.admin.status())

    async def admin_drift(self, request: Request) -> Response:
        """Live rows against the training baseline, per column (this worker's window)."""
        return json_response(self.admin.drift())

    async def admin_shadow(self, request: Request) -> Response:
        """The challenger (--shadow_model_uri): its version, agreement with the served model, errors."""
        return json_response(self.admin.shadow())

    async def mlflow_webhook(self, request: Request) -> Response:
        """MLflow's signed registry events (the signature is the credential: MLflow sends no bearer token)."""
        secret = self.webhook_secret
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

    async def repository_index(self) -> Response:
        """Every model, loaded or not: ``[{"name", "version", "state", "reason"}]`` (READY, LOADING, UNAVAILABLE)."""
        return json_response(self.admin.index())

    async def repository_load(self, model_name: str) -> Response:
        """Load an unloaded model and answer once it serves (or ask the registry now, for a loaded one)."""
        self.table.known(model_name)  # 404 for no such model; an unloaded one is loaded
        await asyncio.to_thread(self.admin.load, model_name)
        return json_response({"name": model_name, "load": True})

    async def repository_unload(self, model_name: str) -> Response:
        """Unload: its requests answer 404 from now on (those in flight finish); load brings it back."""
        self.table.get(model_name)
        self.admin.unload(model_name)
        return json_response({"name": model_name, "unload": True})

    # ------------------------------------------------------------------------------ helpers
    def _known(self, model_name: str, model_version: str | None = None) -> PredictorModel:
        """The model called ``model_name``, loaded or not (404 when this server has no such model)."""
        model = self.table.known(model_name)
        model.require_version(model_version)
        return model

    def _check_name(self, model_name: str, model_version: str | None = None) -> PredictorModel:
        model = self.table.get(model_name)
        model.require_version(model_version)
        return model

    async def _body(self, request: Request) -> bytes:
        return await read_body(dict(request.headers), request.receive, self.max_body_bytes)

    def _version(self) -> str | None:
        serving = self.model.serving
        return serving.version if serving else None
