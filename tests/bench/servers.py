"""The servers under test: how each is launched, spoken to, timed to readiness and stopped.

| name      | what                                                        | protocol                         |
|-----------|-------------------------------------------------------------|----------------------------------|
| ours      | ``python -m predictor`` (this project)                      | KServe v1                        |
| ours-w2   | the same with ``--workers 2``                               | KServe v1                        |
| baseline  | ``baseline_predictor.py``, the obvious KServe predictor     | KServe v1                        |
| mlflow    | ``mlflow models serve --env-manager local``                 | POST /invocations (pandas split) |
| mlserver  | Seldon MLServer + mlserver-mlflow, in its own venv          | Open Inference Protocol (v2)     |
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from predictor.demo.training import ModelKind
from tests.bench import payloads
from tests.bench.load import http
from tests.bench.procs import Memory, free_port, stop_group
from tests.bench.registry import MODEL_NAMES, BenchRegistry, local_copy

BASELINE_SCRIPT = Path(__file__).with_name("baseline_predictor.py")


@dataclass(frozen=True)
class Protocol:
    name: str
    predict_path: str  # "{model}" is replaced by the model name
    ready_path: str
    body: Callable[[payloads.Rows], payloads.Body]


V1 = Protocol("v1", "/v1/models/{model}:predict", "/v1/models/{model}", payloads.v1_body)
MLFLOW = Protocol("mlflow", "/invocations", "/ping", payloads.mlflow_body)
V2_COLUMNS = Protocol("v2-columns", "/v2/models/{model}/infer", "/v2/models/{model}/ready", payloads.v2_columns_body)


@dataclass(frozen=True)
class Ports:
    http: int
    grpc: int
    metrics: int

    @classmethod
    def pick(cls) -> Ports:
        return cls(free_port(), free_port(), free_port())


@dataclass(frozen=True)
class Context:
    """What every launcher may need; built once per run."""

    python: Path  # the project's interpreter
    registry: BenchRegistry
    work: Path  # scratch space under bench-results/
    mlserver: Path | None  # MLServer's executable in its own venv
    mlserver_status: str  # why it is None


@dataclass(frozen=True)
class Launch:
    argv: list[str]
    env: dict[str, str]
    cwd: Path


Launcher = Callable[[Context, ModelKind, Ports], Launch]


def _env(context: Context, **extra: str) -> dict[str, str]:
    env = dict(os.environ, MLFLOW_TRACKING_URI=context.registry.tracking_uri, PYTHONUNBUFFERED="1", **extra)
    # `mlflow models serve` execs `uvicorn` from PATH: put the project's venv first.
    env["PATH"] = f"{context.python.parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def _ours(workers: int) -> Launcher:
    def launch(context: Context, kind: ModelKind, ports: Ports) -> Launch:
        argv = [str(context.python), "-m", "predictor", "--model_name", MODEL_NAMES[kind],
                "--tracking_uri", context.registry.tracking_uri,
                "--http_port", str(ports.http), "--grpc_port", str(ports.grpc),
                # a fresh, empty model cache per start: the cold start measured is a true one
                "--model_cache_dir", str(context.work / f"model-cache-{ports.http}")]  # fmt: skip
        if workers > 1:
            argv += ["--workers", str(workers)]
        return Launch(argv, _env(context), Path.cwd())

    return launch


def _baseline(context: Context, kind: ModelKind, ports: Ports) -> Launch:
    argv = [str(context.python), str(BASELINE_SCRIPT), "--model_name", MODEL_NAMES[kind],
            "--http_port", str(ports.http), "--grpc_port", str(ports.grpc)]  # fmt: skip
    return Launch(argv, _env(context), Path.cwd())


def _mlflow(context: Context, kind: ModelKind, ports: Ports) -> Launch:
    argv = [str(context.python.parent / "mlflow"), "models", "serve", "-m", context.registry.model_uri(kind),
            "-h", "127.0.0.1", "-p", str(ports.http), "--env-manager", "local"]  # fmt: skip
    return Launch(argv, _env(context), Path.cwd())


def _mlserver(context: Context, kind: ModelKind, ports: Ports) -> Launch:
    if context.mlserver is None:
        raise ServerFailed(context.mlserver_status)
    folder = context.work / "mlserver" / MODEL_NAMES[kind]
    model_dir = local_copy(context.registry, kind, folder / "model")
    settings = {"host": "127.0.0.1", "http_port": ports.http, "grpc_port": ports.grpc, "metrics_port": ports.metrics}
    model_settings = {
        "name": MODEL_NAMES[kind],
        "implementation": "mlserver_mlflow.MLflowRuntime",
        "parameters": {"uri": str(model_dir)},
    }
    (folder / "settings.json").write_text(json.dumps(settings))
    (folder / "model-settings.json").write_text(json.dumps(model_settings))
    return Launch([str(context.mlserver), "start", str(folder)], _env(context), folder)


@dataclass(frozen=True)
class ServerSpec:
    name: str
    label: str
    protocol: Protocol
    workers: int
    launcher: Launcher


SERVERS: dict[str, ServerSpec] = {
    spec.name: spec
    for spec in (
        ServerSpec("ours", "ours", V1, 1, _ours(1)),
        ServerSpec("ours-w2", "ours --workers 2", V1, 2, _ours(2)),
        ServerSpec("baseline", "obvious KServe predictor", V1, 1, _baseline),
        ServerSpec("mlflow", "mlflow models serve", MLFLOW, 1, _mlflow),
        ServerSpec("mlserver", "MLServer 1.7 + mlserver-mlflow", V2_COLUMNS, 1, _mlserver),
    )
}


class ServerFailed(Exception):
    """The server did not come up; the message is what the table shows (e.g. "failed to start (exit 1)")."""


@dataclass
class RunningServer:
    spec: ServerSpec
    model: str
    ports: Ports
    process: subprocess.Popen[bytes]
    spawned_at: float  # time.monotonic()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.ports.http}{path.format(model=self.model)}"

    @property
    def predict_url(self) -> str:
        return self.url(self.spec.protocol.predict_path)

    def wait_ready(self, timeout_s: float) -> float:
        """Seconds from spawn to the first 200 from the readiness route."""
        ready_url = self.url(self.spec.protocol.ready_path)
        deadline = self.spawned_at + timeout_s
        while time.monotonic() < deadline:
            code = self.process.poll()
            if code is not None:
                raise ServerFailed(f"failed to start (exit {code})")
            if http(ready_url, timeout_s=1.0)[0] == 200:
                return time.monotonic() - self.spawned_at
            time.sleep(0.1)
        raise ServerFailed(f"not ready after {timeout_s:g} s")

    def memory(self) -> Memory:
        return Memory.of_tree(self.process.pid)


@contextmanager
def serve(spec: ServerSpec, context: Context, kind: ModelKind, log: Path) -> Iterator[RunningServer]:
    """Start ``spec`` serving the ``kind`` demo model; always stopped (by process group) on leaving."""
    ports = Ports.pick()
    launch = spec.launcher(context, kind, ports)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        out.write(f"$ {' '.join(launch.argv)}\n".encode())
        out.flush()
        spawned_at = time.monotonic()
        try:
            process = subprocess.Popen(
                launch.argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=launch.env, cwd=launch.cwd, start_new_session=True,
            )  # fmt: skip
        except OSError as exc:
            raise ServerFailed(f"failed to start ({exc.strerror})") from exc
        try:
            yield RunningServer(spec, MODEL_NAMES[kind], ports, process, spawned_at)
        finally:
            stop_group(process)
