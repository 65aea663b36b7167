"""OpenTelemetry traces of inference calls: on when an OTLP endpoint is configured, and free when it is not.

Configured the standard way, by the variables every OpenTelemetry SDK reads: ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) turns tracing on; ``OTEL_EXPORTER_OTLP_PROTOCOL`` (``http/protobuf``, the
default, or ``grpc``), ``OTEL_SERVICE_NAME``, ``OTEL_TRACES_SAMPLER`` / ``OTEL_TRACES_SAMPLER_ARG``,
``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_EXPORTER_OTLP_HEADERS`` and ``OTEL_SDK_DISABLED`` mean what they mean
everywhere. They are read here rather than through our settings: they are the SDK's, and a platform team sets them
the same way for every service it runs.

One server span per inference call, on every door, child of the caller's W3C ``traceparent`` (a REST header, gRPC
metadata), with children for decode, feature lookup, batch wait, model call and encode, and attributes for model
name, version, protocol and rows. Probes, ``/metrics`` and the other routes are not traced. Every traced answer
carries a W3C ``traceresponse`` (Trace Context level 2: the server span's id, so a caller can find it), as a REST
header or gRPC trailing metadata. Spans leave through a batch processor, off the request path.
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
TRACERESPONSE = "traceresponse"
# Span attributes (OpenTelemetry's semantic conventions have no model-serving names yet: ours, namespaced).
MODEL_NAME = "model.name"
MODEL_VERSION = "model.version"
PROTOCOL = "inference.protocol"
ROWS = "inference.rows"
LOW_64_BITS = (1 << 64) - 1  # what a trace-id ratio sampler judges


@dataclass(frozen=True, slots=True)
class CallTrace:
    """A call the sampler left out: nothing was created for it; ``response`` is the ``traceresponse`` its answer
    carries (None: none, see ``Tracing.server_span``). Its own (empty) context."""

    response: str | None

    def __enter__(self) -> CallTrace:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


class SampledCall:
    """A call the sampler kept: its server span, started when the call began, and its phases (decode, feature
    lookup, batch wait, model call, encode), noted as they happen and made the server span's children when the
    call ends, under one context. Live child spans (each made current, then ended) cost ~1.8× as much CPU,
    measured with the installed SDK; the tree exported is the same."""

    __slots__ = ("_phases", "_trace", "_tracer", "response", "server")

    def __init__(self, server: Any, tracer: Any, trace: Any) -> None:
        self.server = server
        self.response = _traceresponse(server)
        self._tracer = tracer
        self._trace = trace
        self._phases: list[tuple[str, int, int, Mapping[str, Any] | None]] = []

    def span(self, name: str) -> AbstractContextManager[object]:
        """A phase of the call (a child span from the block's start to its end, also when it raises)."""
        return _Phase(self, name)

    def record(self, name: str, start_ns: int, end_ns: int, attributes: Mapping[str, Any] | None = None) -> None:
        """A phase that already happened (the batcher measured it: batch wait, model call)."""
        self._phases.append((name, start_ns, end_ns, attributes))

    def annotate(self, model: str, version: str, rows: int) -> None:
        """What the call served."""
        self.server.set_attributes({MODEL_NAME: model, MODEL_VERSION: version, ROWS: rows})

    def current_trace_id(self) -> str:
        return f"{self.server.get_span_context().trace_id:032x}"

    def failed(self, status: int) -> None:
        """An answer of 4xx or 5xx; a 5xx marks the server span an error (a 4xx is the caller's, as
        OpenTelemetry's HTTP conventions say for servers)."""
        self.server.set_attribute("http.response.status_code", status)
        if status >= 500:
            self.server.set_status(self._trace.Status(self._trace.StatusCode.ERROR))

    def end(self) -> None:
        parent = self._trace.set_span_in_context(self.server)
        start_span = self._tracer.start_span
        for name, start_ns, end_ns, attributes in self._phases:
            start_span(name, context=parent, start_time=start_ns, attributes=attributes).end(end_time=end_ns)
        self.server.end()


class _Phase:
    __slots__ = ("_call", "_name", "_start_ns")

    def __init__(self, call: SampledCall, name: str) -> None:
        self._call, self._name, self._start_ns = call, name, 0

    def __enter__(self) -> None:
        self._start_ns = time.time_ns()

    def __exit__(self, *exc: object) -> None:
        self._call.record(self._name, self._start_ns, time.time_ns())


# The kept call being served in this context (None: tracing off, or the call was left out). A context variable
# rather than the SDK's current span: reading it is one C call, where the SDK's costs microseconds per call.
_sampled: ContextVar[SampledCall | None] = ContextVar("sampled_call", default=None)

UNTRACED = CallTrace(None)  # a call that started no trace and was left out: nothing to say


class Tracing:
    """The tracer of inference calls (one per process).

    The sampling decision comes first: a call the sampler leaves out (most of them, at a production ratio) makes
    no span, no context switch and no id beyond 64 random bits: the SDK's non-recording span cost ~30 µs a call, a
    seventh of a 1-row prediction's CPU."""

    def __init__(self, exporter: Any, resource: Any = None) -> None:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.sampling import Decision
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        from predictor.monitoring.head_sampling import Decided, HeadSampler, StableResource, TraceIds, root_bound

        # The sampler OTEL_TRACES_SAMPLER / _ARG name (parent-based always-on by default), as the SDK reads them.
        self._sampler = TracerProvider(shutdown_on_exit=False).sampler
        self._drop = Decision.DROP
        self._root_bound = root_bound(self._sampler)
        self._decided = Decided()
        self._ids = TraceIds(self._decided)
        self._provider = TracerProvider(
            sampler=HeadSampler(self._sampler, self._decided),
            resource=StableResource(resource if resource is not None else Resource.create()),
            id_generator=self._ids,
        )
        self._provider.add_span_processor(BatchSpanProcessor(exporter))
        self._tracer = self._provider.get_tracer("predictor")
        self._trace = trace
        self._propagator = TraceContextTextMapPropagator()

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> Tracing | None:
        """Tracing as the OTEL_* variables say, or None (off: nothing imported, nothing paid per request)."""
        endpoint = next((environ[name] for name in ENDPOINT_VARIABLES if environ.get(name)), None)
        if endpoint is None or environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
            return None
        from opentelemetry.sdk.resources import Resource

        protocol = environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        exporter: Any
        if (protocol or "http/protobuf").strip() == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

            exporter = GrpcExporter()
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

            exporter = HttpExporter()
        # The resource (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES) comes from the environment, as the SDK reads it.
        resource = Resource.create({"service.name": environ.get("OTEL_SERVICE_NAME") or "predictor"})
        log.info("tracing inference calls to %s (%s)", endpoint, protocol or "http/protobuf")
        return cls(exporter, resource)

    def server_span(
        self, name: str, carrier: Mapping[str, str], protocol: str
    ) -> AbstractContextManager[CallTrace | SampledCall]:
        """The span of one inference call, child of the caller's ``traceparent`` when it sent one; the phases
        noted in the block (through ``sampled()``) become its children when the block ends.

        A call the sampler leaves out gets no span. If its caller sent a ``traceparent``, the answer's
        ``traceresponse`` carries the caller's trace id with the sampled flag off (the caller learns the decision);
        a call that started no trace (no ``traceparent``) and was left out gets no ``traceresponse`` at all: no
        trace exists to point at, and an extra header costs uvicorn ~5 µs a call (a third of tracing's cost,
        measured). Such a call costs one 64-bit random number and a comparison, with a ratio sampler."""
        if TRACEPARENT not in carrier:
            low = random.getrandbits(64)  # the bits a trace-id ratio sampler judges: drawn first, the rest if kept
            if self._root_bound is not None and low >= self._root_bound:
                return UNTRACED
            trace_id = (random.getrandbits(64) << 64) | low or 1
            return self._sampled_span(name, None, trace_id, protocol)
        parent = self._propagator.extract(carrier)
        caller = self._trace.get_current_span(parent).get_span_context()
        if not caller.is_valid:  # a malformed traceparent: a new trace, as if none was sent
            return self._sampled_span(name, None, random.getrandbits(128) or 1, protocol)
        return self._sampled_span(name, parent, caller.trace_id, protocol)

    def _sampled_span(
        self, name: str, parent: Any, trace_id: int, protocol: str
    ) -> AbstractContextManager[CallTrace | SampledCall]:
        attributes = {PROTOCOL: protocol}
        decision = self._sampler.should_sample(parent, trace_id, name, self._trace.SpanKind.SERVER, attributes)
        if decision.decision is self._drop:
            if parent is None:
                return UNTRACED
            return CallTrace(f"00-{trace_id:032x}-{random.getrandbits(64) or 1:016x}-00")
        return self._server_span(name, parent, trace_id, decision, attributes)

    @contextlib.contextmanager
    def _server_span(
        self, name: str, parent: Any, trace_id: int, decision: Any, attributes: dict[str, str]
    ) -> Iterator[SampledCall]:
        self._decided.trace_id = trace_id if parent is None else None  # a child takes its caller's trace id
        self._decided.result = decision
        # Not made current: nothing below it asks the SDK for the current span (the doors read ``sampled``).
        span = self._tracer.start_span(name, context=parent, kind=self._trace.SpanKind.SERVER, attributes=attributes)
        call = SampledCall(span, self._tracer, self._trace)
        token = _sampled.set(call)
        try:
            yield call
        finally:
            _sampled.reset(token)
            call.end()

    @staticmethod
    def sampled() -> SampledCall | None:
        """The call being served when the sampler kept it, else None: a call left out makes no child spans at all
        (each would cost microseconds the 1-row path cannot spare, for nothing exported)."""
        return _sampled.get()

    @staticmethod
    def failed(call: CallTrace | SampledCall, status: int) -> None:
        """An answer of 4xx or 5xx, on the server span of a kept call (see ``SampledCall.failed``)."""
        if isinstance(call, SampledCall):
            call.failed(status)

    def shutdown(self) -> None:
        """Export what is still queued (graceful shutdown)."""
        self._provider.shutdown()


def _traceresponse(span: Any) -> str:
    """``00-<trace id>-<span id>-<flags>`` of the server span (W3C Trace Context level 2)."""
    context = span.get_span_context()
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"
