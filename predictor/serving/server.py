"""kserve.ModelServer, adjusted so the port opens first, the model loads in the background, it follows
the registry, and SIGTERM drains instead of dropping requests.

KServe registers only models that are already ready and answers 404 until then; we register ours at
once (it reports 503 while loading), install our routes ahead of KServe's, and keep retrying a failed
load with backoff so a registry outage at start-up heals by itself.

Shutdown (SIGTERM): readiness turns 503 at once; we keep serving for --drain_delay_s so load balancers
stop sending; then the listeners close, requests in flight finish (at most --grace_period_s), the
prediction log is flushed, and the process exits. SIGINT (Ctrl-C) skips the drain delay.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import socket
import threading
from contextlib import contextmanager
from typing import Any, Iterator

from fastapi import FastAPI
from kserve import ModelServer
from kserve.protocol.rest.server import RESTServer, _RefreshingServer

from predictor.serving import workers
from predictor.serving.access import AccessControl
from predictor.config import Settings
from predictor.errors import PredictorError
from predictor.model import PredictorModel
from predictor.serving.openapi import install_openapi
from predictor.serving.routes import Routes, add_exception_handlers
from predictor.serving.watcher import RegistryWatcher

log = logging.getLogger(__name__)

BACKOFF_S = (1, 2, 4, 8, 10)
FEATURE_CHECK_INTERVAL_S = 2.0


class _Uvicorn(_RefreshingServer):
    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # PredictorServer owns SIGTERM/SIGINT: readiness must turn off before the listener closes


class _RESTServer(RESTServer):
    routes: Routes
    count_error: Any
    shared_socket: socket.socket | None = None  # --workers N: one SO_REUSEPORT socket per worker

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Nothing uses ASGI lifespan events, and uvicorn's lifespan task outlives our shutdown (a
        # CancelledError traceback on every clean exit).
        self.config.lifespan = "off"
        self._server = _Uvicorn(self.config)

    async def start(self) -> None:
        self.create_application()
        await self._server.serve(sockets=[self.shared_socket] if self.shared_socket else None)

    def _add_middlewares(self, app: FastAPI) -> None:
        # KServe's TimingMiddleware logs two lines per request; model_prediction_latency_seconds covers it.
        pass

    def _register_endpoints(self, app: FastAPI) -> None:
        self.routes.register(app)  # first: Starlette matches routes in registration order
        super()._register_endpoints(app)
        model = self.routes.model
        # Feature names exist only once the model has loaded: the document is rebuilt when they change.
        install_openapi(app, model.name, lambda: model.serving.model.feature_names if model.serving else (),
                        entity_key=model.features.entity_key if model.features else None,
                        max_instances=model.settings.max_instances)

    def _add_exception_handlers(self, app: FastAPI) -> None:
        super()._add_exception_handlers(app)
        add_exception_handlers(app, self.count_error)


class PredictorServer(ModelServer):
    def __init__(self, settings: Settings, model: PredictorModel, access: AccessControl,
                 on_shutdown: list[Any] | None = None) -> None:
        super().__init__(
            http_port=settings.http_port,
            grpc_port=settings.grpc_port,
            workers=settings.workers,
            enable_grpc=settings.enable_grpc,
            enable_latency_logging=False,  # a log line per request costs more than the prediction
            grace_period=int(settings.grace_period_s),
        )
        self.settings = settings
        self.model = model
        self.access = access
        self.on_shutdown = on_shutdown or []  # callables run after the listeners close (flush logs…)
        self.load_error: str | None = (f"model is loading from {settings.resolved_model_uri} "
                                       f"(registry {settings.tracking_uri})")
        self.feature_store_error: str | None = None
        self.draining = False
        self._stopping = threading.Event()
        self.watcher = RegistryWatcher(model, settings.poll_interval_s, self._stopping)
        self._shutdown_task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------------------ state
    def not_ready_reason(self) -> str | None:
        if self.draining:
            return "shutting down"
        if not self.model.ready:
            return self.load_error or "model is loading"
        state = self.settings.worker_state_dir
        if state is not None and not workers.all_ready(state, self.settings.worker_count):
            return "waiting for the other workers to load the model"
        return self.feature_store_error

    def status(self) -> dict[str, Any]:
        current = self.model.serving
        return {"model_name": self.model.name, "model_uri": self.settings.resolved_model_uri,
                "serving": current.version if current else None,
                "previous": self.model.previous.version if self.model.previous else None,
                "versions": self.model.versions(), "last_registry_error": self.watcher.last_error}

    def reload(self) -> None:
        self.watcher.check()

    def wake(self) -> None:
        """A registry webhook said something changed: check on the watcher's thread, not the event loop's."""
        if self.settings.poll_interval_s > 0 and self.watcher.follows_a_moving_reference:
            self.watcher.wake()
        else:
            self._thread(self.watcher.check, "registry-check")

    # ------------------------------------------------------------------------------ start
    def start(self, models: list[Any] | None = None) -> None:
        exposition = _metrics_exposition(self.settings.worker_state_dir is not None)
        self.register_model(self.model)  # even while loading: it answers 503, not 404
        self._thread(self._load_with_retries, "model-loader")
        if self.model.features is not None:
            self._thread(self._watch_feature_store, "feature-store-check")
        rest = _RESTServer(
            "kserve.model_server:app", self.dataplane, self.model_repository_extension, self.http_port,
            workers=1, grace_period=self.grace_period, event_loop=self.event_loop,
            timeout_keep_alive=self.timeout_keep_alive,
        )
        rest.routes = Routes(self.model, self.settings.max_body_bytes, self.not_ready_reason, self.access, self,
                             lambda: self.draining, exposition)
        if self.settings.worker_state_dir is not None:
            rest.shared_socket = _reuse_port_socket(self.http_port)
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
        asyncio.run(self._main())

    async def _main(self) -> None:
        self.setup_event_loop()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self._on_signal, signal.SIGTERM)
        loop.add_signal_handler(signal.SIGINT, self._on_signal, signal.SIGINT)
        await asyncio.gather(*self.servers)  # returns once uvicorn has finished every request in flight
        if self._shutdown_task is not None:
            await self._shutdown_task
        for action in self.on_shutdown:  # only now: a request still running could log one more prediction
            await asyncio.to_thread(action)
        log.info("stopped")

    def _thread(self, target: Any, name: str) -> None:
        threading.Thread(target=target, name=name, daemon=True).start()

    # ------------------------------------------------------------------------------ stop
    def _on_signal(self, sig: int) -> None:
        if self._shutdown_task is not None:  # a second signal: stop waiting
            log.warning("second %s: exiting without waiting for requests in flight", signal.Signals(sig).name)
            self._rest_server._server.force_exit = True  # type: ignore[union-attr]
            return
        self._shutdown_task = asyncio.get_running_loop().create_task(self._shutdown(sig))

    async def _shutdown(self, sig: int) -> None:
        self.draining = True
        self._ready_marker(present=False)
        self._stopping.set()
        delay = self.settings.drain_delay_s if sig == signal.SIGTERM else 0.0
        log.info("%s: readiness off; draining for %.1fs, then finishing requests in flight",
                 signal.Signals(sig).name, delay)
        await asyncio.sleep(delay)
        self._rest_server._server.should_exit = True  # type: ignore[union-attr]
        if self._grpc_server is not None:
            await self._grpc_server.stop(sig)

    # ------------------------------------------------------------------------------ background
    def _count_error(self, exc: PredictorError) -> None:
        serving = self.model.serving
        self.model.count_error(exc, serving.version if serving else "none")

    def _load_with_retries(self) -> None:
        attempt = 0
        while not self._stopping.is_set():
            try:
                fresh = self.model.load()
                self.load_error = None
                # Imports and the model leave ~1M long-lived objects: keep them out of every later GC pass,
                # whose full collections otherwise show up as 100 ms+ latency spikes under load.
                gc.collect()
                gc.freeze()
                self._ready_marker(present=True)
                if not fresh:
                    self.watcher.check()  # served from the local cache: has the registry moved on?
                break
            except Exception as exc:  # keep the process alive: readiness stays off while we retry
                delay = BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)]
                self.load_error = f"model load failed: {exc}"
                log.error("%s — retrying in %ss (check --model_uri and --tracking_uri / MLFLOW_TRACKING_URI)",
                          self.load_error, delay)
                attempt += 1
                self._stopping.wait(delay)
        if self.settings.poll_interval_s > 0 and self.watcher.follows_a_moving_reference:
            self.watcher.run()

    def _ready_marker(self, present: bool) -> None:
        state = self.settings.worker_state_dir
        if state is None:
            return
        marker = workers.ready_marker(state, self.settings.worker_index)
        if present:
            marker.touch()
        else:
            marker.unlink(missing_ok=True)

    def _watch_feature_store(self) -> None:
        """Readiness follows the online store: an outage takes the pod out of rotation, not down."""
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


def _reuse_port_socket(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    # Inherited by accepted connections on Linux. Without it (the event loop does not set it on sockets it
    # is handed) small responses wait for the client's delayed ACK: a flat ~40 ms per request.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("0.0.0.0", port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _metrics_exposition(multiprocess: bool) -> Any:
    """What /metrics serves: this process's registry, or every worker's (prometheus multiprocess mode)."""
    from prometheus_client import REGISTRY, CollectorRegistry, generate_latest

    if not multiprocess:
        return lambda: generate_latest(REGISTRY)
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    return lambda: generate_latest(registry)
