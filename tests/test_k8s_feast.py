"""components/feast: rendered and validated, then run for real — the predictor started with the pod's
environment against the ConfigMap's feature_store.yaml (SQL registry, here SQLite; Redis online store, here a
real redis-server on a loopback port), and the CronJob's own command materializing into that Redis.

What the pod gets from the cluster is reproduced, not mocked: the ConfigMap's file in a directory (as the
kubelet mounts it), the Secret's two keys as environment variables, the container's `env` values as they render.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.feast_helpers import REPO_SOURCE, demo_telemetry, redis_server
from tests.k8s.kube import MANIFESTS, container, render, the
from tests.k8s.strict import validate
from tests.servers import start_predictor

SECRET = "predictive-maintenance-feast"
SECRET_KEYS = {"REDIS_CONNECTION_STRING", "FEAST_REGISTRY_PATH"}
V1 = "/v1/models/predictive_maintenance:predict"
IDS = ["pump-0004", "compressor-0003"]


def feast_parts(overlay: str = "prod") -> dict[str, Any]:
    objects = render(MANIFESTS / "overlays" / overlay)
    errors = [error for obj in objects for error in validate(obj)]
    assert not errors, "\n".join(errors)
    isvc = the(objects, "InferenceService")
    (config_map,) = [o for o in objects if o["kind"] == "ConfigMap" and "feature-repo" in o["metadata"]["name"]]
    return {
        "objects": objects,
        "isvc": isvc,
        "box": container(isvc),
        "config_map": config_map,
        "cronjob": the(objects, "CronJob"),
    }


def mounted_repo(parts: dict[str, Any], box: dict[str, Any], volumes: list[dict[str, Any]]) -> str:
    """The mount path of the feature-repo volume in ``box``, checked to be the generated ConfigMap."""
    (mount,) = [m for m in box["volumeMounts"] if m["name"] == "feature-repo"]
    (volume,) = [v for v in volumes if v["name"] == "feature-repo"]
    assert volume["configMap"]["name"] == parts["config_map"]["metadata"]["name"]  # the hashed name
    assert mount["readOnly"] is True
    return str(mount["mountPath"])


def secret_refs(env: list[dict[str, Any]]) -> set[str]:
    refs = {e["name"] for e in env if "secretKeyRef" in e.get("valueFrom", {})}
    assert {e["valueFrom"]["secretKeyRef"]["name"] for e in env if e["name"] in refs} <= {SECRET}
    return refs


@pytest.mark.parametrize("overlay", ["prod", "prod-serverless"])
def test_the_predictor_reads_the_mounted_repo_with_connection_strings_from_the_secret(overlay: str) -> None:
    parts = feast_parts(overlay)
    box, predictor = parts["box"], parts["isvc"]["spec"]["predictor"]
    path = mounted_repo(parts, box, predictor["volumes"])
    values = {e["name"]: e.get("value") for e in box["env"]}
    assert values["PREDICTOR_FEATURE_STORE"] == path
    assert box["env"][0]["name"] == "PREDICTOR_MODEL_URI", "env[0] stays the model pin a canary overrides"
    assert secret_refs(box["env"]) == SECRET_KEYS
    config = parts["config_map"]["data"]["feature_store.yaml"]
    for key in SECRET_KEYS:
        assert f"${{{key}}}" in config


def test_the_cronjob_materializes_with_the_same_repo_and_secret() -> None:
    parts = feast_parts()
    job = parts["cronjob"]["spec"]
    pod = job["jobTemplate"]["spec"]["template"]["spec"]
    (box,) = pod["containers"]
    assert box["image"] == parts["box"]["image"], "the predictor's image: the same Feast version"
    path = mounted_repo(parts, box, pod["volumes"])
    assert box["command"] == ["/bin/sh", "-c"]
    assert f"feast --chdir {path} materialize-incremental" in box["args"][0]
    assert secret_refs(box["env"]) == SECRET_KEYS
    assert job["concurrencyPolicy"] == "Forbid"
    assert box["securityContext"]["runAsNonRoot"] is True and box["securityContext"]["readOnlyRootFilesystem"]


def test_network_policies_let_feast_reach_redis_and_the_registry_and_nothing_in() -> None:
    objects = feast_parts()["objects"]
    policies = {o["metadata"]["name"]: o["spec"] for o in objects if o["kind"] == "NetworkPolicy"}
    predictor, job = policies["predictive-maintenance"], policies["predictive-maintenance-feast-materialize"]
    ports = {p["port"] for rule in predictor["egress"] for p in rule["ports"]}
    assert {6379, 5432} <= ports
    assert job["podSelector"]["matchLabels"] == {"app.kubernetes.io/component": "feast-materialize"}
    assert "ingress" not in job and "Ingress" in job["policyTypes"], "no ingress to the job at all"
    job_ports = {p["port"] for rule in job["egress"] for p in rule["ports"]}
    assert job_ports == {53, 6379, 5432, 443}
    labels = the(objects, "CronJob")["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/component"] == "feast-materialize"


def test_the_predictor_serves_features_from_that_configuration(
    tracking_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rendered feature_store.yaml, a SQL registry (SQLite here, PostgreSQL in the cluster) and a real Redis:
    `feast apply` + materialize as CI would run them, then the predictor with the pod's environment."""
    from predictor.demo.columns import FEATURE_NAMES
    from predictor.demo.feast_setup import prepare_feature_store

    parts = feast_parts()
    config = parts["config_map"]["data"]["feature_store.yaml"]
    # The pod's view: the ConfigMap's single file, where the kubelet mounts it (a directory of tmp_path here).
    mount = tmp_path / "etc-feature-repo"
    mount.mkdir()
    (mount / "feature_store.yaml").write_text(config)
    telemetry = demo_telemetry(20)

    with redis_server() as redis:
        secret = {
            "REDIS_CONNECTION_STRING": redis.connection_string,
            "FEAST_REGISTRY_PATH": f"sqlite:///{tmp_path / 'registry.db'}",
        }
        for key, value in secret.items():
            monkeypatch.setenv(key, value)
        # CI's side: the source tree's definitions with the cluster's feature_store.yaml, applied and
        # materialized into the registry and Redis the pod will use.
        source = tmp_path / "source-repo"
        source.mkdir()
        shutil.copyfile(REPO_SOURCE / "definitions.py", source / "definitions.py")
        (source / "feature_store.yaml").write_text(config)
        prepare_feature_store(source, tmp_path / "applied", telemetry=telemetry, progress=lambda line: None)

        box = parts["box"]
        pod_env = {e["name"]: e["value"] for e in box["env"] if "value" in e}
        # The pod's mounts, relocated into tmp_path: the repo, the emptyDirs, the auth Secret's file.
        pod_env["PREDICTOR_FEATURE_STORE"] = str(mount)
        for name in ("PREDICTOR_MODEL_CACHE_DIR", "TMPDIR", "HOME"):
            pod_env[name] = str(tmp_path / name.lower())
            Path(pod_env[name]).mkdir(exist_ok=True)
        pod_env["PREDICTOR_AUTH_TOKEN_FILE"] = str(tmp_path / "tokens")
        Path(pod_env["PREDICTOR_AUTH_TOKEN_FILE"]).write_text("backend-token\n")
        auth = {"authorization": "Bearer backend-token"}
        process = start_predictor(tracking_uri, tmp_path / "logs", env={**pod_env, **secret})
        try:
            process.wait_ready()
            by_id = httpx.post(
                process.http_url + V1, json={"instances": [{"equipment_id": i} for i in IDS]}, headers=auth
            )
            assert by_id.status_code == 200, by_id.text
            rows = telemetry.set_index("equipment_id").loc[IDS, list(FEATURE_NAMES)].to_numpy(dtype=float).tolist()
            assert by_id.json() == httpx.post(process.http_url + V1, json={"instances": rows}, headers=auth).json()
            assert httpx.post(process.http_url + V1, json={"instances": rows}).status_code == 401
            metrics = httpx.get(process.http_url + "/metrics").text
            assert 'feature_lookup_latency_seconds_count{store="redis"}' in metrics
        finally:
            process.stop()

        # The CronJob's command, as its container runs it (sh -c), against the same mount and Secret.
        (job_box,) = parts["cronjob"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
        script = job_box["args"][0].replace("/etc/feature-repo", str(mount))
        venv_bin = str(Path(sys.executable).parent)
        env = {**os.environ, **secret, "HOME": str(tmp_path), "PATH": f"{venv_bin}:{os.environ['PATH']}"}
        result = subprocess.run(
            [*job_box["command"], script], env=env, capture_output=True, text=True, timeout=180, cwd=tmp_path
        )
        assert result.returncode == 0, result.stdout + result.stderr
