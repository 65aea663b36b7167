"""Shadow scoring with two real versions of a classifier: the series grow, agreement is what the two models
really agree on, and neither a slow nor a failing shadow ever blocks or fails the caller."""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from predictor.demo.training import generate_telemetry, train
from predictor.metrics import ShadowMetrics
from predictor.monitoring.shadow import ShadowResult, ShadowScorer

LABELS = {"model_name": "pm", "model_version": "1", "shadow_version": "2"}


@pytest.fixture(scope="module")
def versions() -> tuple[Any, Any]:
    """Version 1 (the champion) and version 2 (the challenger: another seed, fewer trees)."""
    from sklearn.ensemble import RandomForestClassifier

    champion, _ = train("forest", rows=2000, seed=1)
    features, labels = generate_telemetry(2000, seed=2)
    challenger = RandomForestClassifier(n_estimators=40, max_depth=6, random_state=2).fit(features.to_numpy(), labels)
    return champion, challenger


def value(registry: CollectorRegistry, name: str) -> float:
    found = registry.get_sample_value(name, LABELS)
    assert found is not None, name
    return found


def scorer(registry: CollectorRegistry | ShadowMetrics, predict: Any, classes: Any, **options: Any) -> ShadowScorer:
    metrics = registry if isinstance(registry, ShadowMetrics) else ShadowMetrics.create(registry)
    return ShadowScorer(predict, classes, "pm", "1", "2", metrics, **options)


def test_the_challengers_series_grow_and_agreement_is_the_real_one(versions: tuple[Any, Any]) -> None:
    champion, challenger = versions
    registry = CollectorRegistry()
    results: list[ShadowResult] = []
    shadow = scorer(registry, challenger.predict_proba, challenger.classes_, on_result=results.append)
    features, _ = generate_telemetry(1000, seed=9)
    rows = features.to_numpy()
    try:
        for start in range(0, 1000, 20):  # 50 requests of 20 rows, as the live path answers them
            batch = rows[start : start + 20]
            live_proba = champion.predict_proba(batch)
            shadow.submit(batch, champion.classes_[live_proba.argmax(axis=1)], live_proba, f"req-{start}")
        assert shadow.flush()
    finally:
        shadow.close()
    live_labels = champion.predict(rows)
    expected_agreement = float(np.mean(live_labels == challenger.predict(rows)))
    assert 0.7 < expected_agreement < 1.0  # two genuinely different versions
    assert value(registry, "model_shadow_predictions_total") == 1000
    # one shadow call per pass of the worker, each for every request that gathered meanwhile
    assert 1 <= value(registry, "model_shadow_latency_seconds_count") <= 50
    assert value(registry, "model_shadow_probability_difference_count") == 1000
    gaps = np.abs(champion.predict_proba(rows) - challenger.predict_proba(rows)).max(axis=1)
    assert value(registry, "model_shadow_probability_difference_sum") == pytest.approx(gaps.sum())
    assert registry.get_sample_value("model_shadow_errors_total", LABELS) in (None, 0.0)
    assert [r.request_id for r in results][:2] == ["req-0", "req-20"]
    assert np.array_equal(np.concatenate([r.predictions for r in results]).astype(int), challenger.predict(rows))
    # close() removed the gauge; the snapshot kept the figure
    assert shadow.snapshot()["agreement_ratio"] == pytest.approx(expected_agreement, abs=1e-6)


def test_agreement_is_over_the_last_rows_only(versions: tuple[Any, Any]) -> None:
    champion, _ = versions
    registry = CollectorRegistry()
    shadow = scorer(registry, champion.predict_proba, champion.classes_, agreement_rows=100)
    rows = generate_telemetry(300, seed=4)[0].to_numpy()
    labels = champion.predict(rows)
    try:
        shadow.submit(rows[:200], 1 - labels[:200], None, "disagrees")  # the live side said the opposite
        shadow.submit(rows[200:], labels[200:], None, "agrees")
        assert shadow.flush()
        assert value(registry, "model_shadow_agreement_ratio") == 1.0
        assert registry.get_sample_value("model_shadow_probability_difference_count", LABELS) in (None, 0.0)
    finally:
        shadow.close()


def test_a_failing_shadow_never_reaches_the_caller(versions: tuple[Any, Any]) -> None:
    champion, _ = versions
    registry = CollectorRegistry()

    def broken(rows: Any) -> Any:
        raise RuntimeError("the challenger's artefact is corrupt")

    rows = generate_telemetry(10, seed=5)[0].to_numpy()
    live = champion.predict_proba(rows)
    metrics = ShadowMetrics.create(registry)
    for predict in (broken, lambda r: np.zeros((1, 7))):  # raises; answers a nonsense shape
        shadow = scorer(metrics, predict, champion.classes_)
        try:
            for i in range(5):
                shadow.submit(rows, live.argmax(axis=1), live, f"r{i}")  # must not raise
            assert shadow.flush()
        finally:
            shadow.close()
    assert value(registry, "model_shadow_errors_total") == 10
    assert registry.get_sample_value("model_shadow_predictions_total", LABELS) in (None, 0.0)


def test_submit_never_blocks_on_a_slow_shadow_and_counts_its_drops(versions: tuple[Any, Any]) -> None:
    champion, _ = versions
    registry = CollectorRegistry()
    release = threading.Event()

    def stuck(rows: Any) -> Any:
        release.wait(30)
        return champion.predict_proba(rows)

    shadow = scorer(registry, stuck, champion.classes_, queue_requests=4)
    rows = generate_telemetry(5, seed=6)[0].to_numpy()
    live = champion.predict_proba(rows)
    try:
        for i in range(200):
            shadow.submit(rows, live.argmax(axis=1), live, f"r{i}")
        # all 200 returned while the shadow is still stuck in its first call: none of them waited for it
        assert not release.is_set()
        assert value(registry, "model_shadow_dropped_total") >= 195
    finally:
        release.set()
        shadow.close()


def test_the_sample_rate_is_honoured(versions: tuple[Any, Any]) -> None:
    champion, _ = versions
    registry = CollectorRegistry()
    shadow = scorer(registry, champion.predict_proba, champion.classes_, sample_rate=0.0)
    rows = generate_telemetry(5, seed=7)[0].to_numpy()
    try:
        for i in range(20):
            shadow.submit(rows, np.zeros(5), None, f"r{i}")
        assert shadow.flush()
        assert shadow.snapshot()["scored_rows"] == 0
    finally:
        shadow.close()


def test_requests_from_two_live_versions_are_compared_each_in_its_own_class_order(versions: tuple[Any, Any]) -> None:
    """Stacked into one batch, requests keep the class order their live version answered in: a version whose
    classes come in the other order gives the same gaps."""
    from predictor.monitoring.shadow import ShadowBatch, compare

    champion, challenger = versions
    rows = generate_telemetry(6, seed=8)[0].to_numpy()
    live = champion.predict_proba(rows)
    labels = champion.classes_[live.argmax(axis=1)]
    reordered = list(champion.classes_)[::-1]
    requests = [
        (rows[:2], labels[:2], live[:2], "a", champion.classes_),
        (rows[2:4], labels[2:4], live[2:4, ::-1], "b", reordered),  # the same answer, columns reversed
        (rows[4:], labels[4:], live[4:], "c", champion.classes_),
    ]
    batch = ShadowBatch.of(requests)
    assert [(start, end) for start, end, _, _ in batch.live_probabilities] == [(0, 2), (2, 4), (4, 6)]
    outcome = compare(challenger.predict_proba, challenger.classes_, batch)
    expected = np.abs(challenger.predict_proba(rows) - live).max(axis=1)
    assert outcome.gaps == pytest.approx(expected)
    assert list(outcome.agree) == [int(a == b) for a, b in zip(challenger.predict(rows), labels, strict=True)]


def test_while_the_live_path_is_saturated_one_request_in_twenty_is_scored(versions: tuple[Any, Any]) -> None:
    """``busy`` (in the server: the event loop's thread on a CPU half the time or more) makes submit() queue only
    every 20th request; the others are counted as dropped, and the series keep growing from the sample."""
    from predictor.monitoring.shadow import BUSY_KEEP_EVERY

    champion, challenger = versions
    registry = CollectorRegistry()
    saturated = threading.Event()
    shadow = scorer(registry, challenger.predict_proba, challenger.classes_, busy=saturated.is_set)
    rows = generate_telemetry(1, seed=12)[0].to_numpy()
    live = champion.predict_proba(rows)
    try:
        shadow.submit(rows, live.argmax(axis=1), live, "calm")
        saturated.set()
        assert shadow.flush()  # that pass found the live path busy
        for i in range(200):
            shadow.submit(rows, live.argmax(axis=1), live, f"busy-{i}")
        assert shadow.flush()
        snapshot = shadow.snapshot()
        # the load stops: five more requests are shed, none kept, and yet they are counted and shedding ends
        for i in range(5):
            shadow.submit(rows, live.argmax(axis=1), live, f"last-busy-{i}")
        saturated.clear()
        deadline = time.monotonic() + 10
        while shadow.snapshot()["shed_requests"] < 195 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.6)  # a pass or two more: the last one found the process calm
        shadow.submit(rows, live.argmax(axis=1), live, "calm-again")
        assert shadow.flush()
        after = shadow.snapshot()
    finally:
        shadow.close()
    assert snapshot["scored_rows"] == 1 + 200 // BUSY_KEEP_EVERY
    assert snapshot["shed_requests"] == snapshot["dropped_requests"] == 200 - 200 // BUSY_KEEP_EVERY
    assert after["shed_requests"] == 195 and after["scored_rows"] == snapshot["scored_rows"] + 1
    assert value(registry, "model_shadow_dropped_total") == 195


def test_the_real_busy_signal_sheds_and_a_zero_share_never_does(versions: tuple[Any, Any]) -> None:
    """The Challenger's own busy test on this process's real CPU share, both ways: a CPU-bound stretch reads busy
    (at a share any work exceeds), a sleeping one idle (at the default half a core); with --shadow_busy_share 0
    there is no busy test at all, so nothing is ever shed."""
    from prometheus_client import CollectorRegistry as Registry

    from predictor.models.registry import LoadOptions
    from predictor.monitoring.challenger import Challenger

    options = LoadOptions("sqlite:///unused.db")
    touchy = Challenger("models:/pm@challenger", "pm", ShadowMetrics.create(Registry()), options, busy_share=1e-6)
    calm = Challenger("models:/pm@challenger", "pm", ShadowMetrics.create(Registry()), options)
    never = Challenger("models:/pm@challenger", "pm", ShadowMetrics.create(Registry()), options, busy_share=0)
    assert never._busy is None
    assert touchy._busy is not None and calm._busy is not None
    touchy._busy()  # the first reading opens the window
    deadline = time.monotonic() + 0.5
    while time.monotonic() < deadline:  # CPU-bound for two windows: this process is busy
        sum(range(10_000))
    assert touchy._busy()
    calm._busy()
    time.sleep(0.6)  # asleep for two windows: far below half a core
    assert not calm._busy()


def test_a_spinning_process_reads_busy_and_a_sleeping_one_idle() -> None:
    import subprocess
    import sys
    import time

    from predictor.monitoring import busy

    def share_of(program: str) -> float | None:
        child = subprocess.Popen([sys.executable, "-c", program])
        try:
            probe = busy.ProcessBusy(child.pid)
            time.sleep(busy.WINDOW_S * 4)
            return probe.share()
        finally:
            child.kill()
            child.wait(10)

    spinning = share_of("while True: pass")
    sleeping = share_of("import time; time.sleep(60)")
    assert spinning is not None and sleeping is not None  # Linux: /proc has the counters
    assert spinning > 0.3 > 0.1 > sleeping  # loose: a loaded machine gives a spinning process less than a core
