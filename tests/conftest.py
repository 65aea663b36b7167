"""Shared fixtures: a real MLflow registry with the demo model, and a real predictor serving it.

And two checks on the whole run: when it ends, no process the suite started may still be running
(``leak_check``, in each of pytest-xdist's workers, which sees the processes its own tests started), and the
source tree must hold no new file (compared with ``git status`` at the start; ``pytest_sessionfinish``, in the
process that runs first and ends last, so one worker's end never sees another's test at work).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
import re
import shutil
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from predictor.features import import_feast
from tests.servers import PROJECT_ROOT, SCRATCH_ROOT, STARTED_SESSIONS, PredictorProcess, start_predictor

#: What a run may add to the source tree: the venv, build metadata and the tools' caches.
ALLOWED_NEW = (".venv", ".egg-info", ".pytest_cache", "__pycache__", ".ruff_cache", ".mypy_cache", ".hypothesis")


@pytest.fixture(scope="session")
def registry_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("registry")


@pytest.fixture(scope="session")
def tracking_uri(registry_dir: Path) -> str:
    """A SQLite MLflow registry holding the demo model (version 1, @production, stage Production)."""
    from predictor.demo.training import register_demo_model

    uri = f"sqlite:///{registry_dir}/mlflow.db"
    register_demo_model(uri, artifact_root=registry_dir / "artifacts")
    return uri


@pytest.fixture(scope="session")
def demo_server(tracking_uri: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PredictorProcess]:
    """``python -m predictor`` on free ports, ready to serve the demo model."""
    server = start_predictor(tracking_uri, tmp_path_factory.mktemp("logs"))
    try:
        yield server.wait_ready()
    finally:
        server.stop()


@pytest.fixture
def predictors(tmp_path: Path) -> Iterator[Callable[..., PredictorProcess]]:
    """``start_predictor`` whose processes this test's teardown stops, whatever happened before any wait."""
    started: list[PredictorProcess] = []

    def start(tracking_uri: str, *extra: str, **kwargs: object) -> PredictorProcess:
        log_dir = kwargs.pop("log_dir", tmp_path / "logs")
        process = start_predictor(tracking_uri, log_dir, *extra, **kwargs)  # type: ignore[arg-type]
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


# ------------------------------------------------------------------------------------------ leak check
def _source_tree_entries() -> set[str]:
    done = subprocess.run(
        ["git", "status", "--porcelain", "--ignored", "--untracked-files=all"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:  # not a git work tree (a copy, e.g. `make mutation`'s): nothing to compare
        return set()
    # New files only (untracked or ignored): a tracked file edited while the suite runs is not the suite's doing.
    return {
        line
        for line in done.stdout.splitlines()
        if line[:2] in ("??", "!!") and not any(part in line for part in ALLOWED_NEW)
    }


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, parent pid, session id) of a process, None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()  # the command name, in parentheses, may hold spaces
    return fields[0], int(fields[1]), int(fields[3])


def _left_running() -> dict[int, str]:
    """Live processes the suite started: descendants of this process, or members of a session it started."""
    me, table = os.getpid(), {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None and stat[0] != "Z":
            table[int(entry.name)] = stat
    ours = {pid for pid, (_, _, session) in table.items() if session in STARTED_SESSIONS}
    frontier = {me}
    while frontier:
        children = {pid for pid, (_, parent, _) in table.items() if parent in frontier} - ours
        ours |= children
        frontier = children
    ours.discard(me)
    left = {}
    for pid in ours:
        try:
            left[pid] = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
    return left


def _is_xdist_worker() -> bool:
    return "PYTEST_XDIST_WORKER" in os.environ


_TREE_AT_START = pytest.StashKey[set[str]]()


def pytest_sessionstart(session: pytest.Session) -> None:
    if not _is_xdist_worker():
        session.config.stash[_TREE_AT_START] = _source_tree_entries()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _is_xdist_worker() or _TREE_AT_START not in session.config.stash:
        return
    new = sorted(_source_tree_entries() - session.config.stash[_TREE_AT_START])
    if new:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line("the test run left new files in the source tree:", red=True)
            for entry in new:
                reporter.write_line(f"  {entry}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session", autouse=True)
def leak_check() -> Iterator[None]:
    """Set up first, torn down last: after every other fixture has stopped its processes."""
    yield
    deadline = time.monotonic() + 10  # bounded: a process stopped a moment ago may still be exiting
    while (left := _left_running()) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in left:  # clean up, then fail the run
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    shutil.rmtree(SCRATCH_ROOT, ignore_errors=True)
    problems = [f"still running: pid {pid}: {command}" for pid, command in sorted(left.items())]
    assert not problems, "the test run left things behind:\n" + "\n".join(problems)


# Feast switches the process to prometheus multiprocess mode when first imported: import it here, undone.
import_feast()


def pytest_configure(config: pytest.Config) -> None:
    # `make mutation`: mutmut runs each mutant's tests in a process forked from one that ran them before. Feast's
    # materialize computes on dask's threaded scheduler, whose pool threads stay in the parent: a forked child
    # would wait on them forever (every mutant of a module whose tests prepare a Feast repo read as a timeout).
    if "MUTANT_UNDER_TEST" in os.environ:
        import dask

        dask.config.set(scheduler="synchronous")


# ------------------------------------------------------------------------------------ make test-fast
# `make test-fast` runs only the tests that start nothing (`-m "not servers"`): the in-process half of the suite,
# for feedback in under a minute. A test is marked `servers` when it, or any fixture it uses, starts a process or
# needs the demo registry: read from their source, so a new test is classified without anyone marking it.
NEEDS_PROCESSES = frozenset({"demo_server", "predictors", "tracking_uri", "registry_dir"})
STARTS_PROCESSES = re.compile(
    r"start_predictor\(|Popen\(|subprocess\.|wait_ready\(|_server\(|\bmake\(|\brender\(|kubectl\(|run_(hey|wrk)\(|redis_feature_repo\(|serve\("
    r"|register_demo_model\(|bootstrap\(|\.save\(|save_\w*\(|log_model\(|TestClient\(|\bstart\(|wait_live\("
    r"|run_shell\(|Soak\("
)


@functools.cache
def _starts_processes(function: Callable[..., object]) -> bool:
    try:
        return bool(STARTS_PROCESSES.search(inspect.getsource(function)))
    except (OSError, TypeError):  # no source (a builtin fixture): it starts nothing of ours
        return False


# ------------------------------------------------------------------------------------ the order of files
# `make test` hands whole files to its two workers in collection order (`--dist loadfile --no-loadscope-reorder`).
# The soak (one test, four to five minutes, CPU-heavy) goes first, so that it runs beside the light files with many
# in-process tests, which come next (most tests first, as xdist's own reorder would have it); the files of a few
# server tests each come last. Measured (session 14, JUnit times): xdist's own order ran the soak last, alone, while
# the other worker idled (17 min 51 s); the slowest files first ran the soak beside the hot-swap tests and made both
# slower (the soak 270 → 321 s, hot swap 178 → 321 s; 17 min 59 s).
FIRST_FILE = "test_soak.py"


def _in_file_order(items: list[pytest.Item]) -> None:
    per_file = Counter(item.path.name for item in items)
    items.sort(key=lambda item: (item.path.name != FIRST_FILE, -per_file[item.path.name], item.path.name))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    _in_file_order(items)  # stable: the tests of a file keep their order
    for item in items:
        if not isinstance(item, pytest.Function):
            continue
        definitions = [d for defs in item._fixtureinfo.name2fixturedefs.values() for d in defs]
        if (
            NEEDS_PROCESSES & set(item.fixturenames)
            or _starts_processes(item.function)
            or any(_starts_processes(d.func) for d in definitions)
        ):
            item.add_marker(pytest.mark.servers)
