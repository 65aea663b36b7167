"""The registry as the deployment: every registered model that holds an alias is served, under its registered name.

Checked every poll interval: a model that gains the alias is handed to ``found`` (the server loads and serves
it), one that loses it (or is deleted) to ``lost`` (the server unloads it once its requests in flight finish).
A move of the alias to another version is each model's own follower's business (a hot swap), not discovery's.
A failed search keeps every model served and is retried at the next check.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from predictor.models.imports import import_modules
from predictor.models.registry import CLIENT_MODULES

log = logging.getLogger(__name__)

PAGE = 1000  # registered models per search page


class RegistryDiscovery:
    def __init__(
        self,
        tracking_uri: str,
        alias: str,
        *,
        filter_string: str | None,
        interval_s: float,
        stopping: threading.Event,
        found: Callable[[str, str], None],
        lost: Callable[[str], None],
    ) -> None:
        """``found(name, uri)``: serve ``uri`` (``models:/NAME@ALIAS``) as ``name``; ``lost(name)``: stop."""
        self.tracking_uri = tracking_uri
        self.alias = alias
        self.filter_string = filter_string
        self.interval_s = interval_s
        self.stopping = stopping
        self.found = found
        self.lost = lost
        self.served: set[str] = set()
        self.last_error: str | None = None
        self._lock = threading.Lock()

    def names(self) -> list[str]:
        """The registered models that hold the alias now, by name (raises when the registry cannot answer)."""
        import_modules(*CLIENT_MODULES)
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)
        names: list[str] = []
        token: str | None = None
        while True:
            page = client.search_registered_models(filter_string=self.filter_string, max_results=PAGE, page_token=token)
            names += [model.name for model in page if self.alias in (model.aliases or {})]
            token = page.token
            if not token:
                return sorted(names)

    def check(self) -> bool:
        """Serve what gained the alias, stop what lost it; False when the registry could not be searched."""
        with self._lock:
            try:
                now = set(self.names())
            except Exception as exc:  # every model keeps serving; the next check tries again
                self.last_error = f"registry search failed: {exc}"
                log.error("discovery: %s", self.last_error)
                return False
            self.last_error = None
            for name in sorted(now - self.served):
                log.info("discovery: %s holds @%s: serving it", name, self.alias)
                self.found(name, f"models:/{name}@{self.alias}")
            for name in sorted(self.served - now):
                log.info("discovery: %s no longer holds @%s: unloading it", name, self.alias)
                self.lost(name)
            self.served = now
            return True

    def run(self) -> None:
        while not self.stopping.is_set():
            self.check()
            self.stopping.wait(self.interval_s)
