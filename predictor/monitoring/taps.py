"""What watches each answered request: the prediction log and the challenger (drift watches the batcher's
model calls instead). Each only enqueues (its own thread does the work), so none can delay or fail an answer.
"""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING

import numpy as np

from predictor.protocol.rows import Rows

if TYPE_CHECKING:
    from predictor.models.registry import LoadedModel
    from predictor.monitoring.challenger import Challenger
    from predictor.monitoring.prediction_log import PredictionLog


def predictions_of(outputs: dict[str, np.ndarray]) -> np.ndarray:
    """The predicted labels (or values) among named outputs."""
    return outputs.get("predictions", next(iter(outputs.values())))


class Taps:
    def __init__(self, model_name: str, prediction_log: PredictionLog | None, challenger: Challenger | None) -> None:
        self.model_name = model_name
        self.prediction_log = prediction_log
        self.challenger = challenger

    @property
    def active(self) -> bool:
        return self.prediction_log is not None or self.challenger is not None

    def record(
        self,
        model: LoadedModel,
        rows: Rows,
        outputs: dict[str, np.ndarray],
        filled: dict[int, list[str]],
        protocol: str,
        request_id: str,
        trace_id: str | None = None,
    ) -> None:
        """``protocol``: the codec's name; ``request_id``: the caller's (a new one when the log needs one);
        ``trace_id``: the request's trace, when tracing is on."""
        if not self.active:
            return
        predictions = predictions_of(outputs)
        probabilities = outputs.get("probabilities")
        if not request_id and self.prediction_log is not None:
            request_id = uuid.uuid4().hex  # only the log's lines need one (drift and the challenger do not)
        if self.challenger is not None:
            self.challenger.submit(
                rows.values, model.columns, model.version, predictions, probabilities, model.classes, request_id
            )
        if self.prediction_log is not None:
            from predictor.monitoring.prediction_log import PredictionRecord

            self.prediction_log.record(
                PredictionRecord(
                    request_id=request_id,
                    timestamp=time.time(),
                    model_name=self.model_name,
                    model_version=model.version,
                    protocol=protocol,
                    feature_names=model.feature_names,
                    features=rows.values,
                    predictions=predictions,
                    probabilities=probabilities,
                    entity_ids=rows.entity_ids,
                    filled=filled,
                    trace_id=trace_id,
                )
            )
