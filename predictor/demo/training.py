"""Synthetic equipment telemetry and the demo model trained on it, registered in MLflow.

Seeded and reproducible: the same seed gives the same rows and the same forest. Used by the bootstrap
(``python -m predictor.demo.bootstrap``), the tests and the benchmark; a user's own model never passes here.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from predictor.config import DEFAULT_MODEL_NAME
from predictor.demo.columns import ENTITY_KEY, FEATURE_NAMES

log = logging.getLogger(__name__)

ModelKind = Literal["forest", "logreg"]
# The non-default types skops must be told to trust when loading each demo model (MLflow lists them).
SKOPS_TRUSTED_TYPES: dict[str, list[str]] = {"forest": ["sklearn.tree._tree.Tree"], "logreg": []}
EQUIPMENT_TYPES = ("pump", "compressor", "turbine", "fan")


def generate_telemetry(rows: int = 5000, seed: int = 42) -> tuple[pd.DataFrame, np.ndarray]:
    """Features in ``FEATURE_NAMES`` order (all float64) and a 0/1 failure label per row."""
    rng = np.random.default_rng(seed)
    age = rng.uniform(1, 120, rows)
    load = np.clip(rng.beta(4, 3, rows), 0, 1)
    temperature = 45 + 0.25 * age / 12 + 30 * load + rng.normal(0, 6, rows)
    vibration = np.abs(0.08 + 0.002 * age + 0.15 * load + rng.normal(0, 0.05, rows))
    pressure = np.abs(0.5 + 0.6 * load + rng.normal(0, 0.25, rows))
    runtime = rng.uniform(0, 8, rows)
    overheat = (temperature + rng.normal(0, 4, rows) > 85).astype(float)
    vib_alarm = (vibration + rng.normal(0, 0.03, rows) > 0.35).astype(float)
    lube = (rng.uniform(0, 1, rows) < 0.15 + 0.03 * runtime).astype(float)
    repair = (rng.uniform(0, 1, rows) < 0.1).astype(float)
    risk = (
        -7.0
        + 0.06 * (temperature - 60)
        + 0.02 * age
        + 6.0 * vibration
        + 1.5 * load
        + 0.4 * runtime
        + 1.2 * overheat
        + 1.0 * vib_alarm
        + 0.8 * lube
        - 0.7 * repair
    )
    labels = (rng.uniform(0, 1, rows) < 1 / (1 + np.exp(-risk))).astype(int)
    columns = (temperature, age.round(), vibration, load, pressure, runtime, overheat, vib_alarm, lube, repair)
    frame = pd.DataFrame(dict(zip(FEATURE_NAMES, columns, strict=False)), columns=list(FEATURE_NAMES)).astype("float64")
    return frame, labels


def equipment_ids(count: int) -> list[str]:
    """Ids like ``pump-0017``, numbered per type: pump-0000, compressor-0000, …, pump-0001, …"""
    per_type = -(-count // len(EQUIPMENT_TYPES))
    return [f"{kind}-{n:04d}" for n in range(per_type) for kind in EQUIPMENT_TYPES][:count]


def telemetry_with_ids(count: int = 200, seed: int = 7) -> pd.DataFrame:
    """The latest reading per piece of equipment, for the Feast online store."""
    frame, _ = generate_telemetry(count, seed)
    frame.insert(0, ENTITY_KEY, equipment_ids(count))
    return frame


def train(
    kind: ModelKind = "forest", rows: int = 5000, seed: int = 42, n_estimators: int = 100
) -> Any:  # a fitted sklearn estimator
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    features, labels = generate_telemetry(rows, seed)
    if kind == "forest":
        model = RandomForestClassifier(n_estimators=n_estimators, max_depth=12, random_state=seed)
    else:
        model = LogisticRegression(max_iter=1000)
    # Fitted on a bare array: the server passes NumPy rows in signature order, never a DataFrame.
    model.fit(features.to_numpy(), labels)
    return model, features


@dataclass(frozen=True)
class Registered:
    name: str
    version: str
    created: bool


def register_demo_model(
    tracking_uri: str,
    name: str = DEFAULT_MODEL_NAME,
    kind: ModelKind = "forest",
    alias: str = "production",
    artifact_root: Path | None = None,
    force: bool = False,
    seed: int = 42,
    n_estimators: int = 100,
    stage: str | None = "Production",
) -> Registered:
    """Train and register the demo model unless ``name@alias`` already exists (idempotent).

    Points the alias and (unless ``stage`` is None) the deprecated ``Production`` stage at the new version,
    since the seed's URIs use both. The version carries its drift baseline (``drift_baseline.json``, from the
    training rows and the model's predictions on them: ``predictor.monitoring.baseline``).
    """
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException
    from mlflow.models import infer_signature

    from predictor.monitoring.baseline import log_drift_baseline

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    if not force:
        try:
            existing = client.get_model_version_by_alias(name, alias)
            return Registered(name, str(existing.version), created=False)
        except MlflowException:
            pass
    log.info("training the demo %s model on generated telemetry", kind)
    estimator, features = train(kind, seed=seed, n_estimators=n_estimators)
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    experiment = "predictive-maintenance-demo"
    if mlflow.get_experiment_by_name(experiment) is None:
        location = artifact_root.resolve().as_uri() if artifact_root else None
        mlflow.create_experiment(experiment, artifact_location=location)
    mlflow.set_experiment(experiment)
    example = features.head(5)
    signature = infer_signature(example, estimator.predict(example.to_numpy()))
    with mlflow.start_run(run_name=f"demo-{kind}-{alias}"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mlflow.log_params({"kind": kind, "features": len(FEATURE_NAMES), "seed": seed, "n_estimators": n_estimators})
        info = mlflow.sklearn.log_model(
            estimator,
            name="model",
            signature=signature,
            input_example=example,
            registered_model_name=name,
            # Training means: what the "fill" missing-feature policy substitutes (read back by registry.py).
            metadata={"feature_defaults": features.mean().round(6).to_dict()},
            # skops: loading it runs no code, so the demo also serves with --allow_pickle false. skops
            # refuses types beyond its defaults unless they are listed: the forest's trees are the only one.
            serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_SKOPS,
            skops_trusted_types=SKOPS_TRUSTED_TYPES[kind],
            # Listed, not inferred: MLflow's inference imports the model in a subprocess (~20 s per version).
            pip_requirements=_requirements(),
        )
        log_drift_baseline(
            features, estimator.predict(features.to_numpy()), model_id=info.model_id, tracking_uri=tracking_uri
        )
        version = str(info.registered_model_version)
        client.set_registered_model_alias(name, alias, version)
        if stage is not None:
            client.transition_model_version_stage(name, version, stage, archive_existing_versions=True)
    log.info("registered %s version %s as @%s%s", name, version, alias, f" and stage {stage}" if stage else "")
    return Registered(name, version, created=True)


CHALLENGER_ALIAS = "challenger"


def register_challenger(
    tracking_uri: str, name: str = DEFAULT_MODEL_NAME, artifact_root: Path | None = None, force: bool = False
) -> Registered:
    """A second forest (another seed, 60 trees) as ``name@challenger``, for ``--shadow_model_uri``; stage untouched."""
    return register_demo_model(
        tracking_uri,
        name=name,
        alias=CHALLENGER_ALIAS,
        artifact_root=artifact_root,
        force=force,
        seed=7,
        n_estimators=60,
        stage=None,
    )


def _requirements() -> list[str]:
    """What serving the demo model needs, pinned to the versions that trained it."""
    from importlib.metadata import version

    return [f"{package}=={version(package)}" for package in ("mlflow", "scikit-learn", "skops", "numpy", "pandas")]
