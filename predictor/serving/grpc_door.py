"""The gRPC door: the same access policy, limits and error classification as REST, plus the standard health
service, on KServe's own Open Inference Protocol servicer.

KServe's ``GRPCServer`` offers no way to add interceptors, TLS or services, and its interceptor answers
anything it does not know as INTERNAL; so the server is built here from public parts: ``grpc.aio``,
KServe's ``InferenceServicer`` (subclassed where its answers differ from our REST routes) and
``grpc_health``. Every call passes ``Door``: access check by method, then the call, and any exception is
answered through ``errors.answer`` (the same generic INTERNAL for anything unexpected: no exception text
leaves the server) and, for inference calls only, counted once. ``ModelInfer`` walks as a REST inference
call does: the model by name from the table, then the gRPC codec, the model, the codec.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import uuid
from collections.abc import Awaitable, Callable
from concurrent import futures
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_interceptor.server import AsyncServerInterceptor
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc.grpc_predict_v2_pb2_grpc import add_GRPCInferenceServiceServicer_to_server
from kserve.protocol.grpc.servicer import InferenceServicer
from kserve.protocol.model_repository_extension import ModelRepositoryExtension

from predictor import errors
from predictor.errors import ModelNotReadyError
from predictor.model import Call, PredictorModel
from predictor.models.table import ModelTable
from predictor.monitoring.payload_events import PayloadLogger
from predictor.monitoring.tracing import TRACERESPONSE, Tracing
from predictor.protocol import v2
from predictor.protocol.grpc import GrpcCodec
from predictor.serving.access import AccessControl, Kind
from predictor.serving.admission import Admission
from predictor.serving.grpc_repository import index_handler, model_name_of
from predictor.serving.http import NO_SPAN
from predictor.serving.lifecycle import Lifecycle
from predictor.serving.tls import TlsFiles

log = logging.getLogger(__name__)

SERVICE = "inference.GRPCInferenceService"
# What each method needs, exactly as its REST twin: inference and the repository need a token; probes,
# metadata and health never do (kubelets and load balancers carry none).
PROTOBUF = "application/x-protobuf"  # a gRPC call's payload events carry its messages
ACCESS: dict[str, Kind] = {"ModelInfer": "inference", "RepositoryModelLoad": "admin", "RepositoryModelUnload": "admin"}


# Before the server stops: refuse new calls until none has arrived for QUIET_S (at most QUIET_MOST_S), see quiesce.
QUIET_S = 0.02
QUIET_MOST_S = 0.5
SHUTTING_DOWN = "this replica is shutting down: retry the call (another replica answers it)"


class Door(AsyncServerInterceptor):
    def __init__(self, access: AccessControl, table: ModelTable[PredictorModel]) -> None:
        self.access = access
        self.table = table
        self.refusing = False
        self.arrivals = 0  # calls seen: quiesce waits until it stops moving

    async def quiesce(self, quiet_s: float = QUIET_S, most_s: float = QUIET_MOST_S) -> None:
        """Refuse every new call with UNAVAILABLE until none has arrived for ``quiet_s`` (at most ``most_s``).

        When a gRPC server stops, its core cancels the calls it had received but not yet handed to Python
        (CANCELLED, which no retry policy retries): under load, about one per concurrent caller (measured: 13-14
        of 16). Answered at once instead, they leave that queue empty, and a client that retries UNAVAILABLE (the
        usual service-config retry policy) sends them again to a replica that is staying. Calls already running
        are not affected: they finish within the grace period."""
        self.refusing = True
        loop = asyncio.get_running_loop()
        until = loop.time() + most_s
        seen = -1
        while self.arrivals != seen and loop.time() < until:
            seen = self.arrivals
            await asyncio.sleep(quiet_s)

    async def intercept(
        self,
        method: Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]],
        request: Any,
        context: grpc.aio.ServicerContext,
        method_name: str,
    ) -> Any:
        method_short = method_name.rsplit("/", 1)[-1]
        self.arrivals += 1
        try:
            if self.refusing:  # typed like every other refusal: the same code, message and error counter
                raise ModelNotReadyError(SHUTTING_DOWN)
            kind = ACCESS.get(method_short)
            if kind is not None:
                metadata = {
                    key: value for key, value in (context.invocation_metadata() or ()) if isinstance(value, str)
                }
                self.access.check_call(
                    kind, metadata.get("authorization"), _peer_host(context.peer()), metadata.get("x-forwarded-for")
                )
            return await method(request, context)
        except grpc.aio.AbortError:
            raise  # the servicer has answered already
        except Exception as exc:
            answer = errors.answer(exc)
            if answer.grpc_code == grpc.StatusCode.INTERNAL:
                log.exception("gRPC %s failed", method_name)
            counted = self.table.charged(getattr(request, "model_name", None))
            if method_short == "ModelInfer" and counted is not None:  # every door counts inference calls only
                counted.count_error(answer.error_type)
            await context.abort(answer.grpc_code, answer.message)


class Servicer(InferenceServicer):
    """KServe's servicer, answering readiness, metadata, inference and the repository like our REST routes do."""

    def __init__(
        self,
        dataplane: DataPlane,
        repository: ModelRepositoryExtension,
        table: ModelTable[PredictorModel],
        lifecycle: Lifecycle,
        admission: Admission | None = None,
        tracing: Tracing | None = None,
        payload_logger: PayloadLogger | None = None,
    ) -> None:
        super().__init__(dataplane, repository)
        self.table = table
        self.lifecycle = lifecycle
        self.admission = admission or Admission()
        self.codec = GrpcCodec()
        self.tracing = tracing
        self.payload_logger = payload_logger

    async def ServerReady(self, request: pb.ServerReadyRequest, context: Any) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self.lifecycle.not_ready_reason() is None)

    async def ServerMetadata(self, request: pb.ServerMetadataRequest, context: Any) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(**v2.server_metadata())

    async def ModelReady(self, request: pb.ModelReadyRequest, context: Any) -> pb.ModelReadyResponse:
        model = self.table.known(request.name)  # an unloaded model is known, and not ready
        model.require_version(request.version or None)
        return pb.ModelReadyResponse(ready=self.lifecycle.model_not_ready_reason(model.name) is None)

    async def ModelMetadata(self, request: pb.ModelMetadataRequest, context: Any) -> pb.ModelMetadataResponse:
        model = self._model(request.name, request.version)
        serving = model.serving_for_request(request.version or None)
        described = v2.model_metadata(model.name, model.versions(), serving.schema, serving.model)

        def tensors(key: str) -> list[pb.ModelMetadataResponse.TensorMetadata]:
            # KServe's TensorMetadata has no parameters field: REST's extra detail stays on REST.
            return [
                pb.ModelMetadataResponse.TensorMetadata(name=t["name"], datatype=t["datatype"], shape=t["shape"])
                for t in described[key]
            ]

        return pb.ModelMetadataResponse(
            name=model.name,
            versions=described["versions"],
            platform=described["platform"],
            inputs=tensors("inputs"),
            outputs=tensors("outputs"),
        )

    async def ModelInfer(self, request: pb.ModelInferRequest, context: Any) -> pb.ModelInferResponse:
        """The admission rules of every door: --max_concurrency, and the smaller of --request_timeout_s and the
        call's own gRPC deadline."""
        remaining = context.time_remaining()  # None without a deadline
        timeout_s = self.admission.timeout_s(None, remaining)
        run = functools.partial(self.admission.run, functools.partial(self._infer, request, context), timeout_s)
        if self.tracing is None:
            return await run()
        metadata = {key: value for key, value in (context.invocation_metadata() or ()) if isinstance(value, str)}
        with self.tracing.server_span(f"{SERVICE}/ModelInfer", metadata, self.codec.name) as trace:
            if trace.response is not None:  # trailing metadata: sent with the answer, or with the error
                context.set_trailing_metadata(((TRACERESPONSE, trace.response),))
            try:
                return await run()
            except Exception as exc:
                self.tracing.failed(trace, errors.answer(exc).status)
                raise

    async def _infer(self, request: pb.ModelInferRequest, context: Any) -> pb.ModelInferResponse:
        model = self._model(request.model_name, request.model_version)
        try:
            serving = model.serving_for_request(request.model_version or None)
        except ModelNotReadyError:  # evicted (--max_loaded_models): loaded again and awaited; else the same 503
            serving = await self.lifecycle.acquire(model, request.model_version or None)
        tracing = self.tracing.sampled() if self.tracing is not None else None
        with NO_SPAN if tracing is None else tracing.span("decode"):
            decoded = self.codec.decode(request, serving.schema, serving.outputs)
        if tracing is not None:
            tracing.annotate(model.name, serving.version, decoded.rows.count)
        metadata = {key: value for key, value in (context.invocation_metadata() or ()) if isinstance(value, str)}
        call = Call(self.codec.name, decoded.request_id or metadata.get("x-request-id", ""),
                    "contributions" in decoded.requested, decoded.params, tracing)  # fmt: skip
        result = await model.infer(decoded.rows, serving, call)
        with NO_SPAN if tracing is None else tracing.span("encode"):
            response = self.codec.encode(decoded, result)
        if self.payload_logger is not None:  # the protobuf messages, as sent and answered
            self.payload_logger.submit(
                call.request_id or response.id or uuid.uuid4().hex,
                model.name,
                serving.version,
                self.codec.name,
                (request.SerializeToString(), PROTOBUF),
                (response.SerializeToString(), PROTOBUF),
                tracing.current_trace_id() if tracing is not None else None,
            )
        return response

    async def RepositoryModelLoad(
        self, request: pb.RepositoryModelLoadRequest, context: Any
    ) -> pb.RepositoryModelLoadResponse:
        """As POST /v2/repository/models/NAME/load: load an unloaded model (answering once it serves), or ask
        the registry now for a loaded one."""
        name = model_name_of(request)
        self.table.known(name)  # 404 for no such model; an unloaded one is loaded
        await asyncio.to_thread(self.lifecycle.load, name)
        return pb.RepositoryModelLoadResponse(model_name=name, isLoaded=True)

    async def RepositoryModelUnload(
        self, request: pb.RepositoryModelUnloadRequest, context: Any
    ) -> pb.RepositoryModelUnloadResponse:
        """As POST /v2/repository/models/NAME/unload."""
        name = model_name_of(request)
        self.table.get(name)
        self.lifecycle.unload(name)
        return pb.RepositoryModelUnloadResponse(model_name=name, isUnloaded=True)

    def _model(self, name: str, version: str) -> PredictorModel:
        model = self.table.get(name)
        model.require_version(version or None)
        return model


class Health(health_pb2_grpc.HealthServicer):  # type: ignore[misc]
    """grpc.health.v1, answering like GET /ready (for Kubernetes gRPC probes and grpc_health_probe)."""

    def __init__(self, lifecycle: Lifecycle) -> None:
        self.lifecycle = lifecycle

    async def Check(self, request: health_pb2.HealthCheckRequest, context: Any) -> health_pb2.HealthCheckResponse:
        if request.service not in ("", SERVICE):
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {request.service!r:.80}")
        serving = self.lifecycle.not_ready_reason() is None
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        return health_pb2.HealthCheckResponse(status=status)


class GrpcServer:
    def __init__(
        self,
        *,
        port: int,
        servicer: Servicer,
        health: Health,
        door: Door,
        max_workers: int,
        max_message_bytes: int,
        grace_period_s: float,
        tls: TlsFiles | None,
    ) -> None:
        self.port = port
        self.servicer = servicer
        self.health = health
        self.door = door
        self.max_workers = max_workers
        self.max_message_bytes = max_message_bytes
        self.grace_period_s = grace_period_s
        self.tls = tls
        self.server: grpc.aio.Server | None = None

    async def serve(self) -> None:
        self.server = grpc.aio.server(
            futures.ThreadPoolExecutor(max_workers=self.max_workers),
            interceptors=(self.door,),
            options=[
                # Larger requests are refused by gRPC itself with RESOURCE_EXHAUSTED, as REST answers 413.
                ("grpc.max_receive_message_length", self.max_message_bytes),
                ("grpc.max_send_message_length", -1),
                ("grpc.so_reuseport", 1),  # --workers N share the port
            ],
        )
        add_GRPCInferenceServiceServicer_to_server(self.servicer, self.server)
        self.server.add_generic_rpc_handlers((index_handler(self.servicer.lifecycle.index),))
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        address = f"[::]:{self.port}"
        if self.tls is None:
            self.server.add_insecure_port(address)
        else:
            self.server.add_secure_port(address, self.tls.grpc_credentials())
        log.info("gRPC on %s%s", address, " with TLS" if self.tls else "")
        await self.server.start()
        await self.server.wait_for_termination()

    async def stop(self, grace_s: float | None = None) -> None:
        """Refuse new calls; wait for those in flight at most ``grace_s`` (default: the grace period)."""
        if self.server is not None:
            if grace_s != 0:  # a graceful stop: answer what the core holds first (Door.quiesce)
                await self.door.quiesce()
            await self.server.stop(grace=self.grace_period_s if grace_s is None else grace_s)


def _peer_host(peer: str | None) -> str | None:
    """``ipv4:127.0.0.1:5000`` / ``ipv6:[::1]:5000`` → the address alone (the rate limiter's client id)."""
    if not peer:
        return None
    _, _, rest = peer.partition(":")
    host = rest.rsplit(":", 1)[0]
    return host.strip("[]") or None
