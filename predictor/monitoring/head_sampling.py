"""Head sampling for ``tracing``: the configured sampler decides before a server span exists, and the SDK then
starts that span with the decision and trace id already made. Imported only when tracing is on (it needs the SDK).

Through the SDK's public extension points (a ``Sampler`` and an ``IdGenerator`` given to the ``TracerProvider``);
``tests/test_head_sampling.py`` checks the hand-over against the installed SDK (ratios, parents, ids). Also here,
as the other piece that leans on the SDK's classes: ``StableResource``, the resource with its hash computed once.
"""

from __future__ import annotations

import threading
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import ParentBased, Sampler, SamplingResult, TraceIdRatioBased


class Decided(threading.local):
    """The decision (and trace id) a server span was sampled with, handed from ``Tracing.server_span`` to the
    SDK's sampler and id generator as the span starts (same thread, no await in between)."""

    trace_id: int | None = None
    result: Any = None


class HeadSampler(Sampler):
    """The configured sampler, asked once per call before any span exists; the server span that follows gets
    that decision, every other span the configured sampler's own (as the SDK would ask it)."""

    def __init__(self, configured: Sampler, decided: Decided) -> None:
        self._configured = configured
        self._decided = decided

    def should_sample(self, *args: Any, **kwargs: Any) -> SamplingResult:
        result, self._decided.result = self._decided.result, None
        return result if result is not None else self._configured.should_sample(*args, **kwargs)

    def get_description(self) -> str:
        return self._configured.get_description()


class TraceIds(RandomIdGenerator):
    """Random ids, except a root server span's trace id, drawn before the span so the sampler could judge it."""

    def __init__(self, decided: Decided) -> None:
        self._decided = decided

    def generate_trace_id(self) -> int:
        trace_id, self._decided.trace_id = self._decided.trace_id, None
        return trace_id if trace_id is not None else super().generate_trace_id()


def root_bound(configured: Sampler) -> int | None:
    """The ``bound`` a root call's trace id is judged by, when the configured sampler judges roots by trace-id
    ratio alone (``traceidratio``, ``parentbased_traceidratio``, ``always_off``: what production runs), else None.

    With it, a root call the sampler would drop is known dropped by one comparison (the rule of OpenTelemetry's
    specification: the id's low 64 bits below ``bound``), without building the SDK's sampling result (~4 µs). The
    configured sampler is recognised by its description, which names its kind and rate."""
    description = configured.get_description()
    if description == "AlwaysOffSampler":
        return 0
    rate = description.rpartition("TraceIdRatioBased{")[2].partition("}")[0]
    try:
        ratio = TraceIdRatioBased(float(rate))
    except ValueError:
        return None
    parent_based: Sampler = ParentBased(ratio)
    if description in (ratio.get_description(), parent_based.get_description()):
        return ratio.bound
    return None


class StableResource(Resource):
    """A ``Resource`` whose hash is computed once. The OTLP encoder groups every span it exports by resource, and
    ``Resource.__hash__`` serialises the attributes to JSON each time: a fifth of the encoding's CPU per span,
    measured with the installed exporter. A resource never changes after it is made, so its hash cannot either."""

    def __init__(self, resource: Resource) -> None:
        super().__init__(resource.attributes, resource.schema_url)
        self._hash = super().__hash__()

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        return super().__eq__(other)
