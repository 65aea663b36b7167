"""The models this process serves, by name: the one lookup every door makes.

Each entry has its own batcher, follower, metrics and readiness; nothing that looks a model up assumes there is
only one. Entries come and go while requests run (``add``, ``remove``, registry discovery): the mapping is
replaced, never changed in place, so a lookup needs no lock. An unloaded model stays listed (the repository
index shows it) but answers like an unknown one: 404 over every door, saying how to load it.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterable, Iterator
from typing import Generic, Protocol, TypeVar

from predictor.errors import ModelNotFoundError


class Named(Protocol):
    @property
    def name(self) -> str: ...


M = TypeVar("M", bound=Named)


class ModelTable(Generic[M]):
    def __init__(self, models: Iterable[M]) -> None:
        self._models = {model.name: model for model in models}
        self._unloaded: frozenset[str] = frozenset()
        self._evicted: frozenset[str] = frozenset()  # unloaded to make room: a request loads them again
        self._uses = itertools.count()
        self.last_used: dict[str, int] = {}  # name → when it was last looked up (an ever-growing count)
        self._lock = threading.Lock()  # writers only

    def __len__(self) -> int:
        return len(self._models)

    def add(self, model: M) -> None:
        with self._lock:
            self._models = {**self._models, model.name: model}

    def remove(self, name: str) -> M | None:
        with self._lock:
            models = dict(self._models)
            removed = models.pop(name, None)
            self._models = models
            self._unloaded, self._evicted = self._unloaded - {name}, self._evicted - {name}
            self.last_used.pop(name, None)  # a model of that name added again starts afresh
            return removed

    def mark_unloaded(self, name: str, unloaded: bool = True) -> None:
        with self._lock:
            self._unloaded = self._unloaded | {name} if unloaded else self._unloaded - {name}

    def mark_evicted(self, name: str, evicted: bool = True) -> None:
        with self._lock:
            self._evicted = self._evicted | {name} if evicted else self._evicted - {name}

    def is_evicted(self, name: str) -> bool:
        return name in self._evicted

    def __iter__(self) -> Iterator[M]:
        return iter(self._models.values())

    def names(self) -> list[str]:
        return list(self._models)

    def first(self) -> M | None:
        """What a door without a model name serves: the first model (None while there is none)."""
        return next(iter(self._models.values()), None)

    @property
    def default(self) -> M:
        model = self.first()
        if model is None:
            raise ModelNotFoundError(
                "no model is served yet: the registry holds none with the alias followed (--registry_alias)"
            )
        return model

    def charged(self, name: str | None) -> M | None:
        """The model a failed call naming ``name`` is counted on: that model, else the first (an unknown name's
        404 still shows on a series); None while no model is served."""
        return self.find(name) or self.first()

    def find(self, name: str | None) -> M | None:
        return self.first() if name is None else self._models.get(name)

    def known(self, name: str | None) -> M:
        """The model called ``name``, loaded or not (readiness, the repository's load); 404 for no such model."""
        model = self.find(name)
        if model is None:
            served = ", ".join(repr(n) for n in self._models)
            raise ModelNotFoundError(
                f"model {name!r:.80} is not served here; this server serves {served} (GET /v2/models lists them)"
            )
        return model

    def get(self, name: str | None) -> M:
        """The model a request calls (None: the default one); 404 for no such model and for an unloaded one."""
        model = self.known(name)
        if model.name in self._unloaded:
            raise ModelNotFoundError(
                f"model {model.name!r} is unloaded; POST /v2/repository/models/{model.name}/load loads it again"
            )
        self.last_used[model.name] = next(self._uses)  # least recently used goes first (--max_loaded_models)
        return model
