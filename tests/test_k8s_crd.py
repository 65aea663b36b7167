"""A second opinion on the InferenceServices we render and patch: the published CRD schema itself.

The kserve SDK models (tests/k8s/strict.py) know the fields but not all of the CRD's `required` lists, enums
and bounds (e.g. modelFormat.name, trafficPercent 0-100). When the reference copy of the CRD is present
(../shared/reference, see its README) this checks against it, with unknown fields made errors as the API
server's strict field validation makes them; without it these tests skip, and the SDK-model checks remain.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from tests.k8s.crd import errors
from tests.k8s.kube import MANIFESTS, OVERLAYS, kubectl, make, render, run, the


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_rendered_inference_service_fits_the_crd(overlay: str) -> None:
    assert errors(the(render(MANIFESTS / "overlays" / overlay), "InferenceService")) == []


def test_the_canary_patch_result_fits_the_crd(tmp_path: Path) -> None:
    """`make canary` (DRY_RUN prints the exact patch) applied offline to the rendered prod object."""
    result = make("canary", "PERCENT=10", "DRY_RUN=1")
    assert result.returncode == 0, result.stderr
    body = result.stdout.strip().split(" -p ", 1)[1].strip("'")
    live = tmp_path / "isvc.yaml"
    live.write_text(yaml.safe_dump(the(render(MANIFESTS / "overlays" / "prod"), "InferenceService")))
    patched = run([kubectl(), "patch", "--local", "-f", str(live), "--type", "json", "-p", body, "-o", "json"])
    assert patched.returncode == 0, patched.stderr
    isvc = json.loads(patched.stdout)
    assert isvc["spec"]["canary"][0]["trafficPercent"] == 10
    assert errors(isvc) == []

    for path, value in [
        (("trafficPercent",), 101),
        (("trafficPrecent",), 10),
        (("predictor", "model", "modelFormat"), {}),
        (("predictor", "model", "imgae"), "x"),
    ]:
        bad = copy.deepcopy(isvc)
        node = bad["spec"]["canary"][0]
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        assert errors(bad), path
