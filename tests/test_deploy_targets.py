"""manifests/deploy.mk, offline: the targets print what they run, DRY_RUN runs nothing, and the patches they
send, applied to the rendered manifests with `kubectl patch --local` as the API server would apply them, give
objects that pass strict validation and change only what the target means to change.

Standard mode (overlays/prod): canary/promote/rollback are JSON patches of spec.canary. Knative mode
(overlays/prod-serverless): the old behaviour, canaryTrafficPercent between revisions.

The kubectl on the targets' command line is a FAKE (FakeKubectl): no cluster exists here, and what a target
would send to one is exactly what these tests check. It records its argv (and stdin, for `-f -`); the
offline subcommands (`kustomize`, `patch --local`) go through to the real kubectl, so what deploy/canary
compute is the real rendering. It is the only stand-in in these tests.
"""

from __future__ import annotations

import copy
import json
import os
import shlex
import stat
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.k8s.kube import ISVC_NAME, MANIFESTS, container, kubectl, make, render, run, the
from tests.k8s.strict import validate

pytestmark = pytest.mark.servers  # every test runs make and kubectl: processes, if offline ones (not test-fast)

TARGETS = ("deploy", "canary", "promote", "rollback", "status", "image")
PERCENT = "/spec/predictor/canaryTrafficPercent"
SERVERLESS = "OVERLAY=prod-serverless"
AUTOSCALING_FIELDS = {"minReplicas", "maxReplicas", "autoScaling", "scaleMetric", "scaleTarget"}


class FakeKubectl:
    """A kubectl that records its argv (and stdin, for `-f -`), prints `stdout.txt` (if the test wrote one)
    for `get`, and forwards the offline subcommands to the real kubectl."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "kubectl"
        self.calls_file = directory / "calls.jsonl"
        self.stdout_file = directory / "stdout.txt"
        self.path.write_text(f"""#!{sys.executable}
import json, os, sys
args = sys.argv[1:]
if args[:1] == ["kustomize"] or (args[:1] == ["patch"] and "--local" in args):
    os.execv({kubectl()!r}, [{kubectl()!r}, *args])
stdin = sys.stdin.read() if "-" in args and "-f" in args else None
with open({str(self.calls_file)!r}, "a") as log:
    log.write(json.dumps({{"args": args, "stdin": stdin}}) + "\\n")
if args[:1] == ["get"] and os.path.exists({str(self.stdout_file)!r}):
    sys.stdout.write(open({str(self.stdout_file)!r}).read())
""")
        self.path.chmod(self.path.stat().st_mode | stat.S_IXUSR)

    @property
    def calls(self) -> list[dict[str, Any]]:
        if not self.calls_file.exists():
            return []
        return [json.loads(line) for line in self.calls_file.read_text().splitlines()]


@pytest.fixture
def fake(tmp_path: Path) -> FakeKubectl:
    return FakeKubectl(tmp_path)


def target(name: str, *args: str, fake: FakeKubectl | None = None) -> Any:
    extra = [f"KUBECTL={fake.path}"] if fake else []
    return make(name, *args, *extra)


def rendered_isvc(tmp_path: Path, overlay: str = "prod") -> Path:
    path = tmp_path / f"{overlay}-isvc.yaml"
    path.write_text(yaml.safe_dump(the(render(MANIFESTS / "overlays" / overlay), "InferenceService")))
    return path


def patch_locally(manifest: Path, patch_args: list[str]) -> dict[str, Any]:
    """Apply `--type T -p P` from a recorded kubectl patch to a local file, as the API server would."""
    result = try_patch(manifest, patch_args)
    assert result.returncode == 0, result.stderr
    patched: dict[str, Any] = yaml.safe_load(result.stdout)
    return patched


def try_patch(manifest: Path, patch_args: list[str]) -> Any:
    kind = patch_args[patch_args.index("--type") + 1]
    body = patch_args[patch_args.index("-p") + 1]
    return run([kubectl(), "patch", "--local", "-f", str(manifest), "--type", kind, "-p", body, "-o", "yaml"])


def without_percent(isvc: dict[str, Any]) -> dict[str, Any]:
    copied: dict[str, Any] = copy.deepcopy(isvc)
    copied["spec"]["predictor"].pop("canaryTrafficPercent", None)
    return copied


def the_patch(result: Any, fake: FakeKubectl) -> list[str]:
    """The `kubectl patch` a target ran (the last recorded call), checked to be what the target printed."""
    assert result.returncode == 0, result.stderr
    args: list[str] = fake.calls[-1]["args"]
    assert args[:3] == ["patch", "inferenceservice", ISVC_NAME] and args[args.index("--type") + 1] == "json"
    assert shlex.split(result.stdout.strip().removeprefix("$ "))[1:] == args, "printed is what ran"
    return args


def check_kserve_canary_rules(isvc: dict[str, Any]) -> None:
    """KServe's webhook rules for spec.canary (validateCanarySpecs, kserve PR #5672) and strict validation."""
    assert validate(isvc) == []
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"
    stable = isvc["spec"]["predictor"]
    assert "model" in stable, "a canary needs a stable predictor with a model"
    canaries = isvc["spec"].get("canary", [])
    names = [c["predictor"]["name"] for c in canaries]
    assert all(names) and len(set(names)) == len(names) and stable.get("name") not in names
    assert sum(c["trafficPercent"] for c in canaries) <= 100
    for canary in canaries:
        assert 0 <= canary["trafficPercent"] <= 100
        assert not AUTOSCALING_FIELDS & set(canary["predictor"]), "a canary runs fixed replicas"
        assert "containers" not in canary["predictor"] and "workerSpec" not in canary["predictor"]
        # The CRD requires a container name on a canary's model; KServe's own name for it.
        assert canary["predictor"]["model"]["name"] == "kserve-container"


# The image of a new release: prod pins tag and digest (overlays/prod), so a release changes both.
RELEASE_DIGEST = "sha256:" + "2f" * 32
RELEASE_IMAGE = f"ghcr.io/dcmms/predictive-maintenance-predictor:0.2.0@{RELEASE_DIGEST}"


def new_release(tmp_path: Path, version: int = 2, tag: str = "0.2.0") -> Path:
    """What a release commit does to overlays/prod (bump the model version and/or the image), as a throwaway
    overlay on top of it in tmp_path (tests never write into the source tree)."""
    here = tmp_path / "release"
    here.mkdir()
    (here / "kustomization.yaml").write_text(
        json.dumps(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [os.path.relpath(MANIFESTS / "overlays" / "prod", here)],
                "images": [
                    {"name": "ghcr.io/dcmms/predictive-maintenance-predictor", "newTag": tag, "digest": RELEASE_DIGEST}
                ],
                "patches": [
                    {
                        "target": {"kind": "InferenceService"},
                        "patch": json.dumps(
                            [
                                {
                                    "op": "replace",
                                    "path": "/spec/predictor/model/env/0/value",
                                    "value": f"models:/predictive_maintenance/{version}",
                                }
                            ]
                        ),
                    }
                ],
            }
        )
    )
    return here


def test_help_lists_every_target_with_a_description() -> None:
    result = make("help")
    assert result.returncode == 0, result.stderr
    lines = {line.split()[1]: line for line in result.stdout.splitlines() if line.strip().startswith("make ")}
    for name in TARGETS:
        assert name in lines, result.stdout
        assert len(lines[name].split(maxsplit=2)[2]) > 20, lines[name]


@pytest.mark.parametrize("overlay", ["OVERLAY=prod", SERVERLESS])
@pytest.mark.parametrize(
    "args", [["deploy"], ["canary", "PERCENT=10"], ["promote"], ["rollback"], ["status"], ["image"]]
)
def test_dry_run_prints_the_command_and_runs_nothing(
    args: list[str], overlay: str, fake: FakeKubectl, tmp_path: Path
) -> None:
    result = make(*args, overlay, "DRY_RUN=1", f"KUBECTL={fake.path}", f"DOCKER={tmp_path / 'no-docker'}")
    assert result.returncode == 0, result.stderr
    (printed,) = [line for line in result.stdout.splitlines() if line.startswith("$ ")]
    assert str(fake.path) in printed or "docker" in printed
    assert fake.calls == []


@pytest.mark.parametrize("percent", ["", "-1", "101", "1000", "abc", "10.5", "010", "1e2", "5 5"])
def test_canary_refuses_a_percentage_outside_0_to_100(percent: str, fake: FakeKubectl) -> None:
    result = target("canary", f"PERCENT={percent}", fake=fake)
    assert result.returncode != 0
    assert "PERCENT must be a whole number from 0 to 100" in result.stderr
    assert fake.calls == []


@pytest.mark.parametrize("percent", [0, 10, 100])
def test_knative_canary_applies_the_overlay_with_the_split_in_one_update(percent: int, fake: FakeKubectl) -> None:
    result = target("canary", f"PERCENT={percent}", SERVERLESS, fake=fake)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("$ ") and f"PERCENT={percent}" in result.stdout
    (call,) = fake.calls
    assert call["args"][:2] == ["apply", "--server-side"] and call["args"][-2:] == ["-f", "-"]
    applied = [doc for doc in yaml.safe_load_all(call["stdin"]) if doc]
    errors = [error for obj in applied for error in validate(obj)]
    assert not errors, "\n".join(errors)
    isvc = the(applied, "InferenceService")
    assert isvc["spec"]["predictor"]["canaryTrafficPercent"] == percent
    # The percentage is the only difference from the overlay: same objects, same container, same hashes.
    plain = render(MANIFESTS / "overlays" / "prod-serverless")
    assert [without_percent(o) if o["kind"] == "InferenceService" else o for o in applied] == plain


def test_knative_deploy_gives_the_new_revision_all_traffic(fake: FakeKubectl) -> None:
    result = target("deploy", SERVERLESS, fake=fake)
    assert result.returncode == 0, result.stderr
    (call,) = fake.calls
    assert "--field-manager=predictive-maintenance-deploy" in call["args"]
    isvc = the([d for d in yaml.safe_load_all(call["stdin"]) if d], "InferenceService")
    assert isvc["spec"]["predictor"]["canaryTrafficPercent"] == 100


@pytest.mark.parametrize(("name", "percent"), [("promote", 100), ("rollback", 0)])
def test_knative_promote_and_rollback_patch_only_the_split(
    name: str, percent: int, fake: FakeKubectl, tmp_path: Path
) -> None:
    result = target(name, SERVERLESS, fake=fake)
    assert result.returncode == 0, result.stderr
    (call,) = fake.calls
    args = call["args"]
    assert args[:3] == ["patch", "inferenceservice", ISVC_NAME]
    assert args[args.index("-n") + 1] == "dcmms-ml"
    # What was printed is what was run.
    assert shlex.split(result.stdout.strip().removeprefix("$ "))[1:] == args
    assert json.loads(args[args.index("-p") + 1]) == [{"op": "add", "path": PERCENT, "value": percent}]

    # The same patch on the live object of a canary in flight (and on one that never had the field).
    for start in (10, None):
        manifest = rendered_isvc(tmp_path, "prod-serverless")
        before = yaml.safe_load(manifest.read_text())
        if start is not None:
            before["spec"]["predictor"]["canaryTrafficPercent"] = start
            manifest.write_text(yaml.safe_dump(before))
        after = patch_locally(manifest, args)
        assert validate(after) == []
        assert after["spec"]["predictor"]["canaryTrafficPercent"] == percent
        assert without_percent(after) == without_percent(before)
        assert container(after) == container(before)


def test_the_namespace_follows_the_overlay(fake: FakeKubectl) -> None:
    assert target("rollback", "OVERLAY=dev", fake=fake).returncode == 0
    assert target("promote", "NAMESPACE=elsewhere", fake=fake).returncode == 0
    namespaces = [call["args"][call["args"].index("-n") + 1] for call in fake.calls]
    assert namespaces == ["dcmms-ml-dev", "elsewhere"]


def test_knative_status_shows_the_split_and_the_revisions(fake: FakeKubectl) -> None:
    result = target("status", SERVERLESS, fake=fake)
    assert result.returncode == 0, result.stderr
    assert [call["args"][:2] for call in fake.calls] == [["get", "inferenceservice"], ["get", "revisions"]]
    assert f"serving.kserve.io/inferenceservice={ISVC_NAME}" in fake.calls[1]["args"]


def test_image_builds_the_image_the_overlay_deploys() -> None:
    """Prod pins repo:tag@digest; `docker build -t` takes repo:tag (the digest exists once it is pushed)."""
    result = make("image", "DRY_RUN=1")
    assert result.returncode == 0, result.stderr
    command = shlex.split(result.stdout.strip().removeprefix("$ "))
    image = container(the(render(MANIFESTS / "overlays" / "prod"), "InferenceService"))["image"]
    tagged, digest = image.split("@")
    assert tagged == "ghcr.io/dcmms/predictive-maintenance-predictor:0.1.0" and digest.startswith("sha256:")
    assert command == ["docker", "build", "-t", tagged, "."]


@pytest.mark.parametrize("name", ["deploy", "promote", "rollback", "status"])
def test_a_missing_kubectl_says_where_to_get_it(name: str, tmp_path: Path) -> None:
    result = make(name, f"KUBECTL={tmp_path / 'kubectl'}")
    assert result.returncode != 0
    assert "https://kubernetes.io/docs/tasks/tools/" in result.stderr


def test_an_unknown_overlay_is_named_in_the_error(fake: FakeKubectl) -> None:
    result = target("canary", "PERCENT=10", "OVERLAY=staging", fake=fake)
    assert result.returncode != 0
    assert "no overlay 'staging'" in result.stderr and "dev prod" in result.stderr
    assert fake.calls == []


# Standard mode (overlays/prod, the default): spec.canary.


def test_standard_deploy_applies_the_overlay_as_is(fake: FakeKubectl, tmp_path: Path) -> None:
    """No traffic field in Standard mode: the overlay is applied unchanged (a live canary entry is not ours,
    so the server-side apply leaves it alone)."""
    release = new_release(tmp_path)
    result = target("deploy", f"OVERLAY_DIR={release}", fake=fake)
    assert result.returncode == 0, result.stderr
    (call,) = fake.calls
    assert (
        call["args"][:2] == ["apply", "--server-side"]
        and "--field-manager=predictive-maintenance-deploy" in call["args"]
    )
    assert [d for d in yaml.safe_load_all(call["stdin"]) if d] == render(release)


@pytest.mark.parametrize("args", [["deploy"], ["canary", "PERCENT=10"]])
def test_the_placeholder_digest_cannot_be_deployed_by_mistake(args: list[str], fake: FakeKubectl) -> None:
    """overlays/prod pins sha256:000… until a release writes the pushed image's digest: deploy and canary refuse
    it naming the fix, and send nothing to the cluster; a dry run prints the command and the same warning."""
    refused = target(*args, fake=fake)
    assert refused.returncode != 0 and fake.calls == []
    assert "a placeholder digest, no such image exists" in refused.stderr
    assert "docker push ghcr.io/dcmms/predictive-maintenance-predictor:0.1.0" in refused.stderr
    dry = target(*args, "DRY_RUN=1", fake=fake)
    assert dry.returncode == 0 and "a placeholder digest" in dry.stderr and dry.stdout.startswith("$ ")


@pytest.mark.parametrize("percent", [0, 10, 100])
def test_standard_canary_adds_the_overlays_model_and_image_beside_the_stable_predictor(
    percent: int, fake: FakeKubectl, tmp_path: Path
) -> None:
    release = new_release(tmp_path)
    args = the_patch(target("canary", f"PERCENT={percent}", f"OVERLAY_DIR={release}", fake=fake), fake)
    assert len(fake.calls) == 1 and args[args.index("-n") + 1] == "dcmms-ml"

    live = rendered_isvc(tmp_path)  # what the cluster holds: the current release (model 1, image 0.1.0)
    before = yaml.safe_load(live.read_text())
    after = patch_locally(live, args)
    check_kserve_canary_rules(after)
    (canary,) = after["spec"]["canary"]
    assert canary["trafficPercent"] == percent
    # The new release's env as it renders (Feast's variables too: KServe replaces, not merges, the list).
    release_env = container(the(render(release), "InferenceService"))["env"]
    assert release_env[0] == {"name": "PREDICTOR_MODEL_URI", "value": "models:/predictive_maintenance/2"}
    assert canary["predictor"] == {
        "name": "canary",
        "model": {
            "name": "kserve-container",
            "modelFormat": {"name": "mlflow"},
            "runtime": "predictive-maintenance",
            "image": RELEASE_IMAGE,
            "env": release_env,
        },
    }
    # The stable predictor keeps serving the current release, untouched.
    assert after["spec"]["predictor"] == before["spec"]["predictor"]
    assert container(after)["env"][0]["value"] == "models:/predictive_maintenance/1"


def test_standard_canary_again_updates_the_one_entry(fake: FakeKubectl, tmp_path: Path) -> None:
    release = new_release(tmp_path)
    live = rendered_isvc(tmp_path)
    for percent in (10, 50):
        result = target("canary", f"PERCENT={percent}", f"OVERLAY_DIR={release}", fake=fake)
        assert result.returncode == 0, result.stderr
        live.write_text(yaml.safe_dump(patch_locally(live, fake.calls[-1]["args"])))
    after = yaml.safe_load(live.read_text())
    check_kserve_canary_rules(after)
    assert [(c["predictor"]["name"], c["trafficPercent"]) for c in after["spec"]["canary"]] == [("canary", 50)]


def test_standard_promote_makes_the_canary_the_stable_predictor(fake: FakeKubectl, tmp_path: Path) -> None:
    assert target("canary", "PERCENT=10", f"OVERLAY_DIR={new_release(tmp_path)}", fake=fake).returncode == 0
    live = rendered_isvc(tmp_path)
    before = yaml.safe_load(live.read_text())
    live.write_text(yaml.safe_dump(patch_locally(live, fake.calls[-1]["args"])))

    args = the_patch(target("promote", fake=fake), fake)
    after = patch_locally(live, args)
    check_kserve_canary_rules(after)
    assert "canary" not in after["spec"]
    model = container(after)
    assert model["image"] == RELEASE_IMAGE
    assert model["env"][0] == {"name": "PREDICTOR_MODEL_URI", "value": "models:/predictive_maintenance/2"}
    # Only the image and the model version changed: args, probes, resources, autoscaling stay as they were.
    expected = copy.deepcopy(before)
    expected["spec"]["predictor"]["model"].update(image=model["image"], env=model["env"])
    assert after == expected


def test_standard_rollback_removes_the_canary_and_nothing_else(fake: FakeKubectl, tmp_path: Path) -> None:
    assert target("canary", "PERCENT=10", f"OVERLAY_DIR={new_release(tmp_path)}", fake=fake).returncode == 0
    live = rendered_isvc(tmp_path)
    before = yaml.safe_load(live.read_text())
    live.write_text(yaml.safe_dump(patch_locally(live, fake.calls[-1]["args"])))

    after = patch_locally(live, the_patch(target("rollback", fake=fake), fake))
    check_kserve_canary_rules(after)
    assert after == before


@pytest.mark.parametrize("name", ["promote", "rollback"])
def test_standard_promote_and_rollback_refuse_when_there_is_no_canary(
    name: str, fake: FakeKubectl, tmp_path: Path
) -> None:
    """The JSON patch's `test` op makes the API server refuse the whole patch: nothing half-applied."""
    result = try_patch(rendered_isvc(tmp_path), the_patch(target(name, fake=fake), fake))
    assert result.returncode != 0 and "test" in result.stderr.lower()


@pytest.mark.parametrize("name", ["canary", "promote", "rollback"])
def test_standard_patches_refuse_a_knative_inference_service(name: str, fake: FakeKubectl, tmp_path: Path) -> None:
    """spec.canary on a Knative-mode object would be ignored: the patches check the mode first."""
    result = target(name, "PERCENT=10", f"OVERLAY_DIR={new_release(tmp_path)}", fake=fake)
    result = try_patch(rendered_isvc(tmp_path, "prod-serverless"), the_patch(result, fake))
    assert result.returncode != 0


def test_standard_status_shows_stable_and_canary_with_their_shares(fake: FakeKubectl) -> None:
    # What `kubectl get -o jsonpath=<status_jsonpath>` prints for a live object with a 10% canary.
    fake.stdout_file.write_text(
        "ghcr.io/x:0.1.0 models:/predictive_maintenance/1\ncanary 10 ghcr.io/x:0.2.0 models:/predictive_maintenance/2\n"
    )
    result = target("status", fake=fake)
    assert result.returncode == 0, result.stderr
    get_isvc, get_workloads = [call["args"] for call in fake.calls]
    assert get_isvc[:3] == ["get", "inferenceservice", ISVC_NAME]
    assert get_isvc[get_isvc.index("-o") + 1].startswith("jsonpath=")
    assert get_workloads[:2] == ["get", "deployments,hpa"]
    assert f"serving.kserve.io/inferenceservice={ISVC_NAME}" in get_workloads
    table = [line.split() for line in result.stdout.splitlines()[1:] if line.strip()]
    assert table[0] == ["PREDICTOR", "SHARE", "IMAGE", "MODEL"]
    assert table[1] == ["stable", "90%", "ghcr.io/x:0.1.0", "models:/predictive_maintenance/1"]
    assert table[2] == ["canary", "10%", "ghcr.io/x:0.2.0", "models:/predictive_maintenance/2"]


def test_standard_canary_without_kubectl_says_where_to_get_it(tmp_path: Path) -> None:
    result = make("canary", "PERCENT=10", "MODE=Standard", f"KUBECTL={tmp_path / 'kubectl'}")
    assert result.returncode != 0
    assert "https://kubernetes.io/docs/tasks/tools/" in result.stderr


def test_the_validator_catches_a_malformed_canary_entry(fake: FakeKubectl, tmp_path: Path) -> None:
    """Guards check_kserve_canary_rules' strict half: unknown fields inside spec.canary are errors."""
    assert target("canary", "PERCENT=10", f"OVERLAY_DIR={new_release(tmp_path)}", fake=fake).returncode == 0
    good = patch_locally(rendered_isvc(tmp_path), fake.calls[-1]["args"])
    assert validate(good) == []
    for path, value in [
        (("trafficPrecent",), 10),
        (("predictor", "model", "envv"), []),
        (("predictor", "trafficPercent"), 10),
        (("trafficPercent",), "10"),
    ]:
        bad = copy.deepcopy(good)
        node = bad["spec"]["canary"][0]
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        assert validate(bad), path
