"""Resolve an MLflow model URI to a registry version and load it; MLflow's errors become ours here.

``models:/NAME@alias``, ``models:/NAME/Stage`` and ``models:/NAME/latest`` are resolved to a concrete
version *once*, and that version is what the server reports everywhere. ``runs:/`` URIs and local paths
have no registry version: they report the run id (``run-<id8>``) or ``local``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from predictor.errors import ModelLoadError

log = logging.getLogger(__name__)

FEATURE_DEFAULTS_KEY = "feature_defaults"


@dataclass(frozen=True)
class ModelSource:
    """Where a model comes from: the URI asked for, and what it resolved to."""

    uri: str
    version: str
    download_uri: str  # the URI pinned to ``version`` (so a moving alias cannot change what we load)
    registered_name: str | None = None


@dataclass(frozen=True)
class LoadedModel:
    """A model ready to call: the hot path never touches MLflow or pandas."""

    source: ModelSource
    feature_names: tuple[str, ...]
    # rows (float64 [N, F]) -> probabilities [N, C] (or predictions [N] when the model has no predict_proba)
    predict_fn: Callable[[np.ndarray], np.ndarray]
    classes: np.ndarray | None
    feature_defaults: dict[str, float] = field(default_factory=dict)
    estimator: Any = None  # the scikit-learn object, when there is one (what the local cache keeps)

    @property
    def version(self) -> str:
        return self.source.version

    @property
    def has_probabilities(self) -> bool:
        return self.classes is not None


def resolve(uri: str, tracking_uri: str) -> ModelSource:
    """Ask the registry which version ``uri`` means right now."""
    from mlflow import MlflowClient
    from mlflow.store.artifact.utils.models import get_model_name_and_version

    if uri.startswith("models:/"):
        client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        try:
            name, version = get_model_name_and_version(client, uri)
        except Exception as exc:  # MlflowException, connection errors, a model without that alias…
            raise ModelLoadError(f"cannot resolve {uri} in the registry at {tracking_uri}: {_first_line(exc)}") from exc
        return ModelSource(uri, str(version), f"models:/{name}/{version}", registered_name=name)
    if uri.startswith("runs:/"):
        run_id = uri.removeprefix("runs:/").split("/", 1)[0]
        return ModelSource(uri, f"run-{run_id[:8]}", uri)
    path = Path(uri.removeprefix("file://"))
    if not (path / "MLmodel").exists():
        raise ModelLoadError(f"{uri} is neither a models:/ or runs:/ URI nor a directory holding an MLmodel file")
    return ModelSource(uri, "local", str(path.resolve()))


def load(source: ModelSource, tracking_uri: str, compile_forests: bool = True) -> LoadedModel:
    """Download (cached by MLflow) and load the model with its native flavor where we can.

    ``compile_forests``: evaluate random forests with ``predictor.models.forest`` (identical results, far fewer
    Python calls per prediction) instead of scikit-learn's per-tree loop."""
    import mlflow
    from mlflow.models import Model

    try:
        mlflow.set_tracking_uri(tracking_uri)
        mlflow.set_registry_uri(tracking_uri)
        local_dir = Path(mlflow.artifacts.download_artifacts(artifact_uri=source.download_uri))
        metadata = Model.load(str(local_dir))
    except Exception as exc:
        raise ModelLoadError(f"cannot download {source.download_uri}: {_first_line(exc)}") from exc
    feature_names = _feature_names(metadata)
    defaults = _feature_defaults(metadata)
    if "sklearn" in metadata.flavors:
        import mlflow.sklearn

        estimator = mlflow.sklearn.load_model(str(local_dir))
        return from_estimator(source, feature_names, defaults, estimator, compile_forests)
    pyfunc = mlflow.pyfunc.load_model(str(local_dir))
    return LoadedModel(source, feature_names, _pyfunc_predict(pyfunc, feature_names), None, defaults)


def from_estimator(
    source: ModelSource,
    feature_names: tuple[str, ...],
    defaults: dict[str, float],
    estimator: Any,
    compile_forests: bool = True,
) -> LoadedModel:
    """Wrap a scikit-learn estimator: one ``predict_proba`` pass gives predictions and probabilities."""
    _drop_fitted_column_names(estimator, feature_names)
    _single_threaded(estimator)
    if hasattr(estimator, "predict_proba"):
        from predictor.models.forest import compile_forest

        predict_proba = (compile_forest(estimator) if compile_forests else None) or estimator.predict_proba
        return LoadedModel(source, feature_names, predict_proba, np.asarray(estimator.classes_), defaults, estimator)
    return LoadedModel(source, feature_names, estimator.predict, None, defaults, estimator)


def _feature_names(metadata: Any) -> tuple[str, ...]:
    signature = metadata.signature
    if signature is None or signature.inputs is None or not signature.inputs.has_input_names():
        raise ModelLoadError(
            "the model has no input signature with column names; log it with "
            "signature=mlflow.models.infer_signature(X_train_dataframe, ...)"
        )
    return tuple(signature.inputs.input_names())


def _feature_defaults(metadata: Any) -> dict[str, float]:
    """Per-feature fill values logged with the model (``metadata={"feature_defaults": {...}}``), if any."""
    logged = (metadata.metadata or {}).get(FEATURE_DEFAULTS_KEY) or {}
    try:
        return {str(name): float(value) for name, value in logged.items()}
    except (AttributeError, TypeError, ValueError):
        log.warning("ignoring malformed %s in the model's metadata", FEATURE_DEFAULTS_KEY)
        return {}


def _drop_fitted_column_names(estimator: Any, feature_names: tuple[str, ...]) -> None:
    # The hot path passes NumPy rows already in signature order; sklearn would warn on every call that they
    # lack the column names it was fitted with. Check the order once here, then drop the names.
    fitted = getattr(estimator, "feature_names_in_", None)
    if fitted is None:
        return
    if tuple(fitted) != feature_names:
        raise ModelLoadError(
            f"the estimator was fitted on columns {list(fitted)} but its signature lists {list(feature_names)}"
        )
    del estimator.feature_names_in_


def _single_threaded(estimator: Any) -> None:
    # Micro-batching already fills each call; joblib threads per call only add overhead on small batches.
    if hasattr(estimator, "n_jobs"):
        estimator.n_jobs = None


def _pyfunc_predict(pyfunc: Any, feature_names: tuple[str, ...]) -> Callable[[np.ndarray], np.ndarray]:
    import pandas as pd

    def predict(rows: np.ndarray) -> np.ndarray:
        return np.asarray(pyfunc.predict(pd.DataFrame(rows, columns=list(feature_names))))

    return predict


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
