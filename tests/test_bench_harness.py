"""The `make bench` harness's own logic: hey parsing, medians, spreads, shares of the floor, CPU accounting, ratios,
targets, the growth table and chart, request bodies, launchers, knobs.

Nothing is timed: the benchmark's numbers are read from its report, never asserted. The few servers started here
(the floor, a process that exits, the real predictor for its answer's shape) are started to check what they say.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from prometheus_client import CollectorRegistry

from predictor.demo.columns import ENTITY_KEY, FEATURE_NAMES
from predictor.demo.training import EQUIPMENT_TYPES, equipment_ids
from predictor.features import FeastFeatureSource
from predictor.metrics import Metrics
from tests.bench import logged_models, payloads, report, typed_model
from tests.bench import registry as registry_module
from tests.bench.chart import growth_chart
from tests.bench.load import HarnessError, LoadResult, parse_hey, parse_wrk, run_wrk
from tests.bench.plan import (
    BY_ID_SERVERS,
    CONCURRENCY_AXIS,
    FLEET,
    GROWTH_SERVERS,
    PEERS,
    ROWS_AXIS,
    SCENARIO_BY_KEY,
    SCENARIOS,
    Measurement,
    Start,
)
from tests.bench.procs import Memory, descendants, free_port, group_cpu_s
from tests.bench.registry import BENCH_EQUIPMENT, MODEL_NAMES, BenchKind, BenchRegistry
from tests.bench.run import KINDS, Bench, Config, load_config, prepare_redis_feature_repo, render
from tests.bench.servers import SERVERS, V1, Context, Launch, Ports, ServerFailed, ServerSpec, make_serve_argv, serve
from tests.bench.startup import milestones
from tests.feast_helpers import REDIS_SERVER
from tests.servers import PredictorProcess

HEY_OK = """
Summary:
  Total:\t10.0500 secs
  Slowest:\t0.0950 secs
  Fastest:\t0.0012 secs
  Average:\t0.0200 secs
  Requests/sec:\t2000.0000

  Total data:\t1234567 bytes
  Size/request:\t61 bytes

Response time histogram:
  0.001 [1]\t|
  0.010 [15000]\t|■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■

Latency distribution:
  10% in 0.0100 secs
  25% in 0.0150 secs
  50% in 0.0180 secs
  75% in 0.0220 secs
  90% in 0.0300 secs
  95% in 0.0400 secs
  99% in 0.0600 secs

Details (average, fastest, slowest):
  DNS+dialup:\t0.0001 secs, 0.0012 secs, 0.0950 secs
  resp wait:\t0.0199 secs, 0.0010 secs, 0.0940 secs

Status code distribution:
  [200]\t20000 responses
  [500]\t100 responses

Error distribution:
  [3]\tPost "http://127.0.0.1:8080/v1/models/m:predict": read tcp 127.0.0.1:1->127.0.0.1:8080: connection reset by peer
  [2]\tPost "http://127.0.0.1:8080/v1/models/m:predict": EOF
"""

HEY_SERVER_DOWN = """
Summary:
  Total:\t2.0031 secs
  Slowest:\t0.0000 secs
  Fastest:\t0.0000 secs
  Average:\t NaN secs
  Requests/sec:\t5000.1000


Response time histogram:


Latency distribution:

Error distribution:
  [10016]\tPost "http://127.0.0.1:9/x": dial tcp 127.0.0.1:9: connect: connection refused
"""


def test_hey_summary_is_parsed_and_throughput_counts_2xx_only() -> None:
    result = parse_hey(HEY_OK)

    assert result.duration_s == pytest.approx(10.05)
    assert result.status_counts == {200: 20000, 500: 100}
    assert result.transport_errors == 5
    assert result.ok == 20000
    assert result.errors == 105
    assert result.ok_per_s == pytest.approx(20000 / 10.05)
    assert result.percentile_ms(50) == pytest.approx(18.0)
    assert result.percentile_ms(99) == pytest.approx(60.0)


def test_hey_against_a_dead_server_gives_errors_and_no_latency() -> None:
    result = parse_hey(HEY_SERVER_DOWN)

    assert result.ok == 0 and result.ok_per_s == 0
    assert result.errors == 10016
    assert result.percentile_ms(50) is None


def test_output_without_a_summary_is_a_harness_error() -> None:
    with pytest.raises(HarnessError):
        parse_hey("flag provided but not defined: -zz\nUsage: hey [options...] <url>")


def _run(rate: float, p99_s: float = 0.02, errors: int = 0, seconds: float = 10.0) -> LoadResult:
    statuses = {200: round(rate * seconds)} | ({500: errors} if errors else {})
    return LoadResult(seconds, statuses, 0, {50: p99_s / 2, 95: p99_s * 0.9, 99: p99_s})


def _measure(server: str, scenario: str, *rates: float, errors: int = 0) -> list[Measurement]:
    return [Measurement(server, scenario, i, _run(rate, errors=errors), 300.0) for i, rate in enumerate(rates)]


def test_summary_is_the_median_of_rounds_with_rows_per_second() -> None:
    summaries = report.summarize(_measure("baseline", "100row@8", 40, 60, 50))
    summary = summaries[("baseline", "100row@8")]

    assert summary.rounds == 3
    assert summary.req_per_s == pytest.approx(50)
    assert summary.rows_per_s == pytest.approx(5000)
    assert summary.p99_ms == pytest.approx(20)


def test_a_server_that_never_started_keeps_its_reason() -> None:
    failed = [Measurement("ours", "1row@50", r, failure="failed to start (exit 1)") for r in range(2)]
    summary = report.summarize(failed)[("ours", "1row@50")]

    assert summary.req_per_s is None
    assert summary.failure == "failed to start (exit 1)"
    assert "failed to start (exit 1)" in report.load_table({("ours", "1row@50"): summary}, {}, ["ours"])


def _results(measurements: list[Measurement], starts: list[Start] | None = None) -> report.Results:
    return report.Results(report.summarize(measurements), report.summarize_starts(starts or []), {"ours-w2": 2}, 2)


def test_ratio_targets_met_not_met_and_not_applicable() -> None:
    results = _results([
        *_measure("ours", "1row@50", 2000, 2000), *_measure("baseline", "1row@50", 100, 100),
        *_measure("mlflow", "1row@50", 110), *_measure("mlflow", "1row@1", 250),
    ])  # fmt: skip

    assert report.at_least("1row@50", "baseline", 15)(results, "ours") == "met (20.0×)"
    # mlflow serve is judged on its best scenario: 2000 / 250.
    assert report.at_least("1row@50", "mlflow", 10, ("1row@1",))(results, "ours") == "not met (8.0×)"
    assert report.at_least("1row@50", "mlserver", 10)(results, "ours") == "n/a"
    assert report.at_least("1row@50", "baseline", 15)(results, "ours-w2") == "n/a"


def test_errors_fail_a_target_whatever_the_ratio() -> None:
    results = _results([*_measure("ours", "1row@50", 2000, errors=7), *_measure("baseline", "1row@50", 10)])

    assert report.at_least("1row@50", "baseline", 15)(results, "ours") == "not met (200.0×, 7 errors)"
    assert report.p99_at_most("1row@50", 50)(results, "ours").startswith("not met (20.0 ms, 7 errors")


def test_cold_start_and_memory_per_worker() -> None:
    one = Memory(total_mb=300, largest_mb=300, processes=1)
    three = Memory(total_mb=900, largest_mb=380, processes=3)
    starts = [Start("ours", "forest", 0, 2.5, one, one), Start("ours-w2", "forest", 0, 4.0, three, three)]
    results = _results([], starts)

    assert report.cold_start_at_most(3)(results, "ours") == "met (2.5 s)"
    assert report.cold_start_at_most(3)(results, "ours-w2") == "not met (4.0 s)"
    assert report.rss_per_worker_at_most(400)(results, "ours") == "met (300 MB)"
    # 900 MB for parent + 2 workers is charged as 450 MB per worker.
    assert report.rss_per_worker_at_most(400)(results, "ours-w2") == "not met (450 MB)"


def test_every_target_renders_for_every_variant() -> None:
    results = _results([*_measure("ours", "1row@50", 1000), *_measure("baseline", "1row@50", 50)])
    verdicts = report.judge(results, ["ours", "ours-w2"])
    table = report.targets_table(verdicts, ["ours", "ours-w2"], {"ours-w2": "ours --workers 2"})

    assert len(verdicts) == len(report.TARGETS)
    assert all(cell.split()[0] in ("met", "not", "n/a") for _, cells in verdicts for cell in cells)
    assert "ours --workers 2" in table.splitlines()[0]


def test_bodies_carry_floats_in_each_protocol() -> None:
    frame = payloads.sample("forest", 3)
    rows = frame.to_numpy().tolist()
    v1 = payloads.v1_body(frame)
    mlflow = payloads.mlflow_body(frame)
    v2 = payloads.v2_columns_body(frame)

    assert v1 == {"instances": rows} and all(isinstance(x, float) for row in v1["instances"] for x in row)
    assert mlflow["dataframe_split"]["columns"] == list(FEATURE_NAMES)
    assert [i["name"] for i in v2["inputs"]] == list(FEATURE_NAMES)
    assert v2["inputs"][1] == {"name": FEATURE_NAMES[1], "shape": [3, 1], "datatype": "FP64",
                               "data": [row[1] for row in rows]}  # fmt: skip
    assert len(payloads.sample("logreg", 1)) == 1


def test_typed_bodies_name_columns_and_carry_the_string_column_as_strings() -> None:
    """Issue 11's model: each protocol's typed form (v1 objects keyed by column, /invocations split, v2 one tensor
    per column with BYTES for the string), the same rows in each, and JSON that says 50.0 for a double."""
    frame = payloads.sample("typed", 3)
    v1 = json.loads(json.dumps(payloads.v1_body(frame)))
    split = json.loads(json.dumps(payloads.mlflow_body(frame)))["dataframe_split"]
    v2 = json.loads(json.dumps(payloads.v2_columns_body(frame)))["inputs"]

    assert list(frame.columns) == list(typed_model.COLUMNS)
    assert [list(row) for row in v1["instances"]] == [list(typed_model.COLUMNS)] * 3
    assert all(isinstance(row["equipment_type"], str) for row in v1["instances"])
    assert all(isinstance(row[name], float) for row in v1["instances"] for name in FEATURE_NAMES)
    assert split["columns"] == list(typed_model.COLUMNS)
    assert split["data"] == [[row[name] for name in typed_model.COLUMNS] for row in v1["instances"]]
    assert [(i["name"], i["datatype"], i["shape"]) for i in v2[:2]] == [
        ("equipment_type", "BYTES", [3, 1]), (FEATURE_NAMES[0], "FP64", [3, 1])]  # fmt: skip
    assert {i["name"]: i["data"] for i in v2} == {name: [row[name] for row in v1["instances"]]
                                                  for name in typed_model.COLUMNS}  # fmt: skip
    assert set(frame["equipment_type"]) <= set(EQUIPMENT_TYPES)


def test_the_typed_model_is_logged_like_a_users_own_pipeline(tmp_path: Path) -> None:
    """A small fit of the same pipeline saved with the same flavor arguments: a string column in a typed signature,
    skops with exactly the types skops itself refuses, requirements listed; it answers the v1 body's rows."""
    import mlflow
    import skops.io

    pipeline, frame = typed_model.fit(rows=200, n_estimators=5)
    arguments = typed_model.flavor_arguments(pipeline, frame)
    mlflow.sklearn.save_model(pipeline, str(tmp_path / "model"), **arguments)
    loaded = mlflow.pyfunc.load_model(str(tmp_path / "model"))
    inputs = {column.name: column.type.name for column in loaded.metadata.get_input_schema().inputs}
    sent = pd.DataFrame(payloads.v1_body(payloads.sample("typed", 4))["instances"], columns=list(inputs))

    assert inputs == {"equipment_type": "string", **{name: "double" for name in FEATURE_NAMES}}
    assert sorted(skops.io.get_untrusted_types(data=skops.io.dumps(pipeline))) == typed_model.TRUSTED_TYPES
    assert arguments["serialization_format"] == "skops"
    assert [r.split("==")[0] for r in arguments["pip_requirements"]] == list(typed_model.REQUIREMENTS)
    assert list(loaded.predict(sent)) == list(pipeline.predict(sent))


def test_knobs_come_from_flags_or_environment(tmp_path: Path) -> None:
    config = load_config([], {"BENCH_DURATION": "3", "BENCH_ROUNDS": "1", "BENCH_SERVERS": "ours, baseline",
                              "BENCH_OUT": str(tmp_path)})  # fmt: skip
    assert (config.duration_s, config.rounds, config.servers, config.out) == (3.0, 1, ("ours", "baseline"), tmp_path)
    assert load_config(["--rounds", "4"], {"BENCH_ROUNDS": "1"}).rounds == 4
    with pytest.raises(SystemExit):
        load_config(["--servers", "ours,triton"], {})


def test_process_helpers_see_this_process() -> None:
    assert os.getpid() in descendants(os.getpid())
    assert Memory.of_tree(os.getpid()).total_mb > 0
    assert 0 < free_port() < 65536


def test_a_server_that_exits_is_reported_and_its_group_stopped(tmp_path: Path) -> None:
    def exits(_context: Context, _kind: BenchKind, _ports: Ports) -> Launch:
        return Launch([sys.executable, "-c", "raise SystemExit(3)"], dict(os.environ), tmp_path)

    spec = ServerSpec("broken", "broken", V1, 1, exits)
    context = Context(Path(sys.executable), BenchRegistry("sqlite:///unused.db", tmp_path), tmp_path, None, "n/a")
    with (
        pytest.raises(ServerFailed, match=r"failed to start \(exit 3\)"),
        serve(spec, context, "forest", tmp_path / "broken.log") as running,
    ):
        running.wait_ready(timeout_s=30)
    assert running.process.returncode == 3
    assert "raise SystemExit(3)" in (tmp_path / "broken.log").read_text()


# --- issue 15: the floor, CPU per request, every round, growth --------------------------------------------------


def _round(rate: float, p50_ms: float, p99_ms: float, cpu_s: float | None, seconds: float = 10.0) -> LoadResult:
    return LoadResult(seconds, {200: round(rate * seconds)}, 0, {50: p50_ms / 1000, 99: p99_ms / 1000})


def _rounds(server: str, scenario: str, *rounds: tuple[float, float, float, float | None]) -> list[Measurement]:
    """(req/s, p50 ms, p99 ms, CPU s) per round."""
    return [Measurement(server, scenario, i, _round(*r), 100.0, cpu_s=r[3]) for i, r in enumerate(rounds)]


FLOOR_RUN = [
    *_rounds("floor", "1row@50", (20_000, 2, 4, 10.0), (22_000, 2, 5, 11.0), (21_000, 2, 4, 10.5)),
    *_rounds("ours", "1row@50", (9_000, 4, 9, 12.0), (12_000, 4, 12, 13.0), (11_000, 5, 8, 12.1)),
    *_rounds("ours-w2", "100row@8", (800, 9, 20, 9.0)),
    *_rounds("ours", "100row@8", (400, 18, 30, 8.0)),
]


def test_shares_of_the_floor_spread_and_cpu_per_request() -> None:
    summaries = report.summarize(FLOOR_RUN)
    ours = summaries[("ours", "1row@50")]

    assert report.floor_share(summaries, "ours", "1row@50") == pytest.approx(11_000 / 21_000)
    assert ours.rounds_req_per_s == pytest.approx((9_000, 12_000, 11_000))
    assert ours.rounds_p99_ms == pytest.approx((9, 12, 8))
    # Round by round 12 s / 90k, 13 s / 120k, 12.1 s / 110k requests: per 1,000, the median is 0.11 s.
    assert ours.cpu_s_per_1k == pytest.approx(0.11)
    # The logreg model is measured against the floor's 1-row @50: the floor serves no model.
    logreg = report.summarize([*FLOOR_RUN, *_rounds("ours", "logreg-1row@50", (10_500, 4, 9, 12.0))])
    assert report.floor_share(logreg, "ours", "logreg-1row@50") == pytest.approx(0.5)
    assert report.floor_share(summaries, "ours", "100row@8") is None  # no floor at 100 rows in this run


def test_floor_table_shows_every_round_and_flags_errors() -> None:
    failing = [Measurement("baseline", "1row@50", 0, LoadResult(10, {200: 1000, 503: 4}, 1, {50: 0.05, 99: 0.2}))]
    summaries = report.summarize([*FLOOR_RUN, *failing])
    table = report.floor_table(summaries, {"floor": "the floor"}, ["floor", "ours", "baseline"])
    ours = next(line for line in table.splitlines() if line.startswith("| ours ") and "1-row @50" in line)
    cells = [cell.strip() for cell in ours.strip("|").split("|")]

    assert cells == ["ours", "1-row @50", "11,000", "52%", "9,000–12,000", "4.0 / 4.0 / 5.0", "9.0 / 12.0 / 8.0",
                     "8.0–12.0", "0.11", "—", "0", "3/3"]  # fmt: skip
    assert "| the floor " in table and "100%" in table
    assert "5 ✗" in next(line for line in table.splitlines() if line.startswith("| baseline"))
    # A round lost to a failed start is said, not hidden behind the median of the others.
    lost = [*FLOOR_RUN, Measurement("ours", "1row@50", 3, failure="not ready after 90 s")]
    table = report.floor_table(report.summarize(lost), {}, ["ours"])
    assert "3/4 ✗ (not ready after 90 s)" in table


def test_goals_of_issue_15() -> None:
    results = _results(FLOOR_RUN)
    two_rounds = _results(_rounds("ours", "1row@50", (9_000, 4, 9, None), (9_000, 4, 9, None)))

    assert report.floor_share_at_least("1row@50", 0.5)(results, "ours") == "met (52%)"
    assert report.floor_share_at_least("1row@50", 0.6)(results, "ours") == "not met (52%)"
    assert report.p99_every_round_at_most("1row@50", 10, 3)(results, "ours") == "not met (worst 12.0 ms)"
    assert report.p99_every_round_at_most("1row@50", 12, 3)(results, "ours") == "met (worst 12.0 ms)"
    assert report.p99_every_round_at_most("1row@50", 10, 3)(two_rounds, "ours").startswith("n/a (2 of 3 rounds")
    assert report.workers_scale_at_least("100row@8", "ours", 1.6)(results, "ours-w2") == "met (2.00×)"
    assert report.workers_scale_at_least("100row@8", "ours", 1.6)(results, "ours") == "n/a"
    verdicts = report.judge(results, ["ours", "ours-w2"], report.FLOOR_GOALS)
    assert len(verdicts) == len(report.FLOOR_GOALS) and all(len(cells) == 2 for _, cells in verdicts)


def test_the_workers_verdict_says_what_hey_on_the_same_cores_leaves() -> None:
    # One worker: 800 req/s at 1.25 CPU-s per 1k (one core). Two: 1,000 req/s at 1.8, hey 0.25 per 1k.
    one = LoadResult(10, {200: 8_000}, 0, {99: 0.02}, client_cpu_s=1.6)
    two = LoadResult(10, {200: 10_000}, 0, {99: 0.02}, client_cpu_s=2.5)
    run = [Measurement("ours", "100row@8", 0, one, cpu_s=10.0), Measurement("ours-w2", "100row@8", 0, two, cpu_s=18.0)]
    results = report.Results(report.summarize(run), {}, {"ours-w2": 2}, cores=2)

    assert results.summaries[("ours-w2", "100row@8")].client_cpu_s_per_1k == pytest.approx(0.25)
    # 2 cores ÷ (1.25 + 0.25) ms per request = 1,333 req/s = 1.67× one worker's 800
    assert report.workers_scale_at_least("100row@8", "ours", 1.6)(results, "ours-w2") == (
        "not met (1.25×; CPU per request 1.44× one worker's; hey 0.25 CPU s / 1k req on the same 2 cores: "
        "at one worker's cost the cores allow 1.67×)"
    )


# --- issue 11: the typed model ------------------------------------------------------------------------------------

TYPED_RUN = [
    *_measure("ours", "typed-1row@50", 3000), *_measure("baseline", "typed-1row@50", 100),
    *_measure("mlflow", "typed-1row@50", 250), *_measure("mlserver", "typed-1row@50", 200),
]  # fmt: skip


def test_goals_of_issue_11_judge_the_typed_model_against_its_fastest_peer() -> None:
    best_of = report.at_least_best_of("typed-1row@50", PEERS, 10)
    # The obvious predictor could not serve the string column: named, not counted as the slowest peer.
    lost = [Measurement("baseline", "typed-1row@50", 0, failure="bad response (500: could not convert string)")]
    without_baseline = [m for m in TYPED_RUN if m.server != "baseline"] + lost

    assert best_of(_results(TYPED_RUN), "ours") == "met (12.0× mlflow)"
    assert report.at_least_best_of("typed-1row@50", PEERS, 15)(_results(TYPED_RUN), "ours") == "not met (12.0× mlflow)"
    assert best_of(_results(without_baseline), "ours") == "met (12.0× mlflow; no number from baseline)"
    assert best_of(_results(_measure("ours", "typed-1row@50", 3000)), "ours") == "n/a"
    assert best_of(_results(TYPED_RUN), "ours-w2") == "n/a"
    verdicts = report.judge(_results(TYPED_RUN), ["ours"], report.TYPED_GOALS)
    assert verdicts == [("typed 1-row @50: ≥ 10× the best of baseline/mlflow/mlserver", ["met (12.0× mlflow)"]),
                        ("typed 1-row @50: p99 ≤ 50 ms", ["met (20.0 ms)"])]  # fmt: skip


def test_the_typed_scenarios_run_ours_and_every_peer_with_typed_bodies(tmp_path: Path) -> None:
    for key in ("typed-1row@50", "typed-100row@8"):
        scenario = SCENARIO_BY_KEY[key]
        assert scenario.kind == "typed"
        assert [server for server in SERVERS if scenario.runs(server, growth=True)] == ["ours", *PEERS]
    assert SCENARIO_BY_KEY["typed-1row@50"].floor_key == "1row@50"  # the floor serves no model: its own run
    assert "typed" in KINDS and MODEL_NAMES["typed"] not in (MODEL_NAMES["forest"], MODEL_NAMES["logreg"])
    bench = Bench(Config(1, 1, 0, ("ours",), ("typed-1row@50",), tmp_path), "hey", _context(tmp_path))
    typed, forest = (json.loads(bench.body(V1, kind, 1).read_text()) for kind in ("typed", "forest"))
    assert typed["instances"][0]["equipment_type"] in EQUIPMENT_TYPES
    assert isinstance(forest["instances"][0], list)


def test_the_report_has_the_typed_rows_and_goals(tmp_path: Path) -> None:
    bench = Bench(Config(1, 1, 0, ("ours", *PEERS), ("typed-1row@50",), tmp_path), "hey", _context(tmp_path))
    bench.measurements += TYPED_RUN
    text, data = render({"date": "now", "nproc": 2, "cpu": "cpu", "python": "3", "versions": {}, "mlserver": "no",
                         "rounds": 1, "duration_s": 1, "warmup_s": 0}, bench)  # fmt: skip

    assert "## Goals (issue 11" in text and "| typed 1-row @50: p99 ≤ 50 ms " in text
    assert data["targets"]["typed 1-row @50: ≥ 10× the best of baseline/mlflow/mlserver"] == {
        "ours": "met (12.0× mlflow)"}  # fmt: skip
    assert any(line.startswith("| typed 1-row @50 | ours ") and "30.0×" in line for line in text.splitlines())


# --- issue 25: a native XGBoost Booster and a forest logged without a signature -----------------------------------

LOGGED_KEYS = ("booster-1row@50", "nosig-1row@50")


def test_the_logged_models_run_ours_and_mlflow_serve_against_the_floors_one_row(tmp_path: Path) -> None:
    for key, kind in zip(LOGGED_KEYS, ("booster", "nosig"), strict=True):
        scenario = SCENARIO_BY_KEY[key]
        assert (scenario.kind, scenario.rows, scenario.concurrency) == (kind, 1, 50)
        assert [server for server in SERVERS if scenario.runs(server, growth=True)] == ["ours", "mlflow"]
        assert scenario.floor_key == "1row@50" and kind in KINDS
    assert len({MODEL_NAMES[kind] for kind in KINDS}) == len(KINDS)
    bench = Bench(Config(1, 1, 0, ("ours", "mlflow"), LOGGED_KEYS, tmp_path), "hey", _context(tmp_path))
    for kind in ("booster", "nosig"):  # the demo's columns in their order: rows for v1, named columns for mlflow
        assert len(json.loads(bench.body(V1, kind, 1).read_text())["instances"][0]) == len(FEATURE_NAMES)
        split = json.loads(bench.body(SERVERS["mlflow"].protocol, kind, 1).read_text())["dataframe_split"]
        assert split["columns"] == list(FEATURE_NAMES)
    run = [*FLOOR_RUN, *_measure("ours", "booster-1row@50", 10_500), *_measure("mlflow", "nosig-1row@50", 420)]
    summaries = report.summarize(run)
    assert report.floor_share(summaries, "ours", "booster-1row@50") == pytest.approx(0.5)
    assert report.floor_share(summaries, "mlflow", "nosig-1row@50") == pytest.approx(0.02)
    table = report.floor_table(summaries, {}, ["floor", "ours", "mlflow"])
    assert any(line.startswith("| ours ") and "booster 1-row @50" in line and "50%" in line
               for line in table.splitlines())  # fmt: skip


def test_the_booster_is_native_and_signed_from_its_training_frame(tmp_path: Path) -> None:
    import mlflow
    import xgboost as xgb

    booster, frame = logged_models.fit_booster(rows=200, rounds=5)
    mlflow.xgboost.save_model(booster, str(tmp_path / "model"), **logged_models.booster_arguments(booster, frame))
    loaded = mlflow.pyfunc.load_model(str(tmp_path / "model"))
    inputs = {column.name: column.type.name for column in loaded.metadata.get_input_schema().inputs}
    sent = payloads.sample("booster", 4)

    assert isinstance(mlflow.xgboost.load_model(str(tmp_path / "model")), xgb.Booster)  # not an XGBClassifier
    assert inputs == {name: "double" for name in FEATURE_NAMES}
    assert booster.feature_names == list(FEATURE_NAMES)
    probabilities = np.asarray(loaded.predict(sent))  # binary:logistic: pyfunc answers the probability
    assert probabilities == pytest.approx(booster.predict(xgb.DMatrix(sent)))
    assert ((probabilities > 0) & (probabilities < 1)).all()


def test_the_unsigned_forest_has_only_its_own_column_names(tmp_path: Path) -> None:
    import mlflow

    forest, _ = logged_models.fit_unsigned_forest(rows=200, n_estimators=5)
    mlflow.sklearn.save_model(forest, str(tmp_path / "model"), **logged_models.unsigned_arguments())
    loaded = mlflow.pyfunc.load_model(str(tmp_path / "model"))
    sent = payloads.sample("nosig", 4)

    assert loaded.metadata.signature is None and loaded.metadata.saved_input_example_info is None
    assert list(forest.feature_names_in_) == list(FEATURE_NAMES)
    assert list(loaded.predict(sent)) == list(forest.predict(sent))


def _growth_run() -> list[Measurement]:
    measurements = []
    for server, speed in (("floor", 20.0), ("ours", 4.0), ("baseline", 0.2)):
        for key in (*ROWS_AXIS, *CONCURRENCY_AXIS):
            scenario = SCENARIO_BY_KEY[key]
            rate = speed * 1000 / scenario.rows**0.5
            measurements += _rounds(server, key, (rate, 1, 2 + scenario.concurrency / speed, None))
    return measurements


def test_growth_tables_use_rows_per_second_on_the_rows_axis() -> None:
    summaries = report.summarize(_growth_run())
    rows = report.growth_table(summaries, {}, ["ours", "baseline"], ROWS_AXIS)
    concurrency = report.growth_table(summaries, {}, ["ours"], CONCURRENCY_AXIS)

    assert rows is not None and concurrency is not None
    headers = [cell.strip() for cell in rows.splitlines()[0].strip("|").split("|")]
    assert headers == ["server: rows/s (p99)", "1-row @8", "10-row @8", "100-row @8", "1000-row @8"]
    # 1,000 rows at 4000/√1000 = 126.5 req/s (1,265 answers in 10 s): 126,500 rows/s; p99 2 + 8/4 ms.
    assert "126,500 (4.0 ms)" in rows
    assert "4,000 (52.0 ms)" in concurrency  # 1 row @200
    assert report.growth_table(report.summarize(FLOOR_RUN), {}, ["ours"], ROWS_AXIS) is None  # 2 points needed
    assert report.growth_tables(report.summarize(FLOOR_RUN), {}, ["ours"]) == ""


def test_growth_chart_is_a_png(tmp_path: Path) -> None:
    chart = growth_chart(report.summarize(_growth_run()), {"ours": "ours"}, ["floor", "ours", "baseline"],
                         tmp_path / "out" / "growth.png")  # fmt: skip

    assert chart == tmp_path / "out" / "growth.png"
    assert chart.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    # Runs so short that hey gave no p99 at all: the latency panels are empty, the chart is still drawn.
    untimed = [Measurement("mlflow", key, 0, LoadResult(1.0, {200: 20})) for key in ("1row@1", "1row@50")]
    assert growth_chart(report.summarize(untimed), {}, ["mlflow"], tmp_path / "untimed.png") is not None
    assert growth_chart(report.summarize(FLOOR_RUN), {}, ["ours"], tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()


def test_growth_is_a_knob_and_adds_the_grid_to_the_growth_servers_only() -> None:
    assert load_config([], {}).growth is False
    assert load_config([], {"BENCH_GROWTH": "1"}).growth is True
    assert load_config(["--no-growth"], {"BENCH_GROWTH": "1"}).growth is False
    grid_only = SCENARIO_BY_KEY["1000row@8"]
    assert not any(grid_only.runs(server, growth=False) for server in SERVERS)
    assert [server for server in SERVERS if grid_only.runs(server, growth=True)] == list(GROWTH_SERVERS)
    assert SCENARIO_BY_KEY["1row@1"].runs("mlflow", growth=False)
    assert SCENARIO_BY_KEY["1row@50"].runs("floor", growth=False)  # the floor is in every default run
    assert not SCENARIO_BY_KEY["1row@200"].runs("ours-cached", growth=True)


def _context(tmp_path: Path, feature_repo: Path | None = None) -> Context:
    registry = BenchRegistry("sqlite:///unused.db", tmp_path)
    return Context(Path(sys.executable), registry, tmp_path, None, "n/a", feature_repo, "no Feast repo (test)")


def _flag(argv: list[str], name: str) -> str | None:
    return argv[argv.index(name) + 1] if name in argv else None


def test_ours_three_ways_launch_as_documented(tmp_path: Path) -> None:
    context = _context(tmp_path, feature_repo=tmp_path / "repo")
    fresh = [SERVERS["ours"].launcher(context, "forest", Ports.pick()).argv for _ in range(2)]
    kept = [SERVERS["ours-cached"].launcher(context, "forest", Ports.pick()).argv for _ in range(2)]
    ports = Ports.pick()
    serve_flags = SERVERS["ours-serve"].launcher(context, "forest", ports).argv
    make_serve = make_serve_argv(context.python, "predictive_maintenance", ports, Path.cwd())

    assert _flag(fresh[0], "--model_cache_dir") != _flag(fresh[1], "--model_cache_dir")  # empty on every start
    assert _flag(kept[0], "--model_cache_dir") == _flag(kept[1], "--model_cache_dir")  # the restart finds it full
    assert SERVERS["ours-cached"].restart_in_place and not SERVERS["ours"].restart_in_place
    # make serve's own command, flag for flag; only the paths are the bench's.
    assert [word for word in serve_flags if word.startswith("--")] == [w for w in make_serve if w.startswith("--")]
    assert serve_flags[:3] == [sys.executable, "-m", "predictor"] and _flag(serve_flags, "--http_port") == str(
        ports.http
    )
    assert _flag(serve_flags, "--feature_store") == str(tmp_path / "repo")
    assert _flag(serve_flags, "--tracking_uri") == context.registry.tracking_uri
    assert _flag(serve_flags, "--model_cache_dir") not in (_flag(kept[0], "--model_cache_dir"), None)
    assert "--feature_store" not in kept[0]
    with pytest.raises(ServerFailed, match="no Feast repo"):
        SERVERS["ours-serve"].launcher(_context(tmp_path), "forest", Ports.pick())


def _shape(value: Any) -> Any:
    """The JSON's structure with every leaf replaced by its type."""
    if isinstance(value, dict):
        return {key: _shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_shape(item) for item in value]
    return type(value).__name__


def test_the_floor_answers_what_ours_answers_for_one_row(tmp_path: Path, demo_server: PredictorProcess) -> None:
    body = json.dumps(payloads.v1_body(payloads.sample("forest", 1))).encode()
    with serve(SERVERS["floor"], _context(tmp_path), "forest", tmp_path / "floor.log") as floor:
        floor.wait_ready(timeout_s=60)
        floors = httpx.post(floor.predict_url, content=body, headers={"Content-Type": "application/json"}).json()
    ours = httpx.post(f"{demo_server.http_url}/v1/models/{demo_server.model_name}:predict", content=body,
                      headers={"Content-Type": "application/json"}).json()  # fmt: skip

    assert _shape(floors) == _shape(ours)
    assert floors["model_name"] == ours["model_name"]


_BURN_CHILD = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass"
_BURN = f"""
import subprocess, sys, time
start = time.process_time()
while time.process_time() - start < 0.3:
    pass
subprocess.run([sys.executable, "-c", {_BURN_CHILD!r}])
print(time.process_time(), flush=True)
time.sleep(60)
"""


def test_cpu_of_a_process_group_counts_its_reaped_children(tmp_path: Path) -> None:
    """A real group: a leader that burns 0.3 s of CPU, then waits for a child that burns 0.3 s more and exits."""
    spawned = time.monotonic()
    with subprocess.Popen([sys.executable, "-c", _BURN], stdout=subprocess.PIPE, text=True,
                          start_new_session=True) as leader:  # fmt: skip
        try:
            assert leader.stdout is not None
            own_cpu = float(leader.stdout.readline())  # the leader's own CPU, child done
            used = group_cpu_s(leader.pid)
            wall = time.monotonic() - spawned
        finally:
            os.killpg(leader.pid, signal.SIGKILL)

    # /proc counts in clock ticks (10 ms): the leader's own time, then the reaped child's 0.3 s on top of it.
    assert used >= own_cpu + 0.3 - 0.05
    # One process after the other, so no more than the wall time (it would be far more with anyone else's counted).
    assert used <= wall + 0.1
    assert group_cpu_s(leader.pid) == 0.0  # the group is gone


@pytest.mark.skipif(shutil.which("hey") is None, reason="the benchmark's load generator `hey` is not installed")
def test_a_short_run_of_the_floor_restarted_in_place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole path of one server: a first start and stop, the start measured, a load run charged with CPU, the
    report; nothing about the numbers is asserted but that they are there."""
    monkeypatch.setitem(SERVERS, "floor", dataclasses.replace(SERVERS["floor"], restart_in_place=True))
    config = Config(0.5, 1, 0, ("floor",), ("1row@50",), tmp_path)
    bench = Bench(config, str(shutil.which("hey")), _context(tmp_path))
    bench.run()
    text, data = render({"date": "now", "nproc": 2, "cpu": "cpu", "python": "3", "versions": {}, "mlserver": "no",
                         "rounds": 1, "duration_s": 0.5, "warmup_s": 0}, bench)  # fmt: skip

    assert (tmp_path / "logs" / "r1-floor-forest.first.log").exists()
    [measurement] = bench.measurements
    assert measurement.failure is None and measurement.result is not None and measurement.result.ok > 0
    assert measurement.cpu_s is not None and measurement.cpu_s >= 0
    assert "## Against the floor" in text and "100%" in text
    assert data["summaries"][0]["cpu_s_per_1k"] is not None


# --- issue 26: predictions by equipment id ------------------------------------------------------------------------

WRK_LINE = (
    '{"wrk": 1, "duration_us": 8014421, "responses": 29465, "non_2xx_3xx": 5, "connect": 0, "read": 2, '
    '"write": 0, "timeout": 1, "percentiles_us": {"10": 9620, "50": 13628, "99": 19713}}'
)


def test_wrks_summary_line_is_parsed_and_throughput_counts_2xx_only() -> None:
    result = parse_wrk("Running 8s test @ http://127.0.0.1:1/\n  1 threads and 50 connections\n" + WRK_LINE + "\n")

    assert result.duration_s == pytest.approx(8.014421)
    assert result.ok == 29_460 and result.status_counts == {200: 29_460, 500: 5}
    assert result.transport_errors == 3 and result.errors == 8  # 5 answers that are not 2xx/3xx, 3 socket errors
    assert result.ok_per_s == pytest.approx(29_460 / 8.014421)
    assert result.percentile_ms(50) == pytest.approx(13.628) and result.percentile_ms(99) == pytest.approx(19.713)
    with pytest.raises(HarnessError, match="no summary line"):
        parse_wrk("unable to connect to 127.0.0.1:1 Connection refused")


def test_by_id_scenarios_run_the_servers_with_feast_against_their_raw_path() -> None:
    for key, raw in (("byid-1row@50", "raw-1row@50"), ("byid-100row@8", "raw-100row@8")):
        scenario, twin = SCENARIO_BY_KEY[key], SCENARIO_BY_KEY[raw]
        assert scenario.by_id and scenario.kind == "forest" and scenario.raw_key == raw
        assert [server for server in SERVERS if scenario.runs(server, growth=True)] == list(BY_ID_SERVERS)
        # its raw path, side by side: the same server, rows and concurrency, the features sent, by the same client
        assert [server for server in SERVERS if twin.runs(server, growth=True)] == list(BY_ID_SERVERS)
        assert not twin.by_id and (twin.kind, twin.rows, twin.concurrency) == ("forest", scenario.rows,
                                                                               scenario.concurrency)  # fmt: skip
        assert scenario.load == twin.load == "wrk"
    assert SCENARIO_BY_KEY[FLEET].load == "wrk" and SCENARIO_BY_KEY[FLEET].raw_key is None
    assert SCENARIO_BY_KEY["1row@50"].raw_key is None and SCENARIO_BY_KEY["1row@50"].load == "hey"
    for server in BY_ID_SERVERS:  # Feast on, and the bodies are KServe v1
        assert SERVERS[server].feature_repo and SERVERS[server].protocol == V1 and SERVERS[server].restart_in_place


def test_each_worker_names_its_own_ids_of_the_bench_feature_repo(tmp_path: Path) -> None:
    bench = Bench(Config(1, 1, 0, BY_ID_SERVERS, ("byid-1row@50",), tmp_path), "hey", _context(tmp_path))
    one = [json.loads(body.read_text()) for body in bench.scenario_bodies(V1, SCENARIO_BY_KEY["byid-1row@50"])]
    hundred = [json.loads(body.read_text()) for body in bench.scenario_bodies(V1, SCENARIO_BY_KEY["byid-100row@8"])]
    fleet = [json.loads(body.read_text()) for body in bench.scenario_bodies(V1, SCENARIO_BY_KEY[FLEET])]
    stored = set(equipment_ids(BENCH_EQUIPMENT))

    assert len(one) == 50 and all(body == {"instances": [{ENTITY_KEY: body["instances"][0][ENTITY_KEY]}]}
                                  for body in one)  # fmt: skip
    ids = [body["instances"][0][ENTITY_KEY] for body in one]
    assert len(set(ids)) == 50 and set(ids) <= stored  # 50 different ids in flight, all materialized
    assert {entity_id.split("-")[0] for entity_id in ids} == set(EQUIPMENT_TYPES)
    assert len(hundred) == 8 and len({json.dumps(body) for body in hundred}) == 8
    assert all(len({row[ENTITY_KEY] for row in body["instances"]}) == 100 for body in hundred)
    assert len({row[ENTITY_KEY] for body in hundred for row in body["instances"]}) == 800
    assert {row[ENTITY_KEY] for body in hundred for row in body["instances"]} <= stored
    # the fleet: one request naming every one of the 10,000 materialized ids once
    assert (
        len(fleet) == 1
        and len(fleet[0]["instances"]) == 10_000
        and {row[ENTITY_KEY] for row in fleet[0]["instances"]} == stored
    )
    assert bench.scenario_bodies(V1, SCENARIO_BY_KEY["raw-1row@50"]) == [bench.body(V1, "forest", 1)]
    with pytest.raises(ValueError, match="holds 10000"):
        payloads.by_id_workers(BENCH_EQUIPMENT + 1, 1)


BY_ID_RUN = [
    *_rounds("ours-serve", "raw-1row@50", (8_000, 5, 10, None), (10_000, 4, 9, None)),
    *_rounds("ours-serve", "byid-1row@50", (2_000, 20, 40, None), (3_000, 15, 30, None)),
    *_rounds("ours-serve-at", "raw-1row@50", (9_000, 5, 10, None)),
    *_rounds("ours-serve-at", "byid-1row@50", (600, 80, 200, None)),
    Measurement("ours-serve-at", "byid-100row@8", 0, failure="bad response (404: no features stored)"),
]


def test_a_fleet_is_reported_in_rows_per_second_against_its_goal() -> None:
    run = [
        *_rounds("ours-serve", FLEET, (12, 80, 95, None), (8, 120, 140, None)),  # req/s of 10,000 rows each
        *_rounds("ours-serve-at", FLEET, (5, 200, 210, None)),
    ]
    table = report.fleet_table(report.summarize(run), {}, list(BY_ID_SERVERS))
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.strip("|").split("|")] for line in table.splitlines()}

    assert rows["ours-serve"][1] == "100,000" and rows["ours-serve"][5] == "≥ 100,000 rows/s: met"
    assert rows["ours-serve-at"][1] == "50,000" and rows["ours-serve-at"][5] == "≥ 100,000 rows/s: not met"
    assert report.fleet_table(report.summarize(FLOOR_RUN), {}, ["ours"]) == ""


def test_by_id_is_reported_as_a_share_of_the_same_servers_raw_path(tmp_path: Path) -> None:
    summaries = report.summarize(BY_ID_RUN)
    table = report.by_id_table(summaries, {}, list(BY_ID_SERVERS))
    serve_row = next(line for line in table.splitlines() if line.startswith("| ours-serve "))
    cells = [cell.strip() for cell in serve_row.strip("|").split("|")]

    assert report.raw_share(summaries, "ours-serve", "byid-1row@50") == pytest.approx(2_500 / 9_000)
    assert report.raw_share(summaries, "ours-serve-at", "byid-1row@50") == pytest.approx(600 / 9_000)
    assert report.raw_share(summaries, "ours-serve", "raw-1row@50") is None
    assert cells == ["ours-serve", "by id 1-row @50", "2,500", "17.5", "35.0", "9,000", "4.5 / 9.5", "27.8%",
                     "25.0% / 30.0%", "0"]  # fmt: skip
    assert "6.7%" in table and "bad response (404: no features stored)" in table
    assert report.by_id_table(report.summarize(FLOOR_RUN), {}, ["ours"]) == ""
    bench = Bench(Config(1, 2, 0, BY_ID_SERVERS, ("raw-1row@50", "byid-1row@50"), tmp_path), "hey", _context(tmp_path))
    bench.measurements += BY_ID_RUN
    text, _ = render({"date": "now", "nproc": 2, "cpu": "cpu", "python": "3", "versions": {}, "mlserver": "no",
                      "rounds": 2, "duration_s": 1, "warmup_s": 0}, bench)  # fmt: skip
    assert "## By id (issue 26" in text and "27.8%" in text


def test_ours_serve_redis_runs_make_serves_command_on_the_repo_whose_store_is_redis(tmp_path: Path) -> None:
    context = dataclasses.replace(_context(tmp_path, feature_repo=tmp_path / "repo"),
                                  redis_feature_repo=tmp_path / "repo-redis")  # fmt: skip
    ports = Ports.pick()
    sqlite = SERVERS["ours-serve"].launcher(context, "forest", ports).argv
    redis = SERVERS["ours-serve-redis"].launcher(context, "forest", ports).argv

    assert _flag(sqlite, "--feature_store") == str(tmp_path / "repo")
    assert _flag(redis, "--feature_store") == str(tmp_path / "repo-redis")
    assert _flag(redis, "--model_cache_dir") != _flag(sqlite, "--model_cache_dir")  # a cache of its own
    others = ("--feature_store", "--model_cache_dir")
    assert [w for w in redis if w not in (_flag(redis, f) for f in others)] == [
        w for w in sqlite if w not in (_flag(sqlite, f) for f in others)]  # fmt: skip
    with pytest.raises(ServerFailed, match="no Redis here"):
        no_redis = dataclasses.replace(context, redis_feature_repo=None, redis_feature_repo_status="no Redis here")
        SERVERS["ours-serve-redis"].launcher(no_redis, "forest", ports)
    # the rows by id and their raw twins only: its other rows would be ours-serve's
    for server in ("ours-serve-redis", "ours-serve-fcache"):
        assert sorted(s.key for s in SCENARIOS if s.runs(server, growth=True)) == sorted(
            s.key for s in SCENARIOS if s.by_id or s.key.startswith("raw-"))  # fmt: skip
    cached = SERVERS["ours-serve-fcache"].launcher(context, "forest", ports).argv
    assert cached[-2:] == ["--feature_cache_s", "5"] and _flag(cached, "--feature_store") == str(tmp_path / "repo")
    assert _flag(cached, "--model_cache_dir") not in (
        _flag(sqlite, "--model_cache_dir"),
        _flag(redis, "--model_cache_dir"),
    )


@pytest.mark.skipif(not Path(REDIS_SERVER).exists(), reason="redis-server is not installed")
def test_the_runs_redis_serves_the_bench_repo_and_stops_with_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real redis-server and a real Feast repo on it (10 ids instead of the bench's 10,000)."""
    monkeypatch.setattr(registry_module, "BENCH_EQUIPMENT", 10)
    with contextlib.ExitStack() as stack:
        repo, status = prepare_redis_feature_repo(tmp_path, stack)
        assert repo is not None, status
        port = int(status.rsplit(" ", 1)[1].rstrip(")"))
        assert "type: redis" in (repo / "feature_store.yaml").read_text()
        source = FeastFeatureSource(repo, Metrics.create(CollectorRegistry()))
        fetched = asyncio.run(source.fetch(equipment_ids(10)[:3], list(FEATURE_NAMES)))
        source.close()
        assert fetched.values.shape == (3, len(FEATURE_NAMES))
    with pytest.raises(OSError):  # stopped with the run
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_ours_serve_at_runs_make_serves_command_from_the_revisions_checkout(tmp_path: Path) -> None:
    context = dataclasses.replace(_context(tmp_path, feature_repo=tmp_path / "repo"), revision_tree=tmp_path / "rev")
    ports = Ports.pick()
    here = SERVERS["ours-serve"].launcher(context, "forest", ports)
    there = SERVERS["ours-serve-at"].launcher(context, "forest", ports)

    assert [word for word in there.argv if word != _flag(there.argv, "--model_cache_dir")] == [
        word for word in here.argv if word != _flag(here.argv, "--model_cache_dir")]  # fmt: skip
    assert _flag(there.argv, "--model_cache_dir") != _flag(here.argv, "--model_cache_dir")  # a cache of its own
    assert there.cwd == tmp_path / "rev" and there.env["PYTHONPATH"] == str(tmp_path / "rev")
    assert SERVERS["ours-at"].launcher(context, "forest", ports).cwd == tmp_path / "rev"
    on_redis = dataclasses.replace(context, redis_feature_repo=tmp_path / "redis-repo")
    redis_there = SERVERS["ours-serve-redis-at"].launcher(on_redis, "forest", ports)
    redis_here = SERVERS["ours-serve-redis"].launcher(on_redis, "forest", ports)
    assert (
        _flag(redis_there.argv, "--feature_store")
        == _flag(redis_here.argv, "--feature_store")
        == str(tmp_path / "redis-repo")
    )
    assert redis_there.cwd == tmp_path / "rev"
    for server in ("ours-at", "ours-serve-at", "ours-serve-redis-at"):
        with pytest.raises(ServerFailed, match="BENCH_OURS_AT"):
            SERVERS[server].launcher(_context(tmp_path, feature_repo=tmp_path / "repo"), "forest", ports)
        with pytest.raises(SystemExit):
            load_config(["--servers", server], {})
    assert load_config(["--servers", "ours-serve,ours-serve-at"], {"BENCH_OURS_AT": "HEAD~1"}).at == "HEAD~1"


@pytest.mark.skipif(shutil.which("wrk") is None, reason="the by-id rows' load generator `wrk` is not installed")
def test_wrk_sends_the_bodies_in_turn(tmp_path: Path) -> None:
    """Against a real HTTP server of this test that keeps what it receives: every body arrives, as often as the
    others (request k carries body k mod n), and the result has what the tables need."""
    bodies = [payloads.write_json(tmp_path / f"{k}.json", {"instances": [{"equipment_id": f"pump-{k}"}]})
              for k in range(3)]  # fmt: skip
    received: list[bytes] = []

    class Keep(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as wrk expects

        def do_POST(self) -> None:
            received.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Keep)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/v1/models/m:predict"
        result = run_wrk(str(shutil.which("wrk")), url, bodies, 3, 0.5, log=tmp_path / "wrk.txt")  # 1 s: whole
        with pytest.raises(HarnessError, match="at least one body"):
            run_wrk(str(shutil.which("wrk")), url, [], 3, 0.5)
    finally:
        server.shutdown()
        server.server_close()

    counts = Counter(received)
    assert set(counts) == {body.read_bytes() for body in bodies}
    assert max(counts.values()) - min(counts.values()) <= 3  # in turn: at most one round apart (plus in flight)
    assert result.ok > 0 and result.errors == 0 and result.percentile_ms(50) is not None
    assert 1 <= result.duration_s < 3 and result.client_cpu_s is not None and result.client_cpu_s > 0
    assert (tmp_path / "wrk.txt").read_text().startswith(f"$ {shutil.which('wrk')} -t 1 -c 3 -d 1s")


OUR_START_LOG = """$ python -m predictor --model_name predictive_maintenance ...
2026-12-07 21:27:28,976 INFO predictor.features: feature view equipment_telemetry: reading ... directly
2026-12-07 21:27:29,093 INFO predictor.model: serving version 1 from the local model cache; checking the registry next
2026-12-07 21:27:29,112 INFO predictor.model: model predictive_maintenance version 1 is serving (flavor sklearn, ...)
2026-12-07 21:27:29,293 INFO uvicorn.error: Uvicorn running on http://0.0.0.0:60365 (Press CTRL+C to quit)
2026-12-07 21:27:40,000 INFO predictor.model: model predictive_maintenance version 2 is serving (flavor sklearn, ...)
"""


def test_a_cold_starts_milestones_are_read_from_our_servers_log() -> None:
    spawned = datetime.strptime("2026-12-07 21:27:27,000", "%Y-%m-%d %H:%M:%S,%f").timestamp()  # local, as logged
    steps = milestones(OUR_START_LOG, spawned, ready_after_s=2.4)

    assert steps == {"first log line": 1.976, "model serving": 2.112, "HTTP listening": 2.293, "ready": 2.4}
    assert list(steps) == ["first log line", "model serving", "HTTP listening", "ready"]  # in start order
    peer_log = "INFO:     Started server process [1]\nUvicorn running on http://0.0.0.0:1\n"
    assert milestones(peer_log, spawned, 3.0) == {}  # no timestamped line: a peer

    starts = [Start("ours-serve", "forest", r, 2.4, milestones=milestones(OUR_START_LOG, spawned - r, 2.4 + r))
              for r in range(3)] + [Start("mlflow", "forest", 0, 9.0)]  # fmt: skip
    table = report.milestones_table(report.summarize_starts(starts), {})
    [row] = [line for line in table.splitlines() if line.startswith("| ours-serve ")]
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells == ["ours-serve", "forest", "3.0", "3.1", "3.3", "3.4"]  # the medians of the three starts
    assert "mlflow" not in table and report.milestones_table(report.summarize_starts(starts[-1:]), {}) == ""
