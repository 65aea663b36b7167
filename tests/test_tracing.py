"""OpenTelemetry tracing, end to end: the real server started with the standard OTEL_* variables pointing at a real
OTLP/HTTP receiver that this test runs (an HTTP server decoding ``ExportTraceServiceRequest`` protobufs), and the
trace tree checked as a collector would see it — over v1, v2, ``/invocations`` and gRPC.

Waits are bounded and driven by what arrives: spans are exported in the order they end, so once the spans of a
later request have arrived, an earlier untraced request (a probe) would have arrived too.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from tests import model_zoo
from tests.grpc_calls import stub
from tests.servers import PredictorProcess, free_port, start_predictor

NAME = "pumps"


@dataclass
class Span:
    name: str
    trace_id: str
    span_id: str
    parent_id: str
    kind: int
    attributes: dict[str, Any]
    status_code: int


class Receiver:
    """An OTLP/HTTP traces endpoint (``POST /v1/traces``, protobuf) keeping every span it is sent."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.lock = threading.Lock()
        spans, lock = self.spans, self.lock

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
                received = [
                    Span(
                        span.name,
                        span.trace_id.hex(),
                        span.span_id.hex(),
                        span.parent_span_id.hex(),
                        span.kind,
                        {a.key: _value(a.value) for a in span.attributes},
                        span.status.code,
                    )
                    for resource in request.resource_spans
                    for scope in resource.scope_spans
                    for span in scope.spans
                ]
                with lock:
                    spans.extend(received)
                answer = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def of_trace(self, trace_id: str, count: int, timeout_s: float = 30) -> list[Span]:
        """The trace's spans once at least ``count`` have arrived (bounded)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self.lock:
                found = [s for s in self.spans if s.trace_id == trace_id]
            if len(found) >= count:
                return found
            time.sleep(0.05)
        raise AssertionError(f"{len(found)} spans of trace {trace_id} within {timeout_s} s, expected {count}")


def _value(value: Any) -> Any:
    return getattr(value, value.WhichOneof("value")) if value.WhichOneof("value") else None


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    running.thread.start()
    try:
        yield running
    finally:
        running.server.shutdown()
        running.server.server_close()


@pytest.fixture(scope="module")
def server(receiver: Receiver, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PredictorProcess, Path]]:
    root = tmp_path_factory.mktemp("tracing")
    model = model_zoo.zoo_builders()["forest-columns"]()
    model.save(root / "model")
    log = root / "predictions.jsonl"
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
        "OTEL_SERVICE_NAME": "predictor-under-test",
        "OTEL_BSP_SCHEDULE_DELAY": "50",  # export every 50 ms, so the test waits little
    }
    flags = ("--model_uri", str(root / "model"), "--prediction_log", str(log), "--prediction_log_sample_rate", "1")
    process = start_predictor("sqlite:///" + str(root / "unused.db"), root, *flags, model_name=NAME, env=env)
    try:
        yield process.wait_ready(), log
    finally:
        process.stop()


def traceparent() -> tuple[str, str, str]:
    trace_id, parent_id = secrets.token_hex(16), secrets.token_hex(8)
    return trace_id, parent_id, f"00-{trace_id}-{parent_id}-01"


ROWS = model_zoo.training_frame(seed=3).head(2)
RECORDS = json.loads(ROWS.to_json(orient="records"))
REST_CALLS = {
    "v1": (f"/v1/models/{NAME}:predict", {"instances": RECORDS}),
    "v2": (
        f"/v2/models/{NAME}/infer",
        {"inputs": [{"name": c, "datatype": "FP64", "shape": [2], "data": ROWS[c].tolist()} for c in ROWS.columns]},
    ),
    "mlflow": ("/invocations", {"dataframe_records": RECORDS}),
}
CHILDREN = {"decode", "batch wait", "model call", "encode"}


def check_tree(spans: list[Span], trace_id: str, parent_id: str, protocol: str) -> Span:
    (root,) = [s for s in spans if s.parent_id == parent_id]
    assert root.kind == 2, root  # SPAN_KIND_SERVER
    assert root.attributes["model.name"] == NAME and root.attributes["model.version"] == "local"
    assert root.attributes["inference.protocol"] == protocol and root.attributes["inference.rows"] == 2
    children = {s.name for s in spans if s.parent_id == root.span_id}
    assert children >= CHILDREN, children
    assert all(s.trace_id == trace_id for s in spans)
    return root


@pytest.mark.parametrize("protocol", list(REST_CALLS))
def test_every_rest_door_traces_a_call_as_a_child_of_the_callers_span(
    protocol: str, server: tuple[PredictorProcess, Path], receiver: Receiver
) -> None:
    process, _ = server
    trace_id, parent_id, header = traceparent()
    path, body = REST_CALLS[protocol]
    response = httpx.post(f"{process.http_url}{path}", json=body, headers={"traceparent": header}, timeout=30)
    assert response.status_code == 200, response.text
    root = check_tree(receiver.of_trace(trace_id, 1 + len(CHILDREN)), trace_id, parent_id, protocol)
    assert response.headers["traceresponse"] == f"00-{trace_id}-{root.span_id}-01"


def test_grpc_traces_a_call_from_its_metadata_and_answers_traceresponse_in_trailing_metadata(
    server: tuple[PredictorProcess, Path], receiver: Receiver
) -> None:
    process, _ = server
    trace_id, parent_id, header = traceparent()
    tensors = [
        pb.ModelInferRequest.InferInputTensor(
            name=c, datatype="FP64", shape=[2], contents=pb.InferTensorContents(fp64_contents=ROWS[c].tolist())
        )
        for c in ROWS.columns
    ]
    with stub(process.grpc_target) as client:
        _, call = client.ModelInfer.with_call(
            pb.ModelInferRequest(model_name=NAME, inputs=tensors), metadata=[("traceparent", header)], timeout=30
        )
    root = check_tree(receiver.of_trace(trace_id, 1 + len(CHILDREN)), trace_id, parent_id, "grpc")
    assert dict(call.trailing_metadata())["traceresponse"] == f"00-{trace_id}-{root.span_id}-01"


def test_a_call_without_traceparent_starts_a_trace_and_a_bad_request_is_not_an_error_span(
    server: tuple[PredictorProcess, Path], receiver: Receiver
) -> None:
    process, _ = server
    response = httpx.post(f"{process.http_url}/v1/models/{NAME}:predict", json={"instances": [[1, 2]]}, timeout=30)
    assert response.status_code == 400
    _, trace_id, span_id, flags = response.headers["traceresponse"].split("-")
    spans = receiver.of_trace(trace_id, 2)  # the server span and its decode, which refused the body
    (root,) = [s for s in spans if s.span_id == span_id]
    assert root.parent_id == "" and int(flags, 16) & 1  # sampled (0x02 too: level 2's "random trace id")
    assert root.attributes["http.response.status_code"] == 400
    assert all(s.status_code == 0 for s in spans)  # unset: a 4xx is the caller's fault, not the server's


def test_probes_and_metrics_are_not_traced(server: tuple[PredictorProcess, Path], receiver: Receiver) -> None:
    process, _ = server
    probe_trace, _, probe_header = traceparent()
    for path in ("/health/ready", "/metrics", f"/v2/models/{NAME}/ready", "/v2/health/live"):
        response = httpx.get(f"{process.http_url}{path}", headers={"traceparent": probe_header}, timeout=10)
        assert response.status_code == 200 and "traceresponse" not in response.headers
    trace_id, _parent_id, header = traceparent()  # a traced call after them: its spans are exported after theirs
    v1 = REST_CALLS["v1"]
    httpx.post(f"{process.http_url}{v1[0]}", json=v1[1], headers={"traceparent": header}, timeout=30)
    receiver.of_trace(trace_id, 1 + len(CHILDREN))
    assert [s for s in receiver.spans if s.trace_id == probe_trace] == []


def test_the_prediction_log_carries_the_trace_id(server: tuple[PredictorProcess, Path], receiver: Receiver) -> None:
    process, log = server
    trace_id, _, header = traceparent()
    v1 = REST_CALLS["v1"]
    response = httpx.post(f"{process.http_url}{v1[0]}", json=v1[1], headers={"traceparent": header}, timeout=30)
    assert response.status_code == 200

    def logged() -> list[dict[str, Any]]:
        lines = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        return [line for line in lines if line.get("trace_id") == trace_id]

    deadline = time.monotonic() + 30
    while len(logged()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [line["row"] for line in logged()] == [0, 1]


def test_an_unreachable_collector_costs_no_answer(tmp_path: Path) -> None:
    """Spans leave through a batch processor: a collector that is down loses spans, never an answer."""
    model = model_zoo.zoo_builders()["ridge-columns"]()
    model.save(tmp_path / "model")
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{free_port()}", "OTEL_BSP_SCHEDULE_DELAY": "50"}
    process = start_predictor(
        "sqlite:///" + str(tmp_path / "unused.db"), tmp_path, "--model_uri", str(tmp_path / "model"), model_name=NAME,
        env=env,
    )  # fmt: skip
    try:
        process.wait_ready()
        v1 = REST_CALLS["v1"]
        for _ in range(20):
            response = httpx.post(f"{process.http_url}{v1[0]}", json=v1[1], timeout=30)
            assert response.status_code == 200 and "traceresponse" in response.headers
    finally:
        process.stop()
    assert "Traceback" not in process.log(last=10**7)
