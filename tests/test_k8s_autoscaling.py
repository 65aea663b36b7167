"""components/autoscaling's request-rate query, evaluated by a real Prometheus scraping the real predictor.

KEDA sends this query to Prometheus and divides the result by the replica count; the question here is
whether the query sees the predictor's own metric and only the pods it should. The same predictor is
scraped three times under the labels the cluster's kubernetes-pods job would attach: as a stable pod of
dcmms-ml, as a canary pod of dcmms-ml (fixed replicas: must not count), and as a pod of dcmms-ml-dev (another
environment in a shared Prometheus: must not count). The query must see exactly the first.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.k8s.kube import MANIFESTS, render, the
from tests.prometheus_server import scrape, start_prometheus
from tests.servers import SEED_ROWS

# The labels a Prometheus kubernetes-pods job (or a PodMonitor) attaches, per simulated pod.
PODS = {
    "stable": {"namespace": "dcmms-ml", "pod": "predictive-maintenance-predictor-7d9f8c6b5-x2x4k"},
    "canary": {"namespace": "dcmms-ml", "pod": "predictive-maintenance-canary-predictor-5c7d8b9f4-q8w2e"},
    "dev": {"namespace": "dcmms-ml-dev", "pod": "predictive-maintenance-predictor-6b5c4d3e2-h7j9k"},
}


def keda_query() -> str:
    isvc = the(render(MANIFESTS / "overlays" / "prod"), "InferenceService")
    (external,) = [
        m["external"] for m in isvc["spec"]["predictor"]["autoScaling"]["metrics"] if m["type"] == "External"
    ]
    query: str = external["metric"]["query"]
    return query


@pytest.fixture(scope="module")
def prometheus(demo_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    isvc = the(render(MANIFESTS / "overlays" / "prod"), "InferenceService")
    path = isvc["spec"]["predictor"]["annotations"]["prometheus.io/path"]
    target = f"127.0.0.1:{demo_server.http_port}"
    jobs = [scrape(name, target, path, **labels) for name, labels in PODS.items()]
    server = start_prometheus(tmp_path_factory.mktemp("prometheus-keda"), jobs)
    try:
        yield server.url
    finally:
        server.stop()


def instant(url: str, expr: str, at: float) -> float | None:
    response = httpx.get(f"{url}/api/v1/query", params={"query": expr, "time": at}, timeout=10)
    body = response.json()
    assert response.status_code == 200 and body["status"] == "success", (expr, body)
    result = body["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def test_the_keda_query_counts_the_stable_pods_of_prod_only(prometheus: str, demo_server: Any) -> None:
    query = keda_query()
    by_job = 'sum by (job) (rate(model_predictions_total{model_name="predictive_maintenance"}[1m]))'
    predict = f"{demo_server.http_url}/v1/models/{demo_server.model_name}:predict"
    deadline = time.monotonic() + 45
    with httpx.Client(timeout=10) as client:
        while True:
            for _ in range(5):
                assert client.post(predict, json={"instances": [SEED_ROWS[0]]}).status_code == 200
            now = time.time() - 1  # a moment every series has been scraped at
            keda = instant(prometheus, query, now)
            jobs = httpx.get(f"{prometheus}/api/v1/query", params={"query": by_job, "time": now}).json()
            rates = {r["metric"]["job"]: float(r["value"][1]) for r in jobs["data"]["result"]}
            if keda and len(rates) == len(PODS) and all(rates.values()):
                break
            assert time.monotonic() < deadline, (keda, rates)
            time.sleep(0.5)
    # Exactly the stable series: the canary and dev copies of the same counter (non-zero, checked above)
    # are left out.
    assert keda == pytest.approx(rates["stable"])
    assert keda < sum(rates.values())
