"""A local copy of the last model served for a URI, so a restart is ready before MLflow is even imported.

Importing MLflow, resolving the alias and downloading the artifacts take ~4 s of a ~7 s cold start. On
start the server serves the cached version at once (stale-while-revalidate), then asks the registry in
the background and swaps if the alias has moved meanwhile. Only scikit-learn-API models are kept, pickled by
this process into its own directory (trusted whatever ``--allow_pickle`` says: this process wrote it); any
unreadable entry is ignored. A compiled forest is kept as its NumPy arrays, so a cached start does not
even import scikit-learn.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
import os
import pickle
from pathlib import Path

from predictor.models import flavors, registry
from predictor.models.forest import LAYOUT as FOREST_LAYOUT
from predictor.models.forest import PackedForest

log = logging.getLogger(__name__)


class ModelCache:
    def __init__(self, directory: Path | None, tracking_uri: str, model_uri: str) -> None:
        self.path: Path | None = None
        if directory is not None:
            key = hashlib.sha256(f"{tracking_uri}\n{model_uri}".encode()).hexdigest()[:16]
            self.path = directory / f"{key}.pickle"

    def get(self, compile_forests: bool) -> registry.LoadedModel | None:
        if self.path is None or not self.path.exists():
            return None
        try:
            entry = pickle.loads(self.path.read_bytes())
            forest = entry.get("forest") if entry.get("layout") == FOREST_LAYOUT else None  # older: compiled again
            if isinstance(forest, PackedForest) and compile_forests:
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
                    load_estimator=functools.partial(pickle.loads, entry["estimator"]),  # for :explain, if asked
                )
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

    def put(self, loaded: registry.LoadedModel) -> None:
        if self.path is None or loaded.estimator is None:
            return
        entry = {
            "source": loaded.source,
            "columns": loaded.columns,
            "tensor": loaded.tensor,
            "flavor": loaded.flavor,
            "serialization": loaded.serialization,
            "classes": loaded.classes,
            "defaults": loaded.feature_defaults,
            # pickled on its own: unpickling it imports scikit-learn, which a cached forest does not need
            "estimator": pickle.dumps(loaded.estimator, protocol=pickle.HIGHEST_PROTOCOL),
            "forest": loaded.predict_fn if isinstance(loaded.predict_fn, PackedForest) else None,
            "layout": FOREST_LAYOUT,
            "drift_baseline": loaded.drift_baseline,
            "example": loaded.example,
            "output_name": loaded.output_names[0] if not loaded.frame_outputs and loaded.classes is None else None,
        }
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            partial = self.path.with_suffix(f".{os.getpid()}.tmp")
            partial.write_bytes(pickle.dumps(entry, protocol=pickle.HIGHEST_PROTOCOL))
            partial.replace(self.path)  # atomic: a concurrent reader sees the old or the new entry
        except OSError as exc:
            log.warning("cannot write the model cache %s: %s (restarts will load from the registry)", self.path, exc)
