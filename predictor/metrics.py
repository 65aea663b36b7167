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
LOAD_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0)
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)

MODEL_LABELS = ("model_name", "model_version")


@dataclass(frozen=True)
class VersionSeries:
    """The series every request of one (model, version) touches: ``labels()`` takes a lock and builds a key,
    so it is done once per version (``Metrics.for_version``), not three times per request."""

    predictions: Counter
    rows: Counter
    latency: Histogram


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
    feature_cache_lookups: Counter
    feature_cache_age: Histogram
    features_missing: Counter
    predictions_dropped_from_log: Counter
    payload_events: Counter
    rate_limited: Counter
    dropped_calls: Counter
    loads: Counter
    evictions: Counter
    load_seconds: Histogram

    def for_version(self, model_name: str, model_version: str) -> VersionSeries:
        labels = (model_name, model_version)
        return VersionSeries(self.predictions.labels(*labels), self.rows.labels(*labels), self.latency.labels(*labels))

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
            feature_cache_lookups=Counter(
                "feature_cache_lookups_total",
                "Ids looked up in the in-process feature cache (--feature_cache_s), by result (hit, miss).",
                ("result",),
                registry=registry,
            ),
            feature_cache_age=Histogram(
                "feature_cache_age_seconds",
                "How old the cached features served were (hits only), in seconds.",
                buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
                registry=registry,
            ),
            features_missing=Counter(
                "feature_missing_total",
                "Stored features that were null or stale, by feature and reason.",
                ("feature", "reason"),
                registry=registry,
            ),
            payload_events=Counter(
                "payload_events_total",
                "Payload events (--payload_log_url) by outcome: sent, spooled (waiting for the sink), dropped.",
                ("outcome",),
                registry=registry,
            ),
            predictions_dropped_from_log=Counter(
                "prediction_log_dropped_total",
                "Predictions not written to the prediction log (queue full).",
                registry=registry,
            ),
            evictions=Counter(
                "model_evictions_total",
                "Models unloaded to make room (--max_loaded_models), least recently used first.",
                ("model_name",),
                registry=registry,
            ),
            loads=Counter(
                "model_loads_total",
                "Model loads in this process, by outcome (ok, failed): first loads, retries and repository loads.",
                ("model_name", "outcome"),
                registry=registry,
            ),
            load_seconds=Histogram(
                "model_load_seconds",
                "Seconds one successful load took (resolve, download or the local cache, compile, warm-up).",
                ("model_name",),
                buckets=LOAD_BUCKETS,
                registry=registry,
            ),
            dropped_calls=Counter(
                "model_dropped_calls_total",
                "Calls not computed because nobody waited for them any more (deadline passed, client cancelled).",
                ("model_name",),
                registry=registry,
            ),
            rate_limited=Counter(
                "requests_rate_limited_total",
                "Requests refused with 429.",
                registry=registry,
            ),
        )


# Share of rows / |p_shadow − p_live|: fine near 0, where agreeing models sit.
PROBABILITY_GAP_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0)


@dataclass(frozen=True)
class DriftMetrics:
    """PSI of live traffic against the training baseline (predictor/monitoring/drift.py).

    With --workers N each worker keeps its own window; the gauges export the largest PSI of the workers
    (``multiprocess_mode="max"``), which is what the alert should see."""

    feature_psi: Gauge
    prediction_psi: Gauge
    dropped_rows: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry = REGISTRY) -> DriftMetrics:
        return cls(
            feature_psi=Gauge(
                "model_feature_drift_psi",
                "Population stability index of one input column over the live window vs the training baseline.",
                (*MODEL_LABELS, "feature"),
                registry=registry,
                multiprocess_mode="max",
            ),
            prediction_psi=Gauge(
                "model_prediction_drift_psi",
                "Population stability index of the predicted classes over the live window vs the training baseline.",
                MODEL_LABELS,
                registry=registry,
                multiprocess_mode="max",
            ),
            dropped_rows=Counter(
                "model_drift_dropped_rows_total",
                "Rows not added to the drift window (its queue was full).",
                MODEL_LABELS,
                registry=registry,
            ),
        )


@dataclass(frozen=True)
class ShadowMetrics:
    """The challenger scored beside the live model (predictor/monitoring/shadow.py). ``model_version`` is
    the live version, ``shadow_version`` the challenger's."""

    predictions: Counter
    agreement: Gauge
    probability_gap: Histogram
    latency: Histogram
    errors: Counter
    dropped: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry = REGISTRY) -> ShadowMetrics:
        labels = (*MODEL_LABELS, "shadow_version")
        return cls(
            predictions=Counter(
                "model_shadow_predictions_total", "Rows the shadow model scored.", labels, registry=registry
            ),
            agreement=Gauge(
                "model_shadow_agreement_ratio",
                "Share of the last N shadow-scored rows where the shadow predicts the live model's class.",
                labels,
                registry=registry,
                multiprocess_mode="min",
            ),
            probability_gap=Histogram(
                "model_shadow_probability_difference",
                "Per row, the largest |p_shadow − p_live| over the classes.",
                labels,
                buckets=PROBABILITY_GAP_BUCKETS,
                registry=registry,
            ),
            latency=Histogram(
                "model_shadow_latency_seconds",
                "One shadow model call (a whole request's rows), in seconds.",
                labels,
                buckets=LATENCY_BUCKETS,
                registry=registry,
            ),
            errors=Counter(
                "model_shadow_errors_total",
                "Shadow model calls that raised or answered an unusable shape (live answers are unaffected).",
                labels,
                registry=registry,
            ),
            dropped=Counter(
                "model_shadow_dropped_total",
                "Requests not shadow-scored because the shadow queue was full.",
                labels,
                registry=registry,
            ),
        )
