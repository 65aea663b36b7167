"""components/production: the disruption budget and the spread select the pods KServe creates, and the
termination grace period covers the predictor's real shutdown (measured on the real process)."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.k8s.kube import ISVC_NAME, MANIFESTS, container, render, the
from tests.servers import SEED_ROWS, start_predictor

POD_LABEL = "serving.kserve.io/inferenceservice"
PROD = ("prod", "prod-serverless")


def settings(objects: list[dict[str, Any]]) -> dict[str, str]:
    box = container(the(objects, "InferenceService"))
    (ref,) = [e["configMapRef"]["name"] for e in box["envFrom"]]
    data: dict[str, str] = next(o for o in objects if o["metadata"]["name"] == ref)["data"]
    return data


@pytest.mark.parametrize("overlay", PROD)
def test_the_disruption_budget_covers_the_inference_service_pods(overlay: str) -> None:
    objects = render(MANIFESTS / "overlays" / overlay)
    budget = the(objects, "PodDisruptionBudget")["spec"]
    # KServe labels every pod with the InferenceService's name: the budget must use that very name.
    assert budget["selector"] == {"matchLabels": {POD_LABEL: the(objects, "InferenceService")["metadata"]["name"]}}
    assert budget["maxUnavailable"] == 1 and "minAvailable" not in budget


@pytest.mark.parametrize("overlay", PROD)
def test_pods_spread_across_nodes_without_ever_staying_pending(overlay: str) -> None:
    predictor = the(render(MANIFESTS / "overlays" / overlay), "InferenceService")["spec"]["predictor"]
    spread = {c["topologyKey"]: c for c in predictor["topologySpreadConstraints"]}
    assert set(spread) == {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}
    for constraint in spread.values():
        assert constraint["labelSelector"] == {"matchLabels": {POD_LABEL: ISVC_NAME}}
        assert constraint["whenUnsatisfiable"] == "ScheduleAnyway" and constraint["maxSkew"] == 1


@pytest.mark.parametrize("overlay", PROD)
def test_the_grace_period_exceeds_the_drain_delay_plus_the_request_grace(overlay: str) -> None:
    objects = render(MANIFESTS / "overlays" / overlay)
    data = settings(objects)
    drain, grace = float(data["PREDICTOR_DRAIN_DELAY_S"]), float(data["PREDICTOR_GRACE_PERIOD_S"])
    assert (drain, grace) == (3.0, 20.0)
    period = the(objects, "InferenceService")["spec"]["predictor"]["terminationGracePeriodSeconds"]
    assert period >= drain + grace + 5, "room for the log flush and exit before the kubelet's SIGKILL"


def test_the_real_predictor_stops_within_the_grace_period(tracking_uri: str, tmp_path: Path) -> None:
    """SIGTERM, as the kubelet sends it, with prod's settings: readiness off at once, still serving during the
    drain delay, exited well before terminationGracePeriodSeconds."""
    objects = render(MANIFESTS / "overlays" / "prod")
    data = settings(objects)
    period = the(objects, "InferenceService")["spec"]["predictor"]["terminationGracePeriodSeconds"]
    env = {key: data[key] for key in ("PREDICTOR_DRAIN_DELAY_S", "PREDICTOR_GRACE_PERIOD_S")}
    process = start_predictor(tracking_uri, tmp_path, env=env)
    try:
        process.wait_ready()
        started = time.monotonic()
        process.signal(signal.SIGTERM)
        time.sleep(0.5)
        # The readiness probe the manifests declare fails at once, so the endpoints drop the pod ...
        probe = container(the(objects, "InferenceService"))["readinessProbe"]["httpGet"]["path"]
        assert httpx.get(process.http_url + probe, timeout=2).status_code == 503
        # ... while requests that still arrive during the drain delay are served.
        v1 = f"{process.http_url}/v1/models/{process.model_name}:predict"
        assert httpx.post(v1, json={"instances": SEED_ROWS}, timeout=5).status_code == 200
        assert process.popen is not None
        process.popen.wait(timeout=period)
        elapsed = time.monotonic() - started
        assert float(data["PREDICTOR_DRAIN_DELAY_S"]) <= elapsed < period, elapsed
    finally:
        process.stop()
