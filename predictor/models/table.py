"""The models this process serves, by name: the one lookup every door makes.

One entry today; the issue on many models makes it many (each with its own batcher, follower, metrics and
readiness). Nothing that looks a model up assumes there is only one.
"""

from __future__ import annotations

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
        if not self._models:
            raise ValueError("a model table needs at least one model")
        self.default: M = next(iter(self._models.values()))  # what a door without a model name serves

    def __iter__(self) -> Iterator[M]:
        return iter(self._models.values())

    def names(self) -> list[str]:
        return list(self._models)

    def find(self, name: str | None) -> M | None:
        return self.default if name is None else self._models.get(name)

    def get(self, name: str | None) -> M:
        """The model called ``name`` (None: the default one); 404 naming what is served otherwise."""
        model = self.find(name)
        if model is None:
            served = ", ".join(repr(n) for n in self._models)
            raise ModelNotFoundError(
                f"model {name!r:.80} is not served here; this server serves {served} (GET /v2/models lists them)"
            )
        return model
