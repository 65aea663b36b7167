"""Small real models a user might bring, each trained on a typed DataFrame and saved with its MLflow flavor.

Each ``Zoo`` entry knows how to save itself into a directory and how to answer a DataFrame the way the
user's own Python session would (``predict`` / ``predict_proba`` on the fitted object), which is what the
server must answer over every request format.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROWS = 300
# Listed, not inferred: inferring requirements costs ~20 s per model.
PIP = ["mlflow"]


@dataclass
class OwnModel:
    name: str
    frame: pd.DataFrame  # a few rows to send, with the training dtypes
    save: Callable[[Path], None]  # writes an MLflow model directory
    predictions: Callable[[pd.DataFrame], np.ndarray]
    probabilities: Callable[[pd.DataFrame], np.ndarray] | None = None
    extra_outputs: tuple[str, ...] = ()  # pyfunc DataFrame results: one output per column


def json_value(value: Any) -> Any:
    """A DataFrame cell as a client writes it in JSON (datetimes as ISO-8601 strings)."""
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, np.generic):
        return value.item()
    return value


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The rows as JSON objects keyed by column."""
    return [{k: json_value(v) for k, v in row.items()} for row in frame.astype(object).to_dict(orient="records")]


def lists(frame: pd.DataFrame) -> list[list[Any]]:
    """The rows as JSON lists in column order."""
    return [[json_value(v) for v in row] for row in frame.astype(object).itertuples(index=False)]


def _data(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "temperature": rng.normal(70, 10, ROWS),
            "vibration": rng.normal(0.3, 0.1, ROWS),
            "pressure": rng.normal(2.0, 0.5, ROWS),
            "cycles": rng.integers(0, 5000, ROWS).astype(np.int64),
            "shift": rng.integers(1, 4, ROWS).astype(np.int32),
            "site": rng.choice(["north", "south", "east"], ROWS),
        }
    )


def _target(frame: pd.DataFrame) -> np.ndarray:
    score = (frame["temperature"] - 70) / 10 + (frame["vibration"] - 0.3) * 5 + frame["cycles"] / 2500
    return (score + (frame["site"] == "north") > 1.0).to_numpy().astype(np.int64)


def _signature(frame: pd.DataFrame, output: Any) -> Any:
    import warnings

    from mlflow.models import infer_signature

    # MLflow warns about integer columns ("cannot represent missing values") and, when the suite turns
    # warnings into errors, catches its own error and records an "any" input instead: keep its warnings quiet.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return infer_signature(frame, output)


def _sklearn(estimator: Any, frame: pd.DataFrame, y: Any, trusted: list[str]) -> Callable[[Path], None]:
    import mlflow.sklearn

    estimator.fit(frame, y)

    def save(path: Path) -> None:
        mlflow.sklearn.save_model(
            estimator,
            str(path),
            signature=_signature(frame, estimator.predict(frame)),
            serialization_format="skops",
            skops_trusted_types=trusted,
            pip_requirements=PIP,
        )

    return save


def forest() -> OwnModel:
    from sklearn.ensemble import RandomForestClassifier

    frame = _data()[["temperature", "vibration", "pressure"]]
    model = RandomForestClassifier(n_estimators=20, max_depth=6, random_state=0)
    save = _sklearn(model, frame, _target(_data()), ["sklearn.tree._tree.Tree"])
    return OwnModel("forest", frame.head(5), save, model.predict, model.predict_proba)


def scaler_logistic() -> OwnModel:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    frame = _data()[["temperature", "vibration", "pressure"]]
    model = Pipeline([("scale", StandardScaler()), ("classify", LogisticRegression())])
    save = _sklearn(model, frame, _target(_data()), [])
    return OwnModel("scaler_logistic", frame.head(5), save, model.predict, model.predict_proba)


def column_transformer() -> OwnModel:
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    frame = _data()[["temperature", "vibration", "site"]]
    model = Pipeline(
        [
            (
                "columns",
                ColumnTransformer(
                    [("site", OneHotEncoder(handle_unknown="ignore"), ["site"])],
                    remainder="passthrough",
                ),
            ),
            ("forest", RandomForestClassifier(n_estimators=20, max_depth=6, random_state=0)),
        ]
    )
    save = _sklearn(model, frame, _target(_data()), ["sklearn.tree._tree.Tree"])
    return OwnModel("column_transformer", frame.head(6), save, model.predict, model.predict_proba)


def ridge_regressor() -> OwnModel:
    """A regressor: predictions (floats) only, no probabilities; a string and a long column scaled and encoded."""
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    frame = _data()[["temperature", "cycles", "site"]]
    hours_left = 5000 - frame["cycles"] - 20 * (frame["temperature"] - 70) + 300 * (frame["site"] == "north")
    model = Pipeline(
        [
            (
                "columns",
                ColumnTransformer(
                    [
                        ("site", OneHotEncoder(handle_unknown="ignore"), ["site"]),
                        ("numbers", StandardScaler(), ["temperature", "cycles"]),
                    ]
                ),
            ),
            ("ridge", Ridge(alpha=1.0)),
        ]
    )
    save = _sklearn(model, frame, hours_left.to_numpy(), [])
    return OwnModel("ridge_regressor", frame.head(5), save, model.predict)


def hist_gradient_int_columns() -> OwnModel:
    """HistGradientBoosting on long and integer (int32) columns, next to a double."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    frame = _data()[["cycles", "shift", "temperature"]]
    model = HistGradientBoostingClassifier(max_iter=20, random_state=0)
    save = _sklearn(model, frame, _target(_data()), _hgb_trusted())
    return OwnModel("hist_gradient", frame.head(5), save, model.predict, model.predict_proba)


def string_labels() -> OwnModel:
    from sklearn.ensemble import GradientBoostingClassifier

    frame = _data()[["cycles", "temperature"]]
    labels = np.where(_target(_data()) == 1, "fail", "ok")
    model = GradientBoostingClassifier(n_estimators=20, random_state=0)
    save = _sklearn(model, frame, labels, _gb_trusted())
    return OwnModel("string_labels", frame.head(6), save, model.predict, model.predict_proba)


def xgboost() -> OwnModel:
    import mlflow.xgboost
    import xgboost as xgb

    frame = _data()[["cycles", "temperature", "vibration"]]
    model = xgb.XGBClassifier(n_estimators=20, max_depth=3)
    model.fit(frame, _target(_data()))

    def save(path: Path) -> None:
        mlflow.xgboost.save_model(
            model, str(path), signature=_signature(frame, model.predict(frame)), pip_requirements=PIP
        )

    return OwnModel("xgboost", frame.head(5), save, model.predict, model.predict_proba)


def lightgbm() -> OwnModel:
    import lightgbm as lgb
    import mlflow.lightgbm

    frame = _data()[["temperature", "vibration", "site"]].astype({"site": "category"})
    model = lgb.LGBMClassifier(n_estimators=20, min_child_samples=5, verbose=-1)
    model.fit(frame, _target(_data()))

    def save(path: Path) -> None:
        mlflow.lightgbm.save_model(
            model,
            str(path),
            signature=_signature(frame, model.predict(frame)),
            serialization_format="skops",
            skops_trusted_types=_lgbm_trusted(),
            pip_requirements=PIP,
        )

    return OwnModel("lightgbm", frame.head(6), save, model.predict, model.predict_proba)


def custom_pyfunc() -> OwnModel:
    import mlflow.pyfunc

    class Scorer(mlflow.pyfunc.PythonModel):  # type: ignore[misc]
        # No type hints on purpose: MLflow would read them as the model's signature (one "Any" input)
        # instead of the DataFrame signature given below.
        def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
            return _score(model_input)

    frame = _data()[["temperature", "site"]].head(4)
    frame["installed"] = pd.to_datetime(
        ["2024-01-02T03:04:05", "2023-06-01T00:00:00", "2022-12-31T23:59:59", "2021-01-01T00:00:00"]
    )
    frame["active"] = [True, False, True, True]

    def save(path: Path) -> None:
        import warnings

        import cloudpickle

        # The server runs in a scratch directory where `tests` is not importable, as a user's server would not
        # have the user's training code: pickle this module's classes and functions by value.
        cloudpickle.register_pickle_by_value(sys.modules[__name__])
        with warnings.catch_warnings():  # "no input_example": the signature is given, on purpose
            warnings.simplefilter("ignore", UserWarning)
            mlflow.pyfunc.save_model(
                str(path), python_model=Scorer(), signature=_signature(frame, _score(frame)), pip_requirements=PIP
            )

    return OwnModel(
        "custom_pyfunc",
        frame,
        save,
        lambda f: _score(f)["score"].to_numpy(),
        extra_outputs=("score", "band"),
    )


def _score(frame: pd.DataFrame) -> pd.DataFrame:
    years = 2025 - frame["installed"].dt.year
    score = frame["temperature"] / 10 + years + frame["active"].astype(float) + (frame["site"] == "north")
    return pd.DataFrame({"score": score.astype(float), "band": np.where(score > 10, "high", "low")})


def _hgb_trusted() -> list[str]:
    return [
        "sklearn._loss.link.Interval",
        "sklearn._loss.link.LogitLink",
        "sklearn._loss.loss.HalfBinomialLoss",
        "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    ]


def _gb_trusted() -> list[str]:
    return [
        "sklearn._loss.link.Interval",
        "sklearn._loss.link.LogitLink",
        "sklearn._loss.loss.HalfBinomialLoss",
        "sklearn.tree._tree.Tree",
        "sklearn.dummy.DummyClassifier",
        "sklearn.ensemble._gb.GradientBoostingClassifier",
    ]


def _lgbm_trusted() -> list[str]:
    return ["lightgbm.basic.Booster", "lightgbm.sklearn.LGBMClassifier", "collections.OrderedDict"]


ALL: dict[str, Callable[[], OwnModel]] = {
    "forest": forest,
    "scaler_logistic": scaler_logistic,
    "column_transformer": column_transformer,
    "ridge_regressor": ridge_regressor,
    "hist_gradient": hist_gradient_int_columns,
    "string_labels": string_labels,
    "xgboost": xgboost,
    "lightgbm": lightgbm,
    "custom_pyfunc": custom_pyfunc,
}
