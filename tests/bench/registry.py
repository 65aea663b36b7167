"""A throwaway MLflow registry holding the models every server is measured on (the two demo models, the typed
pipeline of issue 11, and issue 25's native XGBoost Booster and forest without a signature); the demo Feast repo."""

from __future__ import annotations

import contextlib
import logging
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from predictor.demo.training import ModelKind, register_challenger, register_demo_model
from tests.bench.logged_models import register_booster, register_unsigned_forest
from tests.bench.typed_model import register_typed_model

# The demo's two kinds; "typed": tests/bench/typed_model.py's ColumnTransformer pipeline with a string column;
# "booster" and "nosig": tests/bench/logged_models.py's xgb.train Booster and forest logged without a signature.
BenchKind = Literal[ModelKind, "typed", "booster", "nosig"]
DEMO_KINDS: tuple[ModelKind, ...] = ("forest", "logreg")
MODEL_NAMES: dict[BenchKind, str] = {
    "forest": "predictive_maintenance",
    "logreg": "predictive_maintenance_logreg",
    "typed": "predictive_maintenance_typed",
    "booster": "predictive_maintenance_booster",
    "nosig": "predictive_maintenance_nosig",
}
ALIAS = "production"


@dataclass(frozen=True)
class BenchRegistry:
    tracking_uri: str
    root: Path

    def model_uri(self, kind: BenchKind) -> str:
        return f"models:/{MODEL_NAMES[kind]}@{ALIAS}"


def prepare_registry(root: Path) -> BenchRegistry:
    """A fresh SQLite registry under ``root`` (anything there before is deleted) with every model of MODEL_NAMES."""
    root = root.resolve()
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    tracking_uri = f"sqlite:///{root / 'mlflow.db'}"
    import mlflow  # noqa: F401 - configures its loggers on import; quieten them after that

    logging.getLogger("mlflow").setLevel(logging.ERROR)  # keep the console for the results
    artifacts = root / "artifacts"
    for kind in DEMO_KINDS:
        register_demo_model(tracking_uri, name=MODEL_NAMES[kind], kind=kind, alias=ALIAS, artifact_root=artifacts)
    register_typed_model(tracking_uri, MODEL_NAMES["typed"], ALIAS, artifacts)
    register_booster(tracking_uri, MODEL_NAMES["booster"], ALIAS, artifacts)
    register_unsigned_forest(tracking_uri, MODEL_NAMES["nosig"], ALIAS, artifacts)
    # ours-shadow's challenger (@challenger, another forest) beside the forest
    register_challenger(tracking_uri, name=MODEL_NAMES["forest"], artifact_root=artifacts)
    return BenchRegistry(tracking_uri, root)


def local_copy(registry: BenchRegistry, kind: BenchKind, destination: Path) -> Path:
    """The model's files in a local folder (for MLServer, which wants a path, not a registry URI)."""
    import mlflow

    shutil.rmtree(destination, ignore_errors=True)
    destination.mkdir(parents=True)
    mlflow.set_tracking_uri(registry.tracking_uri)
    mlflow.set_registry_uri(registry.tracking_uri)
    return Path(mlflow.artifacts.download_artifacts(registry.model_uri(kind), dst_path=str(destination)))


BENCH_EQUIPMENT = 10_000  # equipment the bench's Feast repo holds (the demo's own repo: 200)


def prepare_feature_repo(target: Path, log: Path, online_store: Mapping[str, Any] | None = None) -> Path:
    """The demo Feast repo applied and materialized under ``target`` (SQLite online store, or ``online_store``), as
    `make bootstrap` prepares ``.data/feature_repo`` for `make serve`; anything there before is replaced. Feast's
    own progress output goes to ``log``, keeping the console for the results."""
    from predictor.demo.bootstrap import FEATURE_REPO_SOURCE
    from predictor.demo.feast_setup import prepare_feature_store
    from predictor.demo.training import telemetry_with_ids

    shutil.rmtree(target, ignore_errors=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    telemetry = telemetry_with_ids(BENCH_EQUIPMENT)  # a fleet's worth: the fleet scenario names 10,000 distinct ids
    with log.open("w") as out, contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        return prepare_feature_store(
            FEATURE_REPO_SOURCE, target, telemetry, online_store, progress=lambda line: print(line, file=out)
        )
