"""The obvious KServe predictor for an MLflow model: the baseline that `make bench` measures us against.

Deliberately what a first attempt looks like (issue 5's "~40 lines"): a pyfunc loaded from the registry, a pandas
DataFrame built per request, and ``predict`` plus ``predict_proba`` (two passes over the forest) on the event loop.
Do not optimise it: its slowness is the point of comparison.

    MLFLOW_TRACKING_URI=sqlite:///... python tests/bench/baseline_predictor.py --model_name NAME --http_port P
"""

from __future__ import annotations

import argparse
from typing import Any

import kserve  # parses sys.argv on import (see PITFALLS); our flags below extend its parser
import mlflow
import pandas as pd
from kserve.model_server import parser as kserve_parser


class ObviousPredictor(kserve.Model):  # type: ignore[misc]  # kserve ships no type information
    def __init__(self, name: str, model_uri: str) -> None:
        super().__init__(name)
        self.model_uri = model_uri
        self.load()

    def load(self) -> bool:
        self.pyfunc = mlflow.pyfunc.load_model(self.model_uri)
        self.estimator = self.pyfunc.get_raw_model()  # the sklearn object, for predict_proba
        self.columns = self.pyfunc.metadata.get_input_schema().input_names()
        self.ready = True  # ModelServer.start registers only ready models
        return self.ready

    def predict(self, payload: dict[str, Any], headers: dict[str, str] | None = None) -> dict[str, Any]:
        frame = pd.DataFrame(payload["instances"], columns=self.columns)
        predictions = self.pyfunc.predict(frame)
        probabilities = self.estimator.predict_proba(frame)
        return {"predictions": predictions.tolist(), "probabilities": probabilities.tolist()}


def main() -> None:
    parser = argparse.ArgumentParser(parents=[kserve_parser])
    parser.add_argument("--model_uri", default=None, help="default: models:/MODEL_NAME@production")
    args, _ = parser.parse_known_args()
    model = ObviousPredictor(args.model_name, args.model_uri or f"models:/{args.model_name}@production")
    kserve.ModelServer().start([model])


if __name__ == "__main__":
    main()
