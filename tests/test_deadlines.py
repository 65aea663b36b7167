"""Deadlines that cancel and overload that sheds, on every door: a caller's X-Request-Timeout (or gRPC deadline)
or the server's --request_timeout_s turns a slow call into 504 (DEADLINE_EXCEEDED) with our error body, and past
--max_concurrency calls in flight a worker answers 503 with Retry-After at once (RESOURCE_EXHAUSTED).

The model is a user's pyfunc that computes for two seconds on one valid value (a temperature of 500) and answers
at once otherwise; no test asserts a duration, only statuses, bodies and counters.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pandas as pd
import pytest

from tests.grpc_calls import infer_request, stub
from tests.pyfunc_models import rest_bodies, save_pyfunc
from tests.servers import PredictorProcess, scrape, start_predictor, total, wait_until

NAME = "slow"
SLOW = {"temperature": 500.0, "vibration": 0.2}  # computes for two seconds
FAST = {"temperature": 50.0, "vibration": 0.2}


def slow_on_500(model_input: pd.DataFrame) -> np.ndarray:
    """Computes for two seconds on one value (a sleep would be taken for waiting on I/O), answers at once otherwise."""
    import time

    temperature = model_input["temperature"].to_numpy(dtype=float)
    if (temperature == 500.0).any():
        end = time.perf_counter() + 2.0
        while time.perf_counter() < end:
            pass
    return temperature / 100.0


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("slow") / "model"
    save_pyfunc(directory, slow_on_500)
    return directory


def serve(model_dir: Path, log_dir: Path, *flags: str) -> PredictorProcess:
    uri = "sqlite:///" + str(model_dir.parent / "unused.db")
    return start_predictor(uri, log_dir, "--model_uri", str(model_dir), *flags, model_name=NAME).wait_ready()


@pytest.fixture(scope="module")
def server(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PredictorProcess]:
    process = serve(model_dir, tmp_path_factory.mktemp("deadline-logs"))
    try:
        yield process
    finally:
        process.stop()


def counted(server: PredictorProcess, error_type: str) -> float:
    return total(scrape(server.http_url), "model_prediction_errors_total", error_type=error_type)


def doors(row: dict[str, float]) -> dict[str, tuple[str, Any]]:
    return rest_bodies(NAME, row)


@pytest.mark.parametrize("door", ["v1", "v2", "invocations"])
def test_a_callers_deadline_turns_a_slow_call_into_a_504_and_the_server_stays_whole(
    server: PredictorProcess, door: str
) -> None:
    path, body = doors(SLOW)[door]
    before = counted(server, "deadline_exceeded")
    with httpx.Client(base_url=server.http_url, timeout=60) as client:
        answer = client.post(path, json=body, headers={"X-Request-Timeout": "0.3"})
        assert answer.status_code == 504, answer.text
        assert "deadline of 0.3 s" in answer.json()["error"]
        path, body = doors(FAST)[door]
        assert client.post(path, json=body).status_code == 200  # the next call is served
    assert counted(server, "deadline_exceeded") == before + 1


def sample_total(server: PredictorProcess, metric: str) -> float:
    return total(scrape(server.http_url), metric)


def queued_behind_a_slow_call(server: PredictorProcess, call: Callable[[str, dict[str, Any]], None]) -> None:
    """``call(url, body)`` made while a slow call computes; then: it was never computed, and its drop counted."""
    path, slow_body = doors(SLOW)["v1"]
    _, fast_body = doors(FAST)["v1"]
    slow = threading.Thread(target=lambda: httpx.post(server.http_url + path, json=slow_body, timeout=60))
    slow.start()
    try:
        wait_until(lambda: sample_total(server, "model_batch_rows_count") == 1, 30, 0.05, "the slow call")
        call(server.http_url + path, fast_body)
    finally:
        slow.join(timeout=60)
    wait_until(lambda: sample_total(server, "model_dropped_calls_total") == 1, 30, 0.1, "the drop counted")
    assert sample_total(server, "model_batch_rows_count") == 1  # only the slow call ran


def test_a_call_whose_deadline_passes_while_queued_is_never_computed(model_dir: Path, tmp_path: Path) -> None:
    # A fresh server: its first model call goes to the model's thread (the micro-batcher has measured nothing
    # yet), so the slow call computes there and the next one queues behind it on the event loop.
    server = serve(model_dir, tmp_path)

    def past_its_deadline(url: str, body: dict[str, Any]) -> None:
        assert httpx.post(url, json=body, headers={"X-Request-Timeout": "0.3"}, timeout=30).status_code == 504

    try:
        queued_behind_a_slow_call(server, past_its_deadline)
    finally:
        server.stop()


def test_a_caller_that_disconnects_while_queued_drops_its_work(model_dir: Path, tmp_path: Path) -> None:
    """Under a server-wide deadline, a caller that gives up (its connection closed) while its call waits behind a
    slow one frees its place: the call is never computed, and the drop is counted."""
    server = serve(model_dir, tmp_path, "--request_timeout_s", "30")

    def gives_up(url: str, body: dict[str, Any]) -> None:
        with pytest.raises(httpx.ReadTimeout):  # the caller stops waiting and closes its connection
            httpx.post(url, json=body, timeout=httpx.Timeout(30, read=0.3))

    try:
        queued_behind_a_slow_call(server, gives_up)
    finally:
        server.stop()


def test_a_malformed_timeout_header_is_a_400_naming_it(server: PredictorProcess) -> None:
    path, body = doors(FAST)["v1"]
    for bad in ("soon", "0", "-1", "inf"):
        answer = httpx.post(server.http_url + path, json=body, headers={"X-Request-Timeout": bad}, timeout=30)
        assert answer.status_code == 400 and "X-Request-Timeout" in answer.json()["error"], bad


def test_the_server_wide_deadline_applies_to_grpc_with_our_message(model_dir: Path, tmp_path: Path) -> None:
    process = serve(model_dir, tmp_path, "--request_timeout_s", "0.3")
    try:
        with stub(process.grpc_target) as client, pytest.raises(grpc.RpcError) as failure:
            client.ModelInfer(infer_request(NAME, [list(SLOW.values())]), timeout=30)  # the caller would wait 30 s
        assert failure.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert "deadline of 0.3 s" in (failure.value.details() or "")
        assert counted(process, "deadline_exceeded") == 1
    finally:
        process.stop()


def test_past_max_concurrency_a_worker_sheds_at_once_with_retry_after(model_dir: Path, tmp_path: Path) -> None:
    process = serve(model_dir, tmp_path, "--max_concurrency", "1")
    try:
        path, slow_body = doors(SLOW)["v1"]
        _, fast_body = doors(FAST)["v1"]
        slow_status: list[int] = []
        slow = threading.Thread(
            target=lambda: slow_status.append(
                httpx.post(process.http_url + path, json=slow_body, timeout=60).status_code
            )
        )
        slow.start()
        # The slow call is the server's first model call, so it computes on the model's thread (the micro-batcher
        # has measured nothing yet) and the event loop stays free to turn the next calls away.
        wait_until(lambda: sample_total(process, "model_batch_rows_count") == 1, 30, 0.05, "the slow call started")
        shed: list[httpx.Response] = []

        def shed_one() -> bool:  # while the slow call holds the one place, a second call is turned away
            answer = httpx.post(process.http_url + path, json=fast_body, timeout=30)
            if answer.status_code == 503:
                shed.append(answer)
            return bool(shed) or not slow.is_alive()

        wait_until(shed_one, 30, 0.05, "a call shed while the slow one is in flight")
        slow.join(timeout=60)
        assert shed, "the slow call finished before a second call could be shed"
        assert shed[0].headers["retry-after"] == "1"
        assert "--max_concurrency 1" in shed[0].json()["error"]
        assert slow_status == [200]
        assert httpx.post(process.http_url + path, json=fast_body, timeout=30).status_code == 200
        assert counted(process, "overloaded") >= 1
    finally:
        process.stop()
