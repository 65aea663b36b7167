"""Prod passes its own policy checks: checkov's Kubernetes checks on what `make deploy` applies and on the pod
KServe runs for the predictor, and its Dockerfile checks on the image. Zero failures; every skip is written
where the finding is (an annotation or a Dockerfile comment) with its reason, and listed in SKIPS below.

checkov comes from PyPI at the version tests/tools.sh pins, in an isolated uv tool environment (.venv/tools,
installed by `make tools`): its own pins would move packages the predictor shares in uv.lock. It runs offline:
--skip-download keeps it from asking the Prisma Cloud API for policies and mappings.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest
import yaml

from tests.k8s.kube import MANIFESTS, render, the
from tests.k8s.pod import merge_runtime_container, predictor_pod
from tests.k8s.strict import validate
from tests.servers import PROJECT_ROOT

DOCKERFILE = PROJECT_ROOT / "Dockerfile"
PROD = MANIFESTS / "overlays" / "prod"
# tests/tools.sh installs `pypi:` tools here; `uv tool run` uses that install when it has the pinned version.
TOOL_DIR = PROJECT_ROOT / ".venv" / "tools"
POD = "Pod.dcmms-ml.predictive-maintenance-predictor"
CRONJOB = "CronJob.dcmms-ml.predictive-maintenance-feast-materialize"
# Every finding we keep, by (target, resource, check). The reasons are where the skips are.
SKIPS = {
    ("prod", CRONJOB, "CKV_K8S_35"),  # secrets as env: Feast expands them from the environment only
    ("predictor-pod", POD, "CKV_K8S_35"),  # the same Feast settings in the predictor
    ("predictor-pod", POD, "CKV_K8S_15"),  # pull policy: pinned by digest
}


@cache
def checkov_spec() -> str:
    """`checkov==X.Y.Z`, from tests/tools.sh's table (the one place the version is written)."""
    table = subprocess.run(
        ["bash", str(PROJECT_ROOT / "tests" / "tools.sh"), "list"], capture_output=True, text=True, check=True
    ).stdout
    (source,) = [line.split()[2] for line in table.splitlines() if line.split()[1:2] == ["checkov"]]
    assert source.startswith("pypi:checkov=="), source
    return source.removeprefix("pypi:")


@dataclass
class Report:
    """checkov's results by file: each check as (resource, check id, suppress comment or None)."""

    passed: dict[Path, list[tuple[str, str]]]
    failed: dict[Path, list[tuple[str, str]]]
    skipped: dict[Path, list[tuple[str, str, str]]]


def run_checkov(files: list[Path], cwd: Path) -> Report:
    uv = Path(sys.executable).parent / "uv"
    command = [str(uv), "tool", "run", "--from", checkov_spec(), "checkov"]
    command += [arg for path in files for arg in ("-f", str(path))]
    command += ["--framework", "kubernetes", "dockerfile", "--skip-download", "--output", "json"]
    env = {**os.environ, "UV_TOOL_DIR": str(TOOL_DIR)}
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    # checkov exits 1 when a check fails; anything else (or no JSON) is a broken run.
    assert result.returncode in (0, 1), result.stderr[-3000:]
    reports = json.loads(result.stdout)
    report = Report({}, {}, {})
    for framework in reports if isinstance(reports, list) else [reports]:
        assert framework["summary"]["parsing_errors"] == 0, framework["results"].get("parsing_errors")
        for kind, into in (("passed_checks", report.passed), ("failed_checks", report.failed)):
            for check in framework["results"][kind]:
                into.setdefault(Path(check["file_abs_path"]), []).append((check["resource"], check["check_id"]))
        for check in framework["results"]["skipped_checks"]:
            comment = check["check_result"].get("suppress_comment", "")
            where = Path(check["file_abs_path"])
            report.skipped.setdefault(where, []).append((check["resource"], check["check_id"], comment))
    return report


@pytest.fixture(scope="module")
def checked(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Path], Report]:
    """One checkov run (it takes ~10 s to start) over the three targets and two deliberately bad controls."""
    here = tmp_path_factory.mktemp("checkov")
    objects = render(PROD)
    targets = {"prod": here / "prod.yaml", "predictor-pod": here / "predictor-pod.yaml", "Dockerfile": DOCKERFILE}
    targets["prod"].write_text(yaml.safe_dump_all(objects))
    targets["predictor-pod"].write_text(yaml.safe_dump(predictor_pod(objects)))
    # Controls: what the predictor's pod and image were before they were hardened.
    bare = predictor_pod(objects)
    bare["metadata"].pop("annotations")
    bare["spec"] = {"containers": [{"name": "kserve-container", "image": "ghcr.io/dcmms/predictor:0.1.0"}]}
    (here / "control").mkdir()
    targets["control-pod"] = here / "control" / "pod.yaml"
    targets["control-pod"].write_text(yaml.safe_dump(bare))
    targets["control-Dockerfile"] = here / "control" / "Dockerfile"
    targets["control-Dockerfile"].write_text('FROM python:3.11-slim\nCMD ["python"]\n')
    return targets, run_checkov(list(targets.values()), here)


@pytest.mark.parametrize("target", ["prod", "predictor-pod", "Dockerfile"])
def test_checkov_finds_nothing(target: str, checked: tuple[dict[str, Path], Report]) -> None:
    paths, report = checked
    path = paths[target].resolve()
    failed = report.failed.get(path, [])
    assert not failed, "\n".join(f"{resource}: {check}" for resource, check in failed)
    assert report.passed.get(path), f"checkov checked nothing in {target}"


def test_the_predictor_pod_itself_was_checked(checked: tuple[dict[str, Path], Report]) -> None:
    paths, report = checked
    resources = {resource for resource, _ in report.passed[paths["predictor-pod"].resolve()]}
    assert resources == {POD}
    checks = {check for _, check in report.passed[paths["predictor-pod"].resolve()]}
    # The findings of issue 12, now passing: pull policy aside (skipped), each is fixed in the manifests.
    assert {"CKV_K8S_22", "CKV_K8S_29", "CKV_K8S_38", "CKV_K8S_40", "CKV_K8S_43"} <= checks


def test_every_skip_is_a_known_one_with_its_reason_in_place(checked: tuple[dict[str, Path], Report]) -> None:
    paths, report = checked
    names = {path.resolve(): name for name, path in paths.items()}
    found = {(names[path], resource, check) for path, skips in report.skipped.items() for resource, check, _ in skips}
    assert found == SKIPS
    for skips in report.skipped.values():
        for resource, check, reason in skips:
            # checkov writes "No comment provided" for a bare `checkov.io/skipN: CKV_...`.
            assert len(reason) > 40 and reason != "No comment provided", (resource, check, reason)


def test_checkov_fails_a_pod_and_an_image_with_none_of_it(checked: tuple[dict[str, Path], Report]) -> None:
    """Guards the check itself: the same run reports the findings on the bare controls."""
    paths, report = checked
    pod = {check for _, check in report.failed[paths["control-pod"].resolve()]}
    assert {"CKV_K8S_22", "CKV_K8S_29", "CKV_K8S_38", "CKV_K8S_40", "CKV_K8S_43", "CKV_K8S_15"} <= pod
    image = {check for _, check in report.failed[paths["control-Dockerfile"].resolve()]}
    assert {"CKV_DOCKER_2", "CKV_DOCKER_3"} <= image  # no HEALTHCHECK, no USER


# The conversion the checks rely on (tests/k8s/pod.py).


def test_the_predictor_pod_is_a_valid_pod_with_the_runtime_and_model_merged() -> None:
    objects = render(PROD)
    pod = predictor_pod(objects)
    assert validate(pod) == []
    model = the(objects, "InferenceService")["spec"]["predictor"]["model"]
    (box,) = pod["spec"]["containers"]
    # The runtime gives the container its name; the model's image, args, env, probes and mounts win.
    assert box["name"] == the(objects, "ServingRuntime")["spec"]["containers"][0]["name"] == "kserve-container"
    for key in ("image", "args", "env", "ports", "readinessProbe", "volumeMounts", "securityContext"):
        assert box[key] == model[key], key
    assert "modelFormat" not in box and "runtime" not in box
    # Pod-level: the predictor's own fields, none of the controller's.
    spec = pod["spec"]
    assert spec["serviceAccountName"] == "predictive-maintenance" and spec["automountServiceAccountToken"] is False
    assert {"minReplicas", "maxReplicas", "autoScaling"}.isdisjoint(spec)
    assert {v["name"] for v in spec["volumes"]} == {m["name"] for m in box["volumeMounts"]}
    assert pod["metadata"]["labels"]["serving.kserve.io/inferenceservice"] == "predictive-maintenance"


def test_the_container_merge_follows_kserve() -> None:
    """KServe's MergeRuntimeContainers: a strategic merge, the model winning; args concatenated."""
    runtime = {
        "name": "kserve-container",
        "image": "runtime:1",
        "args": ["--runtime_flag"],
        "env": [{"name": "A", "value": "runtime"}, {"name": "B", "value": "runtime"}],
        "resources": {"requests": {"cpu": "1"}},
    }
    model = {
        "modelFormat": {"name": "mlflow"},
        "runtime": "x",
        "image": "model:2",
        "args": ["--model_flag"],
        "env": [{"name": "B", "value": "model"}, {"name": "C", "value": "model"}],
        "resources": {"limits": {"cpu": "2"}},
    }
    assert merge_runtime_container(runtime, model) == {
        "name": "kserve-container",
        "image": "model:2",
        "args": ["--runtime_flag", "--model_flag"],
        "env": [{"name": "A", "value": "runtime"}, {"name": "B", "value": "model"}, {"name": "C", "value": "model"}],
        "resources": {"requests": {"cpu": "1"}, "limits": {"cpu": "2"}},
    }
    with pytest.raises(AssertionError, match="imgae"):
        merge_runtime_container(runtime, {"imgae": "typo:1"})
