"""Drift against the training baseline, with a real model logged to a real MLflow registry in tmp_path: the
baseline travels with the model version, and shifted live traffic raises the shifted column's PSI above 0.2
while an unshifted column stays below 0.1."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from prometheus_client import CollectorRegistry

from predictor.demo.training import EQUIPMENT_TYPES, generate_telemetry
from predictor.metrics import DriftMetrics
from predictor.monitoring.baseline import ARTIFACT_NAME, Baseline, log_drift_baseline
from predictor.monitoring.drift import DriftMonitor

NAME = "drifting"


def typed_telemetry(rows: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    frame, labels = generate_telemetry(rows, seed)
    frame.insert(0, "equipment_type", [EQUIPMENT_TYPES[i % len(EQUIPMENT_TYPES)] for i in range(rows)])
    return frame, labels


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A forest pipeline logged with its baseline, registered, and downloaded as the server downloads it."""
    import mlflow
    from mlflow.models import infer_signature
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    folder = tmp_path_factory.mktemp("drift-registry")
    uri = f"sqlite:///{folder}/mlflow.db"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    mlflow.set_experiment(
        experiment_id=mlflow.create_experiment("drift", artifact_location=(folder / "artifacts").as_uri())
    )
    features, labels = typed_telemetry(3000, seed=1)
    prepare = ColumnTransformer([("type", OneHotEncoder(), ["equipment_type"])], remainder="passthrough")
    model = Pipeline([("prepare", prepare), ("forest", RandomForestClassifier(n_estimators=20, random_state=0))])
    model.fit(features, labels)
    with mlflow.start_run(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MLflow's own deprecation chatter while logging
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=infer_signature(features.head(5), model.predict(features.head(5))),
            registered_model_name=NAME,
            serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_CLOUDPICKLE,
            pip_requirements=["mlflow"],  # listed, not inferred (~20 s)
        )
        log_drift_baseline(features, model.predict(features), model_id=info.model_id)
    return Path(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{NAME}/1"))


def monitor_for(model_dir: Path, registry: CollectorRegistry, **options: int) -> DriftMonitor:
    monitor = DriftMonitor.for_model(model_dir, NAME, "1", DriftMetrics.create(registry), **options)
    assert monitor is not None
    return monitor


def psi(registry: CollectorRegistry, feature: str | None = None) -> float | None:
    if feature is None:
        return registry.get_sample_value("model_prediction_drift_psi", {"model_name": NAME, "model_version": "1"})
    labels = {"model_name": NAME, "model_version": "1", "feature": feature}
    return registry.get_sample_value("model_feature_drift_psi", labels)


def test_the_baseline_travels_with_the_model_version(model_dir: Path) -> None:
    assert (model_dir / ARTIFACT_NAME).exists() and (model_dir / "MLmodel").exists()
    baseline = Baseline.from_model_dir(model_dir)
    assert baseline is not None and baseline.rows == 3000
    kinds = {column.name: column.kind for column in baseline.features}
    assert kinds["equipment_type"] == "categorical" and kinds["temperature_c"] == "numeric"
    temperature = next(c for c in baseline.features if c.name == "temperature_c")
    assert temperature.shares[:-1] == pytest.approx([0.1] * 10, abs=0.01)  # deciles
    assert set(baseline.predictions.categories) == {"0", "1"}


def test_shifted_traffic_raises_the_shifted_columns_psi_and_not_the_others(model_dir: Path) -> None:
    registry = CollectorRegistry()
    monitor = monitor_for(model_dir, registry)
    try:
        live, _ = typed_telemetry(2000, seed=2)
        live["temperature_c"] += 12.0  # hotter bearings
        live.loc[live.index[::5], "equipment_type"] = "boiler"  # a type never seen in training
        for start in range(0, 2000, 50):  # request-sized batches, as the tap delivers them
            chunk = live.iloc[start : start + 50]
            monitor.observe(chunk, np.ones(len(chunk), dtype=int))
        assert monitor.flush()
        assert psi(registry, "temperature_c") > 0.2
        assert psi(registry, "equipment_type") > 0.2
        assert psi(registry, "age_months") < 0.1
        assert psi(registry, "vibration_rms") < 0.1
        assert psi(registry) > 0.2  # every row predicted 1, where training predicted mostly 0
        snapshot = monitor.snapshot()
        assert snapshot["rows_in_window"] == 2000 and snapshot["dropped_rows"] == 0
        assert snapshot["features"]["equipment_type"]["bins"][-1] == "other"
        assert snapshot["features"]["temperature_c"]["psi"] == pytest.approx(psi(registry, "temperature_c"), abs=1e-6)

        # the window slides: 2,000 unshifted rows later, the shift has left it
        calm, _ = typed_telemetry(2000, seed=3)
        monitor.observe(calm.to_numpy(dtype=object), np.zeros(2000, dtype=int))
        assert monitor.flush()
        assert psi(registry, "temperature_c") < 0.1
        assert psi(registry, "equipment_type") < 0.1
    finally:
        monitor.close()
    assert psi(registry, "temperature_c") is None  # a closed monitor (old version after a swap) leaves no series


def test_a_small_window_follows_the_last_rows_only(model_dir: Path) -> None:
    registry = CollectorRegistry()
    monitor = monitor_for(model_dir, registry, window_rows=300)
    try:
        shifted, _ = typed_telemetry(1000, seed=4)
        shifted["age_months"] += 100
        monitor.observe(shifted, np.zeros(1000, dtype=int))
        calm, _ = typed_telemetry(300, seed=5)
        monitor.observe(calm, np.zeros(300, dtype=int))
        assert monitor.flush()
        assert monitor.snapshot()["rows_in_window"] == 300
        assert psi(registry, "age_months") < 0.1
    finally:
        monitor.close()


def test_a_model_without_a_baseline_says_so_once_and_exports_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    registry = CollectorRegistry()
    with caplog.at_level(logging.INFO, logger="predictor.monitoring.drift"):
        monitor = DriftMonitor.for_model(tmp_path, NAME, "7", DriftMetrics.create(registry))
    assert monitor is None
    assert [r.getMessage() for r in caplog.records if ARTIFACT_NAME in r.getMessage()] == [
        f"model {NAME} version 7 has no {ARTIFACT_NAME}: no drift series (log one with "
        "predictor.monitoring.baseline.log_drift_baseline)"
    ]
    exported = [m.name for m in registry.collect() if m.samples]
    assert exported == []


def test_observe_never_blocks_or_raises_and_counts_what_it_drops(model_dir: Path) -> None:
    registry = CollectorRegistry()
    monitor = monitor_for(model_dir, registry, queue_batches=2)
    rows, _ = typed_telemetry(10, seed=6)
    try:
        with monitor._lock:  # the worker is stuck mid-batch: the queue fills
            for _ in range(20):
                monitor.observe(rows, np.zeros(10, dtype=int))
        monitor.observe(np.zeros((3, 2)), ["not", "the", "shape"])  # malformed: logged by the worker, not raised
        assert monitor.flush()
        dropped = registry.get_sample_value(
            "model_drift_dropped_rows_total", {"model_name": NAME, "model_version": "1"}
        )
        assert dropped is not None and dropped >= 150
        assert monitor.snapshot()["dropped_rows"] == dropped
    finally:
        monitor.close()
