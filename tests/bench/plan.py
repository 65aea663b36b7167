"""What a benchmark run measures (the scenarios) and what it records (one entry per load run and per start)."""

from __future__ import annotations

from dataclasses import dataclass

from predictor.demo.training import ModelKind
from tests.bench.load import HeyResult
from tests.bench.procs import Memory

ALL_SERVERS = ("ours", "ours-w2", "baseline", "mlflow", "mlserver")


@dataclass(frozen=True)
class Scenario:
    key: str  # as given in BENCH_SCENARIOS
    label: str
    kind: ModelKind
    rows: int  # rows per request
    concurrency: int
    servers: tuple[str, ...]


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("1row@50", "1-row @50", "forest", 1, 50, ALL_SERVERS),
    Scenario("100row@8", "100-row @8", "forest", 100, 8, ALL_SERVERS),
    # mlflow serve runs one request at a time per worker; the issue measured it at 1 concurrent too.
    Scenario("1row@1", "1-row @1", "forest", 1, 1, ("mlflow",)),
    # A model that is nearly free, so the server's own overhead shows.
    Scenario("logreg-1row@50", "logreg 1-row @50", "logreg", 1, 50, ("ours", "ours-w2", "baseline")),
)
SCENARIO_BY_KEY = {scenario.key: scenario for scenario in SCENARIOS}


@dataclass(frozen=True)
class Measurement:
    """One timed load run of one server in one scenario; ``result`` is None when it could not run."""

    server: str
    scenario: str
    round: int
    result: HeyResult | None = None
    rss_mb: float | None = None  # the server's process tree right after the run
    failure: str | None = None


@dataclass(frozen=True)
class Start:
    """One start of one server with one model."""

    server: str
    kind: ModelKind
    round: int
    cold_start_s: float | None = None  # spawn → first 200 from the readiness route
    after_load: Memory | None = None  # once ready and settled, before any traffic
    after_run: Memory | None = None  # after its last scenario
    failure: str | None = None
