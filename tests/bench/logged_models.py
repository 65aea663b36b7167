"""Two more ways a team logs a model (issue 25), measured on the demo telemetry like the demo models.

``booster``: a native XGBoost ``Booster`` from ``xgb.train`` (binary:logistic, 100 rounds of depth 6), trained on
the telemetry as a DataFrame so that it keeps the column names, logged with ``mlflow.xgboost`` and a signature
inferred from that DataFrame. Its answer is the probability of failure (what MLflow's pyfunc answers), not a label.

``nosig``: the demo's forest (100 trees, depth 12) fitted on the DataFrame rather than on the bare array, so that it
keeps ``feature_names_in_``, and logged with ``mlflow.sklearn`` with neither a signature nor an input example: the
server has only the estimator's own column names to read rows by.

Both carry no drift baseline (the demo's registration adds one), so ours watches no drift on them. As in
typed_model.py, requirements are listed rather than inferred (MLflow's inference imports the model in a subprocess,
~20 s per version), and the forest goes through skops like the demo's (loading it runs no code).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pandas as pd

from predictor.demo.training import SKOPS_TRUSTED_TYPES, generate_telemetry

EXPERIMENT = "bench-logged-models"
BOOSTER_PARAMS: dict[str, Any] = {"objective": "binary:logistic", "max_depth": 6}
BOOSTER_ROUNDS = 100
BOOSTER_REQUIREMENTS = ("mlflow", "xgboost", "numpy", "pandas")  # pinned to the versions that trained it
FOREST_REQUIREMENTS = ("mlflow", "scikit-learn", "skops", "numpy", "pandas")


def _pinned(packages: tuple[str, ...]) -> list[str]:
    return [f"{package}=={version(package)}" for package in packages]


def fit_booster(rows: int = 5000, seed: int = 42, rounds: int = BOOSTER_ROUNDS) -> tuple[Any, pd.DataFrame]:
    """The trained Booster and the DataFrame it was trained on."""
    import xgboost as xgb

    frame, labels = generate_telemetry(rows, seed)
    # No subsampling in BOOSTER_PARAMS: the same rows give the same trees.
    return xgb.train(BOOSTER_PARAMS, xgb.DMatrix(frame, label=labels), num_boost_round=rounds), frame


def booster_arguments(booster: Any, frame: pd.DataFrame) -> dict[str, Any]:
    """What ``mlflow.xgboost.log_model`` / ``save_model`` are given besides the model and where it goes."""
    import xgboost as xgb
    from mlflow.models import infer_signature

    head = frame.head(5)
    with warnings.catch_warnings():  # MLflow's notes on the inferred schema; the signature is checked in tests
        warnings.simplefilter("ignore")
        signature = infer_signature(head, booster.predict(xgb.DMatrix(head)))
    return {"signature": signature, "pip_requirements": _pinned(BOOSTER_REQUIREMENTS)}


def fit_unsigned_forest(rows: int = 5000, seed: int = 42, n_estimators: int = 100) -> tuple[Any, pd.DataFrame]:
    """The demo's forest fitted on the DataFrame (so it keeps ``feature_names_in_``), and that DataFrame."""
    from sklearn.ensemble import RandomForestClassifier

    frame, labels = generate_telemetry(rows, seed)
    forest = RandomForestClassifier(n_estimators=n_estimators, max_depth=12, random_state=seed)
    return forest.fit(frame, labels), frame


def unsigned_arguments() -> dict[str, Any]:
    """``mlflow.sklearn``'s arguments for the forest: no ``signature``, no ``input_example`` (either would give
    MLflow a schema), skops as the demo's."""
    from mlflow.sklearn import SERIALIZATION_FORMAT_SKOPS

    return {
        "serialization_format": SERIALIZATION_FORMAT_SKOPS,
        "skops_trusted_types": SKOPS_TRUSTED_TYPES["forest"],
        "pip_requirements": _pinned(FOREST_REQUIREMENTS),
    }


def register_booster(tracking_uri: str, name: str, alias: str, artifact_root: Path) -> str:
    """Train, log and register the Booster as ``name@alias``; the new version."""
    import mlflow.xgboost

    booster, frame = fit_booster()
    arguments = booster_arguments(booster, frame)
    return _register(tracking_uri, name, alias, artifact_root, mlflow.xgboost.log_model, booster, arguments)


def register_unsigned_forest(tracking_uri: str, name: str, alias: str, artifact_root: Path) -> str:
    """Fit, log (without signature) and register the forest as ``name@alias``; the new version."""
    import mlflow.sklearn

    forest, _ = fit_unsigned_forest()
    arguments = unsigned_arguments()
    return _register(tracking_uri, name, alias, artifact_root, mlflow.sklearn.log_model, forest, arguments)


def _register(
    tracking_uri: str,
    name: str,
    alias: str,
    artifact_root: Path,
    log_model: Callable[..., Any],
    model: Any,
    arguments: dict[str, Any],
) -> str:
    """``model`` logged with its flavor's ``log_model`` in a run of the bench's experiment and registered, then
    ``name@alias`` pointed at the version it made."""
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    if mlflow.get_experiment_by_name(EXPERIMENT) is None:
        mlflow.create_experiment(EXPERIMENT, artifact_location=artifact_root.resolve().as_uri())
    mlflow.set_experiment(EXPERIMENT)
    with mlflow.start_run(run_name=f"{name}-{alias}"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. MLflow's note that a model without a signature is logged
        info = log_model(model, name="model", registered_model_name=name, **arguments)
    version_ = str(info.registered_model_version)
    MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri).set_registered_model_alias(name, alias, version_)
    return version_
