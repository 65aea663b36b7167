"""Shadow scoring: a challenger model scores (a sample of) live requests after the live answer, off the live path.

``ShadowScorer.submit(rows, live_predictions, live_probabilities, request_id)`` is called after the live
response is sent; it makes the sampling decision and puts a reference on a bounded queue — it never blocks
and never raises (a full queue drops the request and counts it). One worker thread gathers the queued requests
into a ``ShadowBatch`` and has it scored — ``compare`` with the shadow model's ``predict`` (rows → probabilities
``[N, C]`` in ``classes`` order) on this thread, or, in the server, the same ``compare`` in the challenger's own
low-priority process (``shadow_process.py``) — and records, labelled ``{model_name, model_version, shadow_version}``:

- ``model_shadow_predictions_total``: rows scored;
- ``model_shadow_agreement_ratio``: share of the last ``agreement_rows`` rows where both predict the same class;
- ``model_shadow_probability_difference``: per row, the largest ``|p_shadow − p_live|`` over the classes both
  models know (when the live probabilities are given);
- ``model_shadow_latency_seconds``: one shadow call (the stacked rows of the requests gathered for it: the worker
  waits ``GATHER_S`` after the first, so that one call serves many requests);
- ``model_shadow_errors_total``: calls that raised or answered an unusable shape — a failing shadow model
  never reaches the live caller;
- ``model_shadow_dropped_total``: requests dropped because the queue was full, or shed because the live path was
  saturated: with ``busy`` given, each pass asks it, and while it is true ``submit`` queues only every
  ``BUSY_KEEP_EVERY``-th request (deciding that per request in ``submit``, not in the worker: the queue
  traffic of every request, not the challenger's work, was what cost the live path most).

``on_result(ShadowResult)``, if given, receives each answer (e.g. to write it to the prediction log beside the
live one, keyed by ``request_id``); it runs on the worker, and its failures are logged, not raised.
"""

from __future__ import annotations

import contextlib
import functools
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
from predictor.monitoring.handoff import Handoff

log = logging.getLogger(__name__)

_STOP = object()
_LOG_EVERY_S = 60.0
# The worker lets requests gather this long before a pass, then scores all of them in one model call: one call per
# request would cost the live path (same cores, same GIL) far more than one per ~hundred requests.
GATHER_S = 0.05
# While the serving process is busy (``busy()``), one request in this many is scored: the series keep
# growing, and the live path keeps ~95% of what the challenger would have taken from it.
BUSY_KEEP_EVERY = 20
SHEDDING_CHECK_S = 0.25


@dataclass(frozen=True, eq=False)
class ShadowResult:
    request_id: str
    predictions: npt.NDArray[Any]  # [N] shadow's class labels
    probabilities: npt.NDArray[np.float64]  # [N, C] in the shadow's ``classes`` order
    latency_s: float


@dataclass(frozen=True, eq=False)
class ShadowBatch:
    """One pass of the worker: the rows of every request gathered, stacked, with what the live model answered."""

    rows: npt.NDArray[Any]  # [N, F]
    live: npt.NDArray[Any]  # [N] the live model's labels
    # (start, end, live probabilities [end-start, C'], their classes or None for the shadow's) per request that
    # came with probabilities; consecutive requests with the same classes are merged into one piece
    live_probabilities: list[tuple[int, int, npt.NDArray[np.float64], Sequence[Any] | None]]

    @classmethod
    def of(cls, requests: list[tuple[Any, ...]]) -> ShadowBatch:
        """``requests``: (rows, live predictions, live probabilities or None, request id, live classes or None)."""
        rows = [np.asarray(request[0]) for request in requests]
        lives = [np.asarray(request[1]).ravel() for request in requests]
        if any(len(live) != len(part) for live, part in zip(lives, rows, strict=True)):
            raise ValueError("a live answer does not match its rows")
        runs: list[tuple[int, int, list[npt.NDArray[np.float64]], Sequence[Any] | None]] = []
        start = 0
        for part, request in zip(rows, requests, strict=True):
            end, probabilities, classes = start + len(part), request[2], request[4]
            if probabilities is not None:
                if runs and runs[-1][1] == start and _same_classes(runs[-1][3], classes):
                    runs[-1][2].append(probabilities)
                    runs[-1] = (runs[-1][0], end, runs[-1][2], classes)
                else:
                    runs.append((start, end, [probabilities], classes))
            start = end
        pieces = [(first, end, np.concatenate(parts, dtype=np.float64), names) for first, end, parts, names in runs]
        return cls(np.concatenate(rows), np.concatenate(lives), pieces)


@dataclass(frozen=True, eq=False)
class Comparison:
    """What the challenger answered for a ``ShadowBatch``, and how it compares with the live answers."""

    predicted: npt.NDArray[Any]  # [N] the challenger's labels
    probabilities: npt.NDArray[np.float64]  # [N, C] in the challenger's ``classes`` order
    agree: npt.NDArray[np.int8]  # [N] 1 where both predict the same class
    gaps: npt.NDArray[np.float64]  # per row with live probabilities: max |p_shadow - p_live| over shared classes
    latency_s: float  # the challenger's call


def compare(predict: Callable[[Any], Any], classes: Sequence[Any], batch: ShadowBatch) -> Comparison:
    """Score ``batch`` with the challenger (``predict``: rows -> probabilities in ``classes`` order) and compare.

    Pure: it runs wherever the challenger is (its own process, see ``shadow_process.py``, or a thread)."""
    started = time.perf_counter()
    answer = np.asarray(predict(batch.rows), dtype=np.float64)
    latency = time.perf_counter() - started
    if answer.shape != (len(batch.rows), len(classes)):
        raise ValueError(f"shadow answered shape {answer.shape}, expected {(len(batch.rows), len(classes))}")
    predicted = np.asarray(classes, dtype=object)[answer.argmax(axis=1)]
    agree = np.array([_same(a, b) for a, b in zip(predicted, batch.live, strict=True)], dtype=np.int8)
    gaps = [
        _probability_gap(answer[start:end], list(classes), live, live_classes)
        for start, end, live, live_classes in batch.live_probabilities
    ]
    return Comparison(predicted, answer, agree, np.concatenate(gaps) if gaps else np.zeros(0), latency)


class ShadowScorer:
    def __init__(
        self,
        predict: Callable[[Any], Any] | None,
        classes: Sequence[Any],
        model_name: str,
        model_version: str,
        shadow_version: str,
        metrics: ShadowMetrics,
        sample_rate: float = 1.0,
        agreement_rows: int = 2000,
        queue_requests: int = 1000,
        on_result: Callable[[ShadowResult], None] | None = None,
        score: Callable[[ShadowBatch], Comparison] | None = None,
        busy: Callable[[], bool] | None = None,
    ) -> None:
        """``predict`` (rows -> probabilities) is called on this scorer's thread; ``score`` instead hands the
        whole comparison to the challenger's own process (``shadow_process.ShadowProcess.score``)."""
        if score is None:
            if predict is None:
                raise ValueError("a ShadowScorer needs the challenger's predict or score")
            score = functools.partial(compare, predict, list(classes))
        self._score = score
        self._busy = busy
        self._shedding = False
        self._seen_while_busy = 0  # requests submit() saw while shedding (written by the caller's thread only)
        self._seen_counted = 0
        self.shed_requests = 0
        self.classes = list(classes)
        self._labels = (model_name, model_version, shadow_version)
        self._metrics = metrics
        self._children = _Children(metrics, self._labels)
        self.sample_rate = sample_rate
        self._on_result = on_result
        self._queue = Handoff(queue_requests, poll_s=GATHER_S)
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
        live_classes: Sequence[Any] | npt.NDArray[Any] | None = None,
    ) -> None:
        """Queue one live request for the shadow model (``live_classes``: the column order of
        ``live_probabilities``, default the shadow's). Never blocks, never raises."""
        if self._shedding:  # decided by the worker once per pass: one comparison here, no queue traffic
            self._seen_while_busy += 1
            if self._seen_while_busy % BUSY_KEEP_EVERY:
                return
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
            # a pass at least every quarter second: shedding ends, and what it shed is counted, even when the
            # traffic that made the process busy stops (no kept request would arrive to start a pass)
            items = self._queue.take(timeout_s=SHEDDING_CHECK_S, gather_s=GATHER_S)
            self._update_shedding()
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

    def _update_shedding(self) -> None:
        """Once per pass: is the live path saturated (``busy``)? And count what ``submit`` shed meanwhile (only
        the event loop's thread writes ``_seen_while_busy``: the worker reads it and keeps its own tally)."""
        seen = self._seen_while_busy
        shed = (seen - self._seen_counted) - (seen // BUSY_KEEP_EVERY - self._seen_counted // BUSY_KEEP_EVERY)
        self._seen_counted = seen
        if shed:
            with self._lock:
                self.dropped_requests += shed
                self.shed_requests += shed
            self._children.dropped.inc(shed)
        self._shedding = self._busy is not None and self._busy()

    def _score_all(self, requests: list[tuple[Any, ...]]) -> None:
        """One challenger call for every request gathered (their rows stacked), and the bookkeeping once per pass."""
        try:
            batch = ShadowBatch.of(requests)
            outcome = self._score(batch)
        except Exception as exc:  # the shadow model's own failure: counted per request, logged at most once a minute
            self._failed(len(requests), requests[0][3], exc)
            return
        self._children.latency.observe(outcome.latency_s)
        histogram = self._children.probability_gap
        for value in outcome.gaps.tolist():
            histogram.observe(value)
        with self._lock:
            self._add_agreement(outcome.agree)
            self.scored_rows += len(outcome.agree)
            ratio = self._agreement()
        self._children.predictions.inc(len(outcome.agree))
        self._children.agreement.set(ratio)
        if self._on_result is not None:
            start = 0
            for request in requests:
                end, request_id = start + len(request[0]), request[3]
                result = ShadowResult(
                    request_id, outcome.predicted[start:end], outcome.probabilities[start:end], outcome.latency_s
                )
                try:
                    self._on_result(result)
                except Exception:  # a boundary: the caller's hook must not stop the worker
                    log.exception("shadow: on_result failed for request %s", request_id)
                start = end

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
                "shed_requests": self.shed_requests,  # of those, dropped because the live path was saturated
            }

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until every request queued so far has been scored (tests; before a swap)."""
        reached = threading.Event()
        self._queue.put_control(reached)
        return reached.wait(timeout_s)

    def close(self) -> None:
        """Stop the worker (what is queued is scored first) and remove the agreement series."""
        self._queue.put_control(_STOP)
        self._worker.join(timeout=5)
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
