"""The monitoring component against real Prometheus tools: `promtool check rules` and `promtool test rules`
on the alert rules, and a real Prometheus on loopback scraping the real predictor, where the seed's queries,
the dashboard's queries and the alert expressions must all evaluate."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.k8s.kube import MANIFESTS, render, run, the
from tests.prometheus_server import Prometheus, binary, scrape, start_prometheus
from tests.servers import SEED_ROWS, wait_until

JOB = "predictive-maintenance"
MODEL = 'model_name="predictive_maintenance"'

# The seed document's queries, verbatim (plus the aggregated forms of the quantiles), and a pod count that
# works on our metric names.
SEED_QUERIES = [
    "rate(model_predictions_total[5m])",
    *[f"histogram_quantile({q}, rate(model_prediction_latency_seconds_bucket[5m]))" for q in ("0.50", "0.95", "0.99")],
    *[
        f"histogram_quantile({q}, sum by (le) (rate(model_prediction_latency_seconds_bucket[5m])))"
        for q in ("0.50", "0.95", "0.99")
    ],
    "rate(model_prediction_errors_total[5m])",
    f'count(up{{job=~".*{JOB}.*"}})',
    "count(model_loaded == 1)",
]


def prometheus_rule() -> dict[str, Any]:
    return the(render(MANIFESTS / "overlays" / "prod"), "PrometheusRule")


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in prometheus_rule()["spec"]["groups"] for rule in group["rules"]]


def dashboard_queries() -> list[str]:
    objects = render(MANIFESTS / "overlays" / "prod")
    (text,) = next(o for o in objects if o["kind"] == "ConfigMap" and "dashboard" in o["metadata"]["name"])[
        "data"
    ].values()
    return [target["expr"] for panel in json.loads(text)["panels"] for target in panel["targets"]]


def write_rule_file(directory: Path) -> Path:
    """The PrometheusRule's spec is a Prometheus rule file: `groups:` and nothing else."""
    path = directory / "rules.yaml"
    path.write_text(yaml.safe_dump(prometheus_rule()["spec"], sort_keys=False))
    return path


def test_promtool_accepts_the_alert_rules(tmp_path: Path) -> None:
    result = run([binary("promtool"), "check", "rules", str(write_rule_file(tmp_path))])
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout + result.stderr


def test_the_seeds_three_alerts_are_there() -> None:
    rules = {rule["alert"]: rule for rule in alert_rules()}
    assert "model_prediction_errors_total" in rules["PredictiveMaintenanceErrorRatioHigh"]["expr"]
    assert "0.95" in rules["PredictiveMaintenanceLatencyP95High"]["expr"]
    assert rules["PredictiveMaintenanceLatencyP95High"]["expr"].rstrip().endswith("> 0.5")
    assert "model_loaded" in rules["PredictiveMaintenanceModelNotLoaded"]["expr"]
    assert "model_loaded" in rules["PredictiveMaintenanceNoModelServing"]["expr"]
    assert "model_feature_drift_psi" in rules["PredictiveMaintenanceDriftHigh"]["expr"]
    assert rules["PredictiveMaintenanceDriftHigh"]["for"] == "15m"
    for rule in rules.values():
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def _series(metric: str, values: str, **labels: str) -> dict[str, str]:
    labels = {"model_name": "predictive_maintenance", "instance": "pod-a", "job": JOB, **labels}
    return {"series": metric + "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}", "values": values}


def _firing(alert: str, at: str, *label_sets: dict[str, str]) -> dict[str, Any]:
    return {"eval_time": at, "alertname": alert, "exp_alerts": [{"exp_labels": labels} for labels in label_sets]}


def test_the_alerts_fire_when_they_should_and_only_then(tmp_path: Path) -> None:
    """`promtool test rules` on synthetic series (one sample a minute): each alert fires after its `for`,
    on the right model version or pod, and stays silent for the healthy ones."""
    latency = "model_prediction_latency_seconds_bucket"
    tests = [
        {  # a canary (v2) failing half its requests next to a healthy v1; v3 fails every request
            "interval": "1m",
            "input_series": [
                _series("model_predictions_total", "0+600x30", model_version="1"),
                _series("model_prediction_errors_total", "0+3x30", model_version="1", error_type="bad_request"),
                _series("model_predictions_total", "0+30x30", model_version="2"),
                _series("model_prediction_errors_total", "0+30x30", model_version="2", error_type="internal"),
                _series("model_prediction_errors_total", "0+5x30", model_version="3", error_type="not_ready"),
            ],
            "alert_rule_test": [
                _firing("PredictiveMaintenanceErrorRatioHigh", "4m"),  # pending: `for: 5m`
                _firing(
                    "PredictiveMaintenanceErrorRatioHigh",
                    "12m",
                    {"severity": "critical", "model_version": "2"},
                    {"severity": "critical", "model_version": "3"},
                ),
            ],
        },
        {  # v1 answers in 0.5-1 s, v2 in under 100 ms
            "interval": "1m",
            "input_series": [
                *[_series(latency, "0+100x30", model_version="2", le=le) for le in ("0.1", "0.5", "1", "+Inf")],
                _series(latency, "0+0x30", model_version="1", le="0.1"),
                _series(latency, "0+2x30", model_version="1", le="0.5"),
                *[_series(latency, "0+100x30", model_version="1", le=le) for le in ("1", "+Inf")],
            ],
            "alert_rule_test": [
                _firing("PredictiveMaintenanceLatencyP95High", "8m"),  # pending: `for: 10m`
                _firing("PredictiveMaintenanceLatencyP95High", "15m", {"severity": "warning", "model_version": "1"}),
            ],
        },
        {  # pod-a never loads its model, pod-b serves
            "interval": "1m",
            "input_series": [
                _series("model_loaded", "0x20", model_version="1", instance="pod-a"),
                _series("model_loaded", "1x20", model_version="1", instance="pod-b"),
            ],
            "alert_rule_test": [
                _firing(
                    "PredictiveMaintenanceModelNotLoaded",
                    "10m",
                    {"severity": "warning", "instance": "pod-a", "job": JOB, "model_name": "predictive_maintenance"},
                ),
                _firing("PredictiveMaintenanceNoModelServing", "10m"),
            ],
        },
        {  # nothing serves at all
            "interval": "1m",
            "input_series": [_series("model_loaded", "0x20", model_version="1")],
            "alert_rule_test": [
                _firing("PredictiveMaintenanceNoModelServing", "3m"),
                _firing("PredictiveMaintenanceNoModelServing", "10m", {"severity": "critical"}),
            ],
        },
        {  # v1's temperature drifted (PSI 0.35) and so did its predicted classes; age did not; v2 is calm
            "interval": "1m",
            "input_series": [
                _series("model_feature_drift_psi", "0.35x30", model_version="1", feature="temperature_c"),
                _series(
                    "model_feature_drift_psi", "0.35x30", model_version="1", feature="temperature_c", instance="pod-b"
                ),
                _series("model_feature_drift_psi", "0.05x30", model_version="1", feature="age_months"),
                _series("model_prediction_drift_psi", "0.3x30", model_version="1"),
                _series("model_feature_drift_psi", "0.12x30", model_version="2", feature="temperature_c"),
                _series("model_prediction_drift_psi", "0.01x30", model_version="2"),
            ],
            "alert_rule_test": [
                _firing("PredictiveMaintenanceDriftHigh", "10m"),  # pending: `for: 15m`
                _firing(
                    "PredictiveMaintenanceDriftHigh",
                    "20m",
                    {"severity": "warning", "model_version": "1", "feature": "temperature_c"},
                    {"severity": "warning", "model_version": "1", "feature": "(predicted class)"},
                ),
            ],
        },
        {  # a short burst of drift (10 minutes) does not page
            "interval": "1m",
            "input_series": [
                _series("model_feature_drift_psi", "0.05x5 0.5x10 0.05x15", model_version="1", feature="load_ratio")
            ],
            "alert_rule_test": [
                _firing("PredictiveMaintenanceDriftHigh", "14m"),
                _firing("PredictiveMaintenanceDriftHigh", "25m"),
            ],
        },
        {  # healthy: traffic, fast answers, a model loaded everywhere
            "interval": "1m",
            "input_series": [
                _series("model_predictions_total", "0+600x30", model_version="1"),
                _series("model_loaded", "1x30", model_version="1"),
                *[_series(latency, "0+600x30", model_version="1", le=le) for le in ("0.1", "0.5", "+Inf")],
            ],
            "alert_rule_test": [_firing(rule["alert"], "20m") for rule in alert_rules()],
        },
    ]
    # exp_annotations must match exactly; the unit test is about when alerts fire and with which labels, so
    # it runs on the rules without annotations (`promtool check rules` above parses their templates).
    spec = prometheus_rule()["spec"]
    for group in spec["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    (tmp_path / "rules_test.yaml").write_text(
        yaml.safe_dump({"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": tests})
    )
    result = run([binary("promtool"), "test", "rules", "rules_test.yaml"], cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


# --- a real Prometheus scraping the real predictor ------------------------------------------------------


@pytest.fixture(scope="module")
def prometheus(demo_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    """Prometheus on a free loopback port, scraping the demo predictor every second, with our rules loaded."""
    directory = tmp_path_factory.mktemp("prometheus")
    isvc = the(render(MANIFESTS / "overlays" / "prod"), "InferenceService")
    path = isvc["spec"]["predictor"]["annotations"]["prometheus.io/path"]
    job = scrape(JOB, f"127.0.0.1:{demo_server.http_port}", path)
    server = start_prometheus(directory, [job], rule_files=[write_rule_file(directory)])
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def traffic(prometheus: Prometheus, demo_server: Any) -> Prometheus:
    """Predictions (and a few bad requests) spread over several scrapes, until every rate is non-zero."""
    predict = f"{demo_server.http_url}/v1/models/{demo_server.model_name}:predict"
    wanted = [
        "rate(model_predictions_total[5m]) > 0",
        "rate(model_prediction_errors_total[5m]) > 0",
        "rate(model_prediction_latency_seconds_count[5m]) > 0",
        f'up{{job="{JOB}"}} == 1',
    ]
    deadline = time.monotonic() + 30
    with httpx.Client(timeout=10) as client:
        while True:
            for _ in range(3):
                assert client.post(predict, json={"instances": [SEED_ROWS[0]]}).status_code == 200
            assert client.post(predict, json={"instances": [[1.0, 2.0]]}).status_code == 400
            if all(prometheus.query(expr) for expr in wanted):
                return prometheus
            if time.monotonic() >= deadline:  # a bound against a hang, not a speed check
                pytest.fail(f"rates still empty: { {expr: prometheus.query(expr) for expr in wanted} }")
            time.sleep(0.5)


@pytest.mark.parametrize("expr", SEED_QUERIES)
def test_the_seeds_queries_return_data(expr: str, traffic: Prometheus) -> None:
    values = traffic.values(expr)
    assert values, f"{expr} returned no series"
    # The shared demo server may carry series from earlier tests that saw no new events in the window (rate 0).
    assert all(math.isfinite(v) and v >= 0 for v in values) and any(v > 0 for v in values), values
    if expr.startswith("histogram_quantile"):
        assert all(v <= 2.5 for v in values), values  # below the largest finite bucket
    if expr.startswith("count("):
        assert values == [1.0]


# Drift and shadow series exist only once the server feeds predictor/monitoring (a baseline, --shadow_model_uri);
# until the request path does, their panels' queries must evaluate, and show data where there is some.
MONITORING_SERIES = ("model_feature_drift_psi", "model_prediction_drift_psi", "model_shadow_")


@pytest.mark.parametrize("expr", dashboard_queries())
def test_every_dashboard_panel_shows_data(expr: str, traffic: Prometheus) -> None:
    values = traffic.values(expr)
    if any(series in expr for series in MONITORING_SERIES):
        assert all(math.isfinite(v) for v in values), (expr, values)
        return
    assert values and all(math.isfinite(v) for v in values), (expr, values)


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda rule: rule["alert"])
def test_every_alert_expression_evaluates(rule: dict[str, Any], traffic: Prometheus) -> None:
    result = traffic.query(rule["expr"])
    if rule["alert"] in (
        "PredictiveMaintenanceModelNotLoaded",
        "PredictiveMaintenanceNoModelServing",
        "PredictiveMaintenanceLatencyP95High",
    ):
        assert result == [], f"{rule['alert']} would fire on a healthy predictor: {result}"


def test_prometheus_loaded_and_evaluates_our_rules(traffic: Prometheus) -> None:
    def evaluated() -> bool:
        groups = httpx.get(f"{traffic.url}/api/v1/rules", timeout=5).json()["data"]["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        return len(rules) == len(alert_rules()) and all(
            rule["health"] == "ok" and not rule["lastEvaluation"].startswith("0001") for rule in rules
        )

    wait_until(evaluated, 10, 0.2, "all rules evaluated with health ok")
    groups = httpx.get(f"{traffic.url}/api/v1/rules", timeout=5).json()["data"]["groups"]
    assert sorted(rule["name"] for group in groups for rule in group["rules"]) == sorted(
        rule["alert"] for rule in alert_rules()
    )
