"""The prediction log: exactly the accepted rows reach the sink, and the request path never blocks or fails."""

from __future__ import annotations

import json
import logging
import random
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from predictor.monitoring import prediction_log
from predictor.monitoring.prediction_log import PredictionLog, PredictionRecord
from tests.servers import wait_until

NAMES = ("temperature", "vibration", "pressure")
WAIT_S = 10.0  # upper bound for waiting on the writer thread; a correct run takes milliseconds


def make_record(request_id: str = "req-1", rows: int = 2, **overrides: Any) -> PredictionRecord:
    fields: dict[str, Any] = {
        "request_id": request_id,
        "timestamp": 1714564800.1234,
        "model_name": "pm-classifier",
        "model_version": "3",
        "protocol": "v2",
        "feature_names": NAMES,
        "features": np.arange(rows * len(NAMES), dtype=np.float64).reshape(rows, len(NAMES)),
        "predictions": np.arange(rows) % 2,
        **overrides,
    }
    return PredictionRecord(**fields)


def read_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


class Drops:
    """An ``on_drop`` that counts, as the Prometheus counter will."""

    def __init__(self) -> None:
        self.total = 0
        self._lock = threading.Lock()

    def __call__(self, n: int) -> None:
        with self._lock:
            self.total += n


def test_file_holds_exactly_the_recorded_rows(tmp_path: Path) -> None:
    sink = tmp_path / "nested" / "dir" / "predictions.jsonl"
    log = PredictionLog(str(sink))
    log.record(
        make_record(
            "req-1",
            rows=2,
            probabilities=np.array([[0.9, 0.1], [0.25, 0.75]]),
            entity_ids=["pump-1", None],
            filled={1: ["vibration"]},
            protocol="v1",
        )
    )
    log.record(make_record("req-2", rows=1, features=np.array([[1.5, float("nan"), -2.0]])))
    log.close()

    lines = read_lines(sink)
    assert len(lines) == 3
    assert lines[0] == {
        "ts": "2024-05-01T12:00:00.123Z",
        "request_id": "req-1",
        "row": 0,
        "model_name": "pm-classifier",
        "model_version": "3",
        "protocol": "v1",
        "entity_id": "pump-1",
        "features": {"temperature": 0.0, "vibration": 1.0, "pressure": 2.0},
        "prediction": 0,
        "probabilities": [0.9, 0.1],
    }
    assert lines[1]["row"] == 1 and lines[1]["entity_id"] is None
    assert lines[1]["features"] == {"temperature": 3.0, "vibration": 4.0, "pressure": 5.0}
    assert lines[1]["prediction"] == 1 and lines[1]["probabilities"] == [0.25, 0.75]
    assert lines[1]["filled"] == ["vibration"]
    assert lines[2] == {
        "ts": "2024-05-01T12:00:00.123Z",
        "request_id": "req-2",
        "row": 0,
        "model_name": "pm-classifier",
        "model_version": "3",
        "protocol": "v2",
        "entity_id": None,
        "features": {"temperature": 1.5, "vibration": None, "pressure": -2.0},
        "prediction": 0,
    }


def test_appends_to_an_existing_file(tmp_path: Path) -> None:
    sink = tmp_path / "predictions.jsonl"
    sink.write_text('{"earlier": true}\n')
    log = PredictionLog(str(sink))
    log.record(make_record(rows=1))
    log.close()
    assert [line.get("earlier") for line in read_lines(sink)] == [True, None]


def test_rows_reach_the_file_without_close(tmp_path: Path) -> None:
    sink = tmp_path / "predictions.jsonl"
    log = PredictionLog(str(sink), flush_interval_s=0.05)
    log.record(make_record(rows=3))
    wait_until(lambda: sink.exists() and len(sink.read_text().splitlines()) == 3, WAIT_S, 0.01, "the writer's flush")
    log.close()


@pytest.mark.parametrize(("rate", "expected"), [(0.0, 0), (1.0, 200)])
def test_sampling_extremes(tmp_path: Path, rate: float, expected: int) -> None:
    sink = tmp_path / "predictions.jsonl"
    log = PredictionLog(str(sink), sample_rate=rate)
    for i in range(200):
        log.record(make_record(f"req-{i}", rows=1))
    log.close()
    assert (len(read_lines(sink)) if sink.exists() else 0) == expected


def test_sampling_is_per_request_and_follows_the_rng(tmp_path: Path) -> None:
    reference = random.Random(7)
    expected = sum(reference.random() < 0.5 for _ in range(200))
    counts = []
    for run in range(2):
        sink = tmp_path / f"run{run}.jsonl"
        log = PredictionLog(str(sink), sample_rate=0.5, rng=random.Random(7))
        for i in range(200):
            log.record(make_record(f"req-{i}", rows=2))
        log.close()
        lines = read_lines(sink)
        counts.append(len({line["request_id"] for line in lines}))
        assert len(lines) == 2 * counts[-1]  # a sampled request keeps all its rows
    assert counts == [expected, expected]
    assert 0 < expected < 200


@pytest.mark.parametrize("rate", [-0.1, 1.5])
def test_sample_rate_outside_0_1_is_refused(tmp_path: Path, rate: float) -> None:
    with pytest.raises(ValueError, match="sample_rate"):
        PredictionLog(str(tmp_path / "p.jsonl"), sample_rate=rate)


def test_full_queue_drops_and_counts_without_blocking(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    entered, release = threading.Event(), threading.Event()
    encode = prediction_log.encode

    def gated_encode(entry: PredictionRecord) -> bytes:
        if entry.request_id == "held":  # the writer stops here until the test lets it go
            entered.set()
            assert release.wait(WAIT_S)
        return encode(entry)

    monkeypatch.setattr(prediction_log, "encode", gated_encode)
    sink, drops = tmp_path / "predictions.jsonl", Drops()
    log = PredictionLog(str(sink), queue_size=2, on_drop=drops)
    log.record(make_record("held", rows=1))
    assert entered.wait(WAIT_S)  # the writer holds "held"; the queue is empty

    # Recorded from another thread, so that a blocking put shows up as a thread still running, not a hung test.
    caller = threading.Thread(
        target=lambda: [log.record(make_record(request_id, rows=1)) for request_id in ["q1", "q2", "d1", "d2", "d3"]]
    )
    caller.start()
    caller.join(WAIT_S)  # bounded only against a hang: the writer is still held, so nothing can drain meanwhile
    assert not caller.is_alive(), "record() blocked on the full queue"
    assert drops.total == 3 and not release.is_set()  # dropped while the writer was still held
    release.set()
    log.close()
    assert [line["request_id"] for line in read_lines(sink)] == ["held", "q1", "q2"]
    assert drops.total == 3


def test_close_drains_everything_queued_and_is_idempotent(tmp_path: Path) -> None:
    sink, drops = tmp_path / "predictions.jsonl", Drops()
    log = PredictionLog(str(sink), on_drop=drops, flush_interval_s=3600)
    for i in range(2000):
        log.record(make_record(f"req-{i}", rows=2))
    log.close()
    log.close()
    lines = read_lines(sink)
    assert len(lines) == 4000
    assert [line["request_id"] for line in lines[::2]] == [f"req-{i}" for i in range(2000)]
    assert drops.total == 0


def test_records_after_close_are_dropped_and_counted(tmp_path: Path) -> None:
    sink, drops = tmp_path / "predictions.jsonl", Drops()
    log = PredictionLog(str(sink), on_drop=drops)
    log.record(make_record("before", rows=1))
    log.close()
    log.record(make_record("after", rows=1))
    assert drops.total == 1
    assert [line["request_id"] for line in read_lines(sink)] == ["before"]


def test_write_errors_are_counted_logged_once_and_never_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    drops = Drops()
    log = PredictionLog(str(tmp_path), on_drop=drops)  # a directory: every open fails
    with caplog.at_level(logging.ERROR, logger=prediction_log.__name__):
        for i in range(50):
            log.record(make_record(f"req-{i}", rows=1))
        log.close()
    assert drops.total == 50
    errors = [r for r in caplog.records if r.name == prediction_log.__name__]
    assert len(errors) == 1 and "IsADirectoryError" in errors[0].getMessage()


def test_a_malformed_record_is_dropped_alone(tmp_path: Path) -> None:
    sink, drops = tmp_path / "predictions.jsonl", Drops()
    log = PredictionLog(str(sink), on_drop=drops)
    log.record(make_record("good-1", rows=1))
    log.record(make_record("bad", rows=2, predictions=np.array([1])))  # 2 feature rows, 1 prediction
    log.record(make_record("good-2", rows=1))
    log.close()
    assert drops.total == 1
    assert [line["request_id"] for line in read_lines(sink)] == ["good-1", "good-2"]


def test_a_failing_on_drop_does_not_reach_the_caller(tmp_path: Path) -> None:
    def on_drop(n: int) -> None:
        raise RuntimeError("metrics broken")

    log = PredictionLog(str(tmp_path / "p.jsonl"), on_drop=on_drop)
    log.close()
    log.record(make_record())  # dropped: closed; on_drop raises; record() must not


def test_stdout_sink(capsys: pytest.CaptureFixture[str]) -> None:
    log = PredictionLog("-")
    log.record(make_record("req-1", rows=2))
    log.close()
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(line["request_id"], line["row"]) for line in lines] == [("req-1", 0), ("req-1", 1)]
