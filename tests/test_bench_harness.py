"""The `make bench` harness's own logic: hey parsing, medians, ratios, targets, request bodies, knobs.

No server is started and nothing is timed: the benchmark's numbers are read from its report, never asserted.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from predictor.demo.columns import FEATURE_NAMES
from predictor.demo.training import ModelKind
from tests.bench import payloads, report
from tests.bench.load import HarnessError, HeyResult, parse_hey
from tests.bench.plan import Measurement, Start
from tests.bench.procs import Memory, descendants, free_port
from tests.bench.registry import BenchRegistry
from tests.bench.run import load_config
from tests.bench.servers import V1, Context, Launch, Ports, ServerFailed, ServerSpec, serve

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


def _run(rate: float, p99_s: float = 0.02, errors: int = 0, seconds: float = 10.0) -> HeyResult:
    statuses = {200: round(rate * seconds)} | ({500: errors} if errors else {})
    return HeyResult(seconds, statuses, 0, {50: p99_s / 2, 95: p99_s * 0.9, 99: p99_s})


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
    return report.Results(report.summarize(measurements), report.summarize_starts(starts or []), {"ours-w2": 2})


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
    rows = payloads.sample_rows(3)
    v1 = payloads.v1_body(rows)
    mlflow = payloads.mlflow_body(rows)
    v2 = payloads.v2_columns_body(rows)

    assert len(v1["instances"]) == 3 and all(isinstance(x, float) for row in v1["instances"] for x in row)
    assert mlflow["dataframe_split"]["columns"] == list(FEATURE_NAMES)
    assert [i["name"] for i in v2["inputs"]] == list(FEATURE_NAMES)
    assert v2["inputs"][1] == {"name": FEATURE_NAMES[1], "shape": [3, 1], "datatype": "FP64",
                               "data": [row[1] for row in rows]}  # fmt: skip
    assert len(payloads.sample_rows(1)) == 1


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
    def exits(_context: Context, _kind: ModelKind, _ports: Ports) -> Launch:
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
