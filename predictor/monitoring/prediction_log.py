"""Prediction log for drift monitoring: every (sampled) prediction to an append-only JSON Lines sink.

``PredictionLog.record()`` is on the request path: it makes the sampling decision and puts the record
on a bounded queue, and nothing else — it never blocks and never raises. One background thread
drains the queue, serializes with orjson and appends in batches. Whatever cannot be logged (queue
full, recorded after ``close()``, unserializable record, write error) is reported through
``on_drop(n)``, ``n`` counting records (requests), so a metric can count it; write errors are also
logged at most once a minute. ``close()`` on graceful shutdown drains the queue, so nothing
accepted is lost.

The sink is a file path (parent directories created, opened for append) or ``-`` for stdout, where
the cluster's log collector picks the lines up. It is opened by the writer on its first batch, so a
bad path never fails the server start or a request: it shows up as drops and a logged error.

Line format — one line per predicted ROW (a request of N rows writes N lines), keys in this order::

    {"ts": "2024-05-01T12:00:00.123Z", "request_id": "4f1c…", "row": 0,
     "model_name": "pm-classifier", "model_version": "3", "protocol": "v2",
     "entity_id": "pump-17", "features": {"temperature": 81.2, "vibration": 0.43},
     "prediction": 1, "probabilities": [0.12, 0.88], "filled": ["vibration"]}

- ``ts``: when the prediction was made (UTC, ISO-8601, milliseconds).
- ``request_id`` + ``row``: identify the row; ``row`` is its 0-based index in the request.
- ``protocol``: ``v1``, ``v2`` or ``grpc``.
- ``entity_id``: the id whose features were looked up in the feature store, else ``null``.
- ``features``: feature name → the value the model saw (after filling); NaN/±Infinity are ``null``.
- ``prediction``: the model output for the row (a number or a label).
- ``probabilities``: class probabilities, in the model's class order; absent if not computed.
- ``filled``: features the missing-feature policy filled in for this row; absent if none.
- ``trace_id``: the request's OpenTelemetry trace (32 hex digits) when tracing is on; absent otherwise.

With ``--shadow_model_uri``, the shadow model's answer to a request follows as its own lines (written when the
shadow has scored it, after the live response), one per row, with the live line's ``request_id`` and ``row``::

    {"ts": "…", "request_id": "4f1c…", "row": 0, "model_name": "pm-classifier", "model_version": "3",
     "protocol": "shadow", "shadow_version": "4", "prediction": 0, "probabilities": [0.61, 0.39]}

Lines are written whole and in the order records were accepted; the file is flushed when the
queue runs dry and at least every ``flush_interval_s`` under sustained load.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import random
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt
import orjson

log = logging.getLogger(__name__)

STDOUT = "-"
_MAX_BATCH = 256  # records per write; bounds the writer's memory, not its throughput
_LOG_EVERY_S = 60.0


@dataclass(frozen=True, eq=False)  # eq=False: comparing numpy arrays with == is not a bool
class PredictionRecord:
    """One request's predictions. The arrays are read later, on the writer thread: don't mutate them."""

    request_id: str
    timestamp: float  # epoch seconds
    model_name: str
    model_version: str
    protocol: str  # "v1" | "v2" | "grpc"
    feature_names: tuple[str, ...]
    features: npt.NDArray[np.float64]  # [N, F]
    predictions: npt.NDArray[Any]  # [N]
    probabilities: npt.NDArray[np.float64] | None = None  # [N, C]
    entity_ids: Sequence[str | None] | None = None  # [N]
    filled: Mapping[int, Sequence[str]] = field(default_factory=dict)  # row -> features filled
    trace_id: str | None = None  # the request's OpenTelemetry trace, when tracing is on


@dataclass(frozen=True, eq=False)
class ShadowRecord:
    """The shadow model's answer to one live request (``request_id``), written beside the live lines."""

    request_id: str
    timestamp: float
    model_name: str
    model_version: str  # the live version the request was answered by
    shadow_version: str
    predictions: npt.NDArray[Any]  # [N]
    probabilities: npt.NDArray[np.float64]  # [N, C]


def encode(entry: PredictionRecord | ShadowRecord) -> bytes:
    """The JSON Lines of one record, one line per row (the format in the module docstring)."""
    lines = _shadow_lines(entry) if isinstance(entry, ShadowRecord) else _lines(entry)
    return b"".join(orjson.dumps(line, default=str, option=orjson.OPT_APPEND_NEWLINE) for line in lines)


def _shadow_lines(entry: ShadowRecord) -> Iterator[dict[str, Any]]:
    ts = _iso_utc_ms(entry.timestamp)
    rows = zip(entry.predictions.tolist(), entry.probabilities.tolist(), strict=True)
    for row, (prediction, probabilities) in enumerate(rows):
        yield {
            "ts": ts,
            "request_id": entry.request_id,
            "row": row,
            "model_name": entry.model_name,
            "model_version": entry.model_version,
            "protocol": "shadow",
            "shadow_version": entry.shadow_version,
            "prediction": prediction,
            "probabilities": probabilities,
        }


def _lines(entry: PredictionRecord) -> Iterator[dict[str, Any]]:
    ts = _iso_utc_ms(entry.timestamp)
    probabilities = entry.probabilities.tolist() if entry.probabilities is not None else None
    rows = zip(entry.features.tolist(), entry.predictions.tolist(), strict=True)
    for row, (values, prediction) in enumerate(rows):
        line: dict[str, Any] = {
            "ts": ts,
            "request_id": entry.request_id,
            "row": row,
            "model_name": entry.model_name,
            "model_version": entry.model_version,
            "protocol": entry.protocol,
            "entity_id": entry.entity_ids[row] if entry.entity_ids is not None else None,
            "features": dict(zip(entry.feature_names, values, strict=True)),
            "prediction": prediction,
        }
        if probabilities is not None:
            line["probabilities"] = probabilities[row]
        if filled := entry.filled.get(row):
            line["filled"] = list(filled)
        if entry.trace_id is not None:
            line["trace_id"] = entry.trace_id
        yield line


def _iso_utc_ms(epoch_s: float) -> str:
    seconds, ms = divmod(round(epoch_s * 1000), 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{ms:03d}Z"


class _EveryMinute:
    """Logs an error at most once per ``_LOG_EVERY_S``, saying how many were suppressed meanwhile."""

    def __init__(self, message: str) -> None:
        self._message = message
        self._last = -_LOG_EVERY_S
        self._suppressed = 0

    def report(self, cause: object) -> None:
        now = time.monotonic()
        if now - self._last < _LOG_EVERY_S:
            self._suppressed += 1
            return
        log.error("%s (%d more since the last report): %s", self._message, self._suppressed, cause)
        self._last, self._suppressed = now, 0


class PredictionLog:
    """Append-only JSON Lines prediction log, written off the request path (see the module docstring).

    ``on_drop`` is called from request threads and from the writer thread: it must be thread-safe
    (a Prometheus counter's ``inc`` is). The writer is a daemon thread: call ``close()`` on shutdown.
    """

    def __init__(
        self,
        sink: str,
        sample_rate: float = 1.0,
        queue_size: int = 10_000,
        on_drop: Callable[[int], None] = lambda n: None,
        flush_interval_s: float = 0.5,
        rng: random.Random | None = None,
    ) -> None:
        if not 0.0 <= sample_rate <= 1.0:
            raise ValueError(f"sample_rate must be in [0, 1], got {sample_rate}")
        if queue_size < 1:  # queue.Queue(0) would be unbounded
            raise ValueError(f"queue_size must be at least 1, got {queue_size}")
        self._sink = sink
        self._sample_rate = sample_rate
        self._on_drop = on_drop
        self._flush_interval_s = flush_interval_s
        self._rng = rng or random.Random()
        self._queue: queue.Queue[PredictionRecord | ShadowRecord | None] = queue.Queue(queue_size)  # None: stop
        self._lock = threading.Lock()  # makes "not closed, so enqueue" atomic against close()
        self._closed = False
        self._stream: IO[bytes] | None = None
        self._unflushed = 0  # records written to the stream's buffer since the last flush
        self._next_flush = 0.0
        self._full = _EveryMinute("prediction log: queue full, records dropped")
        self._failed = _EveryMinute("prediction log: records not written, dropped")
        self._broken = _EveryMinute("prediction log: record() failed, records dropped")
        self._writer = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._writer.start()

    def record(self, entry: PredictionRecord | ShadowRecord, sampled: bool = False) -> None:
        """Queue ``entry`` if sampled (``sampled``: already chosen elsewhere, e.g. by the shadow's own rate);
        never blocks, never raises. Full or closed → ``on_drop(1)``."""
        try:
            if not sampled and self._rng.random() >= self._sample_rate:
                return
            with self._lock:
                if not self._closed:
                    self._queue.put_nowait(entry)
                    return
            self._drop(1)
        except queue.Full:
            self._full.report(f"queue_size={self._queue.maxsize}")
            self._drop(1)
        except Exception as exc:  # the request must succeed whatever happens here
            self._broken.report(repr(exc))
            self._drop(1)

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop accepting, write everything queued, flush and close the sink. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        deadline = time.monotonic() + timeout_s
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=timeout_s)  # behind every accepted record
        self._writer.join(max(0.0, deadline - time.monotonic()))
        if self._writer.is_alive():
            log.error(
                "prediction log: writer did not finish within %.1f s; about %d records lost",
                timeout_s,
                self._queue.qsize(),
            )

    # The writer thread.

    def _run(self) -> None:
        stop = False
        while not stop:
            batch, stop = self._take()
            if batch:
                self._write(batch)
        self._close_stream()

    def _take(self) -> tuple[list[PredictionRecord | ShadowRecord], bool]:
        """Wait for one record, then take whatever else is queued, up to a batch; True on stop."""
        batch: list[PredictionRecord | ShadowRecord] = []
        item = self._queue.get()
        while item is not None:
            batch.append(item)
            if len(batch) >= _MAX_BATCH:
                return batch, False
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return batch, False
        return batch, True

    def _write(self, batch: list[PredictionRecord | ShadowRecord]) -> None:
        payload, count = self._encode(batch)
        if not count:
            return
        self._unflushed += count
        try:
            stream = self._open()
            stream.write(payload)
            if self._queue.empty() or time.monotonic() >= self._next_flush:
                self._flush(stream)
        except Exception as exc:  # disk full, bad path, closed stdout...: drop, keep the thread alive
            self._failed.report(repr(exc))
            self._drop(self._unflushed)  # what sat in the buffer is as lost as this batch
            self._unflushed = 0
            self._discard_stream()

    def _encode(self, batch: list[PredictionRecord | ShadowRecord]) -> tuple[bytes, int]:
        """The batch's lines and how many records they hold; a record that fails is dropped alone."""
        chunks = []
        for entry in batch:
            try:
                chunks.append(encode(entry))
            except Exception as exc:
                self._failed.report(repr(exc))
                self._drop(1)
        return b"".join(chunks), len(chunks)

    def _open(self) -> IO[bytes]:
        if self._stream is None:
            if self._sink == STDOUT:
                self._stream = sys.stdout.buffer
            else:
                path = Path(self._sink)
                path.parent.mkdir(parents=True, exist_ok=True)
                self._stream = path.open("ab")
            self._next_flush = time.monotonic() + self._flush_interval_s
        return self._stream

    def _flush(self, stream: IO[bytes]) -> None:
        stream.flush()
        self._unflushed = 0
        self._next_flush = time.monotonic() + self._flush_interval_s

    def _close_stream(self) -> None:
        if self._stream is None:
            return
        try:
            self._flush(self._stream)
        except Exception as exc:
            self._failed.report(repr(exc))
            self._drop(self._unflushed)
        self._discard_stream()

    def _discard_stream(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None and self._sink != STDOUT:  # stdout is not ours to close
            with contextlib.suppress(Exception):  # its buffer was already counted as dropped
                stream.close()

    def _drop(self, count: int) -> None:
        if not count:
            return
        try:
            self._on_drop(count)
        except Exception:
            log.exception("prediction log: on_drop callback failed")
