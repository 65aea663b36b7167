"""From the raw records of a run to the tables: medians and spreads over rounds, shares of the floor, CPU per
request, our ratios to each peer, the growth grid, the targets.

Pure functions of the records (no I/O, no clock), so ``tests/test_bench_harness.py`` can check them quickly.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from tests.bench.load import LoadResult
from tests.bench.plan import (
    CONCURRENCY_AXIS,
    FLEET,
    FLOOR,
    OURS,
    PEERS,
    ROWS_AXIS,
    SCENARIO_BY_KEY,
    SCENARIOS,
    Measurement,
    Start,
)


def _median(values: Iterable[float | None]) -> float | None:
    present = [value for value in values if value is not None]
    return statistics.median(present) if present else None


@dataclass(frozen=True)
class Summary:
    """One server in one scenario, the median over its successful rounds."""

    server: str
    scenario: str
    rounds: int
    req_per_s: float | None = None  # 2xx responses per second
    rows_per_s: float | None = None
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    errors: int = 0  # summed over rounds: non-2xx responses and transport errors
    rss_mb: float | None = None
    failure: str | None = None  # why no round produced a number
    # each successful round, in order: the spread the medians hide
    rounds_req_per_s: tuple[float, ...] = ()
    rounds_p50_ms: tuple[float, ...] = ()
    rounds_p99_ms: tuple[float, ...] = ()
    cpu_s_per_1k: float | None = None  # server CPU-seconds per 1,000 answered requests, median over rounds
    client_cpu_s_per_1k: float | None = None  # the load generator's (hey's or wrk's), likewise
    attempts: int = 0  # rounds tried, successful or not


def summarize(measurements: Sequence[Measurement]) -> dict[tuple[str, str], Summary]:
    groups: dict[tuple[str, str], list[Measurement]] = {}
    for measurement in measurements:
        groups.setdefault((measurement.server, measurement.scenario), []).append(measurement)
    return {key: _summary(key, runs) for key, runs in groups.items()}


def _summary(key: tuple[str, str], runs: list[Measurement]) -> Summary:
    server, scenario = key
    done = [run for run in runs if run.result is not None]
    if not done:
        return Summary(server, scenario, 0, failure=next((run.failure for run in runs if run.failure), "no data"))
    results = [run.result for run in done if run.result is not None]
    rate = _median(result.ok_per_s for result in results)
    p50s, p99s = (tuple(p for r in results if (p := r.percentile_ms(percent)) is not None) for percent in (50, 99))
    rows = SCENARIO_BY_KEY[scenario].rows if scenario in SCENARIO_BY_KEY else 1
    return Summary(
        server, scenario, len(done),
        req_per_s=rate,
        rows_per_s=None if rate is None else rate * rows,
        p50_ms=_median(result.percentile_ms(50) for result in results),
        p95_ms=_median(result.percentile_ms(95) for result in results),
        p99_ms=_median(result.percentile_ms(99) for result in results),
        errors=sum(result.errors for result in results),
        rss_mb=_median(run.rss_mb for run in done),
        failure=next((run.failure for run in runs if run.failure), None),
        rounds_req_per_s=tuple(result.ok_per_s for result in results),
        rounds_p50_ms=p50s,
        rounds_p99_ms=p99s,
        cpu_s_per_1k=_median(_cpu_per_1k(run.cpu_s, run.result) for run in done),
        client_cpu_s_per_1k=_median(_cpu_per_1k(result.client_cpu_s, result) for result in results),
        attempts=len(runs),
    )  # fmt: skip


def _cpu_per_1k(cpu_s: float | None, result: LoadResult | None) -> float | None:
    """CPU-seconds per 1,000 answered requests (any status: the server spent the time on each)."""
    answered = sum(result.status_counts.values()) if result else 0
    return None if cpu_s is None or not answered else cpu_s / answered * 1000


def floor_share(summaries: dict[tuple[str, str], Summary], server: str, scenario: str) -> float | None:
    """``server``'s throughput in ``scenario`` as a fraction of the floor's with the same rows and concurrency."""
    ours = summaries.get((server, scenario))
    known = SCENARIO_BY_KEY.get(scenario)
    floor = summaries.get((FLOOR, known.floor_key)) if known else None
    if ours is None or not ours.req_per_s or floor is None or not floor.req_per_s:
        return None
    return ours.req_per_s / floor.req_per_s


def raw_share(summaries: dict[tuple[str, str], Summary], server: str, scenario: str) -> float | None:
    """A by-id scenario's throughput as a fraction of the same server's raw path (the features sent) at the same
    rows and concurrency; None for other scenarios or without both numbers."""
    known = SCENARIO_BY_KEY.get(scenario)
    by_id = summaries.get((server, scenario))
    raw = summaries.get((server, known.raw_key)) if known and known.raw_key else None
    if by_id is None or not by_id.req_per_s or raw is None or not raw.req_per_s:
        return None
    return by_id.req_per_s / raw.req_per_s


@dataclass(frozen=True)
class StartSummary:
    server: str
    kind: str
    starts: int  # successful ones
    cold_start_s: float | None = None
    after_load_mb: float | None = None  # process tree, median
    after_run_mb: float | None = None
    largest_mb: float | None = None  # biggest single process seen
    processes: int = 0
    failure: str | None = None
    milestones: dict[str, float] = field(default_factory=dict)  # median seconds after the spawn, per milestone


def summarize_starts(starts: Sequence[Start]) -> dict[tuple[str, str], StartSummary]:
    groups: dict[tuple[str, str], list[Start]] = {}
    for start in starts:
        groups.setdefault((start.server, start.kind), []).append(start)
    summaries = {}
    for (server, kind), group in groups.items():
        ok = [start for start in group if start.failure is None]
        memories = [memory for start in ok for memory in (start.after_load, start.after_run) if memory is not None]
        summaries[(server, kind)] = StartSummary(
            server, kind, len(ok),
            cold_start_s=_median(start.cold_start_s for start in ok),
            after_load_mb=_median(start.after_load.total_mb if start.after_load else None for start in ok),
            after_run_mb=_median(start.after_run.total_mb if start.after_run else None for start in ok),
            largest_mb=max((memory.largest_mb for memory in memories), default=None),
            processes=max((memory.processes for memory in memories), default=0),
            failure=None if ok else next((start.failure for start in group if start.failure), "no data"),
            milestones=_median_milestones([start.milestones for start in ok if start.milestones]),
        )  # fmt: skip
    return summaries


def _median_milestones(runs: Sequence[dict[str, float]]) -> dict[str, float]:
    names = list(dict.fromkeys(name for run in runs for name in run))  # in start order
    return {name: median for name in names if (median := _median(run.get(name) for run in runs)) is not None}


def ratio(summaries: dict[tuple[str, str], Summary], server: str, peer: str, scenarios: Sequence[str]) -> float | None:
    """``server``'s throughput in ``scenarios[0]`` over the peer's best throughput in any of ``scenarios``."""
    ours = summaries.get((server, scenarios[0]))
    peer_rates = [s.req_per_s for key in scenarios if (s := summaries.get((peer, key))) and s.req_per_s]
    if ours is None or not ours.req_per_s or not peer_rates:
        return None
    return ours.req_per_s / max(peer_rates)


# --- targets (issue 5), judged per variant of ours --------------------------------------------------------------


@dataclass(frozen=True)
class Results:
    summaries: dict[tuple[str, str], Summary]
    starts: dict[tuple[str, str], StartSummary]
    workers: dict[str, int]
    cores: int  # the run's (its CPU affinity), shared by the servers and hey


Check = Callable[[Results, str], str]


def _errors_note(summary: Summary | None) -> str:
    return f", {summary.errors} errors" if summary and summary.errors else ""


def at_least(scenario: str, peer: str, minimum: float, also: tuple[str, ...] = ()) -> Check:
    """Throughput ≥ ``minimum`` × the peer's (its best over ``scenario`` and ``also``); errors fail the target."""

    def check(results: Results, server: str) -> str:
        value = ratio(results.summaries, server, peer, (scenario, *also))
        if value is None:
            return "n/a"
        ours = results.summaries.get((server, scenario))
        met = value >= minimum and not (ours and ours.errors)
        return f"{'met' if met else 'not met'} ({value:.1f}×{_errors_note(ours)})"

    return check


def p99_at_most(scenario: str, limit_ms: float) -> Check:
    def check(results: Results, server: str) -> str:
        summary = results.summaries.get((server, scenario))
        if summary is None or summary.p99_ms is None:
            return "n/a"
        met = summary.p99_ms <= limit_ms and not summary.errors
        return f"{'met' if met else 'not met'} ({summary.p99_ms:.1f} ms{_errors_note(summary)})"

    return check


def cold_start_at_most(limit_s: float) -> Check:
    def check(results: Results, server: str) -> str:
        start = results.starts.get((server, "forest"))
        if start is None or start.cold_start_s is None:
            return "n/a"
        return f"{'met' if start.cold_start_s <= limit_s else 'not met'} ({start.cold_start_s:.1f} s)"

    return check


def rss_per_worker_at_most(limit_mb: float) -> Check:
    """The larger of (whole tree ÷ workers) and the largest single process: the parent of several workers is
    charged to them, and a server that silently runs fewer workers than asked is not flattered by the division."""

    def check(results: Results, server: str) -> str:
        start = results.starts.get((server, "forest"))
        sizes = [size for size in (start.after_load_mb, start.after_run_mb) if size is not None] if start else []
        if not start or not sizes:
            return "n/a"
        per_worker = max(max(sizes) / results.workers.get(server, 1), start.largest_mb or 0.0)
        return f"{'met' if per_worker <= limit_mb else 'not met'} ({per_worker:.0f} MB)"

    return check


TARGETS: tuple[tuple[str, Check], ...] = (
    ("1-row @50: ≥ 15× the obvious KServe predictor", at_least("1row@50", "baseline", 15)),
    ("1-row @50: ≥ 10× MLServer", at_least("1row@50", "mlserver", 10)),
    ("1-row @50: ≥ 10× mlflow serve (its best of @50 and @1)", at_least("1row@50", "mlflow", 10, ("1row@1",))),
    ("1-row @50: p99 ≤ 50 ms", p99_at_most("1row@50", 50)),
    ("100-row @8: ≥ 5× the obvious predictor's rows/s", at_least("100row@8", "baseline", 5)),
    ("logreg 1-row @50: ≥ 1.5× the obvious predictor", at_least("logreg-1row@50", "baseline", 1.5)),
    ("cold start (spawn → ready) ≤ 3 s", cold_start_at_most(3)),
    ("RSS ≤ 400 MB per worker (max of tree ÷ workers, largest process)", rss_per_worker_at_most(400)),
)


# --- goals of issue 15: against the floor, in every round ---------------------------------------------------------


def floor_share_at_least(scenario: str, minimum: float) -> Check:
    def check(results: Results, server: str) -> str:
        share = floor_share(results.summaries, server, scenario)
        if share is None:
            return "n/a"
        ours = results.summaries.get((server, scenario))
        met = share >= minimum and not (ours and ours.errors)
        return f"{'met' if met else 'not met'} ({share:.0%}{_errors_note(ours)})"

    return check


def p99_every_round_at_most(scenario: str, limit_ms: float, min_rounds: int) -> Check:
    """Every round's p99 within the limit, over at least ``min_rounds`` rounds, and no error in any of them."""

    def check(results: Results, server: str) -> str:
        summary = results.summaries.get((server, scenario))
        if summary is None or not summary.rounds_p99_ms:
            return "n/a"
        worst = max(summary.rounds_p99_ms)
        if len(summary.rounds_p99_ms) < min_rounds:
            return f"n/a ({len(summary.rounds_p99_ms)} of {min_rounds} rounds; worst {worst:.1f} ms)"
        met = worst <= limit_ms and not summary.errors
        return f"{'met' if met else 'not met'} (worst {worst:.1f} ms{_errors_note(summary)})"

    return check


def workers_scale_at_least(scenario: str, single: str, minimum: float) -> Check:
    """A multi-worker variant's throughput ≥ ``minimum`` × the single worker's; n/a for single-worker servers."""

    def check(results: Results, server: str) -> str:
        if results.workers.get(server, 1) < 2:
            return "n/a"
        value = ratio(results.summaries, server, single, (scenario,))
        if value is None:
            return "n/a"
        ours = results.summaries.get((server, scenario))
        met = value >= minimum and not (ours and ours.errors)
        why = _scaling_note(ours, results.summaries.get((single, scenario)), results.cores)
        return f"{'met' if met else 'not met'} ({value:.2f}×{why}{_errors_note(ours)})"

    return check


def _scaling_note(many: Summary | None, one: Summary | None, cores: int) -> str:
    """What bounds the ratio when hey shares the cores: each request's CPU on several workers against one's, and
    the ratio the cores allow if a request cost what it costs one worker (with hey's share taken out)."""
    if many is None or one is None or not one.req_per_s:
        return ""
    c_many, c_one, client = many.cpu_s_per_1k, one.cpu_s_per_1k, many.client_cpu_s_per_1k
    if not c_many or not c_one or client is None:
        return ""
    ceiling = cores * 1000 / (c_one + client) / one.req_per_s
    return (f"; CPU per request {c_many / c_one:.2f}× one worker's; hey {client:.2f} CPU s / 1k req on the same "
            f"{cores} cores: at one worker's cost the cores allow {ceiling:.2f}×")  # fmt: skip


FLOOR_GOALS: tuple[tuple[str, Check], ...] = (
    ("1-row @50: ≥ 50% of the floor's throughput", floor_share_at_least("1row@50", 0.5)),
    ("1-row @50: p99 ≤ 10 ms in every one of ≥ 3 rounds", p99_every_round_at_most("1row@50", 10, 3)),
    ("100-row @8: --workers 2 ≥ 1.6× one worker", workers_scale_at_least("100row@8", "ours", 1.6)),
)


# --- goals of issue 11: the typed model against the best peer ---------------------------------------------------


def at_least_best_of(scenario: str, peers: Sequence[str], minimum: float) -> Check:
    """Throughput ≥ ``minimum`` × the fastest of ``peers`` in ``scenario``. A peer with no number there (it could
    not serve the model, or was not run) cannot be the fastest: it is named, never counted as zero."""

    def check(results: Results, server: str) -> str:
        ratios = {peer: value for peer in peers if (value := ratio(results.summaries, server, peer, (scenario,)))}
        if not ratios:
            return "n/a"
        best = min(ratios, key=ratios.__getitem__)  # our smallest ratio is to the fastest peer
        ours = results.summaries.get((server, scenario))
        met = ratios[best] >= minimum and not (ours and ours.errors)
        missing = [peer for peer in peers if peer not in ratios]
        note = f"; no number from {', '.join(missing)}" if missing else ""
        return f"{'met' if met else 'not met'} ({ratios[best]:.1f}× {best}{_errors_note(ours)}{note})"

    return check


TYPED_GOALS: tuple[tuple[str, Check], ...] = (
    ("typed 1-row @50: ≥ 10× the best of baseline/mlflow/mlserver", at_least_best_of("typed-1row@50", PEERS, 10)),
    ("typed 1-row @50: p99 ≤ 50 ms", p99_at_most("typed-1row@50", 50)),
)


def judge(
    results: Results, variants: Sequence[str], targets: Sequence[tuple[str, Check]] = TARGETS
) -> list[tuple[str, list[str]]]:
    return [(label, [check(results, server) for server in variants]) for label, check in targets]


# --- rendering ----------------------------------------------------------------------------------------------------


def _num(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "—"
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.{digits}f}"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=False)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(cell).ljust(width) for cell, width in zip(cells, widths, strict=False)) + " |"

    return "\n".join([line(headers), "|" + "|".join("-" * (width + 2) for width in widths) + "|", *map(line, rows)])


def load_table(summaries: dict[tuple[str, str], Summary], labels: dict[str, str], servers: Sequence[str]) -> str:
    rows = []
    for scenario in SCENARIOS:
        for server in servers:
            summary = summaries.get((server, scenario.key))
            if summary is None:
                continue
            if summary.req_per_s is None:
                rows.append([labels.get(server, server), scenario.label, summary.failure or "no data", *[""] * 6])
                continue
            rows.append([
                labels.get(server, server), scenario.label, _num(summary.req_per_s), _num(summary.rows_per_s),
                _num(summary.p50_ms), _num(summary.p95_ms), _num(summary.p99_ms), str(summary.errors),
                _num(summary.rss_mb, 0),
            ])  # fmt: skip
    headers = ["server", "scenario", "req/s", "rows/s", "p50 ms", "p95 ms", "p99 ms", "errors", "RSS MB"]
    return markdown_table(headers, rows)


def _per_round(values: Sequence[float]) -> str:
    return " / ".join(_num(value) for value in values) or "—"


def _spread(values: Sequence[float]) -> str:
    return f"{_num(min(values))}–{_num(max(values))}" if values else "—"


def floor_table(summaries: dict[tuple[str, str], Summary], labels: dict[str, str], servers: Sequence[str]) -> str:
    """Every server against the floor, round by round: the throughput's share and spread, p50/p99 in each round,
    the CPU each request cost, the errors and the rounds that produced a number (a ✗ on either when not all)."""
    rows = []
    for scenario in SCENARIOS:
        for server in servers:
            summary = summaries.get((server, scenario.key))
            if summary is None:
                continue
            if summary.req_per_s is None:
                rows.append([labels.get(server, server), scenario.label, summary.failure or "no data", *[""] * 9])
                continue
            share = floor_share(summaries, server, scenario.key)
            rows.append([
                labels.get(server, server), scenario.label, _num(summary.req_per_s),
                "—" if share is None else f"{share:.0%}", _spread(summary.rounds_req_per_s),
                _per_round(summary.rounds_p50_ms), _per_round(summary.rounds_p99_ms), _spread(summary.rounds_p99_ms),
                _num(summary.cpu_s_per_1k, 2), _num(summary.client_cpu_s_per_1k, 2),
                f"{summary.errors} ✗" if summary.errors else "0",
                f"{summary.rounds}/{summary.attempts}" + ("" if summary.rounds == summary.attempts
                                                          else f" ✗ ({summary.failure})"),
            ])  # fmt: skip
    headers = ["server", "scenario", "req/s", "of floor", "req/s min–max", "p50 ms by round", "p99 ms by round",
               "p99 min–max", "CPU s / 1k req", "load's CPU s / 1k req", "errors", "rounds"]  # fmt: skip
    return markdown_table(headers, rows)


def by_id_table(summaries: dict[tuple[str, str], Summary], labels: dict[str, str], servers: Sequence[str]) -> str:
    """Each by-id scenario against the same server's raw path: req/s, p50 and p99 of both, the share of the
    medians and, when both ran in every round, the share round by round (both are measured in one start)."""
    rows = []
    for scenario in SCENARIOS:
        if scenario.raw_key is None:
            continue
        for server in servers:
            by_id, raw = summaries.get((server, scenario.key)), summaries.get((server, scenario.raw_key))
            if by_id is None:
                continue
            if by_id.req_per_s is None:
                rows.append([labels.get(server, server), scenario.label, by_id.failure or "no data", *[""] * 7])
                continue
            share = raw_share(summaries, server, scenario.key)
            raw_rounds = raw.rounds_req_per_s if raw is not None else ()
            paired = len(raw_rounds) == len(by_id.rounds_req_per_s)
            rounds = [b / r for b, r in zip(by_id.rounds_req_per_s, raw_rounds, strict=True) if r] if paired else []
            rows.append([
                labels.get(server, server), scenario.label, _num(by_id.req_per_s), _num(by_id.p50_ms),
                _num(by_id.p99_ms), "—" if raw is None else _num(raw.req_per_s),
                "—" if raw is None else f"{_num(raw.p50_ms)} / {_num(raw.p99_ms)}",
                "—" if share is None else f"{share:.1%}", " / ".join(f"{value:.1%}" for value in rounds) or "—",
                f"{by_id.errors} ✗" if by_id.errors else "0",
            ])  # fmt: skip
    headers = ["server", "scenario", "by id req/s", "p50 ms", "p99 ms", "raw req/s", "raw p50 / p99 ms",
               "by id ÷ raw", "÷ raw by round", "errors"]  # fmt: skip
    return markdown_table(headers, rows) if rows else ""


FLEET_GOAL_ROWS_PER_S = 100_000  # issue 26: 10,000 ids in one request, end to end


def fleet_table(summaries: dict[tuple[str, str], Summary], labels: dict[str, str], servers: Sequence[str]) -> str:
    """The fleet scenario (10,000 ids in one request) in rows per second, against issue 26's goal."""
    rows = []
    for server in servers:
        fleet = summaries.get((server, FLEET))
        if fleet is None:
            continue
        rate = fleet.rows_per_s
        verdict = "n/a" if rate is None else "met" if rate >= FLEET_GOAL_ROWS_PER_S else "not met"
        rows.append([
            labels.get(server, server), _num(rate) if rate is not None else fleet.failure or "no data",
            _num(fleet.p50_ms), _num(fleet.p99_ms), f"{fleet.errors} ✗" if fleet.errors else "0",
            f"≥ {FLEET_GOAL_ROWS_PER_S:,} rows/s: {verdict}",
        ])  # fmt: skip
    headers = ["server", "rows/s", "p50 ms (a request)", "p99 ms", "errors", "goal"]
    return markdown_table(headers, rows) if rows else ""


def growth_table(
    summaries: dict[tuple[str, str], Summary], labels: dict[str, str], servers: Sequence[str], axis: Sequence[str]
) -> str | None:
    """One row per server, one column per grid point: throughput (rows/s on the rows axis, req/s on the
    concurrency axis) and p99; None when fewer than two points of ``axis`` were measured."""
    measured = [key for key in axis if any(summaries.get((server, key)) for server in servers)]
    if len(measured) < 2:
        return None
    by_rows = len({SCENARIO_BY_KEY[key].rows for key in measured}) > 1
    rows = []
    for server in servers:
        cells = []
        for key in measured:
            summary = summaries.get((server, key))
            rate = None if summary is None else summary.rows_per_s if by_rows else summary.req_per_s
            p99 = "" if summary is None or summary.p99_ms is None else f" ({_num(summary.p99_ms)} ms)"
            cells.append("—" if summary is None or rate is None else f"{_num(rate)}{p99}")
        if any(cell != "—" for cell in cells):
            rows.append([labels.get(server, server), *cells])
    unit = "rows/s (p99)" if by_rows else "req/s (p99)"
    return markdown_table([f"server: {unit}", *(SCENARIO_BY_KEY[key].label for key in measured)], rows)


def growth_tables(summaries: dict[tuple[str, str], Summary], labels: dict[str, str], servers: Sequence[str]) -> str:
    tables = [growth_table(summaries, labels, servers, axis) for axis in (ROWS_AXIS, CONCURRENCY_AXIS)]
    return "\n\n".join(table for table in tables if table)


def start_table(starts: dict[tuple[str, str], StartSummary], labels: dict[str, str]) -> str:
    rows = []
    for (server, kind), start in starts.items():
        if start.failure:
            rows.append([labels.get(server, server), kind, start.failure, "", "", "", ""])
            continue
        rows.append([
            labels.get(server, server), kind, _num(start.cold_start_s), _num(start.after_load_mb, 0),
            _num(start.after_run_mb, 0), _num(start.largest_mb, 0), str(start.processes),
        ])  # fmt: skip
    headers = ["server", "model", "cold start s", "RSS after load MB", "RSS after run MB", "largest process MB",
               "processes"]  # fmt: skip
    return markdown_table(headers, rows)


def milestones_table(starts: dict[tuple[str, str], StartSummary], labels: dict[str, str]) -> str:
    """Each start's milestones as columns (empty when no start had any: only peers ran)."""
    names = list(dict.fromkeys(name for start in starts.values() for name in start.milestones))
    rows = [[labels.get(server, server), kind, *[_num(start.milestones.get(name)) for name in names]]
            for (server, kind), start in starts.items() if start.milestones]  # fmt: skip
    return markdown_table(["server", "model", *[f"{name} s" for name in names]], rows) if rows else ""


def ratio_table(summaries: dict[tuple[str, str], Summary], labels: dict[str, str]) -> str:
    rows = []
    for scenario in SCENARIOS:
        for server in OURS:
            cells = [ratio(summaries, server, peer, (scenario.key,)) for peer in PEERS]
            if (server, scenario.key) in summaries and any(cell is not None for cell in cells):
                rows.append([scenario.label, labels.get(server, server),
                             *[f"{cell:.1f}×" if cell is not None else "—" for cell in cells]])  # fmt: skip
    return markdown_table(["scenario", "ours", *[f"÷ {labels.get(peer, peer)}" for peer in PEERS]], rows)


def targets_table(verdicts: list[tuple[str, list[str]]], variants: Sequence[str], labels: dict[str, str]) -> str:
    return markdown_table(["target", *[labels.get(server, server) for server in variants]],
                          [[label, *cells] for label, cells in verdicts])  # fmt: skip
