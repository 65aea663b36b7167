"""``python -m predictor``: settings → adapters → model → server, each built by one small function here.

Imports happen inside the functions on purpose: ``--workers N`` supervises without importing KServe, MLflow or
Feast, and each worker pays only for what its settings switch on.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from predictor.config import ModelSpec, Settings
    from predictor.features import FeastFeatureSource
    from predictor.metrics import Metrics, ShadowMetrics
    from predictor.monitoring.challenger import Challenger
    from predictor.monitoring.payload_events import PayloadLogger
    from predictor.monitoring.prediction_log import PredictionLog
    from predictor.monitoring.tracing import Tracing
    from predictor.serving.access import AccessControl
    from predictor.serving.tls import TlsFiles

ShutdownActions = list[Callable[[], object]]


def main() -> None:
    from predictor.serving import workers

    count = workers.requested(sys.argv[1:], os.environ)
    if count:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        sys.exit(workers.supervise(count, sys.argv[1:]))
    _import_scipy_first_for_skops()  # before the settings: reading them imports KServe
    settings = _settings()
    from prometheus_client import disable_created_metrics

    from predictor import logs
    from predictor.metrics import DriftMetrics, Metrics
    from predictor.model import PredictorModel
    from predictor.serving.server import PredictorServer

    disable_created_metrics()  # the *_created series only add noise to every scrape
    metrics = Metrics.create()
    on_shutdown: ShutdownActions = []  # run after the listeners close, in this order
    features = _feature_source(settings, metrics, on_shutdown)
    access, tls = _access(settings, metrics), _tls(settings)
    prediction_log = _prediction_log(settings, metrics, on_shutdown)
    shadow_metrics = _shadow_metrics(settings)
    challenger = _challenger(settings, prediction_log, on_shutdown, shadow_metrics)  # shadows the first model
    per_model = _AliasChallengers(settings, prediction_log, shadow_metrics, on_shutdown)  # --shadow_alias
    drift = DriftMetrics.create()
    tracing = _tracing(on_shutdown)
    payload_logger = _payload_logger(settings, metrics, on_shutdown)

    def make_model(spec: ModelSpec, shadowed: bool = False) -> PredictorModel:
        own = challenger if shadowed and challenger is not None else per_model.for_model(spec)
        return PredictorModel(settings, metrics, features, prediction_log, drift, own, spec)

    models = [make_model(spec, shadowed=i == 0) for i, spec in enumerate(settings.model_specs)]
    logs.silence_known_warnings()  # again: importing Feast put its "once" filters in front of ours
    PredictorServer(settings, models, access, make_model, on_shutdown, tls, tracing, payload_logger).start()


def _import_scipy_first_for_skops() -> None:
    """Importing skops (scikit-learn's safe format) looks up the module of every SciPy ufunc by walking
    ``sys.modules`` in import order; with SciPy imported after KServe (~1,700 modules) each lookup passes all of
    them: 2.0 s of skops' own import time instead of 0.2 (measured, session 14). A start that will load a model
    from the registry imports ``scipy.special`` (0.45 s, which scikit-learn imports anyway) first of all, before
    the settings are read (KServe's parser comes with KServe), so it is judged from the settings read without
    KServe (``peek_settings``: a wrong guess costs time, not correctness); one served from the local model cache
    imports neither."""
    from predictor.config import peek_settings
    from predictor.models.cache_paths import entry_path

    settings = peek_settings()
    if settings is None:
        return
    try:
        specs = settings.model_specs
    except ValueError:  # said by _settings(), with the fix
        return
    directory = settings.model_cache_dir
    from_cache = (
        directory is not None
        and not settings.registry_alias
        and all(entry_path(directory, settings.tracking_uri, s.uri).exists() for s in specs)
    )
    if not from_cache:
        importlib.import_module("scipy.special")


def _payload_logger(settings: Settings, metrics: Metrics, on_shutdown: ShutdownActions) -> PayloadLogger | None:
    if not settings.payload_log_url:
        return None
    from predictor.monitoring.payload_events import PayloadLogger

    spool = settings.payload_log_spool
    if spool is not None and settings.worker_count > 1:  # one spool each: a worker sends (and counts) only its own
        spool = spool / f"worker-{settings.worker_index}"
    logger = PayloadLogger(
        settings.payload_log_url,
        settings.payload_log_mode,
        spool,
        on_outcome=lambda outcome, n: metrics.payload_events.labels(outcome=outcome).inc(n),
    )
    on_shutdown.insert(0, logger.close)  # after the listeners close: every answered call's events are queued
    return logger


def _tracing(on_shutdown: ShutdownActions) -> Tracing | None:
    """OpenTelemetry, as the standard OTEL_* variables say (monitoring/tracing.py): the SDK's own configuration,
    which a platform team sets alike for every service, so read from the environment rather than our flags."""
    from predictor.monitoring.tracing import Tracing

    tracing = Tracing.from_environment(os.environ)
    if tracing is not None:
        on_shutdown.append(tracing.shutdown)  # after the listeners close: the last calls' spans are exported
    return tracing


def _settings() -> Settings:
    from predictor import logs

    logs.silence_known_warnings()  # before KServe's import, which prints some of them
    from predictor.config import load_settings

    settings = load_settings()
    if settings.shadow_model_uri and settings.shadow_alias:
        sys.exit(
            "error: --shadow_model_uri and --shadow_alias both name challengers: give one (--shadow_alias "
            "shadows every registry model by its own alias; --shadow_model_uri the one model by any URI)"
        )
    try:
        settings.model_specs  # noqa: B018  # checked here, before anything starts: --model must be NAME=URI
    except ValueError as exc:
        sys.exit(f"error: {exc}")
    # MLflow's REST client reads only its environment: by default it retries 7 times over minutes, which
    # would hide an unreachable registry from /ready. Our loader retries with its own backoff instead.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(settings.mlflow_request_timeout_s))
    # --access_log_format writes its own line per request (asgi-logger): uvicorn's would be a second one
    logs.configure(settings.log_level, settings.log_format, settings.access_log and not settings.access_log_format)
    if settings.model_version is not None and not settings.model_version.isdigit():
        logging.getLogger("predictor").info("deployment label (--model-version): %s", settings.model_version)
    return settings


def _feature_source(settings: Settings, metrics: Metrics, on_shutdown: ShutdownActions) -> FeastFeatureSource | None:
    if settings.feature_store is None:
        return None
    from predictor.errors import FeatureStoreUnavailable
    from predictor.features import FeastFeatureSource

    try:
        features = FeastFeatureSource(
            settings.feature_store,
            metrics,
            policy=settings.missing_feature_policy,  # type: ignore[arg-type]  # a choice of the flag
            feature_view=settings.feature_view,
            cache_s=settings.feature_cache_s,
            record_dir=settings.model_cache_dir,
        )
    except FeatureStoreUnavailable as exc:
        sys.exit(
            f"error: --feature_store {settings.feature_store}: {exc}\n"
            "hint: `python -m predictor.demo.bootstrap` prepares the demo repo in .data/feature_repo"
        )
    on_shutdown.append(features.close)
    return features


def _access(settings: Settings, metrics: Metrics) -> AccessControl:
    from predictor.serving.access import AccessControl

    try:
        return AccessControl.from_settings(settings, metrics.rate_limited.inc)
    except ValueError as exc:
        sys.exit(f"error: {exc}")


def _tls(settings: Settings) -> TlsFiles | None:
    from predictor.serving.tls import TlsFiles

    try:
        return TlsFiles.from_settings(settings.ssl_certfile, settings.ssl_keyfile, settings.ssl_ca_certs)
    except ValueError as exc:
        sys.exit(f"error: {exc}")


def _prediction_log(settings: Settings, metrics: Metrics, on_shutdown: ShutdownActions) -> PredictionLog | None:
    if not settings.prediction_log:
        return None
    from predictor.monitoring.prediction_log import PredictionLog

    prediction_log = PredictionLog(
        settings.prediction_log,
        settings.prediction_log_sample_rate,
        on_drop=metrics.predictions_dropped_from_log.inc,
    )
    on_shutdown.insert(0, prediction_log.close)  # before the feature store closes, as it always has
    return prediction_log


def _shadow_metrics(settings: Settings) -> ShadowMetrics | None:
    if not (settings.shadow_model_uri or settings.shadow_alias):
        return None
    from predictor.metrics import ShadowMetrics

    return ShadowMetrics.create()  # one set of series for every challenger (labelled by model)


def _challenger(
    settings: Settings,
    prediction_log: PredictionLog | None,
    on_shutdown: ShutdownActions,
    metrics: ShadowMetrics | None,
) -> Challenger | None:
    if not settings.shadow_model_uri or metrics is None:
        return None
    from predictor.model import load_options_of
    from predictor.monitoring.challenger import Challenger

    challenger = Challenger(
        settings.shadow_model_uri,
        settings.model_name,
        metrics,
        load_options_of(settings),
        sample_rate=settings.shadow_sample_rate,
        busy_share=settings.shadow_busy_share,
        poll_interval_s=settings.poll_interval_s,
        prediction_log=prediction_log,
    )
    on_shutdown.insert(0, challenger.close)  # before the log closes: the shadow's last lines go to it
    return challenger


class _AliasChallengers:
    """``--shadow_alias ALIAS``: each registry model served gets a challenger following ``models:/NAME@ALIAS``,
    optional (most models have none: quietly nothing until the alias names a version)."""

    def __init__(
        self,
        settings: Settings,
        prediction_log: PredictionLog | None,
        metrics: ShadowMetrics | None,
        on_shutdown: ShutdownActions,
    ) -> None:
        self.settings = settings
        self.prediction_log = prediction_log
        self.metrics = metrics
        self.made: list[Challenger] = []
        on_shutdown.insert(0, self.close)  # before the log closes: the shadows' last lines go to it

    def for_model(self, spec: ModelSpec) -> Challenger | None:
        from predictor.models.registry import registered_model_name

        alias, name = self.settings.shadow_alias, registered_model_name(spec.uri)
        if not alias or name is None or self.metrics is None:
            return None
        from predictor.model import load_options_of
        from predictor.monitoring.challenger import Challenger

        challenger = Challenger(
            f"models:/{name}@{alias}",
            spec.name,
            self.metrics,
            load_options_of(self.settings),
            sample_rate=self.settings.shadow_sample_rate,
            busy_share=self.settings.shadow_busy_share,
            poll_interval_s=self.settings.poll_interval_s,
            prediction_log=self.prediction_log,
            optional=True,
        )
        self.made.append(challenger)
        return challenger

    def close(self) -> None:
        for challenger in self.made:
            challenger.close()


if __name__ == "__main__":
    main()
