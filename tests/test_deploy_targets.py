"""manifests/deploy.mk, offline: the targets print what they run, DRY_RUN runs nothing, and the patches they
send, applied to the rendered manifests with `kubectl patch --local`, give valid objects that differ only in
the traffic split.

A stand-in kubectl (in tmp_path) records what the targets would send to a cluster; `kubectl kustomize`
calls go through to the real kubectl, so what deploy/canary apply is the real rendering.
"""

from __future__ import annotations

import copy
import json
import shlex
import stat
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.k8s.kube import ISVC_NAME, MANIFESTS, container, kubectl, make, render, run, the
from tests.k8s.strict import validate

TARGETS = ("deploy", "canary", "promote", "rollback", "status", "image")
PERCENT = "/spec/predictor/canaryTrafficPercent"


class FakeKubectl:
    """A kubectl that records its argv (and stdin, for `-f -`) and forwards `kustomize` to the real one."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "kubectl"
        self.calls_file = directory / "calls.jsonl"
        self.path.write_text(f"""#!{sys.executable}
import json, os, sys
args = sys.argv[1:]
if args[:1] == ["kustomize"]:
    os.execv({kubectl()!r}, [{kubectl()!r}, *args])
stdin = sys.stdin.read() if "-" in args and "-f" in args else None
with open({str(self.calls_file)!r}, "a") as log:
    log.write(json.dumps({{"args": args, "stdin": stdin}}) + "\\n")
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
    kind = patch_args[patch_args.index("--type") + 1]
    body = patch_args[patch_args.index("-p") + 1]
    result = run([kubectl(), "patch", "--local", "-f", str(manifest), "--type", kind, "-p", body, "-o", "yaml"])
    assert result.returncode == 0, result.stderr
    patched: dict[str, Any] = yaml.safe_load(result.stdout)
    return patched


def without_percent(isvc: dict[str, Any]) -> dict[str, Any]:
    copied: dict[str, Any] = copy.deepcopy(isvc)
    copied["spec"]["predictor"].pop("canaryTrafficPercent", None)
    return copied


def test_help_lists_every_target_with_a_description() -> None:
    result = make("help")
    assert result.returncode == 0, result.stderr
    lines = {line.split()[1]: line for line in result.stdout.splitlines() if line.strip().startswith("make ")}
    for name in TARGETS:
        assert name in lines, result.stdout
        assert len(lines[name].split(maxsplit=2)[2]) > 20, lines[name]


@pytest.mark.parametrize(
    "args", [["deploy"], ["canary", "PERCENT=10"], ["promote"], ["rollback"], ["status"], ["image"]]
)
def test_dry_run_prints_the_command_and_runs_nothing(args: list[str], fake: FakeKubectl, tmp_path: Path) -> None:
    result = make(*args, "DRY_RUN=1", f"KUBECTL={fake.path}", f"DOCKER={tmp_path / 'no-docker'}")
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
def test_canary_applies_the_overlay_with_the_split_in_one_update(percent: int, fake: FakeKubectl) -> None:
    result = target("canary", f"PERCENT={percent}", fake=fake)
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
    plain = render(MANIFESTS / "overlays" / "prod")
    assert [without_percent(o) if o["kind"] == "InferenceService" else o for o in applied] == plain


def test_deploy_gives_the_new_revision_all_traffic(fake: FakeKubectl) -> None:
    result = target("deploy", fake=fake)
    assert result.returncode == 0, result.stderr
    (call,) = fake.calls
    assert "--field-manager=predictive-maintenance-deploy" in call["args"]
    isvc = the([d for d in yaml.safe_load_all(call["stdin"]) if d], "InferenceService")
    assert isvc["spec"]["predictor"]["canaryTrafficPercent"] == 100


@pytest.mark.parametrize(("name", "percent"), [("promote", 100), ("rollback", 0)])
def test_promote_and_rollback_patch_only_the_split(name: str, percent: int, fake: FakeKubectl, tmp_path: Path) -> None:
    result = target(name, fake=fake)
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
        manifest = rendered_isvc(tmp_path)
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


def test_status_shows_the_split_and_the_revisions(fake: FakeKubectl) -> None:
    result = target("status", fake=fake)
    assert result.returncode == 0, result.stderr
    assert [call["args"][:2] for call in fake.calls] == [["get", "inferenceservice"], ["get", "revisions"]]
    assert f"serving.kserve.io/inferenceservice={ISVC_NAME}" in fake.calls[1]["args"]


def test_image_builds_the_image_the_overlay_deploys() -> None:
    result = make("image", "DRY_RUN=1")
    assert result.returncode == 0, result.stderr
    command = shlex.split(result.stdout.strip().removeprefix("$ "))
    image = container(the(render(MANIFESTS / "overlays" / "prod"), "InferenceService"))["image"]
    assert command == ["docker", "build", "-t", image, "."]


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
