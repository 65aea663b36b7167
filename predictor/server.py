"""kserve.ModelServer, adjusted so the port opens first and the model loads in the background.

KServe registers only models that are already ready and answers 404 until then; we register ours at
once (it reports 503 while loading), install our routes ahead of KServe's, and keep retrying a failed
load with backoff so a registry outage at start-up heals by itself.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from fastapi import FastAPI
from kserve import ModelServer
from kserve.protocol.rest.server import RESTServer

from predictor.config import Settings
from predictor.errors import PredictorError
from predictor.model import PredictorModel
from predictor.rest import Routes, add_exception_handlers

log = logging.getLogger(__name__)

BACKOFF_S = (1, 2, 4, 8, 15, 30)
FEATURE_CHECK_INTERVAL_S = 2.0


class _RESTServer(RESTServer):
    routes: Routes
    count_error: Any

    def _register_endpoints(self, app: FastAPI) -> None:
        self.routes.register(app)  # first: Starlette matches routes in registration order
        super()._register_endpoints(app)

    def _add_middlewares(self, app: FastAPI) -> None:
        # KServe's TimingMiddleware logs two lines per request; model_prediction_latency_seconds covers it.
        pass

    def _add_exception_handlers(self, app: FastAPI) -> None:
        super()._add_exception_handlers(app)
        add_exception_handlers(app, self.count_error)


class PredictorServer(ModelServer):
    def __init__(self, settings: Settings, model: PredictorModel) -> None:
        super().__init__(
            http_port=settings.http_port,
            grpc_port=settings.grpc_port,
            workers=settings.workers,
            enable_grpc=settings.enable_grpc,
            enable_latency_logging=False,  # a log line per request costs more than the prediction
        )
        self.settings = settings
        self.model = model
        self.load_error: str | None = "model is loading"
        self.feature_store_error: str | None = None
        self._stopping = threading.Event()

    def not_ready_reason(self) -> str | None:
        if not self.model.ready:
            return self.load_error or "model is loading"
        return self.feature_store_error

    def start(self, models: list[Any] | None = None) -> None:
        self.register_model(self.model)  # even while loading: it answers 503, not 404
        threading.Thread(target=self._load_with_retries, name="model-loader", daemon=True).start()
        if self.model.features is not None:
            threading.Thread(target=self._watch_feature_store, name="feature-store-check", daemon=True).start()
        rest = _RESTServer(
            "kserve.model_server:app", self.dataplane, self.model_repository_extension, self.http_port,
            workers=1, grace_period=self.grace_period, event_loop=self.event_loop,
            timeout_keep_alive=self.timeout_keep_alive,
        )
        rest.routes = Routes(self.model, self.settings.max_body_bytes, self.not_ready_reason)
        rest.count_error = self._count_error
        self._rest_server = rest
        self.servers.append(rest.start())
        if self.enable_grpc:
            from kserve.constants.constants import MAX_GRPC_MESSAGE_LENGTH
            from kserve.protocol.grpc.server import GRPCServer

            limits = {"grpc_max_send_message_length": MAX_GRPC_MESSAGE_LENGTH,
                      "grpc_max_receive_message_length": MAX_GRPC_MESSAGE_LENGTH}
            self._grpc_server = GRPCServer(self.grpc_port, self.dataplane, self.model_repository_extension,
                                           kwargs=limits, grace_period=self.grace_period)
            self.servers.append(self._grpc_server.start(self.max_threads))
        self._run()

    def _run(self) -> None:
        import asyncio

        self.setup_event_loop()
        self.register_signal_handler()
        asyncio.run(self._serve())

    def _count_error(self, exc: PredictorError) -> None:
        serving = self.model.serving
        self.model.count_error(exc, serving.version if serving else "none")

    def _load_with_retries(self) -> None:
        attempt = 0
        while not self._stopping.is_set():
            try:
                self.model.load()
                self.load_error = None
                return
            except Exception as exc:  # keep the process alive: readiness stays off while we retry
                delay = BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)]
                self.load_error = f"model load failed: {exc}"
                log.error("%s — retrying in %ss (check --model_uri and --tracking_uri / MLFLOW_TRACKING_URI)",
                          self.load_error, delay)
                attempt += 1
                self._stopping.wait(delay)

    def _watch_feature_store(self) -> None:
        """Readiness follows the online store: an outage takes the pod out of rotation, not down."""
        import asyncio

        features = self.model.features
        assert features is not None
        loop = asyncio.new_event_loop()
        while not self._stopping.is_set():
            try:
                loop.run_until_complete(features.check())
                if self.feature_store_error is not None:
                    log.info("feature store reachable again")
                self.feature_store_error = None
            except Exception as exc:
                if self.feature_store_error is None:
                    log.error("feature store check failed: %s", exc)
                self.feature_store_error = str(exc) if isinstance(exc, PredictorError) else f"feature store: {exc}"
            self._stopping.wait(FEATURE_CHECK_INTERVAL_S)
