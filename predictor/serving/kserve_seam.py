"""The one place that touches KServe's private names.

KServe 0.21 offers no public hook to put routes ahead of its own, to drop its per-request timing
middleware, to add exception handlers, or to own SIGTERM; ``RESTServer``'s underscore methods are the
only way in. Everything that depends on them lives here, and ``PRIVATE_NAMES`` lists each one so that
``tests/test_kserve_seam.py`` fails, naming the symbol, when an upgrade of KServe removes one.
"""

from __future__ import annotations

import importlib
import logging
import ssl
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from socket import socket
from typing import Any

from fastapi import FastAPI
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.model_repository_extension import ModelRepositoryExtension
from kserve.protocol.rest.server import RESTServer, _RefreshingServer
from starlette.types import ASGIApp
from uvicorn.importer import import_from_string

log = logging.getLogger(__name__)

#: (module, attribute path) of every private KServe name this module relies on.
PRIVATE_NAMES: tuple[tuple[str, str], ...] = (
    ("kserve.protocol.rest.server", "_RefreshingServer"),
    ("kserve.protocol.rest.server", "RESTServer._register_endpoints"),
    ("kserve.protocol.rest.server", "RESTServer._add_middlewares"),
    ("kserve.protocol.rest.server", "RESTServer._add_exception_handlers"),
    ("kserve.protocol.rest.server", "RESTServer.create_application"),
)

FASTAPI_APP = "kserve.model_server:app"  # KServe's module-level app, which its routes are registered on


def missing_private_names(names: tuple[tuple[str, str], ...] = PRIVATE_NAMES) -> list[str]:
    """The ``names`` that the installed KServe lacks (empty when all are there)."""
    missing = []
    for module_name, path in names:
        target: object = importlib.import_module(module_name)
        for part in path.split("."):
            if not hasattr(target, part):
                missing.append(f"{module_name}.{path}")
                break
            target = getattr(target, part)
    return missing


class _Uvicorn(_RefreshingServer):  # keeps KServe's TLS certificate refresher
    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # the server owns SIGTERM/SIGINT: readiness must turn off before the listener closes

    def stop(self, force: bool = False) -> None:
        """Close the listener and finish requests in flight; ``force``: stop waiting for them."""
        self.should_exit = True
        self.force_exit = force


class HttpServer(RESTServer):
    """KServe's REST server with our routes only, our error handlers, no per-request timing log lines.

    ``register_routes`` and ``add_exception_handlers`` are called with KServe's FastAPI app; ``front`` wraps
    that app in what uvicorn serves (the HTTP door, serving/http.py), inside the access log when there is one.
    """

    def __init__(
        self,
        dataplane: DataPlane,
        repository: ModelRepositoryExtension,
        *,
        port: int,
        host: str,
        grace_period_s: int,
        timeout_keep_alive_s: int,
        access_log: bool,
        access_log_format: str | None,
        ssl_certfile: str | None,
        ssl_keyfile: str | None,
        ssl_ca_certs: str | None,
        register_routes: Callable[[FastAPI], None],
        add_exception_handlers: Callable[[FastAPI], None],
        front: Callable[[ASGIApp], ASGIApp] = lambda app: app,
    ) -> None:
        super().__init__(
            FASTAPI_APP,
            dataplane,
            repository,
            port,
            access_log_format=access_log_format,
            workers=1,
            grace_period=grace_period_s,
            event_loop="auto",
            timeout_keep_alive=timeout_keep_alive_s,
            ssl_certfile=ssl_certfile,
            ssl_keyfile=ssl_keyfile,
        )
        self.config.host = host
        if ssl_ca_certs:  # mutual TLS: uvicorn verifies client certificates against this bundle
            self.config.ssl_ca_certs = ssl_ca_certs
            self.config.ssl_cert_reqs = ssl.CERT_REQUIRED
        self.config.access_log = access_log
        # Nothing uses ASGI lifespan events, and uvicorn's lifespan task outlives our shutdown (a
        # CancelledError traceback on every clean exit).
        self.config.lifespan = "off"
        self.uvicorn = _Uvicorn(self.config)
        self._register_routes = register_routes
        self._add_our_exception_handlers = add_exception_handlers
        self._front = front

    async def serve(self, sock: socket | None = None) -> None:
        self.create_application()  # type: ignore[no-untyped-call]  # KServe leaves it unannotated
        served = self._front(import_from_string(FASTAPI_APP))
        if self.access_log_format:  # outermost, so that the front's answers are logged too
            import asgi_logger  # kserve[logging]: KServe's own middleware for this flag

            logging.getLogger("uvicorn.access").handlers = []
            middleware: Any = getattr(asgi_logger, "AccessLoggerMiddleware")  # noqa: B009  # typed for asgiref's app
            served = middleware(served, format=self.access_log_format)
            logging.getLogger("access").propagate = False
        self.config.app = served  # uvicorn serves an app object as it is (a string it would import)
        await self.uvicorn.serve(sockets=[sock] if sock is not None else None)

    def _add_middlewares(self, app: FastAPI) -> None:
        # None: KServe's TimingMiddleware logs two lines per request (model_prediction_latency_seconds covers
        # it), and the asgi-logger access log of --access_log_format wraps the front in ``serve``.
        pass

    def _register_endpoints(self, app: FastAPI) -> None:
        # Ours only: KServe's routes would answer with its own error shapes and policy (a second way in).
        self._register_routes(app)

    def _add_exception_handlers(self, app: FastAPI) -> None:
        super()._add_exception_handlers(app)
        self._add_our_exception_handlers(app)
