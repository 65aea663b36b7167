"""manifests/: every kustomization renders with `kubectl kustomize`, every object is valid as the API server
would check it, and the overlays change only what they mean to change."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

import httpx
import pytest

from predictor.config import Settings
from tests.k8s.kube import (
    ISVC_NAME,
    KNATIVE_OVERLAYS,
    MANIFESTS,
    OVERLAYS,
    STANDARD_OVERLAYS,
    container,
    kubectl,
    render,
    run,
    the,
)
from tests.k8s.strict import validate
from tests.servers import PROJECT_ROOT

BASE = MANIFESTS / "base"
COMPONENTS = sorted(p.name for p in (MANIFESTS / "components").iterdir() if p.is_dir())
TARGETS = {"base": BASE, **{f"overlays/{name}": MANIFESTS / "overlays" / name for name in OVERLAYS}}
POD_LABEL = "serving.kserve.io/inferenceservice"
MODE = "serving.kserve.io/deploymentMode"
# The knobs of the container that every overlay and mode must keep as the base declares them.
CONTAINER_KEYS = ("args", "envFrom", "startupProbe", "readinessProbe", "livenessProbe", "resources", "securityContext")
# Environment the container gets that is not a predictor setting: where Python and its libraries write.
PROCESS_ENV = {"TMPDIR", "HOME"}
# The image's user (Dockerfile: useradd --uid 10001 --user-group).
IMAGE_UID = 10001


def settings_of(objects: list[dict[str, Any]]) -> dict[str, str]:
    """The environment the predictor container starts with: the ConfigMap's data, then `env` (which wins)."""
    box = container(the(objects, "InferenceService"))
    (ref,) = [e["configMapRef"]["name"] for e in box["envFrom"]]
    data = dict(next(o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == ref)["data"])
    data.update({e["name"]: e["value"] for e in box.get("env", []) if "value" in e})
    return data


def with_components(tmp_path: Path, *components: str) -> Path:
    """A throwaway kustomization in tmp_path: the base plus COMPONENTS (kustomize wants relative paths)."""
    here = tmp_path / "kustomization"
    here.mkdir()
    (here / "kustomization.yaml").write_text(
        json.dumps(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [os.path.relpath(BASE, here)],
                "components": [os.path.relpath(MANIFESTS / "components" / c, here) for c in components],
            }
        )
    )
    return here


@pytest.mark.parametrize("target", TARGETS)
def test_every_object_is_valid_for_the_api_server(target: str) -> None:
    objects = render(TARGETS[target])
    errors = [error for obj in objects for error in validate(obj)]
    assert not errors, "\n".join(errors)
    assert {"InferenceService", "ServiceAccount", "ConfigMap"} <= {o["kind"] for o in objects}


@pytest.mark.parametrize("component", COMPONENTS)
def test_each_component_applies_to_the_base_alone(component: str, tmp_path: Path) -> None:
    objects = render(with_components(tmp_path, component))
    errors = [error for obj in objects for error in validate(obj)]
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("overlay", ["prod", "prod-serverless"])
def test_the_validator_rejects_what_the_api_server_rejects(overlay: str) -> None:
    """Guards the check itself: typos, snake_case names, wrong types and missing fields are all reported."""
    isvc = the(render(MANIFESTS / "overlays" / overlay), "InferenceService")
    assert validate(isvc) == []

    def broken(path: str, value: Any) -> list[str]:
        """Set (or, with value None, delete) the dotted PATH in a copy and validate that copy."""
        copied = copy.deepcopy(isvc)
        *parents, last = path.split(".")
        node: Any = copied
        for key in parents:
            node = node[int(key)] if key.isdigit() else node[key]
        if value is None:
            del node[last]
        else:
            node[last] = value
        return validate(copied)

    box = "spec.predictor.model" if overlay in STANDARD_OVERLAYS else "spec.predictor.containers.0"
    assert broken("spec.predictor.canaryTrafficPercnt", 10)  # a typo
    assert broken(f"{box}.ports.0.container_port", 8080)  # the client's spelling, not the API's
    assert broken(f"{box}.readinessProbe.path", "/health/ready")  # a field one level too high
    assert broken("spec.predictor.minReplicas", "1")  # a string for an integer
    assert broken(f"{box}.livenessProbe.httpGet.port", None)  # a required field missing
    assert broken("metadata.annotation", {})
    assert broken("spec.predictor", None)
    if overlay in STANDARD_OVERLAYS:
        assert broken(f"{box}.modelFormat.nmae", "mlflow")
        assert broken("spec.predictor.autoScaling.metrics.0.resource.target.averageUtilisation", 70)
        assert broken("spec.predictor.autoScaling.metrics.1.external.metric.serverAdress", "http://x")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlays_keep_the_container(overlay: str) -> None:
    """A merge patch on the containers list would silently drop image, args, env, ports or probes; moving the
    container into `model` (Standard mode) must not lose any of them either."""
    base = container(the(render(BASE), "InferenceService"))
    ours = container(the(render(MANIFESTS / "overlays" / overlay), "InferenceService"))
    assert ours["image"].startswith("ghcr.io/dcmms/predictive-maintenance-predictor:")
    for key in CONTAINER_KEYS:
        assert (key in ours) == (key in base), key
        if key != "envFrom":  # the ConfigMap's hash differs per overlay
            assert ours.get(key) == base.get(key), key
    assert len(ours["envFrom"]) == len(base["envFrom"]) == 1
    assert [p for p in ours["ports"] if p in base["ports"]] == base["ports"] == [ours["ports"][0]]
    assert ours["env"][0]["name"] == base["env"][0]["name"] == "PREDICTOR_MODEL_URI"
    extra = {"modelFormat", "runtime"} if overlay in STANDARD_OVERLAYS else set()
    gone = {"name"} if overlay in STANDARD_OVERLAYS else set()
    assert set(ours) == (set(base) | extra) - gone
    # Components append their mounts and env (an `add` of the whole list would drop the base's).
    assert ours["volumeMounts"][: len(base["volumeMounts"])] == base["volumeMounts"]
    assert [e for e in ours["env"] if e in base["env"][1:]] == base["env"][1:]


@pytest.mark.parametrize("target", TARGETS)
def test_the_container_runs_the_predictor_as_documented(target: str) -> None:
    predictor = the(render(TARGETS[target]), "InferenceService")["spec"]["predictor"]
    box = container(the(render(TARGETS[target]), "InferenceService"))
    assert box.get("name", "kserve-container") == "kserve-container"
    assert box["args"] == ["--model_name", "predictive_maintenance"]
    assert box["ports"][0] == {"name": "http1", "containerPort": 8080, "protocol": "TCP"}
    assert box["startupProbe"]["httpGet"] == {"path": "/health/ready", "port": 8080}
    assert box["readinessProbe"]["httpGet"] == {"path": "/health/ready", "port": 8080}
    assert box["livenessProbe"]["httpGet"] == {"path": "/health/live", "port": 8080}
    # Model loading takes seconds; the startup probe must allow well over a minute before restarting.
    startup = box["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 120
    assert box["securityContext"]["runAsNonRoot"] is True
    assert box["securityContext"]["allowPrivilegeEscalation"] is False
    assert box["resources"]["requests"] and box["resources"]["limits"]
    # Besides checkov's skips (tests/test_policy.py), only the scrape annotations.
    assert {k: v for k, v in predictor["annotations"].items() if not k.startswith("checkov.io/")} == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "8080",
        "prometheus.io/path": "/metrics",
    }


@pytest.mark.parametrize("target", TARGETS)
def test_the_generated_config_map_reaches_the_inference_service(target: str) -> None:
    objects = render(TARGETS[target])
    isvc = the(objects, "InferenceService")
    config_maps = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ConfigMap"}
    (ref,) = [e["configMapRef"]["name"] for e in container(isvc)["envFrom"]]
    assert ref in config_maps, f"envFrom names {ref!r}, rendered: {sorted(config_maps)}"
    assert ref.startswith("predictive-maintenance-config-"), "the name carries kustomize's content hash"
    assert isvc["spec"]["predictor"]["serviceAccountName"] == the(objects, "ServiceAccount")["metadata"]["name"]


@pytest.mark.parametrize("target", TARGETS)
def test_every_setting_is_one_the_predictor_reads(target: str) -> None:
    settings = settings_of(render(TARGETS[target]))
    known = {spec.metadata["env"] for spec in fields(Settings) if spec.metadata["env"]}
    unread = set(settings) - known - PROCESS_ENV
    assert not unread, f"not read by predictor/config.py: {sorted(unread)}"
    assert {
        "MLFLOW_TRACKING_URI",
        "PREDICTOR_MODEL_URI",
        "PREDICTOR_MAX_BATCH_SIZE",
        "PREDICTOR_MAX_BATCH_WAIT_MS",
        "PREDICTOR_LOG_LEVEL",
    } <= set(settings)


@pytest.mark.parametrize("overlay", ["prod", "prod-serverless"])
def test_the_settings_parse_as_the_container_would_start(overlay: str) -> None:
    """The container's args, ConfigMap and env, through the predictor's own settings parser."""
    objects = render(MANIFESTS / "overlays" / overlay)
    box = container(the(objects, "InferenceService"))
    # A subprocess: importing kserve parses sys.argv (see PITFALLS).
    code = (
        "import json, sys; from predictor.config import load_settings; "
        "s = load_settings(sys.argv[1:], json.loads(sys.stdin.read())); "
        "print(json.dumps([s.model_name, s.tracking_uri, s.resolved_model_uri, str(s.feature_store), "
        "s.max_batch_size, s.max_batch_wait_ms, s.log_level, str(s.auth_token_file), s.protect_metrics, "
        "s.allow_pickle]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, *box["args"]],
        input=json.dumps(settings_of(objects)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == [
        "predictive_maintenance",
        "http://mlflow.dcmms-ml.svc:5000",
        "models:/predictive_maintenance/1",
        "/etc/feature-repo",
        64,
        1.0,
        "INFO",
        "/etc/predictor/auth/tokens",  # components/auth: tokens on every inference and admin call
        False,  # Prometheus scrapes /metrics without a token (components/network-policy says why)
        False,
    ]  # components/feast mounts the repo there


def test_prod_is_standard_mode_in_dcmms_ml() -> None:
    objects = render(MANIFESTS / "overlays" / "prod")
    assert {o["metadata"].get("namespace") for o in objects} == {"dcmms-ml"}
    isvc = the(objects, "InferenceService")
    # KServe's canary webhook compares with the literal "Standard" (its deprecated alias RawDeployment fails).
    assert isvc["metadata"]["annotations"][MODE] == "Standard"
    predictor = isvc["spec"]["predictor"]
    model = predictor["model"]
    assert (model["modelFormat"], model["runtime"]) == ({"name": "mlflow"}, "predictive-maintenance")
    assert "name" not in model, "KServe refuses a name on a model"
    runtime = the(objects, "ServingRuntime")
    assert runtime["metadata"]["name"] == model["runtime"]
    assert {"name": "mlflow", "autoSelect": False} in runtime["spec"]["supportedModelFormats"]
    assert runtime["spec"]["containers"][0]["name"] == "kserve-container"
    assert runtime["spec"]["containers"][0]["image"] == model["image"]
    # Knative-only settings are silently ignored in Standard mode: none may appear.
    assert not {"canaryTrafficPercent", "scaleMetric", "scaleTarget"} & set(predictor)
    assert "serving.kserve.io/enable-tag-routing" not in isvc["metadata"]["annotations"]


def test_prod_serverless_is_knative_with_canary_and_rps_autoscaling_in_dcmms_ml() -> None:
    objects = render(MANIFESTS / "overlays" / "prod-serverless")
    assert {o["metadata"].get("namespace") for o in objects} == {"dcmms-ml"}
    assert {o["kind"] for o in objects} == {
        "InferenceService",
        "ServiceAccount",
        "ConfigMap",
        "NetworkPolicy",
        "PrometheusRule",
        "CronJob",
        "PodDisruptionBudget",
    }
    isvc = the(objects, "InferenceService")
    annotations = isvc["metadata"]["annotations"]
    assert annotations[MODE] == "Knative"
    assert annotations["serving.kserve.io/enable-tag-routing"] == "true"
    predictor = isvc["spec"]["predictor"]
    assert (predictor["minReplicas"], predictor["maxReplicas"]) == (1, 5)
    assert (predictor["scaleMetric"], predictor["scaleTarget"]) == ("rps", 100)


@pytest.mark.parametrize("overlay", ["prod", "prod-serverless"])
def test_prod_pins_the_model_version_so_that_new_versions_go_through_the_canary(overlay: str) -> None:
    """An alias would be hot-swapped by the predictor in every pod at once, past the traffic split."""
    uri = settings_of(render(MANIFESTS / "overlays" / overlay))["PREDICTOR_MODEL_URI"]
    name, _, version = uri.removeprefix("models:/").partition("/")
    assert name == "predictive_maintenance" and version.isdigit(), uri


KNATIVE_TARGETS = ["base", *(f"overlays/{o}" for o in KNATIVE_OVERLAYS), "knative-autoscaling-cpu"]


@pytest.mark.parametrize("target", KNATIVE_TARGETS)
def test_only_fields_that_knative_mode_reads(target: str, tmp_path: Path) -> None:
    """No setting KServe ignores in Knative mode, and no traffic split frozen into git."""
    directory = TARGETS.get(target) or with_components(tmp_path, target)
    objects = render(directory)
    isvc = the(objects, "InferenceService")
    predictor = isvc["spec"]["predictor"]
    assert isvc["metadata"]["annotations"][MODE] == "Knative"
    # Standard-mode-only settings: HPA objects, autoScaling metrics, the raw-mode canary list, KEDA.
    assert "HorizontalPodAutoscaler" not in {o["kind"] for o in objects}
    assert "autoScaling" not in predictor and "canary" not in isvc["spec"]
    assert "serving.kserve.io/autoscalerClass" not in isvc["metadata"]["annotations"]
    # A percentage below 100 re-applied after a promotion would roll back: deploy.mk sets it, git never.
    assert "canaryTrafficPercent" not in predictor
    # Knative routes a single port per revision.
    assert len(container(isvc)["ports"]) == 1
    # KPA scales on request metrics; CPU needs Knative's HPA class.
    autoscaler = predictor.get("annotations", {}).get("autoscaling.knative.dev/class", "kpa.autoscaling.knative.dev")
    allowed = {"kpa.autoscaling.knative.dev": {"rps", "concurrency"}, "hpa.autoscaling.knative.dev": {"cpu", "memory"}}
    if "scaleMetric" in predictor:
        assert predictor["scaleMetric"] in allowed[autoscaler]
        assert 1 <= predictor["minReplicas"] <= predictor["maxReplicas"] == 5
    if target == "knative-autoscaling-cpu":
        assert (predictor["scaleMetric"], predictor["scaleTarget"], autoscaler) == (
            "cpu",
            70,
            "hpa.autoscaling.knative.dev",
        )


def test_dev_scales_to_zero_and_has_no_optional_features() -> None:
    objects = render(MANIFESTS / "overlays" / "dev")
    assert {o["metadata"].get("namespace") for o in objects} == {"dcmms-ml-dev"}
    assert {o["kind"] for o in objects} == {"InferenceService", "ServiceAccount", "ConfigMap"}
    assert the(objects, "InferenceService")["spec"]["predictor"]["minReplicas"] == 0
    assert settings_of(objects)["PREDICTOR_MODEL_URI"] == "models:/predictive_maintenance@staging"


def predictor_policy(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (policy,) = [o for o in objects if o["kind"] == "NetworkPolicy" and o["metadata"]["name"] == ISVC_NAME]
    return policy


def ports_from(namespace: str, rules: list[dict[str, Any]], side: str) -> set[int]:
    return {
        port["port"]
        for rule in rules
        for peer in rule[side]
        if peer.get("namespaceSelector", {}).get("matchLabels") == {"kubernetes.io/metadata.name": namespace}
        for port in rule["ports"]
    }


@pytest.mark.parametrize("overlay", ["prod", "prod-serverless"])
def test_network_policy_admits_the_backend_and_what_the_mode_needs(overlay: str) -> None:
    policy = predictor_policy(render(MANIFESTS / "overlays" / overlay))["spec"]
    assert policy["podSelector"] == {"matchLabels": {POD_LABEL: ISVC_NAME}}
    assert sorted(policy["policyTypes"]) == ["Egress", "Ingress"]
    knative = overlay != "prod"
    # gRPC (8081) only from the callers, beside HTTP; Knative's queue-proxy port only in Knative mode.
    assert ports_from("dcmms-backend", policy["ingress"], "from") == {8080, 8081} | ({8012} if knative else set())
    assert ports_from("istio-system", policy["ingress"], "from") == {8080} | ({8012} if knative else set())
    assert ports_from("knative-serving", policy["ingress"], "from") == ({8012, 9090} if knative else set())
    assert ports_from("monitoring", policy["ingress"], "from") == {8080} | ({9091} if knative else set())
    # Every ingress rule names its sources: nothing is open to the whole cluster.
    assert all(rule.get("from") for rule in policy["ingress"])
    # MLflow; Redis and the Feast registry (PostgreSQL) because prod chooses components/feast.
    assert ports_from("dcmms-ml", policy["egress"], "to") == {5000, 6379, 5432}
    assert ports_from("kube-system", policy["egress"], "to") == {53}
    assert all(rule.get("to") for rule in policy["egress"])


def test_grpc_is_exposed_next_to_http_in_standard_mode_only() -> None:
    """KServe's Standard-mode Service gets a port per container port (the first as 80) and marks a port named
    *h2c*/*grpc* as appProtocol kubernetes.io/h2c; Knative would refuse a second port."""
    standard = container(the(render(MANIFESTS / "overlays" / "prod"), "InferenceService"))
    assert standard["ports"] == [
        {"name": "http1", "containerPort": 8080, "protocol": "TCP"},
        {"name": "h2c", "containerPort": 8081, "protocol": "TCP"},
    ]
    for overlay in KNATIVE_OVERLAYS:
        knative = container(the(render(MANIFESTS / "overlays" / overlay), "InferenceService"))
        assert [p["containerPort"] for p in knative["ports"]] == [8080]
    # The port the predictor listens on for gRPC is the one exposed (predictor/config.py's default).
    grpc_default = next(f.default for f in fields(Settings) if f.name == "grpc_port")
    assert grpc_default == 8081


def test_pods_carry_the_label_the_network_policy_selects() -> None:
    """KServe labels pods with the InferenceService's name: the policy must use that very name."""
    objects = render(MANIFESTS / "overlays" / "prod")
    selector = predictor_policy(objects)["spec"]["podSelector"]["matchLabels"]
    assert selector[POD_LABEL] == the(objects, "InferenceService")["metadata"]["name"]


def test_dashboard_has_the_four_panels_of_the_seed_then_drift_and_shadow() -> None:
    objects = render(MANIFESTS / "overlays" / "prod")
    (dashboard_map,) = [o for o in objects if o["kind"] == "ConfigMap" and "dashboard" in o["metadata"]["name"]]
    assert dashboard_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    (text,) = dashboard_map["data"].values()
    panels = json.loads(text)["panels"]
    titles = [p["title"].lower() for p in panels]
    assert len(panels) == 6
    for word, panel in zip(("request rate", "latency", "error rate", "pods", "drift", "shadow"), titles, strict=True):
        assert word in panel
    assert len({p["id"] for p in panels}) == len({(p["gridPos"]["x"], p["gridPos"]["y"]) for p in panels}) == 6
    assert [t["legendFormat"] for t in panels[1]["targets"]] == ["P50", "P95", "P99"]


def test_probe_and_metrics_paths_answer_on_the_real_predictor(demo_server: Any) -> None:
    """The paths the manifests point Kubernetes and Prometheus at exist on the running server."""
    isvc = the(render(MANIFESTS / "overlays" / "prod"), "InferenceService")
    box = container(isvc)
    paths = {box[probe]["httpGet"]["path"] for probe in ("startupProbe", "readinessProbe", "livenessProbe")}
    paths.add(isvc["spec"]["predictor"]["annotations"]["prometheus.io/path"])
    for path in sorted(paths):
        response = httpx.get(f"{demo_server.http_url}{path}", timeout=5)
        assert response.status_code == 200, (path, response.text)


def test_kubectl_has_kustomize_built_in() -> None:
    result = run([kubectl(), "version", "--client"])
    assert result.returncode == 0 and "Kustomize Version" in result.stdout, result.stdout + result.stderr


def test_prod_scales_one_to_five_on_cpu_70_or_100_requests_per_second_per_pod() -> None:
    """The seed's rule as one HPA (via KEDA): both metrics on the stable predictor, none on anything else."""
    isvc = the(render(MANIFESTS / "overlays" / "prod"), "InferenceService")
    assert isvc["metadata"]["annotations"]["serving.kserve.io/autoscalerClass"] == "keda"
    predictor = isvc["spec"]["predictor"]
    assert (predictor["minReplicas"], predictor["maxReplicas"]) == (1, 5)
    cpu, rps = predictor["autoScaling"]["metrics"]
    assert cpu == {
        "type": "Resource",
        "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}},
    }
    assert rps["type"] == "External"
    metric, target = rps["external"]["metric"], rps["external"]["target"]
    # KEDA's prometheus trigger reads target.value as its threshold and averages it over the pods.
    assert target == {"type": "Value", "value": "100"}
    assert metric["backend"] == "prometheus"
    assert metric["serverAddress"].startswith("http://")
    query = metric["query"]
    assert query.startswith("sum(rate(model_predictions_total{") and query.endswith("}[1m]))")
    assert 'model_name="predictive_maintenance"' in query and 'pod=~"predictive-maintenance-predictor-.*"' in query
    # No HPA of our own beside KServe's (two controllers would fight over the Deployment).
    assert "HorizontalPodAutoscaler" not in {o["kind"] for o in render(MANIFESTS / "overlays" / "prod")}


def test_the_prometheus_address_is_written_once() -> None:
    texts = [p.read_text() for p in MANIFESTS.rglob("*.yaml")]
    assert sum(text.count("serverAddress:") for text in texts) == 1


def test_the_cpu_request_is_sized_from_the_measurement_it_cites() -> None:
    """100 req/s at the cited unbatched cost (0.65 ms CPU each) lands just under the 70% CPU target."""
    box = container(the(render(MANIFESTS / "overlays" / "prod"), "InferenceService"))
    request_millicores = int(box["resources"]["requests"]["cpu"].removesuffix("m"))
    assert 0.6 <= 100 * 0.65 / request_millicores <= 0.7
    source = (BASE / "inferenceservice.yaml").read_text()
    assert "4,737" in source and "0.65 ms" in source


def test_the_rps_query_parses_as_promql(tmp_path: Path) -> None:
    """promtool (needed by the monitoring tests too) checks the KEDA query as a recording rule's expression."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is not on PATH (the prometheus package provides it)", pytrace=False)
    isvc = the(render(MANIFESTS / "overlays" / "prod"), "InferenceService")
    query = isvc["spec"]["predictor"]["autoScaling"]["metrics"][1]["external"]["metric"]["query"]
    rules = tmp_path / "rules.yaml"
    rules.write_text(json.dumps({"groups": [{"name": "keda", "rules": [{"record": "x:rps", "expr": query}]}]}))
    result = run([promtool, "check", "rules", str(rules)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_readme_lists_every_component_and_overlay_and_the_real_names() -> None:
    """manifests/README.md is where operators look: it must not fall behind the directories, and it must give
    the names KServe and KEDA create instead of the seed's invented ones."""
    readme = (MANIFESTS / "README.md").read_text()
    for component in COMPONENTS:
        assert f"`components/{component}`" in readme, component
    for overlay in OVERLAYS:
        assert f"`overlays/{overlay}`" in readme, overlay
    for name in (
        "keda-hpa-predictive-maintenance-predictor",
        "predictive-maintenance-predictor",
        "predictive-maintenance-canary-predictor",
        "kubectl get hpa -n dcmms-ml",
    ):
        assert name in readme, name


# Security settings (issue 12: prod passes its own policy checks, tests/test_policy.py runs them).


def env_of(box: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in box.get("env", []) if "value" in e}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_predictor_runs_read_only_as_the_images_user_without_an_api_token(overlay: str) -> None:
    objects = render(MANIFESTS / "overlays" / overlay)
    predictor = the(objects, "InferenceService")["spec"]["predictor"]
    box = container(the(objects, "InferenceService"))
    assert box["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": IMAGE_UID,
        "runAsGroup": IMAGE_UID,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert predictor["automountServiceAccountToken"] is False
    assert the(objects, "ServiceAccount")["automountServiceAccountToken"] is False
    # Everything the process writes lands on an emptyDir mounted exactly there.
    env = env_of(box)
    volumes = {v["name"]: v for v in predictor["volumes"]}
    mounts = {m["mountPath"]: m for m in box["volumeMounts"]}
    assert env["TMPDIR"] == env["HOME"] == "/tmp"
    for variable in ("PREDICTOR_MODEL_CACHE_DIR", "TMPDIR", "HOME"):
        mount = mounts[env[variable]]
        assert "emptyDir" in volumes[mount["name"]] and not mount.get("readOnly"), variable
        assert volumes[mount["name"]]["emptyDir"]["sizeLimit"], "a full volume must not fill the node's disk"
    # Every mount has its volume and every volume is mounted.
    assert {m["name"] for m in mounts.values()} == set(volumes)


def test_the_uid_is_the_images() -> None:
    dockerfile = (PROJECT_ROOT / "Dockerfile").read_text()
    assert f"--uid {IMAGE_UID} --user-group" in dockerfile and f"\nUSER {IMAGE_UID}\n" in dockerfile


def test_the_pod_security_context_is_set_where_kserve_passes_it_on() -> None:
    """Standard mode: pod-level, with the image's uid/gid and seccomp. Knative refuses a pod-level
    securityContext unless its kubernetes.podspec-securitycontext feature is on: there the container's holds."""
    predictor = the(render(MANIFESTS / "overlays" / "prod"), "InferenceService")["spec"]["predictor"]
    assert predictor["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": IMAGE_UID,
        "runAsGroup": IMAGE_UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    for overlay in KNATIVE_OVERLAYS:
        assert (
            "securityContext"
            not in the(render(MANIFESTS / "overlays" / overlay), "InferenceService")["spec"]["predictor"]
        )


@pytest.mark.parametrize("overlay", ["prod", "prod-serverless"])
def test_prod_requires_tokens_from_a_mounted_secret_and_refuses_pickles(overlay: str) -> None:
    objects = render(MANIFESTS / "overlays" / overlay)
    predictor = the(objects, "InferenceService")["spec"]["predictor"]
    box = container(the(objects, "InferenceService"))
    token_file = Path(env_of(box)["PREDICTOR_AUTH_TOKEN_FILE"])
    (mount,) = [m for m in box["volumeMounts"] if Path(m["mountPath"]) == token_file.parent]
    # The whole Secret as a directory: the kubelet refreshes it in place (a subPath mount never is).
    assert mount["readOnly"] is True and "subPath" not in mount
    (volume,) = [v for v in predictor["volumes"] if v["name"] == mount["name"]]
    assert volume["secret"] == {"secretName": "predictive-maintenance-auth", "optional": False}
    settings = settings_of(objects)
    assert "PREDICTOR_AUTH_TOKENS" not in settings, "tokens come from the Secret's file, never from git"
    assert settings["PREDICTOR_ALLOW_PICKLE"] == "false"
    assert settings.get("PREDICTOR_PROTECT_METRICS", "false") == "false", "Prometheus scrapes without a token"


def test_dev_runs_without_auth() -> None:
    box = container(the(render(MANIFESTS / "overlays" / "dev"), "InferenceService"))
    assert "PREDICTOR_AUTH_TOKEN_FILE" not in env_of(box)


def test_prod_pins_every_image_by_digest() -> None:
    """The predictor (its model and its runtime) and the CronJob: what was built and tested, whatever the tag."""
    objects = render(MANIFESTS / "overlays" / "prod")
    images = {
        container(the(objects, "InferenceService"))["image"],
        the(objects, "ServingRuntime")["spec"]["containers"][0]["image"],
        the(objects, "CronJob")["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["image"],
    }
    (image,) = images
    assert re.fullmatch(r"ghcr\.io/dcmms/predictive-maintenance-predictor:[\w.-]+@sha256:[0-9a-f]{64}", image)
