"""Readiness and what feeds it: the model loaded in the background with retries, the workers' markers,
the feature store's health, and draining on shutdown. The process stays alive through every failure;
only readiness says whether it can serve.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
from collections.abc import Callable
from typing import Any

from predictor.config import Settings
from predictor.errors import ModelNotFoundError, ModelNotReadyError, PredictorError
from predictor.model import PredictorModel
from predictor.models import registry
from predictor.models.follower import AliasFollower
from predictor.serving import workers

log = logging.getLogger(__name__)

FEATURE_CHECK_INTERVAL_S = 2.0


class Lifecycle:
    def __init__(self, settings: Settings, model: PredictorModel) -> None:
        self.settings = settings
        self.model = model
        self.load_error: str | None = (
            f"model is loading from {settings.resolved_model_uri} (registry {settings.tracking_uri})"
        )
        self.feature_store_error: str | None = None
        self.draining = False
        self.stopping = threading.Event()
        self.follower = AliasFollower(
            settings.resolved_model_uri,
            settings.tracking_uri,
            held=lambda: model.serving.version if model.serving is not None else None,
            adopt=self._adopt,
            interval_s=settings.poll_interval_s,
            stopping=self.stopping,
        )

    # ------------------------------------------------------------------------------ readiness
    def not_ready_reason(self) -> str | None:
        """None when this process can serve, else why not (the body of a 503 from /ready)."""
        if self.draining:
            return "shutting down"
        if not self.model.ready:
            return self.load_error or "model is loading"
        state = self.settings.worker_state_dir
        if state is not None and not workers.all_ready(state, self.settings.worker_count):
            return "waiting for the other workers to load the model"
        return self.feature_store_error

    def start_background(self) -> None:
        _thread(self._load_with_retries, "model-loader")  # starts the challenger once MLflow is imported
        if self.model.features is not None:
            _thread(self._watch_feature_store, "feature-store-check")

    def begin_drain(self) -> None:
        self.draining = True
        self._ready_marker(present=False)
        self.stopping.set()

    # ------------------------------------------------------------------------------ registry
    def status(self) -> dict[str, object]:
        current, previous = self.model.serving, self.model.previous
        return {
            "model_name": self.model.name,
            "model_uri": self.settings.resolved_model_uri,
            "serving": current.version if current else None,
            "previous": previous.version if previous else None,
            "versions": self.model.versions(),
            # How each loaded version is stored: a pickle runs code when loaded (see --allow_pickle).
            "formats": {
                s.version: {"flavor": s.model.flavor, "serialization": s.model.serialization}
                for s in (current, previous)
                if s is not None
            },
            "last_registry_error": self.follower.last_error,
        }

    def drift(self) -> dict[str, Any]:
        """``GET /admin/drift``: the served version's window against its training baseline."""
        serving = self.model.serving
        if serving is None:
            raise ModelNotReadyError("model is still loading: drift is measured on the version it serves")
        if serving.drift is None:
            reason = (
                "drift monitoring is off (--drift_window_rows 0)"
                if self.settings.drift_window_rows <= 0
                else "this version was logged without drift_baseline.json: log one with "
                "predictor.monitoring.baseline.log_drift_baseline(X_train, predictions)"
            )
            return {
                "model_name": self.model.name,
                "model_version": serving.version,
                "monitored": False,
                "reason": reason,
            }
        return {"monitored": True, **serving.drift.snapshot()}

    def shadow(self) -> dict[str, Any]:
        """``GET /admin/shadow``: the challenger, or how to configure one."""
        challenger = self.model.challenger
        if challenger is None:
            raise ModelNotFoundError(
                "no shadow model is configured: start with --shadow_model_uri models:/NAME@challenger"
            )
        return challenger.status()

    def reload(self) -> None:
        self.follower.check()

    def wake(self) -> None:
        """A registry webhook said something changed: check on the follower's thread, not the event loop's."""
        if self.settings.poll_interval_s > 0 and self.follower.follows_a_moving_reference:
            self.follower.wake()
        else:
            _thread(self.follower.check, "registry-check")

    # ------------------------------------------------------------------------------ background
    def _load_with_retries(self) -> None:
        attempt = 0
        while not self.stopping.is_set():
            try:
                fresh = self.model.load()
                self.load_error = None
                _freeze_long_lived()
                self._ready_marker(present=True)
                if not fresh:
                    self.follower.check()  # served from the local cache: has the registry moved on?
                    # That check imported MLflow (~1M objects, a cached start has not imported it before):
                    # unfrozen, every full collection walked them (200-300 ms pauses under load, measured).
                    _freeze_long_lived()
                break
            except Exception as exc:  # keep the process alive: readiness stays off while we retry
                delay = registry.load_backoff_s(attempt)
                self.load_error = f"model load failed: {exc}"
                log.error(
                    "%s — retrying in %ss (check --model_uri and --tracking_uri / MLFLOW_TRACKING_URI)",
                    self.load_error,
                    delay,
                )
                attempt += 1
                self.stopping.wait(delay)
        if self.stopping.is_set():
            return
        # Only now: the challenger's thread and this one importing MLflow at once can deadlock its imports
        # (``_ModuleLock``) and leave it half-imported for the life of the process. It is imported by now.
        registry.import_client()
        if self.model.challenger is not None:
            self.model.challenger.start()
        if self.settings.poll_interval_s > 0 and self.follower.follows_a_moving_reference:
            self.follower.run(check_first=False)

    def _adopt(self, source: registry.ModelSource) -> None:
        """The registry names another version: serve it (a pointer flip when it is the one held as previous)."""
        held = self.model.held(source.version)
        if held is not None:  # e.g. the alias moved back to the previous version
            self.model.activate(held)
            return
        self.model.adopt(registry.load(source, self.model.load_options))
        _freeze_long_lived()  # a swapped-in version's objects are long-lived too: frozen like the first load's

    def _ready_marker(self, present: bool) -> None:
        state = self.settings.worker_state_dir
        if state is None:
            return
        marker = workers.ready_marker(state, self.settings.worker_index)
        if present:
            marker.touch()
        else:
            marker.unlink(missing_ok=True)

    def _watch_feature_store(self) -> None:
        """Readiness follows the online store: an outage takes the pod out of rotation, not down."""
        features = self.model.features
        assert features is not None
        loop = asyncio.new_event_loop()
        try:
            while not self.stopping.is_set():
                try:
                    loop.run_until_complete(features.check())
                    if self.feature_store_error is not None:
                        log.info("feature store reachable again")
                    self.feature_store_error = None
                except Exception as exc:
                    if self.feature_store_error is None:
                        log.error("feature store check failed: %s", exc)
                    self.feature_store_error = str(exc) if isinstance(exc, PredictorError) else f"feature store: {exc}"
                self.stopping.wait(FEATURE_CHECK_INTERVAL_S)
        finally:
            loop.close()


def _freeze_long_lived() -> None:
    """Imports and the model leave ~1M long-lived objects: keep them out of every later GC pass, whose full
    collections otherwise show up as 100 ms+ latency spikes under load."""
    gc.collect()
    gc.freeze()


def _thread(target: Callable[[], object], name: str) -> None:
    threading.Thread(target=target, name=name, daemon=True).start()
