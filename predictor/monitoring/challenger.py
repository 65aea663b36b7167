"""The challenger beside the served model (``--shadow_model_uri``): loaded in the background, in a process of its
own at the lowest CPU priority (``shadow_process.py``), following its alias like the served model, and handed
each live request after its response (``ShadowScorer`` gathers them and has the challenger's process score them).

Loading never touches readiness: a challenger that cannot be loaded, is not a classifier, or expects other
columns than the served model is reported in ``GET /admin/shadow`` and the log, and scores nothing. One
``ShadowScorer`` exists per (live version, challenger version): the metrics' labels name both, and a swap of
either closes the scorers that no longer apply.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from predictor.metrics import ShadowMetrics
from predictor.models import registry
from predictor.models.follower import AliasFollower
from predictor.models.registry import LoadOptions
from predictor.monitoring.busy import ProcessBusy
from predictor.monitoring.prediction_log import PredictionLog, ShadowRecord
from predictor.monitoring.shadow import ShadowResult, ShadowScorer
from predictor.monitoring.shadow_process import ShadowProcess
from predictor.protocol.schema import Column

log = logging.getLogger(__name__)

# This process on a CPU this share of the last quarter second or more: live traffic keeps it busy (at
# saturation on 2 cores, measured: ~0.7 for the event loop's thread at 1 row per request, ~1.0 for the process at
# 100 rows), and the challenger scores only a sample (``shadow.BUSY_KEEP_EVERY``).
BUSY_SHARE = 0.5


class Challenger:
    def __init__(
        self,
        uri: str,
        model_name: str,
        metrics: ShadowMetrics,
        load_options: LoadOptions,
        sample_rate: float = 1.0,
        poll_interval_s: float = 10.0,
        prediction_log: PredictionLog | None = None,
        busy_share: float = BUSY_SHARE,
        optional: bool = False,
    ) -> None:
        """``busy_share``: this process's CPU share above which the shadow sheds (0: never). ``optional``: a
        reference that names no version (an alias no version holds, --shadow_alias) means no challenger, quietly,
        until it names one; else it is an error like a registry outage."""
        self.uri = uri
        self.model_name = model_name
        self.metrics = metrics
        self.sample_rate = sample_rate
        self.poll_interval_s = poll_interval_s
        self.load_options = load_options
        self.prediction_log = prediction_log
        self.loaded: ShadowProcess | None = None
        self._stopping = threading.Event()
        self.follower = AliasFollower(
            uri,
            load_options.tracking_uri,
            held=self._held,
            adopt=self._switch,
            interval_s=poll_interval_s,
            stopping=self._stopping,
            what="challenger",
            absent=self._retire if optional else None,
        )
        self._started = False
        self._scorers: dict[str, ShadowScorer] = {}  # live version -> scorer for the loaded challenger
        self._refused: dict[str, str] = {}  # live version -> why the challenger cannot score its rows
        self._lock = threading.Lock()
        load = ProcessBusy()  # this serving process: its event loop's and its model's threads
        self._busy: Callable[[], bool] | None = (lambda: load.above(busy_share)) if busy_share > 0 else None

    # ------------------------------------------------------------------------------ request path
    def submit(
        self,
        rows: np.ndarray,
        columns: tuple[Column, ...],
        live_version: str,
        live_predictions: np.ndarray,
        live_probabilities: np.ndarray | None,
        live_classes: np.ndarray | None,
        request_id: str,
    ) -> None:
        """Hand one answered request to the challenger; only enqueues (never blocks, never raises)."""
        scorer = self._scorers.get(live_version)
        if scorer is None:
            if self.loaded is None or live_version in self._refused:
                return
            scorer = self._scorer_for(live_version, columns)
            if scorer is None:
                return
        # the live version's own array: the scorer recognises it by identity, without comparing names per request
        scorer.submit(rows, live_predictions, live_probabilities, request_id, live_classes)

    def _scorer_for(self, live_version: str, columns: tuple[Column, ...]) -> ShadowScorer | None:
        with self._lock:
            challenger = self.loaded
            if challenger is None:
                return None
            if live_version in self._scorers:
                return self._scorers[live_version]
            info = challenger.info
            if info.columns != columns:
                reason = (
                    f"challenger version {info.version} expects columns "
                    f"{[c.name for c in info.columns]}, the served version {live_version} "
                    f"{[c.name for c in columns]}: it cannot score the same rows"
                )
                self._refused[live_version] = reason
                log.error("shadow: %s", reason)
                return None
            scorer = ShadowScorer(
                None,
                info.classes or [],
                self.model_name,
                live_version,
                info.version,
                self.metrics,
                sample_rate=self.sample_rate,
                on_result=self._logger(live_version, info.version),
                score=challenger.score,
                busy=self._busy,
            )
            self._scorers[live_version] = scorer
            return scorer

    def _logger(self, live_version: str, shadow_version: str) -> Callable[[ShadowResult], None] | None:
        prediction_log = self.prediction_log
        if prediction_log is None:
            return None

        def write(result: ShadowResult) -> None:
            record = ShadowRecord(
                request_id=result.request_id,
                timestamp=time.time(),
                model_name=self.model_name,
                model_version=live_version,
                shadow_version=shadow_version,
                predictions=result.predictions,
                probabilities=result.probabilities,
            )
            prediction_log.record(record, sampled=True)

        return write

    # ------------------------------------------------------------------------------ loading
    @property
    def last_error(self) -> str | None:
        if self.follower.last_error is not None:
            return self.follower.last_error
        return None if self.loaded is not None or self.follower.absence else f"loading {self.uri}"

    def start(self) -> None:
        """Follow the reference (once: a model loaded again after an eviction keeps its challenger)."""
        if self._started:
            return
        self._started = True
        threading.Thread(target=self.follower.run, name="shadow-loader", daemon=True).start()

    def stop_following(self) -> None:
        """Shutdown began: no new challenger is loaded (a SIGTERM that reached its process too must not start
        another one while the server drains); the one loaded scores the calls still in flight."""
        self._stopping.set()

    def _switch(self, source: registry.ModelSource) -> None:
        """Load ``source`` in a new child process and score with it; the previous one is retired."""
        if self._stopping.is_set():
            return
        log.info("shadow: loading challenger %s (version %s) in its own process", source.uri, source.version)
        loaded = ShadowProcess(source, self.load_options)
        self._replace(loaded)
        log.info(
            "shadow: challenger version %s (process %s) scores %.0f%% of live requests",
            loaded.source.version,
            loaded.pid,
            self.sample_rate * 100,
        )

    def _retire(self) -> None:
        """The reference names no version (any more): nothing shadows until it names one again."""
        previous = self._replace(None)
        if previous is not None:
            log.info(
                "shadow: %s names no version now; challenger version %s retired", self.uri, previous.source.version
            )

    def _replace(self, loaded: ShadowProcess | None) -> ShadowProcess | None:
        """``loaded`` scores from now on; the scorers and the process before it are closed (and returned)."""
        with self._lock:
            retired, self._scorers, self._refused = list(self._scorers.values()), {}, {}
            previous, self.loaded = self.loaded, loaded
        for scorer in retired:
            scorer.close()
        if previous is not None:
            previous.close()
        return previous

    def _held(self) -> str | None:
        loaded = self.loaded
        return loaded.source.version if loaded is not None and loaded.alive else None

    # ------------------------------------------------------------------------------ status and stop
    def status(self) -> dict[str, Any]:
        """``GET /admin/shadow``."""
        loaded = self.loaded
        return {
            "shadow_model_uri": self.uri,
            "shadow_version": loaded.source.version if loaded else None,
            "shadow_pid": loaded.pid if loaded else None,
            "sample_rate": self.sample_rate,
            "last_error": self.last_error,
            "absent": self.follower.absence,
            "refused": dict(self._refused),
            "scorers": [scorer.snapshot() for scorer in list(self._scorers.values())],
        }

    def flush(self, timeout_s: float = 10.0) -> bool:
        return all(scorer.flush(timeout_s) for scorer in list(self._scorers.values()))

    def close(self) -> None:
        """Stop following the registry, and score what is queued before the process exits."""
        self._stopping.set()
        with self._lock:
            scorers, self._scorers = list(self._scorers.values()), {}
            loaded, self.loaded = self.loaded, None
        for scorer in scorers:
            scorer.close()
        if loaded is not None:
            loaded.close()
