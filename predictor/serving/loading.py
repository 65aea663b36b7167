"""One model's life in this process: loaded in the background with retries, following its registry reference,
unloaded and loaded again on request (the repository extension). The process stays alive through every failure;
the model's readiness says whether it can serve, and why not.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable

from predictor.config import Settings
from predictor.errors import ModelLoadError
from predictor.model import PredictorModel
from predictor.models import registry
from predictor.models.follower import AliasFollower

log = logging.getLogger(__name__)

# One model loads at a time in a process: a load's probes switch the warnings filters (scikit-learn's "X has
# feature names" turned into an error to choose the fast path), and warnings.catch_warnings is process-wide, so a
# second load beside it failed its warm-up at random. Loads are CPU-bound under one GIL anyway.
LOAD_LOCK = threading.Lock()
UNLOADED = "unloaded (POST /v2/repository/models/{name}/load loads it again)"
EVICTED = "evicted, the least recently used past --max_loaded_models: its next request loads it"


class ModelLoader:
    def __init__(
        self, settings: Settings, model: PredictorModel, after_first_load: Callable[[], None] = lambda: None
    ) -> None:
        """``after_first_load``: run on the loader's thread once the model has loaded (or failed to) the first
        time, before the follower polls (the challenger starts there: see ``Lifecycle``)."""
        self.settings = settings
        self.model = model
        self.after_first_load = after_first_load
        self.load_error: str | None = f"model is loading from {model.uri} (registry {settings.tracking_uri})"
        self.attempted = threading.Event()  # the first load attempt has finished, well or not
        self.unloaded = False
        self.evicted = False  # unloaded to make room (--max_loaded_models): a request loads it again
        self.stopping = threading.Event()
        self.follower = self._follower()
        self._lock = threading.Lock()  # load and unload, one at a time

    def _follower(self) -> AliasFollower:
        model = self.model
        return AliasFollower(
            model.uri,
            self.settings.tracking_uri,
            held=lambda: model.serving.version if model.serving is not None else None,
            adopt=self._adopt,
            interval_s=self.settings.poll_interval_s,
            stopping=self.stopping,
            what=f"model {model.name}",
        )

    # ------------------------------------------------------------------------------ readiness
    def not_ready_reason(self) -> str | None:
        """None when the model can serve, else why not."""
        if self.unloaded:
            return (EVICTED if self.evicted else UNLOADED).format(name=self.model.name)
        if not self.model.ready:
            return self.load_error or "model is loading"
        return None

    @property
    def state(self) -> str:
        """The repository index's state: READY, LOADING or UNAVAILABLE."""
        if self.model.ready and not self.unloaded:
            return "READY"
        if self.unloaded or self.attempted.is_set():
            return "UNAVAILABLE"
        return "LOADING"

    # ------------------------------------------------------------------------------ background
    def start(self) -> None:
        start_thread(self._load_with_retries, f"loader-{self.model.name}")

    def stop(self) -> None:
        self.stopping.set()

    def reload(self) -> None:
        """Ask the registry now (admin reload, webhook, repository load of a loaded model)."""
        self.follower.check()

    def wake(self) -> None:
        """A registry webhook said something changed: check on the follower's thread, not the event loop's."""
        if self.settings.poll_interval_s > 0 and self.follower.follows_a_moving_reference:
            self.follower.wake()
        else:
            start_thread(self.follower.check, "registry-check")

    def unload(self, evicted: bool = False) -> None:
        """Stop following and drop the versions held; requests in flight finish on the version they hold.
        ``evicted``: to make room, not on request (its next request loads it again)."""
        with self._lock:
            self.stopping.set()
            self.unloaded, self.evicted = True, evicted
            self.model.unload()
            log.info("model %s %s", self.model.name, "evicted (least recently used)" if evicted else "unloaded")

    def load(self) -> None:
        """Load now (blocking; the caller waits for readiness): after ``unload``, or for a model still failing to
        load (``ModelLoadError`` naming why, when it fails again); a model that serves asks the registry now."""
        with self._lock:
            if not self.unloaded and self.model.ready:
                self.reload()
                return
            if not self.unloaded:  # still failing: one attempt now; its background retries go on if it fails
                self._attempt()
                return
            self.stopping = threading.Event()
            self.follower = self._follower()
            self.load_error = f"model is loading from {self.model.uri}"
            fresh = self._attempt()
            self.unloaded = self.evicted = False
            if not fresh:
                self.follower.check()
        _freeze_long_lived()
        if self.settings.poll_interval_s > 0 and self.follower.follows_a_moving_reference:
            start_thread(lambda: self.follower.run(check_first=False), f"follower-{self.model.name}")

    def _attempt(self) -> bool:
        """One load; ``ModelLoadError`` (503 to a repository load) naming why it failed."""
        metrics, name = self.model.metrics, self.model.name
        started = time.perf_counter()
        try:
            with LOAD_LOCK:
                fresh = self.model.load()
        except Exception as exc:
            metrics.loads.labels(name, "failed").inc()
            self.load_error = f"model load failed: {exc}"
            self.model.load_failed = _client_reason(exc)
            raise ModelLoadError(f"model {name}: {self.load_error}") from exc
        self.model.load_failed = None
        metrics.loads.labels(name, "ok").inc()
        metrics.load_seconds.labels(name).observe(time.perf_counter() - started)
        self.load_error = None
        return fresh

    def _load_with_retries(self) -> None:
        attempt = 0
        while not self.stopping.is_set():
            try:
                with self._lock:
                    if self.model.ready:  # a repository load got there first
                        break
                    fresh = self._attempt()
                _freeze_long_lived()
                if not fresh:
                    # Served from the local cache: ready now (a cold start is a user's first request), then ask
                    # whether the registry has moved on (importing MLflow takes a second or two).
                    self._first_attempt_done()
                    self.follower.check()
                    # That check imported MLflow (~1M objects, a cached start has not imported it before):
                    # unfrozen, every full collection walked them (200-300 ms pauses under load, measured).
                    _freeze_long_lived()
                break
            except Exception:  # keep the process alive: readiness stays off while we retry
                delay = registry.load_backoff_s(attempt)
                log.error(
                    "model %s: %s — retrying in %ss (check its URI and --tracking_uri / MLFLOW_TRACKING_URI)",
                    self.model.name,
                    self.load_error,
                    delay,
                )
                self._first_attempt_done()
                attempt += 1
                self.stopping.wait(delay)
        self._first_attempt_done()
        if self.stopping.is_set():
            return
        if self.settings.poll_interval_s > 0 and self.follower.follows_a_moving_reference:
            self.follower.run(check_first=False)

    def _first_attempt_done(self) -> None:
        """Readiness may answer now; the challenger starts (once)."""
        if not self.attempted.is_set():
            self.attempted.set()
            self.after_first_load()

    def _adopt(self, source: registry.ModelSource) -> None:
        """The registry names another version: serve it (a pointer flip when it is the one held as previous)."""
        held = self.model.held(source.version)
        if held is not None:  # e.g. the alias moved back to the previous version
            self.model.activate(held)
            return
        with LOAD_LOCK:
            self.model.adopt(registry.load(source, self.model.load_options))
        _freeze_long_lived()  # a swapped-in version's objects are long-lived too: frozen like the first load's


def _freeze_long_lived() -> None:
    """Imports and the model leave ~1M long-lived objects: keep them out of every later GC pass, whose full
    collections otherwise show up as 100 ms+ latency spikes under load."""
    gc.collect()
    gc.freeze()


def start_thread(target: Callable[[], object], name: str) -> None:
    threading.Thread(target=target, name=name, daemon=True).start()


def _client_reason(exc: Exception) -> str:
    """Why a load failed, in words a client may read (the details, which can quote a model's own exception or the
    server's paths, are for the readiness route and the log)."""
    if isinstance(exc, registry.NotRegistered):
        return "is not in its registry under its URI (no such model, or no version holds its alias)"
    if isinstance(exc, registry.RegistryError):
        return "cannot be loaded: its registry is unreachable or did not answer as MLflow does"
    return "failed to load (its files, its flavor, or its warm-up prediction)"
