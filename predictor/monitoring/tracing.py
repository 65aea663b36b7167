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
from collections.abc import Iterator, Mapping
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


class Tracing:
    """The tracer of inference calls (one per process)."""

    def __init__(self, provider: Any) -> None:
        from opentelemetry import trace
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self._provider = provider
        self._tracer = provider.get_tracer("predictor")
        self._trace = trace
        self._propagator = TraceContextTextMapPropagator()

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> Tracing | None:
        """Tracing as the OTEL_* variables say, or None (off: nothing imported, nothing paid per request)."""
        endpoint = next((environ[name] for name in ENDPOINT_VARIABLES if environ.get(name)), None)
        if endpoint is None or environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
            return None
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        protocol = environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        exporter: Any
        if (protocol or "http/protobuf").strip() == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

            exporter = GrpcExporter()
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

            exporter = HttpExporter()
        # The sampler (OTEL_TRACES_SAMPLER, parent-based always-on by default) and the resource (OTEL_SERVICE_NAME,
        # OTEL_RESOURCE_ATTRIBUTES) come from the environment, as the SDK reads them.
        resource = Resource.create({"service.name": environ.get("OTEL_SERVICE_NAME") or "predictor"})
        provider = TracerProvider(resource=resource)
        provider.add_span_processor(BatchSpanProcessor(exporter))
        log.info("tracing inference calls to %s (%s)", endpoint, protocol or "http/protobuf")
        return cls(provider)

    @contextlib.contextmanager
    def server_span(self, name: str, carrier: Mapping[str, str], protocol: str) -> Iterator[Any]:
        """The span of one inference call, child of the caller's ``traceparent`` when it sent one; current (so
        the spans below it are its children) until the block ends."""
        parent = self._propagator.extract(carrier) if TRACEPARENT in carrier else None
        with self._tracer.start_as_current_span(
            name,
            context=parent,
            kind=self._trace.SpanKind.SERVER,
            attributes={PROTOCOL: protocol},
            record_exception=False,  # the answer's status says what failed; the text stays in our log
            set_status_on_exception=False,
        ) as span:
            yield span

    def sampled(self) -> Tracing | None:
        """This tracer while the current (server) span is recorded, else None: a call the sampler left out makes
        no child spans at all (each would cost microseconds the 1-row path cannot spare, for nothing exported)."""
        return self if self._trace.get_current_span().is_recording() else None

    def span(self, name: str) -> Any:
        """A child of the current span (a context manager); an error raised in it is judged by the server span."""
        return self._tracer.start_as_current_span(name, record_exception=False, set_status_on_exception=False)

    def record(self, name: str, start_ns: int, end_ns: int, attributes: Mapping[str, Any] | None = None) -> None:
        """A child of the current span that already happened (the batcher measured it: batch wait, model call)."""
        span = self._tracer.start_span(name, start_time=start_ns, attributes=attributes)
        span.end(end_time=end_ns)

    def annotate(self, model: str, version: str, rows: int) -> None:
        """What the current (server) span served."""
        self._trace.get_current_span().set_attributes({MODEL_NAME: model, MODEL_VERSION: version, ROWS: rows})

    def failed(self, span: Any, status: int) -> None:
        """An answer of 5xx marks the server span an error (a 4xx is the caller's, as OpenTelemetry's HTTP
        conventions say for servers)."""
        span.set_attribute("http.response.status_code", status)
        if status >= 500:
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR))

    @staticmethod
    def traceresponse(span: Any) -> str | None:
        """``00-<trace id>-<span id>-<flags>`` of the server span (W3C Trace Context level 2)."""
        context = span.get_span_context()
        if not context.is_valid:
            return None
        return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"

    def current_trace_id(self) -> str | None:
        context = self._trace.get_current_span().get_span_context()
        return f"{context.trace_id:032x}" if context.is_valid else None

    def shutdown(self) -> None:
        """Export what is still queued (graceful shutdown)."""
        self._provider.shutdown()
