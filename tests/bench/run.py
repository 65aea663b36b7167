"""`make bench`: every server in turn on the same registered models, the same load, several interleaved rounds.

    .venv/bin/python -m tests.bench.run [--duration S] [--rounds N] [--servers a,b] [--scenarios a,b] [--growth]

Each flag may come from the environment instead: BENCH_DURATION (seconds per timed run, default 10),
BENCH_ROUNDS (default 2; the tables show medians, the floor table every round), BENCH_WARMUP (seconds,
default 2), BENCH_SERVERS (default all: floor,ours,ours-cached,ours-serve,ours-serve-redis (ours-serve with the
Feast repo on a redis-server of the run: the rows by id only),ours-serve-fcache (ours-serve with
--feature_cache_s 5: the rows by id only),ours-w2,ours-nodrift,ours-shadow,
ours-traced (OpenTelemetry on, 1% sampled, to a sink of the harness), baseline,mlflow,mlserver),
BENCH_SCENARIOS (default all: 1row@50,100row@8,1row@1,logreg-1row@50,typed-1row@50,typed-100row@8,
booster-1row@50,nosig-1row@50,explain-1row@1 and the growth grid's 10row@8,1000row@8,1row@8,
1row@200, which only run with growth on; typed-* is issue 11's ColumnTransformer pipeline with a string column,
tests/bench/typed_model.py; booster-* and nosig-* issue 25's xgb.train Booster and forest logged without a
signature, tests/bench/logged_models.py, run by ours and mlflow serve; the floor's 1row@50 is their reference;
byid-1row@50, byid-100row@8 and byid-10000row@1 (a fleet of 10,000 distinct ids in one request, judged in rows per
second), issue 26's predictions by equipment id, each connection naming its own ids of the bench's Feast repo, run
by ours-serve, ours-serve-redis, ours-serve-fcache, ours-serve-at and ours-serve-redis-at against the same server's
raw twins raw-1row@50 and raw-100row@8: these five are driven by ``wrk``, the others by ``hey``),
BENCH_GROWTH=1 (the growth grid: floor, ours, ours-w2 and the peers at 1/10/100/1000 rows @8 and 1 row
@1/8/50/200), BENCH_OUT (default bench-results), BENCH_OURS_AT (a git revision: the server ``ours-at`` runs
ours at that revision from a checkout of its own, for a no-regression comparison in the same run, e.g.
``BENCH_SERVERS=floor,ours,ours-at BENCH_OURS_AT=HEAD~5``, and ``ours-serve-at`` ours-serve's command there, Feast
on, e.g. ``BENCH_SERVERS=ours-serve,ours-serve-at BENCH_OURS_AT=HEAD~1 BENCH_SCENARIOS=1row@50,byid-1row@50``, and
``ours-serve-redis-at`` the same on the Redis online store of ``ours-serve-redis``;
only run when named).
All traffic goes to 127.0.0.1 on free ports; every server is
stopped by its process group, also on failure or Ctrl-C. Writes OUT/latest.md and OUT/latest.json, and
OUT/growth.png when the growth grid was measured.

Exits 0 whenever the tables could be produced, whatever the numbers say; 2 when the harness cannot run
(``hey`` or a needed ``wrk`` missing, the registry could not be built, a bad flag), 1 when some measurement was
lost to the harness.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from types import FrameType
from typing import Any

from tests.bench import payloads, report
from tests.bench.chart import growth_chart
from tests.bench.load import HarnessError, LoadResult, http, run_hey, run_wrk
from tests.bench.mlserver_env import MLSERVER_VERSION, ensure_mlserver
from tests.bench.plan import (
    ALL_SERVERS,
    KNOWN_SERVERS,
    OURS,
    REDIS_SERVERS,
    REVISIONS,
    SCENARIO_BY_KEY,
    SCENARIOS,
    Measurement,
    Scenario,
    Start,
)
from tests.bench.procs import group_cpu_s, settle
from tests.bench.registry import BenchKind, prepare_feature_repo, prepare_registry
from tests.bench.servers import SERVERS, Context, Protocol, RunningServer, ServerFailed, checkout_revision, serve
from tests.bench.startup import milestones
from tests.feast_helpers import redis_server

KINDS: tuple[BenchKind, ...] = ("forest", "logreg", "typed", "booster", "nosig")


@dataclass(frozen=True)
class Config:
    duration_s: float
    rounds: int
    warmup_s: float
    servers: tuple[str, ...]
    scenarios: tuple[str, ...]
    out: Path
    growth: bool = False
    at: str | None = None  # the git revision ours-at runs
    ready_timeout_s: float = 90.0

    @property
    def chart(self) -> Path:
        return self.out / "growth.png"


def _names(text: str, known: Sequence[str], what: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        raise SystemExit(f"error: unknown {what} {unknown or text!r}; choose from {', '.join(known)}")
    return names


def load_config(argv: Sequence[str] | None, environ: Mapping[str, str]) -> Config:
    parser = argparse.ArgumentParser(prog="make bench", description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--duration", type=float, default=float(environ.get("BENCH_DURATION", 10)))
    parser.add_argument("--rounds", type=int, default=int(environ.get("BENCH_ROUNDS", 2)))
    parser.add_argument("--warmup", type=float, default=float(environ.get("BENCH_WARMUP", 2)))
    parser.add_argument("--servers", default=environ.get("BENCH_SERVERS", ",".join(ALL_SERVERS)))
    parser.add_argument("--scenarios", default=environ.get("BENCH_SCENARIOS", ",".join(SCENARIO_BY_KEY)))
    parser.add_argument("--out", type=Path, default=Path(environ.get("BENCH_OUT", "bench-results")))
    parser.add_argument("--at", default=environ.get("BENCH_OURS_AT"),
                        help=f"the git revision {' and '.join(REVISIONS)} run (BENCH_OURS_AT)")  # fmt: skip
    growth = environ.get("BENCH_GROWTH", "0").strip().lower() not in ("", "0", "no", "false")
    parser.add_argument("--growth", action=argparse.BooleanOptionalAction, default=growth)
    args = parser.parse_args(argv)
    if args.duration <= 0 or args.rounds < 1 or args.warmup < 0:
        parser.error("--duration must be > 0, --rounds ≥ 1, --warmup ≥ 0")
    servers = _names(args.servers, KNOWN_SERVERS, "server")
    at_revision = [server for server in REVISIONS if server in servers]
    if at_revision and not args.at:
        parser.error(f"{', '.join(at_revision)}: ours at another git revision; name it, e.g. BENCH_OURS_AT=HEAD~3")
    return Config(args.duration, args.rounds, args.warmup, servers,
                  _names(args.scenarios, tuple(SCENARIO_BY_KEY), "scenario"), args.out.resolve(),
                  args.growth, at=args.at)  # fmt: skip


@dataclass
class Bench:
    config: Config
    hey: str
    context: Context
    wrk: str | None = None  # only needed by the scenarios that use it (Scenario.load)
    # (protocol, model kind, rows) → body file
    bodies: dict[tuple[Protocol, BenchKind, int], Path] = field(default_factory=dict)
    by_id_bodies: dict[str, list[Path]] = field(default_factory=dict)  # scenario key → one body per worker
    measurements: list[Measurement] = field(default_factory=list)
    starts: list[Start] = field(default_factory=list)
    harness_errors: int = 0

    def body(self, protocol: Protocol, kind: BenchKind, rows: int) -> Path:
        key = (protocol, kind, rows)
        if key not in self.bodies:
            path = self.config.out / "bodies" / f"{protocol.name}-{kind}-{rows}rows.json"
            self.bodies[key] = payloads.write_body(path, protocol.body, payloads.sample(kind, rows))
        return self.bodies[key]

    def scenario_bodies(self, protocol: Protocol, scenario: Scenario) -> list[Path]:
        """What the scenario's workers send: one body for all, or by id one per worker, each naming its own ids
        (KServe v1: the by-id servers are ours)."""
        if not scenario.by_id:
            return [self.body(protocol, scenario.kind, scenario.rows)]
        if scenario.key not in self.by_id_bodies:
            folder = self.config.out / "bodies" / scenario.key
            workers = payloads.by_id_workers(scenario.rows, scenario.concurrency)
            self.by_id_bodies[scenario.key] = [
                payloads.write_json(folder / f"worker{k}.json", payloads.v1_by_id_body(ids))
                for k, ids in enumerate(workers)
            ]
        return self.by_id_bodies[scenario.key]

    def run(self) -> None:
        for round_ in range(self.config.rounds):
            # Alternate the order so that no server always runs first (or always after the noisiest one).
            order = self.config.servers if round_ % 2 == 0 else tuple(reversed(self.config.servers))
            for kind in KINDS:
                for server in order:
                    scenarios = [s for s in SCENARIOS if s.kind == kind and s.runs(server, self.config.growth)
                                 and s.key in self.config.scenarios]  # fmt: skip
                    if scenarios:
                        self.run_server(server, kind, scenarios, round_)

    def run_server(self, server: str, kind: BenchKind, scenarios: list[Scenario], round_: int) -> None:
        spec = SERVERS[server]
        tag = f"[round {round_ + 1}/{self.config.rounds}] {spec.label} ({kind})"
        log = self.config.out / "logs" / f"r{round_ + 1}-{server}-{kind}.log"
        try:
            if spec.restart_in_place:  # the first start fills the model cache; the second is the one measured
                with serve(spec, self.context, kind, log.with_suffix(".first.log")) as first:
                    print(f"{tag}: first start (fills its cache) ready in "
                          f"{first.wait_ready(self.config.ready_timeout_s):.1f} s; restarting", flush=True)  # fmt: skip
            with serve(spec, self.context, kind, log) as running:
                cold_start = running.wait_ready(self.config.ready_timeout_s)
                steps = milestones(log.read_text(errors="replace"), running.spawned_wall, cold_start)
                after_load = settle(running.process.pid)
                print(f"{tag}: ready in {cold_start:.1f} s, {after_load.total_mb:.0f} MB", flush=True)
                for scenario in scenarios:
                    self.measurements.append(self.measure(running, scenario, round_, tag))
                self.starts.append(Start(server, kind, round_, cold_start, after_load, running.memory(),
                                         milestones=steps or None))  # fmt: skip
        except ServerFailed as exc:
            print(f"{tag}: {exc}; log: {log}{_last_line(log)}", flush=True)
            self.starts.append(Start(server, kind, round_, failure=str(exc)))
            self.measurements += [Measurement(server, s.key, round_, failure=str(exc)) for s in scenarios]

    def measure(self, running: RunningServer, scenario: Scenario, round_: int, tag: str) -> Measurement:
        bodies = self.scenario_bodies(running.spec.protocol, scenario)
        failed = next(filter(None, (self.sanity_check(running, body) for body in bodies)), None)
        if failed:
            print(f"{tag} {scenario.label}: {failed}", flush=True)
            return Measurement(running.spec.name, scenario.key, round_, failure=failed)
        logs = self.config.out / "logs"
        stem = f"r{round_ + 1}-{running.spec.name}-{scenario.key}"
        url = running.predict_url.replace(":predict", f":{scenario.verb}")
        try:
            if self.config.warmup_s > 0:
                self.load(scenario, url, bodies, self.config.warmup_s)
            cpu_before = group_cpu_s(running.process.pid)
            result = self.load(scenario, url, bodies, self.config.duration_s, logs / f"{stem}.{scenario.load}.txt")
            cpu_s = group_cpu_s(running.process.pid) - cpu_before
        except HarnessError as exc:
            self.harness_errors += 1
            print(f"{tag} {scenario.label}: {exc}", flush=True)
            return Measurement(running.spec.name, scenario.key, round_, failure=f"harness: {exc}")
        memory = running.memory()
        crashed = running.process.poll()
        print(f"{tag} {scenario.label}: {result.ok_per_s:.1f} req/s, p50 {result.percentile_ms(50) or 0:.1f} ms, "
              f"p99 {result.percentile_ms(99) or 0:.1f} ms, {result.errors} errors, {cpu_s:.1f} CPU s "
              f"({scenario.load} {result.client_cpu_s or 0:.1f})",
              flush=True)  # fmt: skip
        failure = None if crashed is None else f"exited during the run ({crashed})"
        # A group whose processes died mid-run lost their CPU time with them: no charge rather than a wrong one.
        cpu = cpu_s if crashed is None and cpu_s >= 0 else None
        return Measurement(running.spec.name, scenario.key, round_, result, memory.total_mb, failure, cpu)

    def load(
        self, scenario: Scenario, url: str, bodies: list[Path], duration_s: float, log: Path | None = None
    ) -> LoadResult:
        if scenario.load == "hey":
            if len(bodies) != 1:
                raise HarnessError(f"hey sends one body; {scenario.key} has {len(bodies)} (use wrk)")
            return run_hey(self.hey, url, bodies[0], scenario.concurrency, duration_s, log)
        if self.wrk is None:
            raise HarnessError("`wrk` not found on PATH (Debian/Ubuntu: apt-get install wrk)")
        return run_wrk(self.wrk, url, bodies, scenario.concurrency, duration_s, log)

    @staticmethod
    def sanity_check(running: RunningServer, body: Path) -> str | None:
        """One request before the load: a server that answers wrongly is reported, not timed."""
        if running.process.poll() is not None:
            return f"exited ({running.process.returncode})"
        status, text = http(running.predict_url, body.read_bytes(), timeout_s=30)
        if status != 200:
            return f"bad response ({status or 'no answer'}: {' '.join(text.split())[:80]})"
        try:
            json.loads(text)
        except ValueError:
            return f"bad response (not JSON: {text[:60]!r})"
        return None


def _last_line(log: Path) -> str:
    try:
        lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return f"\n    {lines[-1][:200]}" if len(lines) > 1 else ""


# --- the header and the files ----------------------------------------------------------------------------------


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine(config: Config, mlserver_status: str) -> dict[str, Any]:
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": _cpu_model(),
        "python": platform.python_version(),
        "versions": {name: _version(name) for name in ("kserve", "mlflow", "scikit-learn", "numpy", "pandas")},
        "mlserver": f"{MLSERVER_VERSION} ({mlserver_status})",
        "duration_s": config.duration_s,
        "warmup_s": config.warmup_s,
        "rounds": config.rounds,
        "servers": list(config.servers),
        "scenarios": list(config.scenarios),
        "growth": config.growth,
    }


def render(meta: dict[str, Any], bench: Bench) -> tuple[str, dict[str, Any]]:
    labels = {name: spec.label for name, spec in SERVERS.items()}
    summaries = report.summarize(bench.measurements)
    starts = report.summarize_starts(bench.starts)
    variants = [server for server in OURS if server in bench.config.servers]
    results = report.Results(summaries, starts, {name: spec.workers for name, spec in SERVERS.items()}, meta["nproc"])
    verdicts = report.judge(results, variants)
    floor_verdicts = report.judge(results, variants, report.FLOOR_GOALS)
    typed_verdicts = report.judge(results, variants, report.TYPED_GOALS)
    growth = report.growth_tables(summaries, labels, bench.config.servers) if bench.config.growth else ""
    by_id = report.by_id_table(summaries, labels, bench.config.servers)
    fleet = report.fleet_table(summaries, labels, bench.config.servers)
    versions = ", ".join(f"{name} {value}" for name, value in meta["versions"].items())
    text = "\n\n".join([
        f"# make bench: {meta['date']}",
        f"{meta['nproc']} cores (nproc), {meta['cpu']}; Python {meta['python']}; {versions}; "
        f"MLServer {meta['mlserver']}. {meta['rounds']} round(s) of {meta['duration_s']:g} s per run after a "
        f"{meta['warmup_s']:g} s warm-up, servers interleaved; medians shown. Load: hey (wrk for the rows by id and "
        f"their raw twins), keep-alive, 127.0.0.1.",
        "## Load (RandomForest-100 unless logreg; typed = OneHotEncoder on a string column + the same forest in a "
        "Pipeline; booster = XGBoost xgb.train, 100 rounds of depth 6; nosig = the forest logged without a signature; "
        "req/s counts 2xx only; RSS = whole process tree after the run)",
        report.load_table(summaries, labels, bench.config.servers),
        "## Against the floor, round by round (issue 15; share = median req/s ÷ the floor's at the same rows and "
        "concurrency; CPU = the server's process group, user + system, during the timed run; the load generator's "
        "CPU is what it took from the same cores)",
        report.floor_table(summaries, labels, bench.config.servers),
        *(["## By id (issue 26: each instance names only its equipment_id, the features read from Feast; share = "
           "by id ÷ the same server's raw path, the features sent, at the same rows and concurrency, both driven by "
           "one wrk (its bodies in turn: every connection its own ids); by round: the two runs of one start)",
           by_id] if by_id else []),
        *(["## A fleet by id (issue 26: 10,000 distinct equipment ids in one request, one request at a time)", fleet]
          if fleet else []),
        "## Start and memory (cold start = spawn → first 200 from the readiness route)",
        report.start_table(starts, labels),
        *(["## Where a cold start's seconds go (ours: seconds after the spawn of each milestone in its log, median of "
           "starts; tests/bench/startup.py)", steps_table] if (steps_table := report.milestones_table(starts, labels))
          else []),
        "## Our throughput ÷ each peer's, same scenario",
        report.ratio_table(summaries, labels),
        "## Targets (issue 5)",
        report.targets_table(verdicts, variants, labels) if variants else "(no variant of ours was run)",
        "## Goals (issue 15)",
        report.targets_table(floor_verdicts, variants, labels) if variants else "(no variant of ours was run)",
        "## Goals (issue 11: the typed model, against the fastest peer that served it)",
        report.targets_table(typed_verdicts, variants, labels) if variants else "(no variant of ours was run)",
        *(["## Growth (throughput and p99; chart: growth.png)", growth] if growth else []),
    ])  # fmt: skip
    data = {
        "meta": meta,
        "measurements": [asdict(m) for m in bench.measurements],
        "starts": [asdict(s) for s in bench.starts],
        "summaries": [asdict(s) for s in summaries.values()],
        "start_summaries": [asdict(s) for s in starts.values()],
        "targets": {
            label: dict(zip(variants, cells, strict=False))
            for label, cells in verdicts + floor_verdicts + typed_verdicts
        },
    }
    return text + "\n", data


def write_chart(bench: Bench) -> Path | None:
    labels = {name: spec.label for name, spec in SERVERS.items()}
    summaries = report.summarize(bench.measurements)
    try:
        return growth_chart(summaries, labels, bench.config.servers, bench.config.chart)
    except Exception as exc:  # a boundary: the tables are written already and must not be lost to a drawing
        print(f"the growth chart could not be drawn: {exc!r}", file=sys.stderr)
        return None


class Interrupted(BaseException):
    """SIGTERM/SIGHUP, raised like KeyboardInterrupt so that every `with serve(...)` stops its server."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    raise Interrupted(signum)


def prepare_redis_feature_repo(out: Path, stack: contextlib.ExitStack) -> tuple[Path | None, str]:
    """The bench's Feast repo with its online store on a redis-server of this run (``stack`` stops it, by PID);
    None and the reason when it cannot be had (the other servers still run)."""
    print(f"==> starting a redis-server and preparing the demo Feast repo on it under {out / 'feature_repo_redis'}",
          flush=True)  # fmt: skip
    try:
        server = stack.enter_context(redis_server())
        store = {"type": "redis", "connection_string": server.connection_string}
        repo = prepare_feature_repo(out / "feature_repo_redis", out / "logs" / "feast-prepare-redis.log", store)
    except Exception as exc:  # a boundary, as for the SQLite repo
        return None, f"no Feast repo on Redis ({exc!r:.120})"
    return repo, f"prepared (redis-server on port {server.port})"


def main(argv: Sequence[str] | None = None) -> int:
    config = load_config(argv, os.environ)
    hey, wrk = shutil.which("hey"), shutil.which("wrk")
    if hey is None:
        print("error: `hey` not found on PATH (Debian/Ubuntu: apt-get install hey)", file=sys.stderr)
        return 2
    by_wrk = [s.key for s in SCENARIOS if s.load == "wrk" and s.key in config.scenarios
              and any(s.runs(server, config.growth) for server in config.servers)]  # fmt: skip
    if wrk is None and by_wrk:
        print(f"error: `wrk` not found on PATH, needed by {', '.join(by_wrk)} (Debian/Ubuntu: apt-get install wrk)",
              file=sys.stderr)  # fmt: skip
        return 2
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _interrupt)
    started = time.monotonic()
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # MLServer's model copy, in this process
    shutil.rmtree(config.out / "logs", ignore_errors=True)
    shutil.rmtree(config.out / "bodies", ignore_errors=True)
    print(f"==> registering the demo models, the typed one, the Booster and the unsigned forest in a fresh registry "
          f"under {config.out / 'registry'}", flush=True)  # fmt: skip
    try:
        registry = prepare_registry(config.out / "registry")
    except Exception as exc:
        print(f"error: could not build the benchmark registry: {exc!r}", file=sys.stderr)
        return 2
    mlserver, mlserver_status = (None, "not requested")
    if "mlserver" in config.servers:
        mlserver, mlserver_status = ensure_mlserver(config.out / "venvs" / "mlserver",
                                                    config.out / "logs" / "mlserver-install.log")  # fmt: skip
    feature_repo, feature_repo_status = (None, "not requested")
    if any(SERVERS[server].feature_repo for server in config.servers):
        print(f"==> preparing the demo Feast repo under {config.out / 'feature_repo'}", flush=True)
        try:
            feature_repo = prepare_feature_repo(config.out / "feature_repo", config.out / "logs" / "feast-prepare.log")
            feature_repo_status = "prepared"
        except Exception as exc:  # a boundary: the servers that need it report the reason, the others still run
            feature_repo_status = f"no Feast repo ({exc!r:.120})"
    revision_tree = None
    if set(REVISIONS) & set(config.servers) and config.at:
        revision_tree = checkout_revision(config.at, config.out / "revision")
        print(f"==> {', '.join(s for s in REVISIONS if s in config.servers)}: ours at {config.at} ({revision_tree})",
              flush=True)  # fmt: skip
    with contextlib.ExitStack() as redis:  # a redis-server for ours-serve-redis(-at), stopped by PID at the run's end
        redis_repo, redis_repo_status = (None, "not requested")
        if set(REDIS_SERVERS) & set(config.servers):
            redis_repo, redis_repo_status = prepare_redis_feature_repo(config.out, redis)
        context = Context(Path(sys.executable), registry, config.out, mlserver, mlserver_status,
                          feature_repo, feature_repo_status, redis_repo, redis_repo_status, revision_tree)  # fmt: skip
        shutil.rmtree(context.model_caches, ignore_errors=True)
        bench = Bench(config, hey, context, wrk)
        meta = machine(config, mlserver_status)
        interrupted = 0
        try:
            bench.run()
        except (KeyboardInterrupt, Interrupted) as exc:
            interrupted = 128 + (exc.signum if isinstance(exc, Interrupted) else signal.SIGINT)
            print("\ninterrupted: every server was stopped; the tables below are partial", flush=True)
    meta["elapsed_s"] = round(time.monotonic() - started, 1)
    text, data = render(meta, bench)
    (config.out / "latest.md").write_text(text)
    (config.out / "latest.json").write_text(json.dumps(data, indent=2, default=str))
    chart = write_chart(bench) if config.growth else None
    written = f"{config.out / 'latest.md'}, latest.json" + (f" and {chart.name}" if chart else "")
    print("\n" + text + f"\n(written to {written}; took {meta['elapsed_s']:.0f} s)")
    return interrupted or (1 if bench.harness_errors else 0)


if __name__ == "__main__":
    sys.exit(main())
