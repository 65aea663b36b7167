"""Readiness and what feeds it: every model's loader (``loading.ModelLoader``), the workers' markers, the
feature store's health, and draining on shutdown. The process stays alive through every failure; only
readiness says whether it can serve.

The server is ready once every model has had its first load attempt and at least one serves: a model that fails
to load is not ready and says why (per model: ``/v2/models/NAME/ready``, the repository index) while the others
serve. With one model that is the model's own readiness.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from predictor.config import ModelSpec, Settings
from predictor.errors import ModelNotFoundError, ModelNotReadyError, PredictorError
from predictor.model import PredictorModel, Serving
from predictor.models import registry
from predictor.models.discovery import RegistryDiscovery
from predictor.models.table import ModelTable
from predictor.serving import workers
from predictor.serving.loading import ModelLoader, start_thread

if TYPE_CHECKING:
    from predictor.features import FeatureSource
    from predictor.monitoring.challenger import Challenger

log = logging.getLogger(__name__)

FEATURE_CHECK_INTERVAL_S = 2.0
LOAD_WAIT_S = 60.0  # how long a request waits for its evicted model to load again


class Lifecycle:
    def __init__(
        self,
        settings: Settings,
        table: ModelTable[PredictorModel],
        features: FeatureSource | None = None,
        make_model: Callable[[ModelSpec], PredictorModel] | None = None,
    ) -> None:
        """``make_model``: builds a model the registry discovery found (``--registry_alias``)."""
        self.settings = settings
        self.table = table
        self.features = features
        self.make_model = make_model
        first = table.first()
        self.challenger = first.challenger if first is not None else None  # shadows the first model
        self.feature_store_error: str | None = None
        self.draining = False
        self.stopping = threading.Event()
        # Replaced, never changed in place: readiness iterates it while discovery adds and removes models.
        self.loaders: dict[str, ModelLoader] = {}
        self._room = threading.Lock()  # one eviction pass at a time
        self._loads: dict[str, asyncio.Future[None]] = {}  # loads on a miss, shared by the requests waiting for them
        for model in table:
            self.add(model, start=False)
        self.discovery = self._discovery()

    @property
    def model(self) -> PredictorModel:
        """The admin routes' model: the first one."""
        return self.table.default

    def add(self, model: PredictorModel, start: bool = True) -> ModelLoader:
        def after_first_load() -> None:
            self._mark_if_ready()
            if model.challenger is not None:
                self._start_challenger(model.challenger)
            self.make_room(keep=model.name)

        loader = ModelLoader(self.settings, model, after_first_load)
        limit = self.settings.max_loaded_models
        if limit and sum(not other.unloaded for other in self.loaders.values()) >= limit:
            loader.unloaded = loader.evicted = True  # no room: its first request loads it
            loader.attempted.set()
            self.table.mark_evicted(model.name)
        self.loaders = {**self.loaders, model.name: loader}
        if start and not loader.unloaded:
            loader.start()
        return loader

    # ------------------------------------------------------------------------------ more models than memory
    def make_room(self, keep: str | None = None) -> None:
        """Unload the least recently used models until at most --max_loaded_models are loaded (``keep`` stays).
        The table says "evicted" before the model lets go, so a new request loads it again instead of failing."""
        limit = self.settings.max_loaded_models
        if not limit:
            return
        with self._room:
            loaded = [loader for loader in self.loaders.values() if not loader.unloaded]
            while len(loaded) > limit:
                candidates = [loader for loader in loaded if loader.model.name != keep]
                if not candidates:
                    return
                victim = min(candidates, key=lambda loader: self.table.last_used.get(loader.model.name, -1))
                self.table.mark_evicted(victim.model.name)
                victim.unload(evicted=True)
                victim.model.metrics.evictions.labels(victim.model.name).inc()
                loaded.remove(victim)

    async def acquire(self, model: PredictorModel, version: str | None) -> Serving:
        """The ``Serving`` of a model a request named, loading it first when it was evicted (concurrent requests
        share one load; a request waits at most LOAD_WAIT_S). A model evicted while the request looked it up is
        loaded again, never answered as not ready."""
        for _ in range(3):
            if self.table.is_evicted(model.name):
                await self._load_evicted(model.name)
            try:
                return model.serving_for_request(version)
            except ModelNotReadyError:
                if not self.table.is_evicted(model.name):
                    raise
        return model.serving_for_request(version)

    async def _load_evicted(self, name: str) -> None:
        load = self._loads.get(name)
        if load is None:
            load = asyncio.ensure_future(asyncio.to_thread(self._reload_evicted, name))
            self._loads[name] = load
            load.add_done_callback(lambda _: self._loads.pop(name, None))
        try:
            await asyncio.wait_for(asyncio.shield(load), LOAD_WAIT_S)
        except TimeoutError as exc:
            raise ModelNotReadyError(
                f"model {name} is being loaded again (it was evicted, --max_loaded_models); retry shortly"
            ) from exc

    def _reload_evicted(self, name: str) -> None:
        if self.loader(name).evicted:  # not loaded again meanwhile (by a repository load)
            self.load(name)

    def remove(self, name: str) -> None:
        """Unload ``name`` (its requests in flight finish on the version they hold) and forget it."""
        loaders = dict(self.loaders)
        loader = loaders.pop(name, None)
        self.loaders = loaders
        self.table.remove(name)
        if loader is not None:
            loader.unload()
            if loader.model.challenger is not None:
                loader.model.challenger.close()

    def _discovery(self) -> RegistryDiscovery | None:
        alias = self.settings.registry_alias
        if not alias or self.make_model is None:
            return None
        make_model = self.make_model

        def found(name: str, uri: str) -> None:
            model = make_model(ModelSpec(name, uri))
            self.table.add(model)
            self.add(model)

        return RegistryDiscovery(
            self.settings.tracking_uri,
            alias,
            filter_string=self.settings.registry_filter,
            interval_s=max(self.settings.poll_interval_s, 1.0),
            stopping=self.stopping,
            found=found,
            lost=self.remove,
        )

    def loader(self, name: str) -> ModelLoader:
        loader = self.loaders.get(name)
        if loader is None:
            self.table.known(name)  # the table's own 404, naming what is served
            raise ModelNotFoundError(f"model {name!r:.80} is not served here")
        return loader

    # ------------------------------------------------------------------------------ readiness
    def not_ready_reason(self) -> str | None:
        """None when this process can serve, else why not (the body of a 503 from /ready)."""
        if self.draining:
            return "shutting down"
        loaders = [loader for loader in self.loaders.values() if not loader.unloaded]
        if self.discovery is not None and self.discovery.last_error and not loaders:
            return self.discovery.last_error
        if not any(loader.model.ready for loader in loaders):
            reasons = [f"{loader.model.name}: {loader.not_ready_reason()}" for loader in loaders]
            if len(reasons) == 1:
                return loaders[0].not_ready_reason()
            return "no model can serve yet (" + "; ".join(reasons) + ")" if reasons else "no model is loaded"
        loading = [loader.model.name for loader in loaders if not loader.attempted.is_set()]
        if loading:
            return f"models still loading: {', '.join(loading)}"
        state = self.settings.worker_state_dir
        if state is not None and not workers.all_ready(state, self.settings.worker_count):
            return "waiting for the other workers to load the model"
        return self.feature_store_error

    def model_not_ready_reason(self, name: str) -> str | None:
        """Why the model ``name`` cannot serve (None: it can): per-model readiness routes."""
        if self.draining:
            return "shutting down"
        return self.loader(name).not_ready_reason() or self.feature_store_error

    def start_background(self) -> None:
        for loader in self.loaders.values():  # the first model's loader starts the challenger once it has loaded
            if not loader.unloaded:  # no room (--max_loaded_models): its first request loads it
                loader.start()
        if self.discovery is not None:
            start_thread(self.discovery.run, "registry-discovery")
        if self.features is not None:
            start_thread(self._watch_feature_store, "feature-store-check")

    def begin_drain(self) -> None:
        self.draining = True
        self._ready_marker(present=False)
        self.stopping.set()
        for loader in self.loaders.values():
            loader.stop()
            if loader.model.challenger is not None:
                loader.model.challenger.stop_following()

    @staticmethod
    def _start_challenger(challenger: Challenger) -> None:
        """Its model has loaded (or failed to, the first time): start the challenger now, not sooner. Its thread
        and a loader importing MLflow at once can deadlock MLflow's imports (``models/imports.py``)."""
        registry.import_client()
        challenger.start()

    def _mark_if_ready(self) -> None:
        if self.settings.worker_state_dir is None:
            return
        loaders = self.loaders.values()
        if all(loader.attempted.is_set() for loader in loaders) and any(loader.model.ready for loader in loaders):
            self._ready_marker(present=True)

    # ------------------------------------------------------------------------------ registry
    def status(self) -> dict[str, object]:
        current, previous = self.model.serving, self.model.previous
        return {
            "model_name": self.model.name,
            "model_uri": self.model.uri,
            "serving": current.version if current else None,
            "previous": previous.version if previous else None,
            "versions": self.model.versions(),
            # How each loaded version is stored: a pickle runs code when loaded (see --allow_pickle).
            "formats": {
                s.version: {"flavor": s.model.flavor, "serialization": s.model.serialization}
                for s in (current, previous)
                if s is not None
            },
            "last_registry_error": self.loaders[self.model.name].follower.last_error,
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
        if self.settings.shadow_alias:  # one challenger per registry model
            shadowed = {name: loader.model.challenger for name, loader in sorted(self.loaders.items())}
            models = {name: challenger.status() for name, challenger in shadowed.items() if challenger is not None}
            return {"shadow_alias": self.settings.shadow_alias, "models": models}
        challenger = self.challenger
        if challenger is None:
            raise ModelNotFoundError(
                "no shadow model is configured: start with --shadow_model_uri models:/NAME@challenger "
                "(one model) or --shadow_alias challenger (each registry model by its own alias)"
            )
        return challenger.status()

    def reload(self) -> None:
        self.loaders[self.model.name].reload()

    def wake(self) -> None:
        """A registry webhook said something changed."""
        for loader in self.loaders.values():
            loader.wake()

    # ------------------------------------------------------------------------------ the repository extension
    def index(self) -> list[dict[str, str]]:
        """``POST /v2/repository/index``: every model, loaded or not, with its state and why."""
        entries = []
        for name, loader in sorted(self.loaders.items()):
            serving = loader.model.serving
            entries.append(
                {
                    "name": name,
                    "version": serving.version if serving is not None else "",
                    "state": loader.state,
                    "reason": loader.not_ready_reason() or "",
                }
            )
        return entries

    def load(self, name: str) -> None:
        """``POST /v2/repository/models/NAME/load`` (blocking): load an unloaded model, or ask the registry now."""
        loader = self.loader(name)
        loader.load()
        self.table.mark_unloaded(name, False)
        self.table.mark_evicted(name, False)
        self.make_room(keep=name)

    def unload(self, name: str) -> None:
        """``POST /v2/repository/models/NAME/unload``: 404 for its requests from now on, in flight ones finish."""
        loader = self.loader(name)
        self.table.mark_unloaded(name)
        loader.unload()

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
        features = self.features
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
