"""One adapter per MLflow flavor: load the model natively and say how to call it.

Every adapter answers a DataFrame with the signature's dtypes (``predict_frame``); estimators that are
happy with a float64 matrix also get ``predict_matrix``, which ``registry`` adopts only after checking,
on the warm-up rows, that it answers exactly what the DataFrame call answers and warns about nothing.
A classifier answers probabilities ``[N, C]`` (labels are ``classes[argmax]``, one model pass for both);
a regressor or a plain pyfunc answers predictions ``[N]``; a pyfunc answering a DataFrame answers one
output per column.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from predictor.errors import ModelLoadError
from predictor.models.imports import import_modules

Outputs = np.ndarray | dict[str, np.ndarray]
PACKAGE = "predictive-maintenance-predictor"
PICKLE_FORMATS = ("pickle", "cloudpickle")  # loading these runs whatever code the file names
# Flavors whose library is an optional extra of this package (flavor -> import name, extra).
_EXTRAS = {
    "xgboost": ("xgboost", "xgboost"),
    "lightgbm": ("lightgbm", "lightgbm"),
    "catboost": ("catboost", "catboost"),
}
# Flavors loaded natively (their own object, not MLflow's pyfunc wrapper): classifiers keep predict_proba.
NATIVE = ("sklearn", "xgboost", "lightgbm", "catboost")


class DictAnswer(dict[str, np.ndarray]):
    """A pyfunc answered a dict of columns, not a DataFrame: ``/invocations`` writes it back as one, as MLflow does."""


@dataclass
class Adapter:
    flavor: str  # the MLflow flavor it was loaded with
    serialization: str  # how the artefact is stored: skops, cloudpickle, pickle, native (ubj), ...
    predict_frame: Callable[[pd.DataFrame], Outputs]
    predict_matrix: Callable[[np.ndarray], Outputs] | None = None
    classes: np.ndarray | None = None
    estimator: Any = None  # the scikit-learn-API object, when there is one
    restore_names: Callable[[], None] | None = None  # undo what made ``predict_matrix`` possible
    # frame, inference parameters -> outputs (a pyfunc: MLflow passes them to its predict)
    predict_params: Callable[[pd.DataFrame, dict[str, Any]], Outputs] | None = None
    # What the estimator kept of its training columns (a model logged without a signature is served by them):
    feature_names: tuple[str, ...] | None = None  # the names, when it was trained on named columns
    feature_count: int | None = None  # how many, when it knows only that


def serialization_format(flavors: dict[str, Any]) -> str:
    """How the model's artefact is serialised, read from its MLmodel file (no loading)."""
    for name in ("sklearn", "lightgbm"):
        conf = flavors.get(name)
        if conf is not None:
            return str(conf.get("serialization_format") or ("native" if name == "lightgbm" else "pickle"))
    if "xgboost" in flavors:
        return f"native ({flavors['xgboost'].get('model_format', 'xgb')})"
    if "catboost" in flavors:
        return f"native ({flavors['catboost'].get('save_format', 'cbm')})"
    pyfunc = flavors.get("python_function", {})
    if pyfunc.get("python_model") or pyfunc.get("cloudpickle_version"):
        # Models-from-code name a .py file; a logged PythonModel instance is a cloudpickle.
        return "python code" if str(pyfunc.get("python_model", "")).endswith(".py") else "cloudpickle"
    return "unknown"


def load(local_dir: Path, flavors: dict[str, Any]) -> Adapter:
    serialization = serialization_format(flavors)
    for flavor in NATIVE:
        if flavor in flavors:
            _require(flavor)
            (module,) = import_modules(f"mlflow.{flavor}")
            try:
                model = module.load_model(str(local_dir))
            except ImportError as exc:
                raise ModelLoadError(f"the {flavor} model needs a missing package: {exc}") from exc
            return from_estimator(model, flavor, serialization)
    (pyfunc_module,) = import_modules("mlflow.pyfunc")
    try:
        pyfunc = pyfunc_module.load_model(str(local_dir))
    except ModuleNotFoundError as exc:
        raise ModelLoadError(
            f"the model needs the Python package {exc.name!r}, which this image lacks; install it next to "
            f"the server (pip install {exc.name})"
        ) from exc
    adapter = Adapter("pyfunc", serialization, _pyfunc_predict(pyfunc))
    adapter.predict_params = _pyfunc_predict(pyfunc, with_params=True)
    return adapter


def _require(flavor: str) -> None:
    if flavor in _EXTRAS and importlib.util.find_spec(_EXTRAS[flavor][0]) is None:
        module, extra = _EXTRAS[flavor]
        raise ModelLoadError(
            f"the model was logged with mlflow.{flavor} and needs the {module} package, which is not installed: "
            f"pip install '{PACKAGE}[{extra}]'"
        )


def from_estimator(model: Any, flavor: str, serialization: str) -> Adapter:
    """An adapter over a scikit-learn-API object (scikit-learn, XGBoost, LightGBM, CatBoost), or a native
    XGBoost ``Booster`` (``xgb.train``), which reads only its own ``DMatrix``."""
    if flavor == "xgboost" and not hasattr(model, "get_booster"):
        return _xgboost_booster(model, serialization)
    _single_threaded(model)
    names, count = _training_columns(model)
    classifier = hasattr(model, "predict_proba") and hasattr(model, "classes_")
    call = model.predict_proba if classifier else model.predict
    classes = np.asarray(model.classes_) if classifier else None
    prepare = frame_preparation(model, flavor)

    def predict_frame(frame: pd.DataFrame) -> Outputs:
        return np.asarray(call(prepare(frame)))

    adapter = Adapter(flavor, serialization, predict_frame, classes=classes, estimator=model)
    adapter.feature_names, adapter.feature_count = names, count
    if flavor == "lightgbm" and getattr(getattr(model, "booster_", None), "pandas_categorical", None):
        return adapter  # categorical columns need their pandas categories: no matrix path
    fitted = vars(model).get("feature_names_in_")
    if fitted is not None:
        # On a float64 matrix scikit-learn would warn, on every call, that the columns lost their names. Names
        # kept by a property (a Pipeline's, LightGBM's) stay: the warm-up probe then decides which path serves.
        del model.feature_names_in_

        def restore() -> None:
            model.feature_names_in_ = fitted

        adapter.restore_names = restore

    def predict_matrix(rows: np.ndarray) -> Outputs:
        return np.asarray(call(rows))

    adapter.predict_matrix = predict_matrix
    return adapter


def _xgboost_booster(booster: Any, serialization: str) -> Adapter:
    """``Booster.predict`` answers what MLflow's pyfunc answers (for ``binary:logistic``, the probability)."""
    (xgb,) = import_modules("xgboost")
    names = booster.feature_names

    def predict_frame(frame: pd.DataFrame) -> Outputs:
        data = frame if names is not None else frame.to_numpy()  # trained on NumPy: no names to check
        return np.asarray(booster.predict(xgb.DMatrix(data)))

    def predict_matrix(rows: np.ndarray) -> Outputs:
        return np.asarray(booster.predict(xgb.DMatrix(rows, feature_names=names)))

    adapter = Adapter("xgboost", serialization, predict_frame, predict_matrix, estimator=booster)
    adapter.feature_names, adapter.feature_count = _training_columns(booster)
    return adapter


def _training_columns(model: Any) -> tuple[tuple[str, ...] | None, int | None]:
    """The training columns' names (None when it was trained on arrays) and count, as the estimator kept them:
    scikit-learn's ``feature_names_in_``, XGBoost's ``feature_names``, LightGBM's ``feature_name()``,
    CatBoost's ``feature_names_``. Names a library made up for an array (``Column_0``, ``0``) are no names."""
    names = next(
        (found for name in ("feature_names_in_", "feature_names", "feature_name", "feature_names_")
         if (found := _read(model, name)) is not None),
        None,
    )  # fmt: skip
    listed = [str(name) for name in names] if names is not None and not isinstance(names, str) else None
    count = len(listed) if listed else _feature_count(model)
    if not listed or listed in ([f"Column_{j}" for j in range(len(listed))], [str(j) for j in range(len(listed))]):
        return None, count
    return tuple(listed), count


def _feature_count(model: Any) -> int | None:
    for name in ("n_features_in_", "num_features", "num_feature"):
        count = _read(model, name)
        if isinstance(count, int):
            return count
    return None


def _read(model: Any, name: str) -> Any:
    """An attribute, or what a method of that name answers; None when the library has neither or raises
    (LightGBM: "trained without names")."""
    try:
        value = getattr(model, name)
        return value() if callable(value) else value
    except Exception:
        return None


def frame_preparation(model: Any, flavor: str) -> Callable[[pd.DataFrame], pd.DataFrame]:
    """What a DataFrame of the signature's dtypes needs before ``model`` sees it (LightGBM: its categories)."""
    return _lightgbm_categories(model) if flavor == "lightgbm" else (lambda frame: frame)


def _lightgbm_categories(model: Any) -> Callable[[pd.DataFrame], pd.DataFrame]:
    """LightGBM needs its training categories back (a plain string column is not enough: LightGBM#5244).

    MLflow records ``category`` columns as ``string``; LightGBM keeps the categories of its categorical
    columns in training-column order, which is the order the signature lists them in."""
    booster = getattr(model, "booster_", model)
    categories = getattr(booster, "pandas_categorical", None) or []

    def prepare(frame: pd.DataFrame) -> pd.DataFrame:
        text = [name for name in frame.columns if frame[name].dtype == object]
        if not categories or len(text) != len(categories):
            return frame
        frame = frame.copy()
        for name, known in zip(text, categories, strict=True):
            frame[name] = pd.Categorical(frame[name], categories=known)
        return frame

    return prepare


def lightgbm_first_categories(adapter: Adapter) -> list[Any]:
    """A known category per categorical column (for a warm-up row LightGBM can read)."""
    booster = getattr(adapter.estimator, "booster_", adapter.estimator)
    return [known[0] for known in (getattr(booster, "pandas_categorical", None) or []) if len(known)]


def _pyfunc_predict(pyfunc: Any, with_params: bool = False) -> Callable[..., Outputs]:
    def predict(frame: pd.DataFrame, params: dict[str, Any] | None = None) -> Outputs:
        result = pyfunc.predict(frame, params=params) if with_params else pyfunc.predict(frame)
        if isinstance(result, pd.DataFrame):
            return {str(name): result[name].to_numpy() for name in result.columns}
        if isinstance(result, dict):
            return DictAnswer({str(name): np.asarray(values) for name, values in result.items()})
        return np.asarray(result)

    return predict


def _single_threaded(estimator: Any) -> None:
    # Micro-batching already fills each call; joblib threads per call only add overhead on small batches.
    if hasattr(estimator, "n_jobs"):
        with contextlib.suppress(AttributeError):  # a read-only property on some wrappers
            estimator.n_jobs = None
