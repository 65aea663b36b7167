"""Real processes for the tests: the predictor (and other servers) on free loopback ports.

Every process is started in its own session, waited for within a bounded time, and stopped by PID
(SIGTERM, then SIGKILL) — also when the test fails. Each runs in a scratch working directory of its own
(never the source tree: MLflow, for one, writes ``mlruns/`` into its working directory), and its session
is remembered in ``STARTED_SESSIONS`` so that ``tests/conftest.py`` can check at the end of the run that
nothing was left running.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

PROJECT_ROOT = Path(__file__).resolve().parent.parent
MODEL_NAME = "predictive_maintenance"
#: Session ids of every process started through ``Process`` or ``track`` (each leads its own session).
STARTED_SESSIONS: set[int] = set()
#: Parent of the scratch working directories; removed by tests/conftest.py at the end of the run.
SCRATCH_ROOT = Path(tempfile.gettempdir()) / f"predictor-tests-{os.getpid()}"
SEED_ROWS = [[75.3, 24, 0.15, 0.65, 0.8, 2.5, 1, 0, 0, 0], [60.2, 36, 0.25, 0.45, 1.2, 5.0, 0, 1, 1, 1]]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate, timeout_s: float, interval_s: float = 0.1, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval_s)
    raise TimeoutError(f"{what} not reached within {timeout_s}s")


def scratch_dir(prefix: str = "cwd-") -> Path:
    """A fresh empty directory under ``SCRATCH_ROOT``: the default working directory of a child."""
    SCRATCH_ROOT.mkdir(exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=SCRATCH_ROOT))


def track(popen: subprocess.Popen[bytes]) -> subprocess.Popen[bytes]:
    """Remember a child started elsewhere (it must lead its own session: ``start_new_session=True``)."""
    STARTED_SESSIONS.add(popen.pid)
    return popen


@dataclass
class Process:
    """A child process with its log in a file; ``stop()`` is idempotent."""

    args: list[str]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None  # None: a fresh scratch directory, chosen at start()
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> Process:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        if self.cwd is None:
            self.cwd = scratch_dir()
        with self.log_path.open("wb") as log:  # the child keeps its own copy of the descriptor
            self.popen = track(
                subprocess.Popen(
                    self.args,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self.cwd,
                    env={**os.environ, **self.env},
                    start_new_session=True,
                )
            )
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def log(self, last: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-last:] if self.log_path.exists() else ""

    def wait_http_ok(
        self, url: str, timeout_s: float, interval_s: float, what: str, request_timeout_s: float = 2
    ) -> None:
        """Until ``url`` answers 200; a RuntimeError with the log as soon as the process has exited."""

        def answered() -> bool:
            if not self.alive():
                returncode = self.popen.returncode if self.popen is not None else None
                raise RuntimeError(f"{what}: the process exited with {returncode}:\n{self.log()}")
            try:
                return httpx.get(url, timeout=request_timeout_s).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(answered, timeout_s, interval_s, what)

    def signal(self, sig: int) -> None:
        if self.alive():
            os.kill(self.pid, sig)

    def stop(self, timeout_s: float = 10) -> int | None:
        if self.popen is None:
            return None
        if self.alive():
            os.killpg(self.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.pid, signal.SIGKILL)
                self.popen.wait(5)
        return self.popen.returncode


@dataclass
class PredictorProcess(Process):
    http_port: int = 0
    grpc_port: int = 0
    model_name: str = MODEL_NAME

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def wait_ready(self, timeout_s: float = 90) -> PredictorProcess:
        try:
            self.wait_http_ok(f"{self.http_url}/ready", timeout_s, 0.2, "predictor readiness")
        except TimeoutError as exc:
            self.stop()  # whoever started it may not have reached its try/finally yet
            raise TimeoutError(f"{exc}\n--- server log ---\n{self.log()}") from exc
        except BaseException:
            self.stop()
            raise
        return self

    def wait_live(self, timeout_s: float = 60) -> PredictorProcess:
        def live() -> bool:
            try:
                return httpx.get(f"{self.http_url}/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        try:
            wait_until(live, timeout_s, 0.1, "predictor liveness")
        except BaseException:
            self.stop()
            raise
        return self


def start_predictor(
    tracking_uri: str, log_dir: Path, *extra: str, model_name: str = MODEL_NAME, env: dict[str, str] | None = None
) -> PredictorProcess:
    http_port, grpc_port = free_port(), free_port()
    if "--model_cache_dir" not in extra:  # never the default .data/ of the source tree
        extra = ("--model_cache_dir", str(log_dir / f"cache-{http_port}"), *extra)
    # A stop waits no drain delay (3 s each, over a hundred stops) unless the test sets one: a flag or the variable
    # it passes overrides this (tests/test_shutdown.py, the soak and the k8s grace test do).
    env = {"PREDICTOR_DRAIN_DELAY_S": "0", **(env or {})}
    args = [
        sys.executable,
        "-m",
        "predictor",
        "--model_name",
        model_name,
        "--tracking_uri",
        tracking_uri,
        "--http_port",
        str(http_port),
        "--grpc_port",
        str(grpc_port),
        *extra,
    ]
    process = PredictorProcess(
        args,
        log_dir / f"predictor-{http_port}.log",
        env=env,
        http_port=http_port,
        grpc_port=grpc_port,
        model_name=model_name,
    )
    process.start()
    return process


def scrape(base_url: str, headers: dict[str, str] | None = None) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of ``/metrics``, keyed by (name, labels)."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{base_url}/metrics", headers=headers, timeout=10).text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def total(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels`` (every series of it when none are given)."""
    wanted = set(labels.items())
    return sum(value for (metric, have), value in samples.items() if metric == name and wanted <= have)


def sample(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    """One sample's value from ``scrape()``; 0 when the series does not exist (yet)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def mlflow_server(registry_dir: Path, port: int, log_dir: Path) -> Process:
    bin_dir = str(Path(sys.executable).parent)  # `mlflow server` execs uvicorn from PATH
    return Process(
        [
            f"{bin_dir}/mlflow",
            "server",
            "--backend-store-uri",
            f"sqlite:///{registry_dir}/mlflow.db",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        log_dir / "mlflow-server.log",
        env={"PATH": f"{bin_dir}:{os.environ.get('PATH', '')}"},
    )
