"""``python -m predictor``: settings → adapters → model → server. No logic lives here."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable


def main() -> None:
    from predictor.serving import workers

    count = workers.requested(sys.argv[1:], os.environ)
    if count:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        sys.exit(workers.supervise(count, sys.argv[1:]))
    from predictor import logs

    logs.silence_known_warnings()  # before KServe's import, which prints some of them
    from predictor.config import load_settings

    settings = load_settings()
    # MLflow's REST client reads only its environment: by default it retries 7 times over minutes, which
    # would hide an unreachable registry from /ready. Our loader retries with its own backoff instead.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(settings.mlflow_request_timeout_s))
    logs.configure(settings.log_level, settings.log_format, settings.access_log or bool(settings.access_log_format))
    if settings.model_version is not None and not settings.model_version.isdigit():
        logging.getLogger("predictor").info("deployment label (--model-version): %s", settings.model_version)
    from prometheus_client import disable_created_metrics

    from predictor.metrics import Metrics
    from predictor.model import PredictorModel, load_options_of
    from predictor.serving.server import PredictorServer

    disable_created_metrics()  # the *_created series only add noise to every scrape
    metrics = Metrics.create()
    features = None
    if settings.feature_store is not None:
        from predictor.errors import FeatureStoreUnavailable
        from predictor.features import FeastFeatureSource

        try:
            features = FeastFeatureSource(
                settings.feature_store,
                metrics,
                policy=settings.missing_feature_policy,  # type: ignore[arg-type]
                feature_view=settings.feature_view,
            )
        except FeatureStoreUnavailable as exc:
            sys.exit(
                f"error: --feature_store {settings.feature_store}: {exc}\n"
                "hint: `python -m predictor.demo.bootstrap` prepares the demo repo in .data/feature_repo"
            )
    from predictor.serving.access import AccessControl

    try:
        access = AccessControl.from_settings(settings, metrics.rate_limited.inc)
    except ValueError as exc:
        sys.exit(f"error: {exc}")
    on_shutdown: list[Callable[[], object]] = []
    prediction_log = None
    if settings.prediction_log:
        from predictor.monitoring.prediction_log import PredictionLog

        prediction_log = PredictionLog(
            settings.prediction_log,
            settings.prediction_log_sample_rate,
            on_drop=metrics.predictions_dropped_from_log.inc,
        )
        on_shutdown.append(lambda: prediction_log.close())
    if features is not None:
        on_shutdown.append(features.close)
    from predictor.serving.tls import TlsFiles

    try:
        tls = TlsFiles.from_settings(settings.ssl_certfile, settings.ssl_keyfile, settings.ssl_ca_certs)
    except ValueError as exc:
        sys.exit(f"error: {exc}")
    from predictor.metrics import DriftMetrics

    challenger = None
    if settings.shadow_model_uri:
        from predictor.metrics import ShadowMetrics
        from predictor.monitoring.challenger import Challenger

        challenger = Challenger(
            settings.shadow_model_uri,
            settings.model_name,
            ShadowMetrics.create(),
            load_options_of(settings),
            sample_rate=settings.shadow_sample_rate,
            poll_interval_s=settings.poll_interval_s,
            prediction_log=prediction_log,
        )
        on_shutdown.insert(0, challenger.close)  # before the log closes: the shadow's last lines go to it
    model = PredictorModel(settings, metrics, features, prediction_log, DriftMetrics.create(), challenger)
    logs.silence_known_warnings()  # again: importing Feast put its "once" filters in front of ours
    PredictorServer(settings, model, access, on_shutdown, tls).start()


if __name__ == "__main__":
    main()
