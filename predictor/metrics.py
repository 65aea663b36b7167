"""Our Prometheus metrics, created on an injectable registry (tests pass their own).

Names and labels are the seed's, so its PromQL queries and Grafana panels work unchanged:
``model_predictions_total``, ``model_prediction_latency_seconds``, ``model_prediction_errors_total``
and ``model_loaded``, plus the feature-store and batching metrics this server adds.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

# 1 ms … 1 s resolved finely around the seed's 500 ms P95 target; +Inf catches the rest.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5)
LOOKUP_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)

MODEL_LABELS = ("model_name", "model_version")


@dataclass(frozen=True)
class Metrics:
    predictions: Counter
    rows: Counter
    latency: Histogram
    errors: Counter
    loaded: Gauge
    model_format: Gauge
    batch_rows: Histogram
    feature_lookup_latency: Histogram
    features_missing: Counter
    predictions_dropped_from_log: Counter
    rate_limited: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry = REGISTRY) -> Metrics:
        return cls(
            predictions=Counter(
                "model_predictions_total", "Successful prediction requests.", MODEL_LABELS, registry=registry
            ),
            rows=Counter("model_prediction_rows_total", "Rows (instances) predicted.", MODEL_LABELS, registry=registry),
            latency=Histogram(
                "model_prediction_latency_seconds",
                "Time from a request's arrival at the model to its response, in seconds.",
                MODEL_LABELS,
                buckets=LATENCY_BUCKETS,
                registry=registry,
            ),
            errors=Counter(
                "model_prediction_errors_total",
                "Requests that failed, by error type (bad_request, not_ready, entity_not_found, …).",
                (*MODEL_LABELS, "error_type"),
                registry=registry,
            ),
            loaded=Gauge(
                "model_loaded",
                "1 while this model version is loaded and warmed up, else 0.",
                MODEL_LABELS,
                registry=registry,
                multiprocess_mode="min",  # --workers N: a version counts as loaded only when every worker holds it
            ),
            model_format=Gauge(
                "model_format_info",
                "1 per loaded version, labelled with its MLflow flavor and how its artefact is serialised "
                "(skops, cloudpickle, pickle, native ...): pickles run code when loaded.",
                (*MODEL_LABELS, "flavor", "serialization"),
                registry=registry,
                multiprocess_mode="max",
            ),
            batch_rows=Histogram(
                "model_batch_rows",
                "Rows per model call after micro-batching.",
                ("model_name",),
                buckets=BATCH_SIZE_BUCKETS,
                registry=registry,
            ),
            feature_lookup_latency=Histogram(
                "feature_lookup_latency_seconds",
                "One batched online-store lookup, in seconds.",
                ("store",),
                buckets=LOOKUP_BUCKETS,
                registry=registry,
            ),
            features_missing=Counter(
                "feature_missing_total",
                "Stored features that were null or stale, by feature and reason.",
                ("feature", "reason"),
                registry=registry,
            ),
            predictions_dropped_from_log=Counter(
                "prediction_log_dropped_total",
                "Predictions not written to the prediction log (queue full).",
                registry=registry,
            ),
            rate_limited=Counter(
                "requests_rate_limited_total",
                "Requests refused with 429.",
                registry=registry,
            ),
        )
