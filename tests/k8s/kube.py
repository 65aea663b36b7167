"""kubectl and make, run the way a user runs them, for the offline tests of manifests/ and manifests/deploy.mk."""

from __future__ import annotations

import os
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.servers import PROJECT_ROOT

MANIFESTS = PROJECT_ROOT / "manifests"
OVERLAYS = ("dev", "prod", "prod-serverless")
# Overlays by KServe deployment mode (the annotation each renders; test_manifests checks it).
STANDARD_OVERLAYS = ("prod",)
KNATIVE_OVERLAYS = ("dev", "prod-serverless")
ISVC_NAME = "predictive-maintenance"


@cache
def kubectl() -> str:
    """Path of kubectl (CI has /usr/bin/kubectl); fails, never skips, when it is missing."""
    found = shutil.which("kubectl")
    if found is None:
        pytest.fail(
            "kubectl is not on PATH: these tests render the manifests with `kubectl kustomize` "
            "(install it: https://kubernetes.io/docs/tasks/tools/)",
            pytrace=False,
        )
    return found


def run(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=60, **kwargs)


@cache
def _render(directory: Path) -> str:
    result = run([kubectl(), "kustomize", str(directory)])
    assert result.returncode == 0, f"kubectl kustomize {directory} failed:\n{result.stderr}"
    return result.stdout


def render(directory: Path) -> list[dict[str, Any]]:
    """The objects ``kubectl kustomize DIRECTORY`` produces (a fresh copy each call)."""
    return [doc for doc in yaml.safe_load_all(_render(directory)) if doc]


def the(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {[o['metadata']['name'] for o in found]}"
    return found[0]


def container(isvc: dict[str, Any]) -> dict[str, Any]:
    """The predictor's container: ``containers[0]`` in Knative mode, ``model`` in Standard mode (the same
    container, moved by components/standard-mode so that KServe admits spec.canary)."""
    predictor = isvc["spec"]["predictor"]
    if "model" in predictor:
        assert "containers" not in predictor, "a predictor has one implementation"
        model: dict[str, Any] = predictor["model"]
        return model
    containers: list[dict[str, Any]] = predictor["containers"]
    assert len(containers) == 1, containers
    return containers[0]


def make(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``make -s ARGS`` in the project root (make writes nothing there for these targets)."""
    return run(["make", "-s", "--no-print-directory", *args], cwd=PROJECT_ROOT, env={**os.environ, **(env or {})})
