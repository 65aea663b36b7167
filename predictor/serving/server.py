"""kserve.ModelServer, adjusted so the port opens first, the model loads in the background, it follows
the registry, and SIGTERM drains instead of dropping requests.

KServe registers only models that are already ready and answers 404 until then; we register ours at
once (it reports 503 while loading), install our routes instead of KServe's (``kserve_seam``), and keep
retrying a failed load with backoff (``lifecycle``) so a registry outage at start-up heals by itself.

Shutdown (SIGTERM): readiness turns 503 at once; we keep serving for --drain_delay_s so load balancers
stop sending; then the listeners close, requests in flight finish (at most --grace_period_s), the
prediction log is flushed, and the process exits. SIGINT (Ctrl-C) skips the drain delay; a second
signal stops waiting for requests in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import struct
import time
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from kserve.model_server import ModelServer
from starlette.types import ASGIApp

from predictor.config import ModelSpec, Settings
from predictor.model import PredictorModel
from predictor.models.table import ModelTable
from predictor.monitoring.payload_events import PayloadLogger
from predictor.monitoring.tracing import Tracing
from predictor.serving.access import AccessControl
from predictor.serving.admission import Admission
from predictor.serving.grpc_door import Door, GrpcServer, Health, Servicer
from predictor.serving.http import HttpDoor
from predictor.serving.kserve_seam import HttpServer
from predictor.serving.lifecycle import Lifecycle
from predictor.serving.openapi import install_openapi
from predictor.serving.routes import Routes, add_exception_handlers
from predictor.serving.tls import TlsFiles

log = logging.getLogger(__name__)

MULTIPROCESS_READS = 3  # /metrics with --workers N: reads of the workers' files before giving up


class PredictorServer(ModelServer):
    def __init__(
        self,
        settings: Settings,
        models: list[PredictorModel],
        access: AccessControl,
        make_model: Callable[[ModelSpec], PredictorModel] | None = None,
        on_shutdown: list[Callable[[], object]] | None = None,
        tls: TlsFiles | None = None,
        tracing: Tracing | None = None,
        payload_logger: PayloadLogger | None = None,
    ) -> None:
        super().__init__(
            http_port=settings.http_port,
            grpc_port=settings.grpc_port,
            workers=1,  # --workers N is our supervisor's job (serving/workers.py), not uvicorn's
            enable_grpc=settings.enable_grpc,
            enable_latency_logging=False,  # a log line per request costs more than the prediction
            grace_period=int(settings.grace_period_s),
            ssl_certfile=settings.ssl_certfile,
            ssl_keyfile=settings.ssl_keyfile,
        )
        self.http_port = settings.http_port  # KServe moves 8080 to 8443 with TLS; we serve where we are told
        self.settings = settings
        self.table = ModelTable(models)
        self.admission = Admission(settings.max_concurrency, settings.request_timeout_s)  # both doors, one budget
        self.access = access
        self.on_shutdown = on_shutdown or []  # callables run after the listeners close (flush logs…)
        features = next((model.features for model in models), None)
        self.lifecycle = Lifecycle(settings, self.table, features, make_model)
        self.http: HttpServer | None = None
        self.grpc: GrpcServer | None = None
        self.tls = tls
        self.tracing = tracing
        self.payload_logger = payload_logger
        self._shutdown_task: asyncio.Task[None] | None = None
        self._stop_now_task: asyncio.Task[None] | None = None  # held: the loop keeps only weak references
        self._first_signal: tuple[int, float] | None = None  # which, and when (the loop's clock)

    # ------------------------------------------------------------------------------ start
    def start(self, models: list[Any] | None = None) -> None:
        for model in self.table:
            self.register_model(model)  # even while loading: it answers 503, not 404
        self.lifecycle.start_background()
        settings = self.settings
        self.http = HttpServer(
            self.dataplane,
            self.model_repository_extension,
            port=self.http_port,
            host=settings.host,
            grace_period_s=self.grace_period,
            timeout_keep_alive_s=self.timeout_keep_alive,
            access_log=settings.access_log,
            access_log_format=settings.access_log_format,
            ssl_certfile=settings.ssl_certfile,
            ssl_keyfile=settings.ssl_keyfile,
            ssl_ca_certs=settings.ssl_ca_certs,
            register_routes=self._register_routes,
            add_exception_handlers=self._add_exception_handlers,
            front=self._http_door,
        )
        shared = _reuse_port_socket(settings.host, self.http_port) if settings.worker_state_dir else None
        self.servers.append(self.http.serve(shared))
        if self.enable_grpc:
            self.grpc = GrpcServer(
                port=self.grpc_port,
                servicer=Servicer(
                    self.dataplane,
                    self.model_repository_extension,
                    self.table,
                    self.lifecycle,
                    self.admission,
                    self.tracing,
                    self.payload_logger,
                ),
                health=Health(self.lifecycle),
                door=Door(self.access, self.table),
                max_workers=self.max_threads,
                max_message_bytes=settings.max_body_bytes,
                grace_period_s=self.grace_period,
                tls=self.tls,
            )
            self.servers.append(self.grpc.serve())
        with asyncio.Runner(loop_factory=_event_loop_factory()) as runner:
            runner.run(self._main())

    def _register_routes(self, app: FastAPI) -> None:
        lifecycle, table = self.lifecycle, self.table
        routes = Routes(
            self.table,
            self.settings.max_body_bytes,
            lifecycle.not_ready_reason,
            self.access,
            lifecycle,
            _metrics_exposition(self.settings.worker_state_dir is not None),
            self.settings.webhook_secret,
        )
        routes.register(app)
        # Feature names exist only once the model has loaded: the document is rebuilt when they change.
        install_openapi(
            app,
            self.table.names,
            lambda: _feature_names(table.first()),
            entity_key=lifecycle.features.entity_key if lifecycle.features else None,
            max_instances=self.settings.max_instances,
        )

    def _http_door(self, app: ASGIApp) -> ASGIApp:
        lifecycle = self.lifecycle
        return HttpDoor(
            app,
            self.table,
            self.settings.max_body_bytes,
            self.access,
            lambda: lifecycle.draining,
            self.admission,
            lifecycle.acquire,
            tracing=self.tracing,
            payload_logger=self.payload_logger,
        )

    def _add_exception_handlers(self, app: FastAPI) -> None:
        add_exception_handlers(app)

    async def _main(self) -> None:
        self.setup_event_loop()  # type: ignore[no-untyped-call]  # KServe leaves it unannotated
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self._on_signal, signal.SIGTERM)
        loop.add_signal_handler(signal.SIGINT, self._on_signal, signal.SIGINT)
        await asyncio.gather(*self.servers)  # returns once uvicorn has finished every request in flight
        if self._shutdown_task is not None:
            with contextlib.suppress(asyncio.CancelledError):  # a second signal cancels the drain
                await self._shutdown_task
        for action in self.on_shutdown:  # only now: a request still running could log one more prediction
            await asyncio.to_thread(action)
        log.info("stopped")

    # ------------------------------------------------------------------------------ stop
    def _on_signal(self, sig: int) -> None:
        now = asyncio.get_running_loop().time()
        if self._first_signal is not None and self._first_signal[0] == sig and now - self._first_signal[1] < 1.0:
            # One signal reaching us twice: a worker of --workers N gets the one sent to the process group (a
            # terminal's Ctrl-C, `kill -- -PID`) and the supervisor's forward of it. Not a second signal: the
            # drain goes on (found by the soak: both copies cut a worker's drain short, its payload events spooled).
            return
        self._first_signal = self._first_signal or (sig, now)
        if self._shutdown_task is not None:  # a second signal: stop draining and waiting, on both ports
            log.warning("second %s: exiting without waiting for requests in flight", signal.Signals(sig).name)
            self._shutdown_task.cancel()
            self._stop_now_task = asyncio.get_running_loop().create_task(self._stop_now())
            return
        self._shutdown_task = asyncio.get_running_loop().create_task(self._shutdown(sig))

    async def _stop_now(self) -> None:
        if self.http is not None:
            self.http.uvicorn.stop(force=True)
        if self.grpc is not None:
            await self.grpc.stop(grace_s=0)

    async def _shutdown(self, sig: int) -> None:
        from kserve.utils.inference_client_factory import InferenceClientFactory

        self.lifecycle.begin_drain()
        delay = self.settings.drain_delay_s if sig == signal.SIGTERM else 0.0
        log.info(
            "%s: readiness off; draining for %.1fs, then finishing requests in flight", signal.Signals(sig).name, delay
        )
        await asyncio.sleep(delay)
        if self.http is not None:
            self.http.uvicorn.stop()
        if self.grpc is not None:
            await self.grpc.stop()
        await InferenceClientFactory().close()  # what KServe's own stop() does for its HTTP clients


def _event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop, as uvicorn's loop="auto" would pick: the loop is ours (KServe's and our ``asyncio.run`` both gave
    the stdlib loop, whatever uvicorn was told), and uvloop's costs less per request."""
    try:
        import uvloop
    except ImportError:  # an optional speed-up (uvicorn[standard]); the stdlib loop serves the same
        return None
    return uvloop.new_event_loop


def _reuse_port_socket(host: str, port: int) -> socket.socket:
    """--workers N: one SO_REUSEPORT socket per worker, so the kernel spreads connections across them."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    # Inherited by accepted connections on Linux. Without it (the event loop does not set it on sockets it
    # is handed) small responses wait for the client's delayed ACK: a flat ~40 ms per request.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _metrics_exposition(multiprocess: bool) -> Callable[[], bytes]:
    """What /metrics serves: this process's registry, or every worker's (prometheus multiprocess mode)."""
    from prometheus_client import REGISTRY, CollectorRegistry, generate_latest

    if not multiprocess:
        return lambda: generate_latest(REGISTRY)
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry)

    def exposition() -> bytes:
        # A worker creating a metric file (its first sample of a kind) leaves it empty for a moment: a scrape that
        # reads it then fails to unpack it (prometheus_client's multiprocess mode; found by the soak). Read again.
        for attempt in range(MULTIPROCESS_READS):
            try:
                return generate_latest(registry)
            except (struct.error, ValueError):
                if attempt == MULTIPROCESS_READS - 1:
                    raise
                time.sleep(0.01)
        raise AssertionError("unreachable")

    return exposition


def _feature_names(model: PredictorModel | None) -> tuple[str, ...]:
    """The first model's features, which narrow the OpenAPI document's bodies (none while it loads)."""
    serving = model.serving if model is not None else None
    return serving.model.feature_names if serving is not None else ()
