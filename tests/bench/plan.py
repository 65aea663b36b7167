"""What a benchmark run measures (the scenarios) and what it records (one entry per load run and per start)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tests.bench.load import LoadResult
from tests.bench.procs import Memory
from tests.bench.registry import BenchKind

# ours three ways (issue 15): from the registry with an empty cache, restarted from its filled local cache, and
# with `make serve`'s flags (Feast on, cached) — then --workers 2, the peers, and the floor under them all.
OURS = ("ours", "ours-cached", "ours-serve", "ours-w2")
# ours-serve with the Feast repo's online store on Redis (a redis-server the run starts): only the rows by id and
# their raw twins (issue 26 asks for both stores); its other rows would be ours-serve's.
SERVE_REDIS = "ours-serve-redis"
# ours-serve with its in-process feature cache on (--feature_cache_s 5): what a cache hit saves, by id only.
SERVE_FEATURE_CACHE = "ours-serve-fcache"
# What watching costs (issue 13): ours with drift monitoring off (ours has it on: the demo carries a baseline), and
# ours with a shadow model scoring every request.
MONITORING = ("ours-nodrift", "ours-shadow", "ours-traced")
PEERS = ("baseline", "mlflow", "mlserver")
FLOOR = "floor"
ALL_SERVERS = (FLOOR, *OURS, SERVE_REDIS, SERVE_FEATURE_CACHE, *MONITORING, *PEERS)
# Ours at another git revision (BENCH_OURS_AT): no regression, measured side by side in one run. Only when named.
# ours-at is ours at that revision (its pair: ours); ours-serve-at is ours-serve at that revision, with the same
# flags (Feast on: its pair for the lookups by id); ours-serve-redis-at the same on the Redis online store.
REVISION = "ours-at"
SERVE_REVISION = "ours-serve-at"
SERVE_REDIS_REVISION = "ours-serve-redis-at"
REVISIONS = (REVISION, SERVE_REVISION, SERVE_REDIS_REVISION)
KNOWN_SERVERS = (*ALL_SERVERS, *REVISIONS)
FOREST_DEFAULT = (FLOOR, *OURS, *MONITORING, *PEERS, *REVISIONS)
# Predictions by equipment id (issue 26): the servers of ours with Feast on (`make serve`'s flags; the same with
# the repo's online store on a redis-server of the run, the production store; the same with the feature cache on).
BY_ID_SERVERS = ("ours-serve", SERVE_REDIS, SERVE_FEATURE_CACHE, SERVE_REVISION, SERVE_REDIS_REVISION)
REDIS_SERVERS = (SERVE_REDIS, SERVE_REDIS_REVISION)  # the run starts a redis-server for these
FLEET = "byid-10000row@1"
TYPED_SERVERS = ("ours", *PEERS)
# Issue 25's models (a native XGBoost Booster, a forest without a signature), one scenario each: ours and mlflow
# serve. Not the obvious predictor: it reads the columns from the signature and calls predict_proba, which a
# Booster lacks (adapting it would make it another predictor). Not MLServer: its venv has no XGBoost (which would
# add the ~300 MB NCCL wheel to every install of it), and mlserver-mlflow takes the request's content type from the
# signature: without one, our one-tensor-per-column body is not decoded as a DataFrame.
LOGGED_SERVERS = ("ours", "mlflow")

# Growth (issue 15): rows per request at a fixed concurrency, and concurrency at one row per request. Off by
# default (BENCH_GROWTH=1 adds GROWTH_SERVERS to every grid point; `make bench-growth` runs the grid alone).
GROWTH_ROWS = (1, 10, 100, 1000)
GROWTH_ROWS_CONCURRENCY = 8
GROWTH_CONCURRENCY = (1, 8, 50, 200)
GROWTH_SERVERS = (FLOOR, "ours", "ours-w2", *PEERS)


@dataclass(frozen=True)
class Scenario:
    key: str  # as given in BENCH_SCENARIOS
    label: str
    kind: BenchKind
    rows: int  # rows per request
    concurrency: int
    servers: tuple[str, ...]  # who runs it in every run
    growth: bool = False  # a point of the growth grid: GROWTH_SERVERS run it too when growth is on
    verb: str = "predict"  # "explain": the same body to /v1/models/NAME:explain (ours only)
    # Instances naming only their equipment_id, the server reading the features from Feast; one body per
    # concurrent connection, each naming its own ids (tests/bench/payloads.py: by_id_workers), sent in turn.
    by_id: bool = False
    # The load generator: hey sends one body; wrk sends several in turn (by id), and measures the raw twins that
    # by-id rows are compared with, so that both sides of the share pay the same client (tests/bench/load.py).
    load: Literal["hey", "wrk"] = "hey"

    def runs(self, server: str, growth: bool) -> bool:
        return server in self.servers or (growth and self.growth and server in GROWTH_SERVERS)

    @property
    def floor_key(self) -> str:
        """The floor's scenario with the same rows and concurrency (it serves no model, so any kind is the same)."""
        return f"{self.rows}row@{self.concurrency}"

    @property
    def raw_key(self) -> str | None:
        """A by-id scenario's raw path: the forest with the same rows and concurrency, the features sent, by the
        same load generator (none for the fleet: judged in rows per second)."""
        return _raw_twin_key(self.rows, self.concurrency) if self.by_id and self.key != FLEET else None


def _raw_twin_key(rows: int, concurrency: int) -> str:
    return f"raw-{rows}row@{concurrency}"


def _by_id(rows: int, concurrency: int) -> tuple[Scenario, Scenario]:
    """A by-id scenario and its raw twin, both by wrk."""
    by_id = Scenario(f"byid-{rows}row@{concurrency}", f"by id {rows}-row @{concurrency}", "forest", rows, concurrency,
                     BY_ID_SERVERS, by_id=True, load="wrk")  # fmt: skip
    raw = Scenario(_raw_twin_key(rows, concurrency), f"raw {rows}-row @{concurrency} (wrk)", "forest", rows,
                   concurrency, BY_ID_SERVERS, load="wrk")  # fmt: skip
    return by_id, raw


def _grid(rows: int, concurrency: int, servers: tuple[str, ...] = ()) -> Scenario:
    return Scenario(f"{rows}row@{concurrency}", f"{rows}-row @{concurrency}", "forest", rows, concurrency, servers,
                    growth=True)  # fmt: skip


SCENARIOS: tuple[Scenario, ...] = (
    _grid(1, 50, FOREST_DEFAULT),
    _grid(100, 8, FOREST_DEFAULT),
    # mlflow serve runs one request at a time per worker; issue 5 measured it at 1 concurrent too.
    _grid(1, 1, ("mlflow",)),
    # A model that is nearly free, so the server's own overhead shows (against the floor's 1-row @50: the floor
    # has no model, so it is not run twice).
    Scenario("logreg-1row@50", "logreg 1-row @50", "logreg", 1, 50, ("ours", "ours-w2", "baseline")),
    # The user's own model (issue 11): a ColumnTransformer pipeline with a string column (typed_model.py), each
    # server sent typed rows in its own protocol. The floor is not run again: its 1-row @50 serves for both.
    Scenario("typed-1row@50", "typed 1-row @50", "typed", 1, 50, TYPED_SERVERS),
    Scenario("typed-100row@8", "typed 100-row @8", "typed", 100, 8, TYPED_SERVERS),
    # Issue 25: the same 1 row @50 on models logged other ways (tests/bench/logged_models.py); against the floor's.
    Scenario("booster-1row@50", "booster 1-row @50", "booster", 1, 50, LOGGED_SERVERS),
    Scenario("nosig-1row@50", "nosig 1-row @50", "nosig", 1, 50, LOGGED_SERVERS),
    # Issue 26: the forest fed by id, each request naming only equipment ids that the bench's Feast repo holds,
    # every connection its own (so that concurrent lookups carry different ids); against the same server's raw
    # path measured by the same load generator (wrk), its raw twin.
    *_by_id(1, 50),
    *_by_id(100, 8),
    # A fleet: 10,000 distinct ids in one request, one at a time (issue 26's goal is in rows per second).
    Scenario(FLEET, "by id fleet of 10,000 @1", "forest", 10_000, 1, BY_ID_SERVERS, by_id=True, load="wrk"),
    # One explanation at a time: its latency is the cost of explaining one row of the demo forest (TreeSHAP).
    Scenario("explain-1row@1", "explain 1-row @1", "forest", 1, 1, ("ours",), verb="explain"),
    # The rest of the growth grid, run only when growth is on.
    *(_grid(rows, GROWTH_ROWS_CONCURRENCY) for rows in GROWTH_ROWS if rows not in (1, 100)),
    _grid(1, GROWTH_ROWS_CONCURRENCY),  # 1 row @8: on both axes
    *(_grid(1, concurrency) for concurrency in GROWTH_CONCURRENCY if concurrency not in (1, 8, 50)),
)
SCENARIO_BY_KEY = {scenario.key: scenario for scenario in SCENARIOS}
GROWTH_KEYS = tuple(scenario.key for scenario in SCENARIOS if scenario.growth)


@dataclass(frozen=True)
class Measurement:
    """One timed load run of one server in one scenario; ``result`` is None when it could not run."""

    server: str
    scenario: str
    round: int
    result: LoadResult | None = None
    rss_mb: float | None = None  # the server's process tree right after the run
    failure: str | None = None
    cpu_s: float | None = None  # CPU-seconds of the server's process group during the timed run


@dataclass(frozen=True)
class Start:
    """One start of one server with one model."""

    server: str
    kind: BenchKind
    round: int
    cold_start_s: float | None = None  # spawn → first 200 from the readiness route
    after_load: Memory | None = None  # once ready and settled, before any traffic
    after_run: Memory | None = None  # after its last scenario
    failure: str | None = None
    milestones: dict[str, float] | None = None  # seconds after the spawn, from its log (tests/bench/startup.py)


ROWS_AXIS = tuple(f"{rows}row@{GROWTH_ROWS_CONCURRENCY}" for rows in GROWTH_ROWS)
CONCURRENCY_AXIS = tuple(f"1row@{concurrency}" for concurrency in GROWTH_CONCURRENCY)
