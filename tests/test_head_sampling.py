"""Head sampling against the installed OpenTelemetry SDK: the sampler named by OTEL_TRACES_SAMPLER decides before a
server span exists, a call it leaves out costs no span at all, and a call it keeps is exported with the very trace
id it was judged by. Spans go to the SDK's own in-memory exporter (in process: no collector needed to count them).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_ON,
    ParentBased,
    Sampler,
    StaticSampler,
    TraceIdRatioBased,
)
from opentelemetry.sdk.trace.sampling import Decision as SdkDecision

from predictor.monitoring.head_sampling import StableResource, root_bound
from predictor.monitoring.tracing import LOW_64_BITS, Tracing

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


def traced(
    monkeypatch: pytest.MonkeyPatch, sampler: str, arg: str | None = None
) -> tuple[Tracing, InMemorySpanExporter]:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", sampler)
    if arg is not None:
        monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", arg)
    exporter = InMemorySpanExporter()
    return Tracing(exporter), exporter


def calls(tracing: Tracing, count: int, carrier: dict[str, str] | None = None) -> Iterator[tuple[str | None, bool]]:
    """(traceresponse, recorded) of ``count`` calls, each making one child span as a door does."""
    for _ in range(count):
        with tracing.server_span("POST /v1/models/m:predict", carrier or {}, "v1") as call:
            kept = tracing.sampled()
            recorded = kept is not None
            if kept is not None:
                with kept.span("decode"):
                    pass
        yield call.response, recorded


def flushed(tracing: Tracing, exporter: InMemorySpanExporter) -> list[tuple[str, str, str | None]]:
    """(name, trace id, parent span id) of every exported span."""
    tracing.shutdown()
    return [
        (s.name, f"{s.context.trace_id:032x}", f"{s.parent.span_id:016x}" if s.parent else None)
        for s in exporter.get_finished_spans()
    ]


@pytest.mark.parametrize(
    ("sampler", "bound"),
    [
        (TraceIdRatioBased(0.25), TraceIdRatioBased(0.25).bound),
        (ParentBased(TraceIdRatioBased(0.01)), TraceIdRatioBased(0.01).bound),
        (StaticSampler(SdkDecision.DROP), 0),
        (ALWAYS_ON, None),  # every call is recorded: nothing to decide early
        (ParentBased(ALWAYS_ON), None),
    ],
)
def test_the_early_drop_rule_is_recognised_only_for_samplers_judging_roots_by_ratio(
    sampler: Sampler, bound: int | None
) -> None:
    assert root_bound(sampler) == bound


def test_a_ratio_sampler_keeps_its_share_and_every_kept_call_is_exported_under_the_id_it_was_judged_by(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tracing, exporter = traced(monkeypatch, "parentbased_traceidratio", "0.25")
    answered = list(calls(tracing, 4000))

    bound = TraceIdRatioBased(0.25).bound
    kept = set()
    for response, recorded in answered:
        if not recorded:
            assert response is None  # no trace was started, none recorded: nothing to point the caller at
            continue
        assert response is not None
        _, trace_id, _, flags = response.split("-")
        assert int(trace_id, 16) & LOW_64_BITS < bound, response  # the SDK's own rule judged this id
        assert flags == "03"  # sampled; the id random (W3C Trace Context level 2)
        kept.add(trace_id)
    assert 0.2 < len(kept) / len(answered) < 0.3
    assert len(kept) == sum(recorded for _, recorded in answered)  # no id handed on twice

    spans = flushed(tracing, exporter)
    servers = {trace_id for name, trace_id, parent in spans if parent is None}
    assert servers == kept
    assert sum(name == "decode" for name, _, _ in spans) == len(kept)


def test_always_off_records_nothing_and_answers_no_traceresponse_to_calls_that_started_no_trace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tracing, exporter = traced(monkeypatch, "always_off")
    answered = list(calls(tracing, 50))

    assert not any(recorded for _, recorded in answered)
    assert all(response is None for response, _ in answered)
    assert flushed(tracing, exporter) == []


def test_a_sampled_caller_is_followed_whatever_the_ratio_and_an_unsampled_one_is_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tracing, exporter = traced(monkeypatch, "parentbased_traceidratio", "0")
    ((sampled_response, sampled),) = calls(tracing, 1, {"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"})
    ((dropped_response, dropped),) = calls(tracing, 1, {"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-00"})
    ((root_response, root),) = calls(tracing, 1)  # after callers: a root gets a fresh id, not the last caller's

    assert sampled and sampled_response is not None and sampled_response.startswith(f"00-{CALLER_TRACE}-")
    assert sampled_response.endswith("-01")
    assert not dropped and dropped_response == f"00-{CALLER_TRACE}-{dropped_response.split('-')[2]}-00"
    assert not root and root_response is None
    server, decode = sorted(flushed(tracing, exporter), key=lambda span: span[0] != "POST /v1/models/m:predict")
    assert server == ("POST /v1/models/m:predict", CALLER_TRACE, CALLER_SPAN)
    assert decode[1] == CALLER_TRACE and decode[2] == sampled_response.split("-")[2]


def test_a_malformed_traceparent_starts_a_new_trace(monkeypatch: pytest.MonkeyPatch) -> None:
    tracing, exporter = traced(monkeypatch, "always_on")
    ((response, recorded),) = calls(tracing, 1, {"traceparent": "00-not-a-trace-01"})

    assert recorded and response is not None and response.endswith("-03")
    spans = flushed(tracing, exporter)
    assert ("POST /v1/models/m:predict", response.split("-")[1], None) in spans


def test_the_resource_hashed_once_is_the_sdks_resource_to_the_exporter(monkeypatch: pytest.MonkeyPatch) -> None:
    plain = Resource.create({"service.name": "predictor", "plant": "north"})
    stable = StableResource(plain)
    assert hash(stable) == hash(plain) and stable == plain and stable.attributes == plain.attributes

    tracing, exporter = traced(monkeypatch, "always_on")
    list(calls(tracing, 3))
    tracing.shutdown()
    exported = encode_spans(exporter.get_finished_spans())
    (resource_spans,) = exported.resource_spans  # every span under the one resource, as with the SDK's own
    assert sum(len(scope.spans) for scope in resource_spans.scope_spans) == 6
