"""Drift of live traffic against the training baseline: PSI per input column and for the predicted classes.

``DriftMonitor.for_model(model_dir, ...)`` reads the baseline logged with the model (``baseline.py``); a model
without one gets ``None`` and one log line, and exports no drift series. ``observe(rows, predictions)`` is
called by the micro-batcher once per model call (a merged batch, its named outputs): it puts a reference on a
bounded queue and returns (never blocks, never raises; a full queue drops the rows and counts them), so the
live path pays one hand-off per batch, not one per request (``GATHER_S`` says what the worker's passes cost it).
A worker thread bins the rows and keeps the last ``window_rows`` rows (``--drift_window_rows``) as a ring of bin
indices with running counts, so each row costs O(columns) once, and sets

- ``model_feature_drift_psi{model_name, model_version, feature}`` and
- ``model_prediction_drift_psi{model_name, model_version}``

at most once a second (``EXPORT_INTERVAL_S``), once the window holds ``min_rows`` rows. ``snapshot()`` is the JSON of
``GET /admin/drift``; ``close()`` stops the worker and removes the version's series (a hot swap builds a new
monitor for the new version).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from predictor.metrics import DriftMetrics
from predictor.monitoring.baseline import ARTIFACT_NAME, Baseline, ColumnBaseline, psi, read_document
from predictor.monitoring.handoff import Handoff

log = logging.getLogger(__name__)

DEFAULT_WINDOW_ROWS = 2000
ALERT_PSI = 0.2  # the alert's threshold (manifests/components/monitoring); 0.1–0.2 is usually read as "watch"
_STOP = object()
# The gauges are recomputed at most this often (and on flush): PSI over a 2,000-row window moves slowly, and
# Prometheus scrapes every 15-30 s.
EXPORT_INTERVAL_S = 1.0
# After the first batch, the worker waits this long, then bins all that came in one pass. Each pass costs the
# live path more than its own CPU: its NumPy calls release and retake the GIL, and every retake waits for the
# event loop's thread to hand it over. At 1 row @50, side by side, passes every 50 ms cost ~7% of throughput,
# one a second ~2% (the gauges are exported once a second, and Prometheus scrapes every 15-30 s anyway).
GATHER_S = 1.0


class _Window:
    """The last ``size`` values of one column as bin indices, with the count per bin kept up to date."""

    def __init__(self, column: ColumnBaseline, size: int) -> None:
        self.column = column
        self.ring = np.full(size, -1, dtype=np.int64)  # -1: an empty slot
        self.counts = np.zeros(column.bins, dtype=np.int64)
        self.filled = 0
        self.next = 0

    def add(self, bins: npt.NDArray[np.int64]) -> None:
        size = self.ring.size
        bins = bins[-size:]
        positions = (self.next + np.arange(bins.size)) % size
        replaced = self.ring[positions]
        replaced = replaced[replaced >= 0]
        self.counts += np.bincount(bins, minlength=self.column.bins)
        self.counts -= np.bincount(replaced, minlength=self.column.bins)
        self.ring[positions] = bins
        self.filled = min(size, self.filled + bins.size)
        self.next = int((self.next + bins.size) % size)

    def shares(self) -> npt.NDArray[np.float64]:
        return self.counts / max(1, self.filled)

    def psi(self) -> float:
        return psi(self.column.shares, self.shares())


class DriftMonitor:
    def __init__(
        self,
        baseline: Baseline,
        model_name: str,
        model_version: str,
        metrics: DriftMetrics,
        window_rows: int = DEFAULT_WINDOW_ROWS,
        min_rows: int = 100,
        queue_batches: int = 5000,  # model calls (one item each) waiting for a pass: ~5 s at 1 row @1
        input_columns: Sequence[str] | None = None,
        predictions_of: Callable[[Any], Any] | None = None,
    ) -> None:
        """``input_columns``: the order of the columns in the matrices ``observe`` gets (default: the baseline's).
        ``predictions_of``: what ``observe`` is given as predictions → the predicted labels, applied on the
        worker (the batcher hands over a model call's outputs by name: predictions, probabilities)."""
        self.baseline = baseline
        self.model_name, self.model_version = model_name, model_version
        self._metrics = metrics
        self.window_rows = window_rows
        self.min_rows = min(min_rows, window_rows)
        self._features = [_Window(column, window_rows) for column in baseline.features]
        self._names = [column.name for column in baseline.features]
        order = list(input_columns) if input_columns is not None else self._names
        missing = [name for name in self._names if name not in order]
        if missing:
            raise ValueError(f"the baseline has columns the model's signature lacks: {missing}")
        self._positions = [order.index(name) for name in self._names]
        self._prediction = _Window(baseline.predictions, window_rows)
        self._predictions_of = predictions_of or (lambda predictions: predictions)
        self._lock = threading.Lock()  # the windows: worker vs snapshot()
        self._drop_lock = threading.Lock()
        self._queue = Handoff(queue_batches, poll_s=GATHER_S)
        self.observed_rows = 0
        self.dropped_rows = 0
        self._worker = threading.Thread(target=self._run, name=f"drift-{model_name}-{model_version}", daemon=True)
        self._worker.start()

    @classmethod
    def for_model(
        cls, model_dir: Path, model_name: str, model_version: str, metrics: DriftMetrics, **options: Any
    ) -> DriftMonitor | None:
        """A monitor for the model downloaded to ``model_dir``, or None (logged once) when it has no baseline."""
        return cls.for_document(read_document(model_dir), model_name, model_version, metrics, **options)

    @classmethod
    def for_document(
        cls, document: Any, model_name: str, model_version: str, metrics: DriftMetrics, **options: Any
    ) -> DriftMonitor | None:
        """A monitor for a baseline document (``read_document``), or None (logged once) when there is none."""
        if document is None:
            log.info(
                "model %s version %s has no %s: no drift series (log one with "
                "predictor.monitoring.baseline.log_drift_baseline)",
                model_name,
                model_version,
                ARTIFACT_NAME,
            )
            return None
        try:
            return cls(Baseline.from_json(document), model_name, model_version, metrics, **options)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning(
                "model %s version %s: unusable %s (%s): no drift series", model_name, model_version, ARTIFACT_NAME, exc
            )
            return None

    def observe(self, rows: pd.DataFrame | npt.NDArray[Any], predictions: Any) -> None:
        """Queue live rows (columns in the baseline's order, or a DataFrame with its names) and their predicted
        classes (or what ``predictions_of`` turns into them). Never blocks, never raises."""
        try:
            self._queue.put_nowait((rows, predictions))
        except queue.Full:
            self._count_drop(rows)
        except Exception:  # a boundary: the request path must never fail because of drift monitoring
            log.exception("drift: could not queue rows")

    def _count_drop(self, rows: Any) -> None:
        count = len(rows)
        with self._drop_lock:  # its own lock: the worker's may be held for a whole batch
            self.dropped_rows += count
        self._metrics.dropped_rows.labels(self.model_name, self.model_version).inc(count)

    def _run(self) -> None:
        dirty, last_export = False, 0.0
        while True:
            # one binning pass for everything that gathered meanwhile, not one per request
            items = self._queue.take(timeout_s=EXPORT_INTERVAL_S, gather_s=GATHER_S)
            batches = [item for item in items if isinstance(item, tuple)]
            if batches:
                dirty = True
                labels = self._predictions_of
                try:
                    self._add(*_coalesce([(rows, labels(outputs)) for rows, outputs in batches]))
                except Exception:  # a boundary: one malformed batch must not stop the worker: retry one by one
                    for rows, outputs in batches:
                        try:
                            self._add(rows, labels(outputs))
                        except Exception:
                            log.exception("drift: could not bin %d rows", len(rows))
            waiting = [item for item in items if isinstance(item, threading.Event)]
            stopping = any(item is _STOP for item in items)
            now = time.monotonic()
            if dirty and (waiting or stopping or now - last_export >= EXPORT_INTERVAL_S):
                self._export()
                dirty, last_export = False, now
            for event in waiting:
                event.set()
            if stopping:
                return

    def _add(self, rows: pd.DataFrame | npt.NDArray[Any], predictions: Any) -> None:
        if isinstance(rows, pd.DataFrame):
            columns = [rows[name].to_numpy() for name in self._names]
        else:
            matrix = np.asarray(rows)
            columns = [matrix[:, i] for i in self._positions]
        binned = [window.column.bin_of(values) for window, values in zip(self._features, columns, strict=True)]
        predicted = self._prediction.column.bin_of(np.asarray(predictions))
        with self._lock:
            for window, bins in zip(self._features, binned, strict=True):
                window.add(bins)
            self._prediction.add(predicted)
            self.observed_rows += len(predicted)

    def _export(self) -> None:
        with self._lock:
            if self._prediction.filled < self.min_rows:
                return
            values = [(name, window.psi()) for name, window in zip(self._names, self._features, strict=True)]
            prediction = self._prediction.psi()
        for name, value in values:
            self._metrics.feature_psi.labels(self.model_name, self.model_version, name).set(value)
        self._metrics.prediction_psi.labels(self.model_name, self.model_version).set(prediction)

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until what was queued so far is in the window and the gauges (tests; a final snapshot)."""
        reached = threading.Event()
        self._queue.put_control(reached)
        return reached.wait(timeout_s)

    def snapshot(self) -> dict[str, Any]:
        """``GET /admin/drift``: the window, the PSI per column and for the predictions, baseline vs live shares."""
        with self._lock:
            ready = self._prediction.filled >= self.min_rows

            def column(window: _Window) -> dict[str, Any]:
                return {
                    "psi": round(window.psi(), 6) if ready else None,
                    "bins": _bin_names(window.column),
                    "baseline": np.round(window.column.shares, 6).tolist(),
                    "live": np.round(window.shares(), 6).tolist(),
                }

            return {
                "model_name": self.model_name,
                "model_version": self.model_version,
                "window_rows": self.window_rows,
                "rows_in_window": self._prediction.filled,
                "observed_rows": self.observed_rows,
                "dropped_rows": self.dropped_rows,
                "alert_psi": ALERT_PSI,
                "features": {name: column(window) for name, window in zip(self._names, self._features, strict=True)},
                "prediction": column(self._prediction),
            }

    def close(self) -> None:
        """Stop the worker and remove this version's series."""
        self._queue.put_control(_STOP)
        self._worker.join(timeout=5)
        for name in self._names:
            _remove(self._metrics.feature_psi, self.model_name, self.model_version, name)
        _remove(self._metrics.prediction_psi, self.model_name, self.model_version)


def _coalesce(batches: list[tuple[Any, Any]]) -> tuple[Any, npt.NDArray[Any]]:
    """Everything drained at once as one frame or matrix, and one prediction vector."""
    predictions = np.concatenate([np.asarray(p).ravel() for _, p in batches])
    if all(isinstance(rows, pd.DataFrame) for rows, _ in batches):
        return pd.concat([rows for rows, _ in batches], ignore_index=True), predictions
    matrices = [r.to_numpy() if isinstance(r, pd.DataFrame) else np.asarray(r) for r, _ in batches]
    return np.concatenate(matrices), predictions


def _bin_names(column: ColumnBaseline) -> list[str]:
    if column.kind == "numeric" and column.edges is not None:
        edges = [f"{e:.6g}" for e in column.edges]
        bounds = ["-inf", *edges, "inf"]
        return [f"({lo}, {hi}]" for lo, hi in itertools.pairwise(bounds)] + ["missing"]
    return [*column.categories, "other"]


def _remove(metric: Any, *labels: str) -> None:
    with contextlib.suppress(KeyError):  # never exported (the window never reached min_rows)
        metric.remove(*labels)
