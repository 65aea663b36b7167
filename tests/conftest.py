"""Shared fixtures: a real MLflow registry with the demo model, and a real predictor serving it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import PredictorProcess, start_predictor


@pytest.fixture(scope="session")
def registry_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("registry")


@pytest.fixture(scope="session")
def tracking_uri(registry_dir: Path) -> str:
    """A SQLite MLflow registry holding the demo model (version 1, @production, stage Production)."""
    from predictor.demo.training import register_demo_model

    uri = f"sqlite:///{registry_dir}/mlflow.db"
    register_demo_model(uri, artifact_root=registry_dir / "artifacts")
    return uri


@pytest.fixture(scope="session")
def demo_server(tracking_uri: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PredictorProcess]:
    """``python -m predictor`` on free ports, ready to serve the demo model."""
    server = start_predictor(tracking_uri, tmp_path_factory.mktemp("logs"))
    try:
        yield server.wait_ready()
    finally:
        server.stop()
