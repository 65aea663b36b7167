"""The promise table (``tests/promises.toml``) kept true: every checkable promise the README makes — each flag, route,
error status, metric and make target, derived here from the code that defines them, so a new one cannot be
forgotten — names the tests that would fail if it broke, and every test named exists.

Figures in prose (throughputs, latencies, sizes) are not promises of this kind: they cite the bench run or soak
that produced them (tests/bench/RESULTS.md) rather than being tested.
"""

from __future__ import annotations

import ast
import re
import tomllib
from dataclasses import fields
from functools import cache
from pathlib import Path

import pytest

from predictor import errors
from predictor.config import Settings
from predictor.serving.endpoints import ENDPOINTS

ROOT = Path(__file__).resolve().parents[1]
TABLE = ROOT / "tests" / "promises.toml"
MAKEFILES = (ROOT / "Makefile", ROOT / "tests" / "bench" / "bench.mk", ROOT / "manifests" / "deploy.mk")
METRIC = re.compile(r'(?:Counter|Gauge|Histogram|Summary)\(\s*"([a-z_]+)"')
TARGET = re.compile(r"^([a-z][a-z0-9-]*):[^\n]*## ", re.MULTILINE)


def promised() -> set[tuple[str, str]]:
    """(kind, name) of every promise the code defines and the README documents."""
    items = {("flag", f"--{f.name}") for f in fields(Settings) if not f.metadata["internal"]}
    items |= {("route", f"{e.method} {e.path}") for e in ENDPOINTS}
    items |= {("status", cls.error_type) for cls in errors.error_classes()}
    items |= {("metric", name) for name in METRIC.findall((ROOT / "predictor" / "metrics.py").read_text())}
    items |= {("target", name) for path in MAKEFILES for name in TARGET.findall(path.read_text())}
    return items


@cache
def table() -> dict[tuple[str, str], list[str]]:
    entries = tomllib.loads(TABLE.read_text())["promise"]
    return {(entry["kind"], entry["name"]): entry["tests"] for entry in entries}


@cache
def _test_functions(path: Path) -> frozenset[str]:
    tree = ast.parse(path.read_text())
    return frozenset(
        node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")
    )


def test_every_promise_of_the_code_is_in_the_table_and_nothing_else_is() -> None:
    listed, defined = set(table()), promised()
    assert not defined - listed, f"promises without an entry in tests/promises.toml: {sorted(defined - listed)}"
    assert not listed - defined, f"entries for promises the code no longer makes: {sorted(listed - defined)}"


@pytest.mark.parametrize("kind", ["flag", "route", "status", "metric", "target"])
def test_every_promise_names_a_test_that_exists(kind: str) -> None:
    missing, unknown = [], []
    for (entry_kind, name), tests in sorted(table().items()):
        if entry_kind != kind:
            continue
        if not tests:
            missing.append(name)
        for reference in tests:
            file, _, function = reference.partition("::")
            path = ROOT / file
            if not path.is_file() or function.split("[")[0] not in _test_functions(path):
                unknown.append(f"{name}: {reference}")
    assert not missing, f"{kind} promises no test checks: {missing}"
    assert not unknown, f"{kind} promises naming tests that do not exist: {unknown}"


def test_every_promise_is_in_the_readme() -> None:
    """Flags by name (or, for settings read from the environment only, their variable), metrics and error types
    by name, routes by their path, make targets as ``make TARGET``."""
    readme = (ROOT / "README.md").read_text()
    env = {f"--{f.name}": f.metadata["env"] for f in fields(Settings)}

    def documented(kind: str, name: str) -> bool:
        if kind == "flag":
            return name in readme or (bool(env[name]) and env[name] in readme)
        if kind == "route":
            return not _documented(name) or name.split(" ", 1)[1].split("{")[0] in readme
        if kind == "target":
            return f"make {name}" in readme
        return name in readme

    absent = [f"{kind} {name}" for kind, name in sorted(promised()) if not documented(kind, name)]
    assert not absent, f"promised by the code but not in the README: {absent}"


def _documented(route: str) -> bool:
    method, path = route.split(" ", 1)
    return next(e.documented for e in ENDPOINTS if e.method == method and e.path == path)
