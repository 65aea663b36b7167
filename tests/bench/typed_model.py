"""The bench's typed model (issue 11): a ColumnTransformer pipeline with a string column, logged as a user would.

OneHotEncoder on the string ``equipment_type`` column, the demo's ten telemetry columns passed through, then a
RandomForestClassifier as large as the demo forest (100 trees, depth 12), so that what differs from the forest
scenarios is the typed request, not the trees. Fitted on a typed DataFrame and logged with ``mlflow.sklearn`` the
way issue 11 tried users' own models: skops with the trusted types MLflow asks for, a signature inferred from the
DataFrame (``equipment_type`` string, the rest double), requirements listed rather than inferred.

The demo models are untouched: nothing here passes through ``predictor.demo.training``'s registration.
"""

from __future__ import annotations

import warnings
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from predictor.demo.columns import FEATURE_NAMES
from predictor.demo.training import EQUIPMENT_TYPES, generate_telemetry

STRING_COLUMN = "equipment_type"
COLUMNS = (STRING_COLUMN, *FEATURE_NAMES)  # the signature's order
# What skops refuses to load unless told (skops.io.get_untrusted_types on the fitted pipeline lists only this).
TRUSTED_TYPES = ["sklearn.tree._tree.Tree"]
EXPERIMENT = "bench-typed-model"
REQUIREMENTS = ("mlflow", "scikit-learn", "skops", "numpy", "pandas")  # pinned to the versions that trained it


def typed_frame(rows: int, seed: int = 42) -> tuple[pd.DataFrame, np.ndarray]:
    """The demo telemetry with an ``equipment_type`` string column in front, and a 0/1 failure label per row.

    Turbines fail more often than the telemetry alone says, so the string column carries signal the forest uses.
    """
    features, labels = generate_telemetry(rows, seed)
    rng = np.random.default_rng(seed + 1)
    equipment = rng.choice(EQUIPMENT_TYPES, rows)
    frame = features.copy()
    frame.insert(0, STRING_COLUMN, equipment)
    extra = (equipment == "turbine") & (rng.uniform(0, 1, rows) < 0.2)
    return frame, (labels.astype(bool) | extra).astype(int)


def fit(rows: int = 5000, seed: int = 42, n_estimators: int = 100) -> tuple[Any, pd.DataFrame]:
    """The fitted pipeline and the DataFrame it was fitted on."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    frame, labels = typed_frame(rows, seed)
    columns = ColumnTransformer(
        [(STRING_COLUMN, OneHotEncoder(handle_unknown="ignore"), [STRING_COLUMN])], remainder="passthrough"
    )
    forest = RandomForestClassifier(n_estimators=n_estimators, max_depth=12, random_state=seed)
    pipeline = Pipeline([("columns", columns), ("forest", forest)])
    pipeline.fit(frame, labels)
    return pipeline, frame


def flavor_arguments(pipeline: Any, frame: pd.DataFrame) -> dict[str, Any]:
    """What ``mlflow.sklearn.log_model`` / ``save_model`` are given besides the model and where it goes."""
    from mlflow.models import infer_signature
    from mlflow.sklearn import SERIALIZATION_FORMAT_SKOPS

    with warnings.catch_warnings():  # MLflow's notes on the inferred schema; the signature is checked in tests
        warnings.simplefilter("ignore")
        signature = infer_signature(frame.head(5), pipeline.predict(frame.head(5)))
    return {
        "signature": signature,
        "serialization_format": SERIALIZATION_FORMAT_SKOPS,
        "skops_trusted_types": TRUSTED_TYPES,
        # Listed, not inferred: MLflow's inference imports the model in a subprocess (~20 s per version).
        "pip_requirements": [f"{package}=={version(package)}" for package in REQUIREMENTS],
    }


def register_typed_model(tracking_uri: str, name: str, alias: str, artifact_root: Path) -> str:
    """Fit, log and register the pipeline as ``name@alias`` in a fresh registry; the new version."""
    import mlflow
    from mlflow import MlflowClient

    pipeline, frame = fit()
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    if mlflow.get_experiment_by_name(EXPERIMENT) is None:
        mlflow.create_experiment(EXPERIMENT, artifact_location=artifact_root.resolve().as_uri())
    mlflow.set_experiment(EXPERIMENT)
    with mlflow.start_run(run_name=f"typed-{alias}"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        info = mlflow.sklearn.log_model(pipeline, name="model", registered_model_name=name,
                                        **flavor_arguments(pipeline, frame))  # fmt: skip
    version_ = str(info.registered_model_version)
    MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri).set_registered_model_alias(name, alias, version_)
    return version_
