"""Payload events (CloudEvents, binary mode, like KServe's logger) to a real HTTP sink this test runs: every door's
request and response, the same ce-id for both; and a sink taken down under load and brought back loses nothing —
the events wait in the disk spool and arrive once it answers, also across a restart of the sender.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb

from predictor.monitoring.payload_events import REQUEST_TYPE, RESPONSE_TYPE, PayloadEvent, PayloadLogger
from tests import model_zoo
from tests.grpc_calls import stub
from tests.payload_sink import Sink
from tests.servers import PredictorProcess, free_port, scrape, start_predictor, total, wait_until

NAME = "pumps"


@pytest.fixture(scope="module")
def sink() -> Iterator[Sink]:
    running = Sink()
    running.start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def server(sink: Sink, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PredictorProcess]:
    root = tmp_path_factory.mktemp("payloads")
    model_zoo.zoo_builders()["forest-columns"]().save(root / "model")
    flags = (
        "--model_uri", str(root / "model"), "--payload_log_url", sink.url, "--payload_log_spool", str(root / "spool"),
    )  # fmt: skip
    process = start_predictor("sqlite:///" + str(root / "unused.db"), root, *flags, model_name=NAME)
    try:
        yield process.wait_ready()
    finally:
        process.stop()


ROWS = model_zoo.training_frame(seed=4).head(2)
RECORDS = json.loads(ROWS.to_json(orient="records"))
BODIES = {
    "v1": (f"/v1/models/{NAME}:predict", {"instances": RECORDS}),
    "v2": (
        f"/v2/models/{NAME}/infer",
        {"inputs": [{"name": c, "datatype": "FP64", "shape": [2], "data": ROWS[c].tolist()} for c in ROWS.columns]},
    ),
    "mlflow": ("/invocations", {"dataframe_records": RECORDS}),
}


@pytest.mark.parametrize("protocol", list(BODIES))
def test_each_rest_call_sends_its_request_and_response_as_cloudevents(
    protocol: str, server: PredictorProcess, sink: Sink
) -> None:
    path, body = BODIES[protocol]
    sent = json.dumps(body).encode()
    request_id = f"payload-{protocol}"
    response = httpx.post(
        f"{server.http_url}{path}",
        content=sent,
        headers={"Content-Type": "application/json", "X-Request-Id": request_id},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    sink.wait_for([request_id])
    events = sink.of(request_id)
    (request_headers, request_body), (response_headers, response_body) = events[REQUEST_TYPE], events[RESPONSE_TYPE]
    assert request_body == sent and response_body == response.content
    for headers in (request_headers, response_headers):
        assert headers["ce-specversion"] == "1.0" and headers["ce-id"] == request_id
        assert headers["ce-inferenceservicename"] == NAME and headers["ce-modelversion"] == "local"
        assert headers["ce-endpoint"] == protocol and headers["ce-source"].startswith("predictor/")
        assert headers["ce-time"].endswith("Z") and headers["content-type"] == "application/json"


def test_a_grpc_call_sends_its_messages(server: PredictorProcess, sink: Sink) -> None:
    tensors = [
        pb.ModelInferRequest.InferInputTensor(
            name=c, datatype="FP64", shape=[2], contents=pb.InferTensorContents(fp64_contents=ROWS[c].tolist())
        )
        for c in ROWS.columns
    ]
    request = pb.ModelInferRequest(model_name=NAME, id="payload-grpc", inputs=tensors)
    with stub(server.grpc_target) as client:
        answer = client.ModelInfer(request, timeout=30)
    sink.wait_for(["payload-grpc"])
    events = sink.of("payload-grpc")
    assert pb.ModelInferRequest.FromString(events[REQUEST_TYPE][1]) == request
    assert pb.ModelInferResponse.FromString(events[RESPONSE_TYPE][1]) == answer
    assert events[REQUEST_TYPE][0]["content-type"] == "application/x-protobuf"


def test_a_sink_outage_under_load_loses_no_event(server: PredictorProcess, sink: Sink) -> None:
    """The sink goes down; 150 calls from three clients all succeed meanwhile (their events spooled); the sink
    comes back and receives every one of them, request and response."""
    sink.stop()
    request_ids = [f"outage-{client}-{i}" for client in range(3) for i in range(50)]
    failures: list[str] = []

    def client(ids: list[str]) -> None:
        with httpx.Client(timeout=30) as http:
            for request_id in ids:
                path, body = BODIES["v1"]
                answer = http.post(f"{server.http_url}{path}", json=body, headers={"X-Request-Id": request_id})
                if answer.status_code != 200:
                    failures.append(answer.text)

    threads = [threading.Thread(target=client, args=(request_ids[k::3],)) for k in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert failures == []
    assert total(scrape(server.http_url), "payload_events_total", outcome="spooled") > 0
    sink.start()
    sink.wait_for(request_ids)
    assert total(scrape(server.http_url), "payload_events_total", outcome="dropped") == 0


def test_events_spooled_before_a_restart_are_sent_after_it(tmp_path: Path) -> None:
    """In process: a sender whose sink is down spools what it accepted and closes; the next one, on the same
    spool, sends those first once its sink answers — nothing accepted is lost across a restart."""
    down = f"http://127.0.0.1:{free_port()}/events"
    outcomes: list[str] = []
    first = PayloadLogger(down, spool=tmp_path, on_outcome=lambda outcome, n: outcomes.extend([outcome] * n))
    for i in range(5):
        first.submit(f"r{i}", NAME, "1", "v1", (b"{}", "application/json"), (b"[]", "application/json"))
    first.close()
    assert outcomes.count("spooled") == 10 and len(list(tmp_path.glob("*.event"))) == 10
    sink = Sink()
    sink.start()
    try:
        second = PayloadLogger(sink.url, spool=tmp_path)
        sink.wait_for([f"r{i}" for i in range(5)], timeout_s=30)
        second.close()
    finally:
        sink.stop()
    assert list(tmp_path.glob("*.event")) == []


def test_mode_request_sends_only_request_events_and_access_log_format_writes_a_line_per_call(
    sink: Sink, tmp_path: Path
) -> None:
    """``--payload_log_mode request``; and ``--access_log_format`` (KServe's flag), on the same server."""
    model_zoo.zoo_builders()["forest-columns"]().save(tmp_path / "model")
    flags = (
        "--model_uri", str(tmp_path / "model"), "--payload_log_url", sink.url, "--payload_log_mode", "request",
        "--access_log_format", 'ACCESS %(h)s "%(r)s" %(s)s',
    )  # fmt: skip
    process = start_predictor("sqlite:///" + str(tmp_path / "unused.db"), tmp_path, *flags, model_name=NAME)
    try:
        process.wait_ready()
        path, body = BODIES["v1"]
        for number in range(4):
            headers = {"X-Request-Id": f"only-requests-{number}"}
            assert httpx.post(process.http_url + path, json=body, headers=headers, timeout=30).status_code == 200
        # One sender, in order: once the last call's request event is in, a response event of the calls before it
        # (queued right behind their requests) would be in too.
        wait_until(lambda: bool(sink.of("only-requests-3")), 30, 0.05, "the last request event")
        assert {ce_type for n in range(3) for ce_type in sink.of(f"only-requests-{n}")} == {REQUEST_TYPE}
        wait_until(lambda: process.log(100_000).count('"POST /v1/models/pumps:predict HTTP/1.1" 200') >= 4, 10, 0.1)
        calls = [line for line in process.log(100_000).splitlines() if "POST /v1/models/pumps:predict" in line]
        assert len(calls) == 4 and all(line.startswith("ACCESS 127.0.0.1:") for line in calls)  # one each, as asked
        assert "uvicorn.access" not in process.log(100_000)  # and not a second one from uvicorn
    finally:
        process.stop()


def slow_sink(received: list[str], delay_s: float = 0.05) -> ThreadingHTTPServer:
    """A sink that takes ``delay_s`` per event and notes each event's id; serving on a thread."""

    class SlowSink(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            time.sleep(delay_s)
            received.append(self.headers["ce-id"])
            self.send_response(202)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    slow = ThreadingHTTPServer(("127.0.0.1", free_port()), SlowSink)
    threading.Thread(target=slow.serve_forever, daemon=True).start()
    return slow


def test_a_shutdown_while_the_spool_drains_keeps_the_spool_and_the_calls_queued_behind_it(tmp_path: Path) -> None:
    """In process, as the one-minute soak found it: the sink comes back just as SIGTERM arrives, the sender is
    draining a spool of the outage, calls answered meanwhile wait in the queue behind that drain. A close() that runs
    out of time stops the drain (the spool stays for the next run) and spools the queue; before, the drain went on,
    close() closed the HTTP client under it, the sender died and the queue's events died with the process."""
    down = f"http://127.0.0.1:{free_port()}/events"
    outage = PayloadLogger(down, spool=tmp_path)
    for i in range(30):
        outage.submit(f"o{i}", NAME, "1", "v1", (b"{}", "application/json"), (b"[]", "application/json"))
    outage.close()
    assert len(list(tmp_path.glob("*.event"))) == 60
    received: list[str] = []
    slow = slow_sink(received)
    try:
        logger = PayloadLogger(f"http://127.0.0.1:{slow.server_address[1]}/events", spool=tmp_path)
        for i in range(20):  # answered while the spool drains: queued behind it
            logger.submit(f"q{i}", NAME, "1", "v1", (b"{}", "application/json"), (b"[]", "application/json"))
        logger.close(timeout_s=0.5)
        assert not logger._thread.is_alive()  # the sender finished: it did not die mid-drain, nor hang
    finally:
        slow.shutdown()
        slow.server_close()
    spooled = list(tmp_path.glob("*.event"))
    assert spooled, "the sink took everything: not slow enough to test the shutdown's deadline"
    assert len(received) + len(spooled) == 60 + 40  # every event sent or kept for the next run
    assert {PayloadEvent.decode(path.read_bytes()).headers["ce-id"] for path in spooled} >= {"q19"}


def test_under_steady_load_a_returning_sink_drains_the_spool_and_calls_answered_meanwhile_wait_on_disk(
    tmp_path: Path,
) -> None:
    """In process, as the one-minute soak found it: calls never pause for half a second, the sink comes back after an
    outage. The spool drains at once (before, only in a lull: 33 s late), and the events of calls answered while it
    drains go to disk behind it, not to memory (before, a worker SIGKILLed 22 s into such a drain lost them all)."""
    sink = Sink()  # down: its port is reserved, nothing listens yet
    logger = PayloadLogger(sink.url, spool=tmp_path)
    for i in range(30):  # the outage
        logger.submit(f"o{i}", NAME, "1", "v1", (b"{}", "application/json"), (b"[]", "application/json"))
    wait_until(lambda: len(list(tmp_path.glob("*.event"))) == 60, 10, 0.01, "the outage's events spooled")
    stop = threading.Event()

    def steady_load() -> None:  # an event every 10 ms: no lull
        for i in itertools.count():
            if stop.wait(0.01):
                return
            logger.submit(f"s{i}", NAME, "1", "v1", (b"{}", "application/json"), (b"[]", "application/json"))

    load = threading.Thread(target=steady_load)
    load.start()
    try:
        sink.start()
        wait_until(lambda: len(sink.of("o29")) == 2, 20, 0.05, "the outage's events sent while the load goes on")
    finally:
        stop.set()
        load.join(10)
    logger.close()
    sink.stop()
    received = {headers["ce-id"] for headers, _ in sink.events}
    assert {f"o{i}" for i in range(30)} <= received and not list(tmp_path.glob("*.event"))


def test_events_accepted_while_the_spool_drains_are_on_disk_not_in_memory(tmp_path: Path) -> None:
    """A slow sink drains a spool of 60 events (50 ms each); 20 calls answered meanwhile are in the spool within a
    moment, long before the drain ends: a worker killed now would lose none of them."""
    down = PayloadLogger(f"http://127.0.0.1:{free_port()}/events", spool=tmp_path)
    for i in range(30):
        down.submit(f"o{i}", NAME, "1", "v1", (b"{}", "application/json"), (b"[]", "application/json"))
    down.close()
    received: list[str] = []
    slow = slow_sink(received)
    try:
        logger = PayloadLogger(f"http://127.0.0.1:{slow.server_address[1]}/events", spool=tmp_path)
        wait_until(lambda: bool(received), 10, 0.01, "the drain begun")
        for i in range(20):
            logger.submit(f"q{i}", NAME, "1", "v1", (b"{}", "application/json"), (b"[]", "application/json"))

        def spooled() -> set[str]:
            ids = set()
            for path in tmp_path.glob("*.event"):
                with contextlib.suppress(FileNotFoundError):  # sent and removed by the drain since the listing
                    ids.add(PayloadEvent.decode(path.read_bytes()).headers["ce-id"])
            return ids

        wait_until(lambda: {f"q{i}" for i in range(20)} <= spooled(), 5, 0.01, "the calls' events on disk")
        assert "o29" not in received  # still draining: the events went to disk while it did
        logger.close(timeout_s=0.5)
    finally:
        slow.shutdown()
        slow.server_close()


def test_a_shutdown_that_runs_out_of_time_spools_what_it_could_not_send(tmp_path: Path) -> None:
    """In process: a sink too slow to take every event before close()'s time is up — the rest go to the spool (the
    next run sends them), none is dropped. (The one-minute soak lost events here: a SIGTERM under load with a busy
    sink left them queued in memory when the process exited.)"""
    received: list[str] = []
    slow = slow_sink(received)
    try:
        logger = PayloadLogger(f"http://127.0.0.1:{slow.server_address[1]}/events", spool=tmp_path)
        for i in range(30):
            logger.submit(f"s{i}", NAME, "1", "v1", (b"{}", "application/json"), (b"[]", "application/json"))
        logger.close(timeout_s=1.0)
    finally:
        slow.shutdown()
        slow.server_close()
    spooled = list(tmp_path.glob("*.event"))
    assert spooled, "the sink took everything: not slow enough to test the shutdown's deadline"
    assert len(received) + len(spooled) == 60
