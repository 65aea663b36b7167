"""Follow the registry: when the alias or stage we serve moves, load the new version and swap to it.

Loading, the signature check and the warm-up all happen before the swap, on this thread; the swap is a
pointer assignment, so requests never see a half-loaded model and those in flight finish on the version
that started them. A version that fails to load or warm up is skipped (and retried at the next poll).

The watcher acts when the registry *moves*, not whenever it disagrees with what is served: after an
operator's ``/admin/rollback`` the registry still names the version rolled back from, and re-adopting it at
the next poll would silently undo the rollback. It stays rolled back until the reference moves again (or
a second rollback rolls forward).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from predictor.model import PredictorModel
from predictor.models import registry

log = logging.getLogger(__name__)


class RegistryWatcher:
    def __init__(
        self,
        model: PredictorModel,
        interval_s: float,
        stopping: threading.Event,
        after_load: Callable[[], None] = lambda: None,
    ) -> None:
        self.model = model
        self.after_load = after_load  # e.g. freeze the new version's long-lived objects out of the GC's passes
        self.interval_s = interval_s
        self.stopping = stopping
        self.last_error: str | None = None
        self._registry_named: str | None = None  # the version the reference named at the last good check
        self._lock = threading.Lock()  # one check at a time (poll thread, admin reload, webhook)
        self._wake = threading.Event()

    @property
    def follows_a_moving_reference(self) -> bool:
        uri = self.model.settings.resolved_model_uri
        return registry.can_move(uri)

    def run(self) -> None:
        """Poll until stopped (only started for URIs that can move: an alias, a stage or ``latest``)."""
        while not self.stopping.is_set():
            self._wake.wait(self.interval_s)
            self._wake.clear()
            if self.stopping.is_set():
                return
            if self.model.ready:
                self.check()

    def wake(self) -> None:
        """Check now (admin reload, registry webhook) instead of at the next poll."""
        self._wake.set()

    def check(self) -> str | None:
        """Resolve the URI again; swap if it names another version. Returns the version now serving."""
        with self._lock:
            settings = self.model.settings
            try:
                source = registry.resolve(settings.resolved_model_uri, settings.tracking_uri)
                current = self.model.serving
                if current is not None and source.version in (current.version, self._registry_named):
                    # in step, or the registry has not moved since an operator rolled back: keep serving
                    self._registry_named, self.last_error = source.version, None
                    return current.version
                held = self.model.held(source.version)
                if held is not None:  # e.g. the alias moved back to the previous version
                    self.model.activate(held)
                else:
                    log.info("registry: %s now names version %s; loading it", source.uri, source.version)
                    self.model.adopt(registry.load(source, self.model.load_options))
                    self.after_load()
                self._registry_named, self.last_error = source.version, None
                return source.version
            except Exception as exc:  # the current version keeps serving
                self.last_error = str(exc)
                log.error("registry check failed, still serving %s: %s", self.model.versions(), exc)
                return None
