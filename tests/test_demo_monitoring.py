"""The demo as a user of the monitoring modules: the bootstrap's model carries its drift baseline, a
challenger stands under @challenger, and both load into the drift monitor, the explainer and the shadow scorer."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from prometheus_client import CollectorRegistry

from predictor.demo.columns import FEATURE_NAMES
from predictor.demo.training import generate_telemetry
from predictor.metrics import DriftMetrics, ShadowMetrics
from predictor.monitoring.drift import DriftMonitor
from predictor.monitoring.explain import Explainer
from predictor.monitoring.shadow import ShadowScorer

NAME = "predictive_maintenance"


def test_bootstrap_registers_a_baseline_and_a_challenger(tmp_path: Path) -> None:
    import mlflow
    import mlflow.sklearn

    command = [sys.executable, "-m", "predictor.demo.bootstrap", "--data_dir", str(tmp_path), "--no_features"]
    # in tmp_path: MLflow writes a stray ./mlruns into the working directory for logged models
    first = subprocess.run(command, capture_output=True, text=True, timeout=600, check=True, cwd=tmp_path).stdout
    assert "[1/1] demo model" in first and "challenger trained and registered: version 2 (@challenger" in first
    again = subprocess.run(command, capture_output=True, text=True, timeout=600, check=True, cwd=tmp_path).stdout
    assert "challenger already registered: version 2" in again  # idempotent

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    mlflow.set_registry_uri(f"sqlite:///{tmp_path}/mlflow.db")  # process-global: another test may have set it
    production = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{NAME}@production"))
    challenger = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{NAME}@challenger"))
    assert (production / "drift_baseline.json").exists() and (challenger / "drift_baseline.json").exists()

    registry = CollectorRegistry()
    monitor = DriftMonitor.for_model(production, NAME, "1", DriftMetrics.create(registry))
    assert monitor is not None
    champion, shadow_model = mlflow.sklearn.load_model(str(production)), mlflow.sklearn.load_model(str(challenger))
    assert champion.n_estimators == 100 and shadow_model.n_estimators == 60

    live, _ = generate_telemetry(400, seed=11)
    rows = live.to_numpy()
    proba = champion.predict_proba(rows)
    shadow = ShadowScorer(
        shadow_model.predict_proba, shadow_model.classes_, NAME, "1", "2", ShadowMetrics.create(registry)
    )
    try:
        monitor.observe(rows, champion.classes_[proba.argmax(axis=1)])
        shadow.submit(rows, champion.classes_[proba.argmax(axis=1)], proba, "r1")
        assert monitor.flush() and shadow.flush()
        labels = {"model_name": NAME, "model_version": "1"}
        temperature = registry.get_sample_value("model_feature_drift_psi", {**labels, "feature": "temperature_c"})
        assert temperature is not None and temperature < 0.1  # the same distribution as training
        agreement = registry.get_sample_value("model_shadow_agreement_ratio", {**labels, "shadow_version": "2"})
        assert agreement is not None and agreement > 0.8
    finally:
        monitor.close()
        shadow.close()

    explanation = Explainer.for_model(champion, FEATURE_NAMES).explain(pd.DataFrame(rows[:1], columns=FEATURE_NAMES))
    (only,) = explanation
    total = only["base_value"] + sum(only["contributions"].values())
    assert total == pytest.approx(proba[0, list(champion.classes_).index(only["class"])], abs=1e-6)
    assert np.isfinite(list(only["contributions"].values())).all()
