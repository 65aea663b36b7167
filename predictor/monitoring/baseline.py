"""The training baseline that drift is measured against: what users log beside their model, and its reader.

``log_drift_baseline(X_train, predictions)`` writes ``drift_baseline.json`` into the MLflow *model's*
artifacts (the LoggedModel that ``mlflow.<flavor>.log_model`` just created, or the one named by ``model_id``),
so it sits next to ``MLmodel`` in every download of that model version — ``models:/NAME/VERSION`` and
``models:/NAME@alias`` alike — and the server finds it with ``Baseline.from_model_dir(local_dir)``::

    info = mlflow.sklearn.log_model(model, name="model", registered_model_name="pm", ...)
    log_drift_baseline(X_train, model.predict(X_train), model_id=info.model_id)

The file (``format`` 1)::

    {"format": 1, "rows": 5000,
     "features": {"temperature_c": {"kind": "numeric", "edges": [52.1, 57.3, ...], "shares": [0.1, ...],
                                    "missing": 0.0},
                  "equipment_type": {"kind": "categorical", "shares": {"pump": 0.25, ...}}},
     "predictions": {"kind": "categorical", "shares": {"0": 0.71, "1": 0.29}}}

Numeric columns get decile bins: ``edges`` are the distinct training deciles, bin ``i`` holds
``edges[i-1] < x <= edges[i]`` (open at both ends), ``missing`` the share of NaN. Categorical columns
(anything not numeric, and booleans) and the predicted classes get the share of each value; values are
compared as strings, and values unseen in training fall into an ``other`` bin of baseline share 0.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

log = logging.getLogger(__name__)

ARTIFACT_NAME = "drift_baseline.json"
FORMAT = 1
QUANTILES = np.linspace(0.1, 0.9, 9)
OTHER = "__other__"
# PSI takes the log of shares: an empty bin counts as this share (the usual 1e-4 floor).
EPSILON = 1e-4


@dataclass(frozen=True)
class ColumnBaseline:
    """One column's baseline: numeric (``edges`` + ``shares`` per bin, then ``missing``) or categorical."""

    name: str
    kind: str  # "numeric" | "categorical"
    shares: npt.NDArray[np.float64]  # numeric: bins then missing; categorical: categories then other
    edges: npt.NDArray[np.float64] | None = None
    categories: tuple[str, ...] = ()

    @property
    def bins(self) -> int:
        return len(self.shares)

    def bin_of(self, values: Any) -> npt.NDArray[np.int64]:
        """The bin index of each value (O(n log bins) for numeric, O(n) hash lookups for categorical)."""
        array = np.asarray(values).ravel()
        if self.kind == "numeric" and self.edges is not None:
            if array.dtype.kind in "biuf":
                numbers = array.astype(np.float64)
            else:  # object columns (typed rows): anything not a number counts as missing
                numbers = pd.to_numeric(pd.Series(array), errors="coerce").to_numpy(np.float64)
            index = np.searchsorted(self.edges, numbers, side="left").astype(np.int64)
            index[np.isnan(numbers)] = self.bins - 1
            return index
        lookup = {category: i for i, category in enumerate(self.categories)}
        other = len(self.categories)
        try:
            distinct, inverse = np.unique(array, return_inverse=True)  # few distinct values: map those only
        except TypeError:  # mixed types that do not sort
            return np.fromiter((lookup.get(_label(v), other) for v in array), dtype=np.int64, count=array.size)
        mapped = np.fromiter((lookup.get(_label(v), other) for v in distinct), dtype=np.int64, count=distinct.size)
        return mapped[inverse.ravel()]

    def as_json(self) -> dict[str, Any]:
        if self.kind == "numeric" and self.edges is not None:
            return {
                "kind": "numeric",
                "edges": self.edges.tolist(),
                "shares": self.shares[:-1].tolist(),
                "missing": float(self.shares[-1]),
            }
        return {"kind": "categorical", "shares": dict(zip(self.categories, self.shares[:-1].tolist(), strict=True))}

    @classmethod
    def from_json(cls, name: str, entry: dict[str, Any]) -> ColumnBaseline:
        if entry["kind"] == "numeric":
            shares = np.array([*entry["shares"], entry.get("missing", 0.0)], dtype=np.float64)
            return cls(name, "numeric", shares, edges=np.array(entry["edges"], dtype=np.float64))
        categories = tuple(str(c) for c in entry["shares"])
        shares = np.array([*entry["shares"].values(), 0.0], dtype=np.float64)
        return cls(name, "categorical", shares, categories=categories)

    @classmethod
    def fit(cls, name: str, values: pd.Series) -> ColumnBaseline:
        if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            numbers = values.to_numpy(dtype=np.float64, na_value=np.nan)
            present = numbers[~np.isnan(numbers)]
            edges = np.unique(np.quantile(present, QUANTILES)) if present.size else np.zeros(0)
            column = cls(name, "numeric", np.zeros(edges.size + 2), edges=edges)
        else:
            seen = values.map(_label).value_counts()
            column = cls(name, "categorical", np.zeros(len(seen) + 1), categories=tuple(str(c) for c in seen.index))
        counts = np.bincount(column.bin_of(values.to_numpy()), minlength=column.bins)
        shares = counts / max(1, len(values))
        return cls(column.name, column.kind, shares.astype(np.float64), column.edges, column.categories)


def _label(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # 1.0 and 1 are the same class
    if isinstance(value, np.generic):
        return _label(value.item())
    return str(value)


def psi(expected: npt.NDArray[np.float64], actual: npt.NDArray[np.float64]) -> float:
    """Population stability index Σ (a − e) ln(a / e), both shares floored at ``EPSILON``."""
    e = np.maximum(expected, EPSILON)
    a = np.maximum(actual, EPSILON)
    return float(np.sum((a - e) * np.log(a / e)))


@dataclass(frozen=True)
class Baseline:
    rows: int
    features: tuple[ColumnBaseline, ...]
    predictions: ColumnBaseline

    @classmethod
    def fit(cls, frame: pd.DataFrame, predictions: Any) -> Baseline:
        columns = tuple(ColumnBaseline.fit(str(name), frame[name]) for name in frame.columns)
        labels = pd.Series(np.asarray(predictions).ravel(), dtype=object)
        return cls(len(frame), columns, ColumnBaseline.fit("prediction", labels))

    def as_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "rows": self.rows,
            "features": {c.name: c.as_json() for c in self.features},
            "predictions": self.predictions.as_json(),
        }

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> Baseline:
        if document.get("format") != FORMAT:
            raise ValueError(f"unknown drift baseline format {document.get('format')!r}")
        features = tuple(ColumnBaseline.from_json(name, entry) for name, entry in document["features"].items())
        return cls(int(document["rows"]), features, ColumnBaseline.from_json("prediction", document["predictions"]))

    @classmethod
    def from_model_dir(cls, model_dir: Path) -> Baseline | None:
        """The baseline logged with the model downloaded to ``model_dir``, or None if it has none."""
        path = Path(model_dir) / ARTIFACT_NAME
        if not path.exists():
            return None
        return cls.from_json(json.loads(path.read_text()))


def read_document(model_dir: Path) -> Any:
    """The parsed ``drift_baseline.json`` beside a downloaded model's MLmodel, or None when it has none or it
    cannot be read (logged): drift monitoring is optional and never stops a model from loading."""
    path = Path(model_dir) / ARTIFACT_NAME
    try:
        return json.loads(path.read_text()) if path.exists() else None
    except (OSError, ValueError) as exc:
        log.warning("unreadable %s (%s): no drift series", path, exc)
        return None


def log_drift_baseline(
    X_train: pd.DataFrame,
    predictions: Any,
    model_id: str | None = None,
    tracking_uri: str | None = None,
) -> Baseline:
    """Write ``drift_baseline.json`` into the artifacts of MLflow model ``model_id`` (default: the model
    last logged in this process, ``mlflow.last_logged_model()``). ``X_train``: the training inputs with the
    signature's column names; ``predictions``: the model's predicted classes for them."""
    import mlflow
    from mlflow import MlflowClient

    baseline = Baseline.fit(X_train, predictions)
    if model_id is None:
        last = mlflow.last_logged_model()
        if last is None:
            raise ValueError("no MLflow model was logged in this process: pass model_id=info.model_id")
        model_id = str(last.model_id)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / ARTIFACT_NAME
        path.write_text(json.dumps(baseline.as_json(), indent=1))
        MlflowClient(tracking_uri=tracking_uri).log_model_artifact(model_id, str(path))
    log.info(
        "logged %s (%d rows, %d columns) with model %s", ARTIFACT_NAME, baseline.rows, len(X_train.columns), model_id
    )
    return baseline
