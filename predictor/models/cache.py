"""A local copy of the last model served for a URI, so a restart is ready before MLflow is even imported.

Importing MLflow, resolving the alias and downloading the artifacts take ~4 s of a ~7 s cold start. On
start the server serves the cached version at once (stale-while-revalidate), then asks the registry in
the background and swaps if the alias has moved meanwhile. Only scikit-learn-API models are kept, pickled by
this process into its own directory (trusted whatever ``--allow_pickle`` says: this process wrote it); any
unreadable entry is ignored. A compiled forest is kept as its NumPy arrays, so a cached start does not
even import scikit-learn.

A compiled forest's arrays (and its estimator, pickled) live apart from the entry, once per content, under
``forests/<digest>/``, and every process serving it maps them read-only: the ``--workers N`` of one pod share one
copy of each model's arrays in the page cache instead of holding N. The estimator is read from there only when an
explanation first needs it. A process that loaded a forest from the registry writes it there and serves the
mapped copy too, so the sharing starts with the first start. Content that no entry names any more is removed a day
after it was written (a process still mapping it keeps its pages; only ``:explain`` of that old version would then
fail, and say so).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
import os
import pickle
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from predictor.errors import ModelLoadError
from predictor.models import cache_paths, flavors, registry
from predictor.models.forest import LAYOUT as FOREST_LAYOUT
from predictor.models.forest import PackedForest

log = logging.getLogger(__name__)

FOREST_ARRAYS = ("feature", "threshold", "missing_left", "children", "value", "roots")  # PackedForest's arrays
ESTIMATOR_FILE = "estimator.pickle"
UNNAMED_CONTENT_KEPT_S = 24 * 3600  # a forest no entry names (a version replaced) is removed after this long


class ModelCache:
    def __init__(self, directory: Path | None, tracking_uri: str, model_uri: str) -> None:
        self.path: Path | None = None
        if directory is not None:
            self.path = cache_paths.entry_path(directory, tracking_uri, model_uri)

    def get(self, compile_forests: bool) -> registry.LoadedModel | None:
        if self.path is None or not self.path.exists():
            return None
        try:
            entry = pickle.loads(self.path.read_bytes())
            forest = entry.get("forest") if entry.get("layout") == FOREST_LAYOUT else None  # older: compiled again
            if isinstance(forest, dict):  # its arrays and estimator are shared, under forests/<digest>/
                content = self.path.parent / "forests" / forest["digest"]
                if compile_forests:
                    return _cached_forest(entry, _mapped(content, forest), functools.partial(_read_estimator, content))
                entry["estimator"] = (content / ESTIMATOR_FILE).read_bytes()
            elif isinstance(forest, PackedForest) and compile_forests:  # an entry written before forests/ existed
                return _cached_forest(entry, forest, functools.partial(pickle.loads, entry["estimator"]))
            estimator = pickle.loads(entry["estimator"])
            adapter = flavors.from_estimator(estimator, entry["flavor"], entry["serialization"])
            built = registry.build(
                entry["source"],
                entry["columns"],
                entry["tensor"],
                entry["defaults"],
                adapter,
                compile_forests,
                entry.get("example"),
                entry.get("output_name"),
            )
            return dataclasses.replace(built, drift_baseline=entry.get("drift_baseline"))
        except Exception as exc:  # a cache from another version of the code, a truncated file…
            log.warning("ignoring the model cache %s: %s", self.path, exc)
            return None

    def put(self, loaded: registry.LoadedModel) -> registry.LoadedModel:
        """Remember ``loaded`` for the next start. Returns what to serve: for a compiled forest, the same model on
        the shared, mapped copy of its arrays (its estimator read back only if an explanation needs it)."""
        if self.path is None or (loaded.estimator is None and loaded.load_estimator is None):
            return loaded
        shared, forest, wrote = loaded, None, False
        try:
            if isinstance(loaded.predict_fn, PackedForest):
                content, wrote = _share(self.path.parent / "forests", loaded.predict_fn, loaded.the_estimator())
                forest = {"digest": content.name, **_scalars(loaded.predict_fn)}
                shared = dataclasses.replace(
                    loaded,
                    predict_fn=_mapped(content, forest),
                    estimator=None,
                    load_estimator=functools.partial(_read_estimator, content),
                )
            entry = {
                "source": loaded.source,
                "columns": loaded.columns,
                "tensor": loaded.tensor,
                "flavor": loaded.flavor,
                "serialization": loaded.serialization,
                "classes": loaded.classes,
                "defaults": loaded.feature_defaults,
                # pickled on its own (or kept with the forest): unpickling it imports scikit-learn, which a cached
                # forest does not need
                "estimator": None if forest else pickle.dumps(loaded.estimator, protocol=pickle.HIGHEST_PROTOCOL),
                "forest": forest,
                "layout": FOREST_LAYOUT,
                "drift_baseline": loaded.drift_baseline,
                "example": loaded.example,
                "output_name": loaded.output_names[0] if not loaded.frame_outputs and loaded.classes is None else None,
            }
            self.path.parent.mkdir(parents=True, exist_ok=True)
            partial = self.path.with_suffix(f".{os.getpid()}.tmp")
            partial.write_bytes(pickle.dumps(entry, protocol=pickle.HIGHEST_PROTOCOL))
            partial.replace(self.path)  # atomic: a concurrent reader sees the old or the new entry
            if wrote:  # new content (a new version): what it replaced may be old enough to go
                _sweep(self.path.parent)
        except OSError as exc:
            log.warning("cannot write the model cache %s: %s (restarts will load from the registry)", self.path, exc)
            return loaded
        return shared


def _cached_forest(
    entry: dict[str, Any], forest: PackedForest, load_estimator: Callable[[], Any]
) -> registry.LoadedModel:
    """A cached compiled forest, served without scikit-learn (its estimator loaded only for :explain, if asked)."""
    return registry.LoadedModel(
        entry["source"],
        entry["columns"],
        forest,
        entry["classes"],
        entry["defaults"],
        tensor=entry["tensor"],
        flavor=entry["flavor"],
        serialization=entry["serialization"],
        output_names=("predictions", "probabilities"),
        drift_baseline=entry.get("drift_baseline"),
        example=entry.get("example"),
        load_estimator=load_estimator,
    )


def _scalars(forest: PackedForest) -> dict[str, Any]:
    return {"depth": forest.depth, "n_features": forest.n_features, "nan_error": forest.nan_error}


def _share(root: Path, forest: PackedForest, estimator: Any) -> tuple[Path, bool]:
    """``forest``'s arrays and ``estimator`` under ``root/<digest of the arrays>``, written once: the first process
    to finish wins, the others find the same bytes there (a directory appears whole, by one rename). Returns the
    directory, and whether this call wrote it."""
    digest = hashlib.sha256()
    for name in FOREST_ARRAYS:
        array = np.ascontiguousarray(getattr(forest, name))
        digest.update(f"{name} {array.dtype.str} {array.shape}\n".encode())
        digest.update(array.data)
    content = root / digest.hexdigest()[:32]
    if content.is_dir():
        return content, False
    root.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=".partial-", dir=root))
    try:
        for name in FOREST_ARRAYS:
            np.save(partial / f"{name}.npy", getattr(forest, name), allow_pickle=False)
        (partial / ESTIMATOR_FILE).write_bytes(pickle.dumps(estimator, protocol=pickle.HIGHEST_PROTOCOL))
        partial.rename(content)
    except OSError:
        if not content.is_dir():  # not another process's rename first: a real failure
            raise
        return content, False
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return content, True


def _mapped(content: Path, scalars: dict[str, Any]) -> PackedForest:
    """The forest with its arrays mapped read-only from ``content`` (plain ndarray views of the mappings)."""
    arrays = {name: np.asarray(np.load(content / f"{name}.npy", mmap_mode="r")) for name in FOREST_ARRAYS}
    return PackedForest(
        **arrays, depth=scalars["depth"], n_features=scalars["n_features"], nan_error=scalars["nan_error"]
    )


def _read_estimator(content: Path) -> Any:
    try:
        data = (content / ESTIMATOR_FILE).read_bytes()
    except FileNotFoundError:
        raise ModelLoadError(
            f"the estimator of this version was removed from the model cache ({content}): the version was "
            "replaced a day ago; restart to serve the current version"
        ) from None
    return pickle.loads(data)


def _sweep(directory: Path) -> None:
    """Remove shared forests that no entry names any more and that were written more than a day ago. Run when a put
    wrote new content, not at every put: it reads every entry of the directory."""
    root = directory / "forests"
    if not root.is_dir():
        return
    named: set[str] = set()
    for entry_file in directory.glob("*.pickle"):
        try:
            forest = pickle.loads(entry_file.read_bytes()).get("forest")
        except Exception:
            continue
        if isinstance(forest, dict):
            named.add(forest["digest"])
    cutoff = time.time() - UNNAMED_CONTENT_KEPT_S
    for content in root.iterdir():
        try:
            if content.name not in named and content.stat().st_mtime < cutoff:
                shutil.rmtree(content, ignore_errors=True)
        except OSError:
            continue
