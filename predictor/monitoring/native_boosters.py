"""XGBoost and LightGBM explained through their own exact TreeSHAP: ``pred_contribs`` / ``pred_contrib``.

Both give, per row, margin-space contributions per model column plus a bias column (the base margin), for
binary ``[N, F+1]`` and multiclass ``[N, K, F+1]`` (XGBoost) or ``[N, K·(F+1)]`` (LightGBM). ``explain.py``
carries them to probability space. Works for the scikit-learn wrappers (XGBClassifier, LGBMClassifier) and
the native Boosters; the link is read from the objective (logistic → sigmoid, softmax/softprob → softmax).
Imported only when such a model is explained: neither library is a dependency of the server.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from predictor.errors import ExplanationNotSupported
from predictor.monitoring.attribution import Attribution, Floats

Method = tuple[Callable[[Any], Attribution], Callable[[Any], Floats], list[Any]]


def _split(contributions: Any, outputs: int, link: str) -> Attribution:
    values = np.asarray(contributions, dtype=np.float64)
    values = values.reshape(values.shape[0], outputs, -1)
    return Attribution(values[:, :, :-1], values[:, :, -1], link)


def _as_proba(raw: Any) -> Floats:
    values = np.asarray(raw, dtype=np.float64)
    if values.ndim == 1:
        return np.column_stack([1 - values, values])
    return values


def xgboost_method(model: Any) -> Method:
    import xgboost

    booster = model.get_booster() if hasattr(model, "get_booster") else model
    objective = str(_xgb_objective(booster))
    if objective == "binary:logistic":
        outputs, link = 1, "sigmoid"
    elif objective in ("multi:softprob", "multi:softmax"):
        outputs, link = _xgb_classes(booster), "softmax"
    else:
        raise ExplanationNotSupported(f"XGBoost objective {objective!r} is not a probability; cannot explain it")

    def matrix(x: Any) -> Any:
        return xgboost.DMatrix(x, enable_categorical=True)

    def attribute(x: Any) -> Attribution:
        return _split(booster.predict(matrix(x), pred_contribs=True), outputs, link)

    def probabilities(x: Any) -> Floats:
        if hasattr(model, "predict_proba"):
            return _as_proba(model.predict_proba(x))
        return _as_proba(booster.predict(matrix(x)))

    classes = list(getattr(model, "classes_", range(max(2, outputs))))
    return attribute, probabilities, classes


def _xgb_objective(booster: Any) -> str:
    import json

    config = json.loads(booster.save_config())
    return str(config["learner"]["objective"]["name"])


def _xgb_classes(booster: Any) -> int:
    import json

    config = json.loads(booster.save_config())
    return int(config["learner"]["learner_model_param"]["num_class"])


def lightgbm_method(model: Any) -> Method:
    booster = model.booster_ if hasattr(model, "booster_") else model
    objective = str(booster.params.get("objective", getattr(model, "objective_", "")))
    classes_count = int(booster.params.get("num_class", 1))
    if objective in ("binary", "cross_entropy", "xentropy"):
        outputs, link = 1, "sigmoid"
    elif objective in ("multiclass", "softmax", "multiclassova") and classes_count > 1:
        outputs, link = classes_count, "softmax"
    else:
        raise ExplanationNotSupported(f"LightGBM objective {objective!r} is not a probability; cannot explain it")

    def attribute(x: Any) -> Attribution:
        return _split(booster.predict(x, pred_contrib=True), outputs, link)

    def probabilities(x: Any) -> Floats:
        if hasattr(model, "predict_proba"):
            return _as_proba(model.predict_proba(x))
        return _as_proba(booster.predict(x))

    classes = list(getattr(model, "classes_", range(max(2, outputs))))
    return attribute, probabilities, classes
