"""``python -m predictor``: settings → adapters → model → server. No logic lives here."""

from __future__ import annotations

import logging
import sys


def main() -> None:
    from predictor.config import load_settings

    settings = load_settings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from prometheus_client import disable_created_metrics

    from predictor.metrics import Metrics
    from predictor.model import PredictorModel
    from predictor.server import PredictorServer

    disable_created_metrics()  # the *_created series only add noise to every scrape
    metrics = Metrics.create()
    features = None
    if settings.feature_store is not None:
        from predictor.features import FeastFeatureSource

        features = FeastFeatureSource(settings.feature_store, metrics, policy=settings.missing_feature_policy)
    model = PredictorModel(settings, metrics, features)
    PredictorServer(settings, model).start()


if __name__ == "__main__":
    sys.exit(main())
