"""The servers under test: how each is launched, spoken to, timed to readiness and stopped.

| name        | what                                                                 | protocol                   |
|-------------|----------------------------------------------------------------------|----------------------------|
| floor       | ``floor.py``: bare Starlette + uvicorn, a constant answer (issue 15) | KServe v1                  |
| ours        | ``python -m predictor`` from the registry, empty model cache         | KServe v1                  |
| ours-cached | the same restarted in place: started once to fill its model cache,   | KServe v1                  |
|             | stopped, started again on the same ``--model_cache_dir``             |                            |
| ours-serve  | ``make serve``'s command as ``make -n serve`` prints it (Feast on),  | KServe v1                  |
|             | pointed at the bench's registry and Feast repo, restarted cached     |                            |
| ours-w2     | ours with ``--workers 2``                                            | KServe v1                  |
| ours-at     | ours at another git revision (``BENCH_OURS_AT``), its own checkout   | KServe v1                  |
| ours-serve-at | ours-serve's command (the same flags: Feast on) run from the checkout | KServe v1                  |
|             | of ``BENCH_OURS_AT``: the other revision of the lookups by id        |                            |
| ours-serve-redis-at | the same on the Redis online store of ours-serve-redis       | KServe v1                  |
| ours-nodrift| ours with ``--drift_window_rows 0`` (ours watches drift: the demo    | KServe v1                  |
|             | carries a baseline) — what drift monitoring costs                    |                            |
| ours-shadow | ours with ``--shadow_model_uri …@challenger`` scoring every request  | KServe v1                  |
| ours-traced | ours with OpenTelemetry on, 1% sampled, exported to the harness's    | KServe v1                  |
|             | own OTLP sink (tests/bench/otlp_sink.py) — what tracing costs        |                            |
| baseline    | ``baseline_predictor.py``, the obvious KServe predictor              | KServe v1                  |
| mlflow      | ``mlflow models serve --env-manager local``                          | POST /invocations (split)  |
| mlserver    | Seldon MLServer + mlserver-mlflow, in its own venv                   | Open Inference Protocol v2 |
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from predictor.demo.training import CHALLENGER_ALIAS
from tests.bench import payloads
from tests.bench.load import http
from tests.bench.otlp_sink import otlp_sink_url
from tests.bench.procs import Memory, free_port, stop_group
from tests.bench.registry import MODEL_NAMES, BenchKind, BenchRegistry, local_copy

BASELINE_SCRIPT = Path(__file__).with_name("baseline_predictor.py")
FLOOR_SCRIPT = Path(__file__).with_name("floor.py")


@dataclass(frozen=True)
class Protocol:
    name: str
    predict_path: str  # "{model}" is replaced by the model name
    ready_path: str
    body: Callable[[pd.DataFrame], payloads.Body]  # the model's rows, with its input dtypes


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
    feature_repo: Path | None = None  # a prepared Feast repo, for `make serve`'s flags
    feature_repo_status: str = "not requested"  # why it is None
    redis_feature_repo: Path | None = None  # the same repo on a Redis online store (a redis-server of the run)
    redis_feature_repo_status: str = "not requested"
    revision_tree: Path | None = None  # a checkout of BENCH_OURS_AT, for ours-at

    @property
    def model_caches(self) -> Path:
        """Where every start of ours keeps its model cache; emptied at the start of a run."""
        return self.work / "model-cache"


@dataclass(frozen=True)
class Launch:
    argv: list[str]
    env: dict[str, str]
    cwd: Path


Launcher = Callable[[Context, BenchKind, Ports], Launch]


def _env(context: Context, **extra: str) -> dict[str, str]:
    env = dict(os.environ, MLFLOW_TRACKING_URI=context.registry.tracking_uri, PYTHONUNBUFFERED="1", **extra)
    # `mlflow models serve` execs `uvicorn` from PATH: put the project's venv first.
    env["PATH"] = f"{context.python.parent}{os.pathsep}{env.get('PATH', '')}"
    return env


# The standard variables a platform team would set for 1% sampling (predictor/monitoring/tracing.py reads them).
TRACED_ENV = {
    "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
    "OTEL_TRACES_SAMPLER_ARG": "0.01",
    "OTEL_SERVICE_NAME": "predictor-bench",
}


def _ours(
    workers: int = 1, kept_cache: str | None = None, extra: tuple[str, ...] = (), traced: bool = False
) -> Launcher:
    """``kept_cache``: the name of a model cache that outlives the start (restart in place); else a fresh, empty
    one per start, so that the cold start measured is a true one. ``traced``: OpenTelemetry on, 1% of the calls
    sampled (what issue 27 asks tracing to cost at most 3% for), exported to the harness's own OTLP sink."""

    def launch(context: Context, kind: BenchKind, ports: Ports) -> Launch:
        argv = [str(context.python), "-m", "predictor", "--model_name", MODEL_NAMES[kind],
                "--tracking_uri", context.registry.tracking_uri,
                "--http_port", str(ports.http), "--grpc_port", str(ports.grpc),
                "--model_cache_dir", str(_model_cache(context, kind, ports, kept_cache))]  # fmt: skip
        if workers > 1:
            argv += ["--workers", str(workers)]
        tracing = TRACED_ENV | {"OTEL_EXPORTER_OTLP_ENDPOINT": otlp_sink_url()} if traced else {}
        return Launch([*argv, *extra], _env(context, **tracing), Path.cwd())

    return launch


def _at_revision(launcher: Launcher) -> Launcher:
    """``launcher``'s command at another git revision: its checkout is the working directory, so ``-m predictor``
    imports it (the current directory comes before the project's editable install on ``sys.path``); same
    interpreter and flags."""

    def launch(context: Context, kind: BenchKind, ports: Ports) -> Launch:
        if context.revision_tree is None:
            raise ServerFailed("needs BENCH_OURS_AT=<git revision>")
        here = launcher(context, kind, ports)
        return Launch(here.argv, {**here.env, "PYTHONPATH": str(context.revision_tree)}, context.revision_tree)

    return launch


def checkout_revision(revision: str, where: Path) -> Path:
    """A clean checkout of ``revision`` at ``where`` (a detached git worktree), made anew at every run."""
    project = Path(__file__).resolve().parents[2]
    git = ["git", "-C", str(project), "worktree"]
    subprocess.run([*git, "remove", "--force", str(where)], capture_output=True, check=False)
    shutil.rmtree(where, ignore_errors=True)
    subprocess.run([*git, "prune"], capture_output=True, check=True)
    done = subprocess.run([*git, "add", "--detach", str(where), revision], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"error: BENCH_OURS_AT={revision}: {done.stderr.strip()}")
    return where


def _model_cache(context: Context, kind: BenchKind, ports: Ports, kept: str | None) -> Path:
    return context.model_caches / (f"{kept}-{kind}" if kept else f"fresh-{ports.http}")


def _make_serve(kept_cache: str = "serve", redis: bool = False, extra: tuple[str, ...] = ()) -> Launcher:
    """`make serve`'s own command, read from ``make -n serve`` so that a flag added there is measured here too;
    only where it points is ours: the bench's registry, its prepared Feast repo (``redis``: the one on Redis), a
    model cache kept across starts (``kept_cache`` names it: a revision of its own, so that no start reads another
    revision's cache); ``extra`` flags appended."""

    def launch(context: Context, kind: BenchKind, ports: Ports) -> Launch:
        argv = make_serve_argv(context.python, MODEL_NAMES[kind], ports, Path.cwd())
        repo, status = ((context.redis_feature_repo, context.redis_feature_repo_status) if redis
                        else (context.feature_repo, context.feature_repo_status))  # fmt: skip
        if "--feature_store" in argv and repo is None:
            raise ServerFailed(status)
        for flag, value in (("--tracking_uri", context.registry.tracking_uri),
                            ("--feature_store", str(repo)),
                            ("--model_cache_dir", str(_model_cache(context, kind, ports, kept_cache)))):  # fmt: skip
            if flag in argv:
                argv[argv.index(flag) + 1] = value
        return Launch([*argv, *extra], _env(context), Path.cwd())

    return launch


def make_serve_argv(python: Path, model_name: str, ports: Ports, project: Path) -> list[str]:
    """The ``python -m predictor ...`` line that ``make serve`` would run (``make -n`` prints, runs nothing)."""
    variables = [f"PY={python}", f"MODEL_NAME={model_name}", f"HTTP_PORT={ports.http}", f"GRPC_PORT={ports.grpc}"]
    env = {name: value for name, value in os.environ.items() if name not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    try:
        done = subprocess.run(["make", "--no-print-directory", "-n", "serve", *variables], cwd=project, env=env,
                              capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ServerFailed(f"could not read make serve's command ({exc})") from exc
    for line in done.stdout.replace("\\\n", " ").splitlines():
        try:
            words = shlex.split(line)
        except ValueError:  # not a command line we could want (an unbalanced quote in an echo)
            continue
        if words[1:3] == ["-m", "predictor"]:
            return words
    raise ServerFailed(f"make -n serve printed no `-m predictor` line (exit {done.returncode})")


def _floor(context: Context, kind: BenchKind, ports: Ports) -> Launch:
    argv = [str(context.python), str(FLOOR_SCRIPT), "--model_name", MODEL_NAMES[kind], "--http_port", str(ports.http)]
    return Launch(argv, _env(context), Path.cwd())


def _baseline(context: Context, kind: BenchKind, ports: Ports) -> Launch:
    argv = [str(context.python), str(BASELINE_SCRIPT), "--model_name", MODEL_NAMES[kind],
            "--http_port", str(ports.http), "--grpc_port", str(ports.grpc)]  # fmt: skip
    return Launch(argv, _env(context), Path.cwd())


def _mlflow(context: Context, kind: BenchKind, ports: Ports) -> Launch:
    argv = [str(context.python.parent / "mlflow"), "models", "serve", "-m", context.registry.model_uri(kind),
            "-h", "127.0.0.1", "-p", str(ports.http), "--env-manager", "local"]  # fmt: skip
    return Launch(argv, _env(context), Path.cwd())


def _mlserver(context: Context, kind: BenchKind, ports: Ports) -> Launch:
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
    restart_in_place: bool = False  # started once and stopped before the start that is measured
    feature_repo: bool = False  # needs Context.feature_repo


SERVERS: dict[str, ServerSpec] = {
    spec.name: spec
    for spec in (
        ServerSpec("floor", "floor: bare Starlette", V1, 1, _floor),
        ServerSpec("ours", "ours", V1, 1, _ours()),
        ServerSpec("ours-cached", "ours from its model cache", V1, 1, _ours(kept_cache="cached"), True),
        ServerSpec("ours-serve", "ours, make serve's flags", V1, 1, _make_serve(), True, True),
        ServerSpec(
            "ours-serve-redis", "ours-serve, Feast on Redis", V1, 1, _make_serve("serve-redis", redis=True), True, True
        ),
        ServerSpec(
            "ours-serve-fcache",
            "ours-serve, --feature_cache_s 5",
            V1,
            1,
            _make_serve("serve-fcache", extra=("--feature_cache_s", "5")),
            True,
            True,
        ),
        ServerSpec("ours-w2", "ours --workers 2", V1, 2, _ours(2)),
        ServerSpec("ours-at", "ours at BENCH_OURS_AT", V1, 1, _at_revision(_ours())),
        # make serve's command as read here (not the revision's Makefile): the same flags, only the code differs
        ServerSpec(
            "ours-serve-at", "ours-serve at BENCH_OURS_AT", V1, 1, _at_revision(_make_serve("serve-at")), True, True
        ),
        ServerSpec(
            "ours-serve-redis-at",
            "ours-serve-redis at BENCH_OURS_AT",
            V1,
            1,
            _at_revision(_make_serve("serve-redis-at", redis=True)),
            True,
            True,
        ),
        ServerSpec("ours-nodrift", "ours, drift off", V1, 1, _ours(extra=("--drift_window_rows", "0"))),
        ServerSpec("ours-traced", "ours, tracing 1% sampled", V1, 1, _ours(traced=True)),
        ServerSpec(
            "ours-shadow",
            "ours + shadow model",
            V1,
            1,
            _ours(extra=("--shadow_model_uri", f"models:/{MODEL_NAMES['forest']}@{CHALLENGER_ALIAS}")),
        ),
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
    spawned_wall: float = 0.0  # time.time() at the spawn: against the server log's timestamps (startup.py)
    log: Path | None = None  # its stdout and stderr

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
def serve(spec: ServerSpec, context: Context, kind: BenchKind, log: Path) -> Iterator[RunningServer]:
    """Start ``spec`` serving the ``kind`` demo model; always stopped (by process group) on leaving."""
    ports = Ports.pick()
    launch = spec.launcher(context, kind, ports)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        out.write(f"$ {' '.join(launch.argv)}\n".encode())
        out.flush()
        spawned_at, spawned_wall = time.monotonic(), time.time()
        try:
            process = subprocess.Popen(
                launch.argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=launch.env, cwd=launch.cwd, start_new_session=True,
            )  # fmt: skip
        except OSError as exc:
            raise ServerFailed(f"failed to start ({exc.strerror})") from exc
        try:
            yield RunningServer(spec, MODEL_NAMES[kind], ports, process, spawned_at, spawned_wall, log)
        finally:
            stop_group(process)
