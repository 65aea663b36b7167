"""A generated zoo of ordinary registry models, as maintenance teams log them, and MLflow's own answer for each.

Models are generated from three axes instead of picked by hand: the estimator (every built-in tabular flavor,
in its scikit-learn and native API where it has both, and custom pyfuncs answering arrays, Series, DataFrames
and dicts), the task (binary, multi-class, string labels, no ``predict_proba``, one and two regression targets,
anomaly scores, a pipeline that imputes), and how the signature was logged (by columns, by tensor — trained on
NumPy — or not at all). ``ZOO`` is their product, less the pairs that make no sense (a pyfunc has no training
arrays). The oracle is ``mlflow.pyfunc.load_model(path).predict`` in this process, on the same rows.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

Signature = Literal["columns", "tensor", "none"]
ROWS = 240
PIP = ["mlflow"]  # listed, not inferred: inferring requirements costs ~20 s per model
COLUMNS = ("temperature", "vibration", "pressure", "cycles")


def training_frame(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "temperature": rng.normal(70, 10, ROWS),
            "vibration": rng.normal(0.3, 0.1, ROWS),
            "pressure": rng.normal(2.0, 0.5, ROWS),
            "cycles": rng.integers(0, 5000, ROWS).astype(np.float64),
        }
    )


def _score(frame: pd.DataFrame) -> np.ndarray:
    return np.asarray(
        (frame["temperature"] - 70) / 10 + (frame["vibration"] - 0.3) * 5 + frame["cycles"] / 2500, dtype=float
    )


def binary_target(frame: pd.DataFrame) -> np.ndarray:
    return (_score(frame) > 1.0).astype(np.int64)


def three_classes(frame: pd.DataFrame) -> np.ndarray:
    return np.digitize(_score(frame), [0.5, 1.5]).astype(np.int64)


def hours_left(frame: pd.DataFrame) -> np.ndarray:
    return np.asarray(5000 - frame["cycles"] - 20 * (frame["temperature"] - 70), dtype=float)


@dataclass
class ZooModel:
    name: str
    signature: Signature
    save: Callable[[Path], None]
    rows: pd.DataFrame  # what a client sends (NaN: a null, for optional columns)
    classifier: bool = False  # has predict_proba: v1 also answers probabilities
    probabilities: Callable[[pd.DataFrame], np.ndarray] | None = None
    params: dict[str, Any] | None = None  # inference parameters a request sends (they change the answer)
    answers: Literal["array", "frame", "dict"] = "array"
    notes: list[str] = field(default_factory=list)

    @property
    def named(self) -> bool:
        """A client can name the columns (the signature, or the estimator, knows them)."""
        return self.signature != "tensor"


# ------------------------------------------------------------------------------------ estimators


@dataclass(frozen=True)
class Estimator:
    name: str
    flavor: str
    fit: Callable[[Any, pd.DataFrame], Any]  # (X as the signature kind trains it, the frame) -> fitted model
    classifier: bool = False
    optional: tuple[str, ...] = ()  # columns the pipeline imputes (nulls allowed)


def _sk(factory: Callable[[], Any], target: Callable[[pd.DataFrame], Any]) -> Callable[[Any, pd.DataFrame], Any]:
    def fit(x: Any, frame: pd.DataFrame) -> Any:
        model = factory()
        model.fit(x, target(frame))
        return model

    return fit


def _forest() -> Any:
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(n_estimators=12, max_depth=5, random_state=0)


def _logistic_multiclass() -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))


def _string_labels(x: Any, frame: pd.DataFrame) -> Any:
    from sklearn.ensemble import GradientBoostingClassifier

    model = GradientBoostingClassifier(n_estimators=10, random_state=0)
    model.fit(x, np.where(binary_target(frame) == 1, "fail", "ok"))
    return model


def _linear_svc() -> Any:
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    return make_pipeline(StandardScaler(), LinearSVC())


def _ridge() -> Any:
    from sklearn.linear_model import Ridge

    return Ridge(alpha=1.0)


def _two_targets(x: Any, frame: pd.DataFrame) -> Any:
    from sklearn.linear_model import Ridge

    model = Ridge(alpha=1.0)
    model.fit(x, np.column_stack([hours_left(frame), _score(frame)]))
    return model


def _isolation(x: Any, frame: pd.DataFrame) -> Any:
    from sklearn.ensemble import IsolationForest

    return IsolationForest(n_estimators=20, random_state=0).fit(x)


def _imputing(x: Any, frame: pd.DataFrame) -> Any:
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(SimpleImputer(), StandardScaler(), LogisticRegression())
    x = x.copy()
    if isinstance(x, pd.DataFrame):
        x.loc[::7, "pressure"] = np.nan
    else:
        x[::7, 2] = np.nan
    return model.fit(x, binary_target(frame))


def _xgb_classifier(x: Any, frame: pd.DataFrame) -> Any:
    import xgboost as xgb

    return xgb.XGBClassifier(n_estimators=10, max_depth=3).fit(x, binary_target(frame))


def _xgb_booster(x: Any, frame: pd.DataFrame) -> Any:
    import xgboost as xgb

    train = xgb.DMatrix(x, label=binary_target(frame))
    return xgb.train({"objective": "binary:logistic", "max_depth": 3}, train, num_boost_round=10)


def _lgb_classifier(x: Any, frame: pd.DataFrame) -> Any:
    import lightgbm as lgb

    return lgb.LGBMClassifier(n_estimators=10, min_child_samples=5, verbose=-1).fit(x, three_classes(frame))


def _lgb_booster(x: Any, frame: pd.DataFrame) -> Any:
    import lightgbm as lgb

    train = lgb.Dataset(x, label=hours_left(frame))
    return lgb.train({"objective": "regression", "verbose": -1, "min_data_in_leaf": 5}, train, num_boost_round=10)


def _catboost(x: Any, frame: pd.DataFrame) -> Any:
    from catboost import CatBoostClassifier

    # allow_writing_files=False: CatBoost would write a catboost_info directory into the working directory
    model = CatBoostClassifier(iterations=10, depth=3, verbose=False, thread_count=1, allow_writing_files=False)
    return model.fit(x, binary_target(frame))


def _statsmodels(x: Any, frame: pd.DataFrame) -> Any:
    import statsmodels.api as sm

    return sm.OLS(hours_left(frame), x).fit()


ESTIMATORS = (
    Estimator("forest", "sklearn", _sk(_forest, binary_target), classifier=True),
    Estimator("logistic_3", "sklearn", _sk(_logistic_multiclass, three_classes), classifier=True),
    Estimator("string_labels", "sklearn", _string_labels, classifier=True),
    Estimator("linear_svc", "sklearn", _sk(_linear_svc, binary_target)),
    Estimator("ridge", "sklearn", _sk(_ridge, hours_left)),
    Estimator("ridge_2", "sklearn", _two_targets),
    Estimator("isolation", "sklearn", _isolation),
    Estimator("imputing", "sklearn", _imputing, classifier=True, optional=("pressure",)),
    Estimator("xgb_sk", "xgboost", _xgb_classifier, classifier=True),
    Estimator("xgb_native", "xgboost", _xgb_booster),
    Estimator("lgb_sk", "lightgbm", _lgb_classifier, classifier=True),
    Estimator("lgb_native", "lightgbm", _lgb_booster),
    Estimator("catboost", "catboost", _catboost, classifier=True),
    Estimator("statsmodels", "statsmodels", _statsmodels),
)
# The signature kinds each estimator is logged with: every one by columns; the tensor and missing signatures
# for one of each flavor's APIs (the product of all would only repeat the same code paths).
TENSOR_AND_NONE = ("forest", "ridge", "xgb_sk", "xgb_native", "lgb_native", "catboost")


def _signature(x: Any, output: Any, optional: tuple[str, ...] = ()) -> Any:
    from mlflow.models import infer_signature

    with warnings.catch_warnings():  # "integer columns cannot represent missing values" and friends
        warnings.simplefilter("ignore")
        signature = infer_signature(x, output)
    for spec in signature.inputs.inputs if optional else ():
        if spec.name in optional:
            spec._required = False  # what infer_signature records for a column with a null in the example
    return signature


def _saver(estimator: Estimator, model: Any, signature: Any) -> Callable[[Path], None]:
    def save(path: Path) -> None:
        import importlib

        flavor = importlib.import_module(f"mlflow.{estimator.flavor}")
        options: dict[str, Any] = {"signature": signature, "pip_requirements": PIP}
        if estimator.flavor == "sklearn":
            options["serialization_format"] = "cloudpickle"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            flavor.save_model(model, str(path), **options)

    return save


def estimator_model(estimator: Estimator, signature: Signature) -> ZooModel:
    frame = training_frame()
    x: Any = frame.to_numpy() if signature == "tensor" else frame
    model = estimator.fit(x, frame)
    rows = training_frame(seed=1).head(6)
    for column in estimator.optional:
        rows.loc[rows.index[::2], column] = np.nan
    logged = None
    if signature != "none":
        sample = rows.to_numpy() if signature == "tensor" else rows
        logged = _signature(x, _predict_for_signature(model, sample), estimator.optional)
    probabilities = None
    if estimator.classifier:

        def probabilities(frame: pd.DataFrame) -> np.ndarray:
            return np.asarray(model.predict_proba(frame.to_numpy() if signature == "tensor" else frame))

    return ZooModel(
        f"{estimator.name}-{signature}",
        signature,
        _saver(estimator, model, logged),
        rows,
        classifier=estimator.classifier,
        probabilities=probabilities,
    )


def _predict_for_signature(model: Any, sample: Any) -> Any:
    try:
        return model.predict(sample)
    except Exception:  # a native Booster wants its own matrix type: the signature's output is only a type
        return np.zeros(len(sample))


# ------------------------------------------------------------------------------------ custom pyfuncs


def _answer(frame: pd.DataFrame, kind: str, factor: float = 1.0) -> Any:
    score = _score(frame) * factor
    if kind == "series":
        return pd.Series(score, name="failure_score")
    if kind == "frame":
        return pd.DataFrame({"failure_score": score, "alert": np.where(score > 1.0, "high", "low")})
    if kind == "dict":
        return {"failure_score": score, "alert": np.where(score > 1.0, "high", "low")}
    return score


def pyfunc_model(kind: str, with_params: bool = False) -> ZooModel:
    import mlflow.pyfunc

    class Scorer(mlflow.pyfunc.PythonModel):  # type: ignore[misc]
        # No type hints on purpose: MLflow would read them as the model's signature.
        def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
            factor = float((params or {}).get("factor", 1.0))
            return _answer(model_input, kind, factor)

    rows = training_frame(seed=2).head(5)
    params = {"factor": 2.5} if with_params else None

    def save(path: Path) -> None:
        import cloudpickle
        from mlflow.models import infer_signature

        cloudpickle.register_pickle_by_value(sys.modules[__name__])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            signature = infer_signature(rows, _answer(rows, kind), params={"factor": 1.0} if with_params else None)
            mlflow.pyfunc.save_model(str(path), python_model=Scorer(), signature=signature, pip_requirements=PIP)

    answers: Literal["array", "frame", "dict"] = "frame" if kind == "frame" else "dict" if kind == "dict" else "array"
    name = "pyfunc_params" if with_params else f"pyfunc_{kind}"
    return ZooModel(name, "columns", save, rows, params=params, answers=answers)


# ------------------------------------------------------------------------------------ the zoo


def zoo_builders() -> dict[str, Callable[[], ZooModel]]:
    """Every model of the zoo by name, built (trained) only when called."""
    builders: dict[str, Callable[[], ZooModel]] = {}
    for estimator in ESTIMATORS:
        for signature in ("columns", "tensor", "none"):
            if signature == "columns" or estimator.name in TENSOR_AND_NONE:
                builders[f"{estimator.name}-{signature}"] = _bind(estimator_model, estimator, signature)
    for kind in ("array", "series", "frame", "dict"):
        builders[f"pyfunc_{kind}"] = _bind(pyfunc_model, kind)
    builders["pyfunc_params"] = _bind(pyfunc_model, "array", True)
    return builders


def _bind(function: Callable[..., ZooModel], *arguments: Any) -> Callable[[], ZooModel]:
    return lambda: function(*arguments)


def oracle(path: Path, model: ZooModel, params: dict[str, Any] | None) -> Any:
    """What ``mlflow.pyfunc`` answers for the model's rows (with ``params``, if any)."""
    import mlflow.pyfunc

    loaded = mlflow.pyfunc.load_model(str(path))
    rows = model.rows.to_numpy() if model.signature == "tensor" else model.rows
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return loaded.predict(rows, params=params) if params else loaded.predict(rows)
