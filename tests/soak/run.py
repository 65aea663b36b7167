"""``make soak``: minutes of mixed load over every door against real parts, while faults come one after another.

The parts: a real ``mlflow server`` (the registry, over HTTP), a real ``redis-server`` (the Feast online store,
with persistence so a restart keeps its data), a payload-event sink (an HTTP server of this process), and the
predictor with ``--workers 2``, the prediction log, payload events with a spool, a challenger and a model cache.

The faults, in order, with quiet time between them: the production alias moves (a hot swap), Redis restarts, the
payload sink is down, the registry is down (a minute in a 10-minute soak), a worker is killed with SIGKILL, the
server restarts from its cache with a challenger under load and then follows an alias move (issue 27's restart
fault), and SIGTERM arrives under load. ``report.py`` judges the run; this module only makes it happen.

    python -m tests.soak.run --minutes 10 --out soak-results
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

from predictor.demo.feast_setup import prepare_feature_store
from tests.feast_helpers import NULL_ID, REDIS_SERVER, REPO_SOURCE, STALE_ID, demo_telemetry, wait_for_redis
from tests.payload_sink import Sink
from tests.servers import (
    MODEL_NAME,
    PredictorProcess,
    Process,
    free_port,
    mlflow_server,
    start_predictor,
    wait_until,
)
from tests.soak.load import MixedLoad, Target
from tests.soak.report import Report, Resources, Window, judge

LIVE = f"models:/{MODEL_NAME}@production"
CHALLENGER = f"models:/{MODEL_NAME}@challenger"


class Redis:
    """``redis-server`` with an RDB file in ``directory``: SIGTERM saves it, a start loads it (data survives)."""

    def __init__(self, directory: Path, port: int, log_dir: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        args = [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory)]
        self.process = Process([*args, "--save", "3600 1", "--appendonly", "no"], log_dir / "redis.log")
        self.port = port

    @property
    def online_store(self) -> dict[str, str]:
        return {"type": "redis", "connection_string": f"127.0.0.1:{self.port},retry=null,socket_timeout=0.5"}

    def start(self) -> None:
        self.process.start()
        wait_for_redis(self.port, 20)

    def stop(self) -> None:
        self.process.stop(timeout_s=20)


@dataclass
class Soak:
    minutes: float
    out: Path
    say: Callable[[str], None] = print
    windows: list[Window] = field(default_factory=list)
    resources: list[Resources] = field(default_factory=list)
    checks: dict[str, bool] = field(default_factory=dict)
    started: list[PredictorProcess] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.work = self.out / "work"
        self.logs = self.out / "logs"
        self.began = time.monotonic()

    def now(self) -> float:
        return time.monotonic() - self.began

    @property
    def gap_s(self) -> float:
        """Quiet time before each fault: the soak's length, outages aside, spread over its seven gaps and about one more
        gap's worth taken by the restarts' start-ups."""
        return max(4.0, (self.minutes * 60 - self.registry_outage_s - self.sink_outage_s) / 8)

    @property
    def registry_outage_s(self) -> float:
        return max(5.0, self.minutes * 6)  # a minute in ten

    @property
    def sink_outage_s(self) -> float:
        return max(5.0, self.minutes * 3)

    @contextmanager
    def window(self, name: str, tolerated: dict[str, set[str]], grace_s: float = 2.0) -> Iterator[None]:
        """A fault's time span (plus ``grace_s`` to settle): what each door may answer in it besides 200."""
        start = self.now()
        self.say(f"[{start:6.1f} s] {name}")
        yield
        self.windows.append(Window(name, start, self.now() + grace_s, tolerated))

    # ------------------------------------------------------------------------------ the parts
    def setup(self) -> tuple[Process, Redis, Sink, list[str]]:
        from mlflow import MlflowClient

        from predictor.demo.training import register_demo_model

        registry_dir = self.work / "registry"
        registry_dir.mkdir(parents=True, exist_ok=True)
        self.say("registering the demo model (versions 1 and 2) ...")
        database = f"sqlite:///{registry_dir}/mlflow.db"
        register_demo_model(database, artifact_root=registry_dir / "artifacts")
        client = MlflowClient(database, database)
        first = client.get_model_version_by_alias(MODEL_NAME, "production")
        client.create_model_version(MODEL_NAME, first.source, first.run_id)
        client.set_registered_model_alias(MODEL_NAME, "challenger", "2")

        registry = mlflow_server(registry_dir, free_port(), self.logs)
        self.say("starting mlflow server, redis-server and the payload sink ...")
        registry.start().wait_http_ok(self.registry_url(registry) + "/health", 120, 0.5, "mlflow server")
        redis = Redis(self.work / "redis", free_port(), self.logs)
        redis.start()
        telemetry = demo_telemetry(60)
        ids = [i for i in telemetry["equipment_id"] if i not in (STALE_ID, NULL_ID)]
        self.repo = prepare_feature_store(
            REPO_SOURCE, self.work / "feast", telemetry=telemetry, online_store=redis.online_store, progress=self.say
        )
        sink = Sink()
        sink.start()
        return registry, redis, sink, ids

    @staticmethod
    def registry_url(registry: Process) -> str:
        return f"http://127.0.0.1:{registry.args[registry.args.index('--port') + 1]}"

    def start_server(self, registry: Process, sink: Sink) -> PredictorProcess:
        server = start_predictor(
            self.registry_url(registry),
            self.logs,
            *("--model_uri", LIVE, "--shadow_model_uri", CHALLENGER, "--workers", "2", "--poll_interval_s", "1"),
            *("--feature_store", str(self.repo), "--model_cache_dir", str(self.work / "model-cache")),
            *("--prediction_log", str(self.work / "predictions.jsonl")),
            *("--payload_log_url", sink.url, "--payload_log_spool", str(self.work / "payload-spool")),
            "--shadow_busy_share",
            "0",  # every call shadow-scored: the soak counts them
        )
        self.started.append(server)  # stopped by run() whatever happens
        return server.wait_ready(180)

    # ------------------------------------------------------------------------------ the run
    def run(self) -> Report:
        registry, redis, sink, ids = self.setup()
        try:
            server = self.start_server(registry, sink)
            self.began = time.monotonic()
            target = Target(server.http_url, server.grpc_target)
            load = MixedLoad(target, ids, rate_per_door=20, began=self.began)
            server = asyncio.run(self.scenario(load, target, server, registry, redis, sink))
            # The server has exited (the scenario ends with SIGTERM). What its last shutdown could not send in time
            # waits in the spool for the next start (tests/test_payload_events.py proves a start sends it): kept.
            sent = [(headers.get("ce-id", ""), headers.get("ce-type", "")) for headers, _ in sink.events]
            kept = self.spooled_events()
            report = judge(
                load.outcomes,
                self.windows,
                self.resources,
                self.work / "predictions.jsonl",
                sent + kept,
                self.checks,
                bucket_s=max(10.0, self.minutes * 6),
                minutes=self.minutes,
            )
            report.server_notes = self.server_notes()
            report.kept_in_spool = len(kept)
            return report
        finally:
            for started in self.started:
                started.stop(30)
            sink.stop()
            redis.stop()
            registry.stop()

    async def scenario(
        self, load: MixedLoad, target: Target, server: PredictorProcess, registry: Process, redis: Redis, sink: Sink
    ) -> PredictorProcess:
        loading = asyncio.create_task(load.run())
        sampling = asyncio.create_task(self.sample_resources(lambda: server))
        blocking = asyncio.to_thread
        await asyncio.sleep(self.gap_s)

        with self.window("alias production → version 2 (hot swap)", {}):
            await blocking(self.move_alias, registry, "2")
            await blocking(self.wait_serving, server, "2")
        await asyncio.sleep(self.gap_s)

        with self.window("redis-server restart", {"by-id": {"503"}}, grace_s=5):
            await blocking(redis.stop)
            await asyncio.sleep(max(3.0, self.minutes))
            await blocking(redis.start)
        await asyncio.sleep(self.gap_s)

        with self.window("payload sink down", {}):
            sink.stop()
            await asyncio.sleep(self.sink_outage_s)
            sink.start()
        await asyncio.sleep(self.gap_s)

        with self.window("registry down", {}):
            await blocking(registry.stop)
            await asyncio.sleep(self.registry_outage_s)
            await blocking(registry.start)
            await blocking(registry.wait_http_ok, self.registry_url(registry) + "/health", 120, 0.5, "mlflow server")
        await asyncio.sleep(self.gap_s)

        tolerated_kill = {door: {"transport", "503", "UNAVAILABLE"} for door in ("v1", "v2", "grpc", "invocations")}
        with self.window("a worker killed (SIGKILL)", tolerated_kill | {"by-id": {"transport", "503"}}):
            worker = psutil.Process(server.pid).children()[0]
            worker.send_signal(signal.SIGKILL)
            supervisor = psutil.Process(server.pid)

            def replaced() -> bool:  # the supervisor has started its successor (and dropped its ready marker)
                children = {child.pid for child in supervisor.children()}
                return len(children) == 2 and worker.pid not in children

            await blocking(wait_until, replaced, 30, 0.1, "the killed worker replaced")
            await blocking(server.wait_ready, 120)
        await asyncio.sleep(self.gap_s)

        every_door = {door: {"refused", "transport"} for door in ("v1", "v2", "grpc", "invocations", "by-id")}
        # Found by this soak, not fixed yet: a gRPC call sent in the last moments of a drain can wait for its
        # deadline instead of failing at once (1 call in 3 one-minute runs). Tolerated here, counted in the report.
        # And a gRPC call that arrives while the server empties the gRPC core's queue before stopping is answered
        # UNAVAILABLE, "shutting down: retry" (GrpcServer.stop: otherwise the core would cancel it). That emptying
        # ends after 20 ms without a new call, and this load sends one every 50 ms: a call reaching the core in the
        # instant the listener closes is still cancelled by it (1 CANCELLED in 4 suite runs, once the workers drained
        # instead of exiting at once). The README's "Shutdown" says so; tolerated here, counted in the report.
        every_door["grpc"] |= {"DEADLINE_EXCEEDED", "UNAVAILABLE", "CANCELLED"}
        with self.window("restart from the model cache with a challenger (SIGTERM under load)", every_door):
            await blocking(server.stop, 60)
            server = await blocking(self.start_server, registry, sink)
            target.http_url, target.grpc_target = server.http_url, server.grpc_target
        with self.window("alias production → version 1 after the restart", {}):
            await blocking(self.move_alias, registry, "1")
            self.checks["the restarted server follows the alias"] = await blocking(self.wait_serving, server, "1")
        await asyncio.sleep(self.gap_s)

        self.checks["the challenger scored after the restart"] = await blocking(self.shadow_scored, server)
        with self.window("SIGTERM under load", every_door, grace_s=0):
            stopped = await blocking(server.stop, 60)
            self.checks["SIGTERM: exit status 0"] = stopped == 0
        load.stop()
        sampling.cancel()
        await loading
        return server

    # ------------------------------------------------------------------------------ helpers
    def spooled_events(self) -> list[tuple[str, str]]:
        """(ce-id, ce-type) of each payload event left in the workers' spools."""
        from predictor.monitoring.payload_events import SUFFIX, PayloadEvent

        events = []
        for path in sorted((self.work / "payload-spool").rglob(f"*{SUFFIX}")):
            headers = PayloadEvent.decode(path.read_bytes()).headers
            events.append((headers.get("ce-id", ""), headers.get("ce-type", "")))
        return events

    def server_notes(self) -> list[str]:
        """The predictors' warnings and errors, and every line about payload events, in the order of their logs."""
        notes = []
        for log_file in sorted(self.logs.glob("predictor-*.log"), key=lambda path: path.stat().st_mtime):
            for line in log_file.read_text(errors="replace").splitlines():
                if "payload" in line or " WARNING " in line or " ERROR " in line:
                    notes.append(f"{log_file.name}: {line[:300]}")
        return notes

    def move_alias(self, registry: Process, version: str) -> None:
        from mlflow import MlflowClient

        uri = self.registry_url(registry)
        MlflowClient(uri, uri).set_registered_model_alias(MODEL_NAME, "production", version)

    @staticmethod
    def wait_serving(server: PredictorProcess, version: str, timeout_s: float = 60) -> bool:
        """Until both workers answer with ``version`` (several calls: the kernel spreads them)."""
        url = f"{server.http_url}/v1/models/{MODEL_NAME}"

        def served() -> bool:
            return all(httpx.get(url, timeout=5).json().get("version") == version for _ in range(8))

        try:
            wait_until(served, timeout_s, 0.5, f"version {version} served")
        except (AssertionError, TimeoutError, httpx.HTTPError):
            return False
        return True

    @staticmethod
    def shadow_scored(server: PredictorProcess) -> bool:
        from tests.servers import scrape, total

        def scored() -> bool:
            try:
                return total(scrape(server.http_url), "model_shadow_predictions_total") > 0
            except (ValueError, httpx.HTTPError):  # /metrics did not answer its exposition: not scored, as seen
                return False

        try:
            # The challenger loads at the lowest priority (SCHED_IDLE): beside a busy suite on 2 cores that took 42 s.
            wait_until(scored, 120, 0.5, "shadow predictions")
        except (AssertionError, TimeoutError):
            return False
        return True

    async def sample_resources(self, current: Callable[[], PredictorProcess]) -> None:
        every_s = max(2.0, self.minutes * 2)
        while True:
            await asyncio.sleep(every_s)
            try:
                supervisor = psutil.Process(current().pid)
                for process in (supervisor, *supervisor.children()):
                    with process.oneshot():
                        self.resources.append(
                            Resources(
                                self.now(),
                                process.pid,
                                process.memory_info().rss / 2**20,
                                process.num_fds(),
                                process.num_threads(),
                            )
                        )
            except psutil.Error:
                continue  # between two servers (a restart)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="make soak",
        description="Mixed load over every door while the registry, Redis, the payload sink and the server "
        "itself fail one after another; writes report.md, report.json and timeline.png, and exits 1 if a goal "
        "is missed.",
    )
    parser.add_argument("--minutes", type=float, default=10, help="length of the soak (default 10)")
    parser.add_argument("--out", type=Path, default=Path("soak-results"), help="where the report goes")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    report = Soak(args.minutes, args.out).run()
    report.write(args.out)
    print(report.summary())
    print(f"report: {args.out / 'report.md'}, timeline: {args.out / 'timeline.png'}")
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
