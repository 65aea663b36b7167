"""Shadow scoring: a challenger model scores (a sample of) live requests after the live answer, on its own thread.

``ShadowScorer.submit(rows, live_predictions, live_probabilities, request_id)`` is called after the live
response is sent; it makes the sampling decision and puts a reference on a bounded queue — it never blocks
and never raises (a full queue drops the request and counts it). One worker thread calls the shadow model's
``predict`` (rows → probabilities ``[N, C]`` in ``classes`` order, the same callable shape as the live model's)
and records, labelled ``{model_name, model_version, shadow_version}``:

- ``model_shadow_predictions_total``: rows scored;
- ``model_shadow_agreement_ratio``: share of the last ``agreement_rows`` rows where both predict the same class;
- ``model_shadow_probability_difference``: per row, the largest ``|p_shadow − p_live|`` over the classes both
  models know (when the live probabilities are given);
- ``model_shadow_latency_seconds``: one shadow call (the stacked rows of the requests gathered for it: the worker
  waits ``GATHER_S`` after the first, so that one call serves many requests);
- ``model_shadow_errors_total``: calls that raised or answered an unusable shape — a failing shadow model
  never reaches the live caller;
- ``model_shadow_dropped_total``: requests dropped because the queue was full.

``on_result(ShadowResult)``, if given, receives each answer (e.g. to write it to the prediction log beside the
live one, keyed by ``request_id``); it runs on the worker, and its failures are logged, not raised.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from predictor.metrics import ShadowMetrics

log = logging.getLogger(__name__)

_STOP = object()
_LOG_EVERY_S = 60.0
# The worker lets requests gather this long before a pass, then scores all of them in one model call: one call per
# request would cost the live path (same cores, same GIL) far more than one per ~hundred requests.
GATHER_S = 0.05


@dataclass(frozen=True, eq=False)
class ShadowResult:
    request_id: str
    predictions: npt.NDArray[Any]  # [N] shadow's class labels
    probabilities: npt.NDArray[np.float64]  # [N, C] in the shadow's ``classes`` order
    latency_s: float


class ShadowScorer:
    def __init__(
        self,
        predict: Callable[[Any], Any],
        classes: Sequence[Any],
        model_name: str,
        model_version: str,
        shadow_version: str,
        metrics: ShadowMetrics,
        sample_rate: float = 1.0,
        agreement_rows: int = 2000,
        queue_requests: int = 1000,
        on_result: Callable[[ShadowResult], None] | None = None,
    ) -> None:
        self._predict = predict
        self.classes = list(classes)
        self._labels = (model_name, model_version, shadow_version)
        self._metrics = metrics
        self._children = _Children(metrics, self._labels)
        self.sample_rate = sample_rate
        self._on_result = on_result
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_requests)
        self._agree = np.zeros(agreement_rows, dtype=np.int8)
        self._agree_filled = 0
        self._agree_next = 0
        self._lock = threading.Lock()
        self.scored_rows = 0
        self.errors = 0
        self.dropped_requests = 0
        self._last_error_log = -_LOG_EVERY_S
        self._worker = threading.Thread(target=self._run, name=f"shadow-{shadow_version}", daemon=True)
        self._worker.start()

    def submit(
        self,
        rows: Any,
        live_predictions: Any,
        live_probabilities: npt.NDArray[np.float64] | None,
        request_id: str,
        live_classes: Sequence[Any] | None = None,
    ) -> None:
        """Queue one live request for the shadow model (``live_classes``: the column order of
        ``live_probabilities``, default the shadow's). Never blocks, never raises."""
        try:
            if self.sample_rate < 1.0 and random.random() >= self.sample_rate:
                return
            self._queue.put_nowait((rows, live_predictions, live_probabilities, request_id, live_classes))
        except queue.Full:
            with self._lock:
                self.dropped_requests += 1
            self._children.dropped.inc()
        except Exception:  # a boundary: the live request must never fail because of the shadow
            log.exception("shadow: could not queue request %s", request_id)

    def _run(self) -> None:
        while True:
            items = [self._queue.get()]
            if items[0] is not _STOP and not isinstance(items[0], threading.Event):
                time.sleep(GATHER_S)
            while True:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            requests = [item for item in items if isinstance(item, tuple)]
            if requests:
                try:
                    self._score_all(requests)
                except Exception:  # a boundary: the worker outlives any one pass
                    log.exception("shadow: recording %d requests failed", len(requests))
            for item in items:
                if isinstance(item, threading.Event):
                    item.set()
            if any(item is _STOP for item in items):
                return

    def _score_all(self, requests: list[tuple[Any, ...]]) -> None:
        """One model call for every request gathered (their rows stacked), and the bookkeeping once per pass."""
        started = time.perf_counter()
        try:
            stacked = np.concatenate([np.asarray(request[0]) for request in requests])
            answer = np.asarray(self._predict(stacked), dtype=np.float64)
            if answer.shape != (len(stacked), len(self.classes)):
                raise ValueError(f"shadow answered shape {answer.shape}, expected {(len(stacked), len(self.classes))}")
        except Exception as exc:  # the shadow model's own failure: counted per request, logged at most once a minute
            self._failed(len(requests), requests[0][3], exc)
            return
        latency = time.perf_counter() - started
        self._children.latency.observe(latency)
        lives = [np.asarray(request[1]).ravel() for request in requests]
        if any(len(live) != len(request[0]) for live, request in zip(lives, requests, strict=True)):
            self._failed(len(requests), requests[0][3], ValueError("a live answer does not match its rows"))
            return
        live = np.concatenate(lives)
        predicted = np.asarray(self.classes, dtype=object)[answer.argmax(axis=1)]
        agree = np.array([_same(a, b) for a, b in zip(predicted, live, strict=True)], dtype=np.int8)
        self._observe_gaps(answer, requests)
        with self._lock:
            self._add_agreement(agree)
            self.scored_rows += len(live)
            ratio = self._agreement()
        self._children.predictions.inc(len(live))
        self._children.agreement.set(ratio)
        if self._on_result is not None:
            start = 0
            for request in requests:
                count = len(request[0])
                end, request_id = start + count, request[3]
                try:
                    self._on_result(ShadowResult(request_id, predicted[start:end], answer[start:end], latency))
                except Exception:  # a boundary: the caller's hook must not stop the worker
                    log.exception("shadow: on_result failed for request %s", request_id)
                start = end

    def _observe_gaps(self, answer: npt.NDArray[np.float64], requests: list[tuple[Any, ...]]) -> None:
        """The probability-difference histogram, for the requests that came with live probabilities."""
        start, pieces = 0, []
        for rows, _, live_probabilities, _, live_classes in requests:
            end = start + len(rows)
            if live_probabilities is not None:
                pieces.append((answer[start:end], np.asarray(live_probabilities), live_classes))
            start = end
        if not pieces:
            return
        histogram = self._children.probability_gap
        # one call when every request names the same live classes (the same live version): the usual case
        if all(_same_classes(piece[2], pieces[0][2]) for piece in pieces):
            shadow = np.concatenate([piece[0] for piece in pieces])
            live = np.concatenate([piece[1] for piece in pieces])
            gaps = [_probability_gap(shadow, self.classes, live, pieces[0][2])]
        else:
            gaps = [_probability_gap(shadow, self.classes, live, classes) for shadow, live, classes in pieces]
        for gap in gaps:
            for value in gap.tolist():
                histogram.observe(value)

    def _failed(self, requests: int, request_id: str, exc: Exception) -> None:
        self._children.errors.inc(requests)
        with self._lock:
            self.errors += requests
        now = time.monotonic()
        if now - self._last_error_log >= _LOG_EVERY_S:
            self._last_error_log = now
            log.warning("shadow model %s failed on request %s: %r", self._labels[2], request_id, exc)

    def _add_agreement(self, agree: npt.NDArray[np.int8]) -> None:
        size = self._agree.size
        agree = agree[-size:]
        positions = (self._agree_next + np.arange(agree.size)) % size
        self._agree[positions] = agree
        self._agree_filled = min(size, self._agree_filled + agree.size)
        self._agree_next = int((self._agree_next + agree.size) % size)

    def _agreement(self) -> float:
        if self._agree_filled == 0:
            return float("nan")
        return float(self._agree[: self._agree_filled].mean())  # the ring fills from 0, then wraps

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "model_name": self._labels[0],
                "model_version": self._labels[1],
                "shadow_version": self._labels[2],
                "sample_rate": self.sample_rate,
                "scored_rows": self.scored_rows,
                "agreement_ratio": None if self._agree_filled == 0 else round(self._agreement(), 6),
                "agreement_rows": self._agree_filled,
                "errors": self.errors,
                "dropped_requests": self.dropped_requests,
            }

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until every request queued so far has been scored (tests; before a swap)."""
        reached = threading.Event()
        try:
            self._queue.put(reached, timeout=timeout_s)
        except queue.Full:
            return False
        return reached.wait(timeout_s)

    def close(self) -> None:
        """Stop the worker (what is queued is scored first) and remove the agreement series."""
        try:
            self._queue.put(_STOP, timeout=5)
            self._worker.join(timeout=5)
        except queue.Full:
            log.warning("shadow: worker of %s did not stop (queue full)", self._labels[2])
        with contextlib.suppress(KeyError):
            self._metrics.agreement.remove(*self._labels)


class _Children:
    """The labelled series of one (model, live version, shadow version): ``labels()`` costs a lookup, once here."""

    def __init__(self, metrics: ShadowMetrics, labels: tuple[str, str, str]) -> None:
        self.predictions = metrics.predictions.labels(*labels)
        self.agreement = metrics.agreement.labels(*labels)
        self.probability_gap = metrics.probability_gap.labels(*labels)
        self.latency = metrics.latency.labels(*labels)
        self.errors = metrics.errors.labels(*labels)
        self.dropped = metrics.dropped.labels(*labels)


def _same_classes(a: Sequence[Any] | None, b: Sequence[Any] | None) -> bool:
    return a is b or (a is not None and b is not None and [str(c) for c in a] == [str(c) for c in b])


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float, np.number)) and isinstance(b, (int, float, np.number)):
        return bool(a == b)
    return str(a) == str(b)


def _probability_gap(
    shadow: npt.NDArray[np.float64],
    shadow_classes: list[Any],
    live: npt.NDArray[np.float64],
    live_classes: Sequence[Any] | None,
) -> npt.NDArray[np.float64]:
    """Per row, max over the classes both models know of |p_shadow − p_live|."""
    if live_classes is None:
        if live.shape != shadow.shape:
            return np.zeros(0)
        return np.asarray(np.abs(shadow - live).max(axis=1), dtype=np.float64)
    live_index = {str(c): i for i, c in enumerate(live_classes)}
    pairs = [(i, live_index[str(c)]) for i, c in enumerate(shadow_classes) if str(c) in live_index]
    if not pairs:
        return np.zeros(0)
    shadow_columns, live_columns = zip(*pairs, strict=True)
    return np.asarray(np.abs(shadow[:, list(shadow_columns)] - live[:, list(live_columns)]).max(axis=1), np.float64)
