"""The make targets that run tools rather than our server, checked by what they would run (``make -n``: their
recipes, with the variables a user sets), and ``make test-fast``'s selection by what pytest collects."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.servers import PROJECT_ROOT


def dry_run(*args: str) -> str:
    done = subprocess.run(["make", "-n", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize(
    ("target", "runs"),
    [
        ("check", ["ruff check predictor tests", "ruff format --check predictor tests", "mypy"]),
        ("lock", ["uv lock"]),
        ("mutation", ["mutmut run", "tests/mutation/report.py"]),
        ("drift-chart", ["-m tests.bench.drift_chart"]),
        ("bench-many", ["-m tests.bench.many_models"]),
        ("soak", ["-m tests.soak.run --minutes 10 --out soak-results"]),
        ("test-fast", ['-m pytest --numprocesses 2 -m "not servers"', "collected no tests"]),
    ],
)
def test_the_target_runs_its_tools(target: str, runs: list[str]) -> None:
    recipe = dry_run(target)
    for command in runs:
        assert command in recipe, f"make {target} does not run {command!r}:\n{recipe}"


def test_lock_upgrade_lets_newer_versions_in_and_soak_takes_its_length() -> None:
    assert "uv lock --upgrade" in dry_run("lock", "UPGRADE=1")
    assert "--minutes 1 --out /tmp/soak" in dry_run("soak", "MINUTES=1", "SOAK_OUT=/tmp/soak")


def test_test_fast_collects_the_in_process_tests_and_no_server_test() -> None:
    collected = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-m", "not servers", "-p", "no:randomly"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    ).stdout
    assert "tests/test_v2_cases.py::" in collected and "tests/test_head_sampling.py::" in collected
    for starts_servers in ("tests/test_soak.py::", "tests/test_one_door.py::", "tests/test_failure_paths.py::"):
        assert starts_servers not in collected
