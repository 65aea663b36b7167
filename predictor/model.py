"""The kserve.Model: load → preprocess → predict → postprocess, for v1 and v2 over REST and gRPC.

It orchestrates and does no I/O itself: the registry adapter loads, the codec decodes, the feature
source looks up, the batcher computes. ``self.serving`` is the version in use; a request keeps the
``Serving`` it started with, so replacing the pointer (hot swap) never disturbs requests in flight.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from kserve import Model
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

from predictor import codec, registry
from predictor.batching import DirectPredictor, MicroBatcher
from predictor.config import Settings
from predictor.errors import BadRequest, ModelNotReadyError, PredictorError
from predictor.metrics import Metrics

if TYPE_CHECKING:
    from predictor.features import FeatureSource

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class V1Body:
    payload: Any  # parsed JSON


@dataclass(frozen=True)
class V2Body:
    body: bytes
    header_length: str | None  # Inference-Header-Content-Length, when the binary extension is used


@dataclass
class Serving:
    """One loaded model version and the batcher that feeds it."""

    model: registry.LoadedModel
    batcher: MicroBatcher | DirectPredictor

    @property
    def version(self) -> str:
        return self.model.version


@dataclass
class _Call:
    payload: V1Body | V2Body | InferRequest
    serving: Serving
    rows: codec.Rows | None = None
    v2: codec.V2Request | None = None
    filled: dict[int, list[str]] = field(default_factory=dict)
    outputs: np.ndarray | None = None


class PredictorModel(Model):
    def __init__(self, settings: Settings, metrics: Metrics, features: "FeatureSource | None" = None) -> None:
        super().__init__(settings.model_name)
        self.settings = settings
        self.metrics = metrics
        self.features = features
        self.serving: Serving | None = None
        self.ready = False

    # ---------------------------------------------------------------------------------- load
    def load(self) -> bool:
        """Resolve, load and warm up; blocking (the server calls it from a background thread)."""
        source = registry.resolve(self.settings.resolved_model_uri, self.settings.tracking_uri)
        log.info("loading %s (version %s)", source.uri, source.version)
        serving = self._serving_for(registry.load(source, self.settings.tracking_uri))
        self._warm_up(serving)
        self.activate(serving)
        return True

    def activate(self, serving: Serving) -> None:
        previous, self.serving = self.serving, serving
        if previous is not None and previous.version != serving.version:
            self.metrics.loaded.labels(self.name, previous.version).set(0)
        self.metrics.loaded.labels(self.name, serving.version).set(1)
        self.ready = True
        log.info("model %s version %s is ready", self.name, serving.version)

    def _serving_for(self, loaded: registry.LoadedModel) -> Serving:
        record = self.metrics.batch_rows.labels(self.name).observe
        if self.settings.max_batch_wait_ms > 0 and self.settings.max_batch_size > 1:
            batcher: MicroBatcher | DirectPredictor = MicroBatcher(
                loaded.predict_fn, self.settings.max_batch_size, self.settings.max_batch_wait_ms / 1000, record)
        else:
            batcher = DirectPredictor(loaded.predict_fn, record)
        return Serving(loaded, batcher)

    @staticmethod
    def _warm_up(serving: Serving) -> None:
        """Readiness means a prediction has succeeded, not merely that a file was read."""
        width = len(serving.model.feature_names)
        defaults = serving.model.feature_defaults
        row = np.array([[defaults.get(name, 0.0) for name in serving.model.feature_names]])
        result = serving.model.predict_fn(row.reshape(1, width))
        if len(result) != 1:
            raise PredictorError(f"warm-up prediction returned {len(result)} rows for 1")

    def schema(self, serving: Serving) -> codec.Schema:
        return codec.Schema(serving.model.feature_names, self.features.entity_key if self.features else None,
                            self.settings.max_instances)

    # ------------------------------------------------------------------------------ lifecycle
    async def __call__(self, body: Any, headers: dict[str, str] | None = None, verb: Any = None) -> Any:
        serving = self.serving
        if serving is None or not self.ready:
            error = ModelNotReadyError(f"model {self.name} is still loading or its registry is unreachable; "
                                       "retry shortly (GET /ready turns 200 when it can serve)")
            self.count_error(error, "none")
            raise error
        started = time.perf_counter()
        try:
            if verb is None:
                response, response_headers = await super().__call__(_Call(body, serving), headers)
            else:
                response, response_headers = await super().__call__(_Call(body, serving), headers, verb)
        except PredictorError as exc:
            self.count_error(exc, serving.version)
            raise
        labels = (self.name, serving.version)
        self.metrics.latency.labels(*labels).observe(time.perf_counter() - started)
        self.metrics.predictions.labels(*labels).inc()
        return response, response_headers

    def count_error(self, exc: PredictorError, version: str) -> None:
        if not getattr(exc, "counted", False):
            self.metrics.errors.labels(self.name, version, exc.error_type).inc()
            exc.counted = True  # type: ignore[attr-defined]

    async def preprocess(self, call: _Call, headers: dict[str, str] | None = None) -> _Call:  # type: ignore[override]
        schema = self.schema(call.serving)
        payload = call.payload
        if isinstance(payload, V1Body):
            call.rows = codec.decode_v1(payload.payload, schema)
        elif isinstance(payload, V2Body):
            call.v2 = codec.decode_v2_rest(payload.body, payload.header_length, schema)
            call.rows = call.v2.rows
        elif isinstance(payload, InferRequest):
            call.v2 = _from_grpc(payload, schema)
            call.rows = call.v2.rows
        else:
            raise BadRequest("unsupported request payload")
        if call.rows.entity_ids is not None:
            call.filled = await self._fill_from_store(call.rows, call.serving)
        return call

    async def _fill_from_store(self, rows: codec.Rows, serving: Serving) -> dict[int, list[str]]:
        if self.features is None:
            raise BadRequest("this server has no feature store: send all features, or start it with "
                             "--feature_store PATH to look them up by id")
        assert rows.entity_ids is not None
        positions = [i for i, entity in enumerate(rows.entity_ids) if entity is not None]
        if len(positions) != rows.count and np.isnan(np.delete(rows.values, positions, axis=0)).any():
            raise BadRequest("a row without an entity id is missing features")
        ids = [rows.entity_ids[i] for i in positions]
        subset = rows.values[positions]
        # Ask only for what some caller left out: features the caller sent override the stored ones.
        needed = [j for j in range(subset.shape[1]) if np.isnan(subset[:, j]).any()]
        if not needed:
            return {}
        names = [serving.model.feature_names[j] for j in needed]
        fetched = await self.features.fetch(ids, names, serving.model.feature_defaults)  # type: ignore[arg-type]
        block = subset[:, needed]
        subset[:, needed] = np.where(np.isnan(block), fetched.values, block)
        rows.values[positions] = subset
        return {positions[k]: found for k, entity in enumerate(ids) if (found := fetched.filled.get(entity))}

    async def predict(self, call: _Call, headers: dict[str, str] | None = None) -> _Call:  # type: ignore[override]
        assert call.rows is not None
        call.outputs = await call.serving.batcher.predict(call.rows.values)
        self.metrics.rows.labels(self.name, call.serving.version).inc(call.rows.count)
        return call

    async def postprocess(self, call: _Call, headers: dict[str, str] | None = None) -> Any:  # type: ignore[override]
        model = call.serving.model
        assert call.outputs is not None
        predictions, probabilities = _split(call.outputs, model)
        if isinstance(call.payload, V1Body):
            return codec.encode_v1(predictions, probabilities, self.name, model.version, call.filled)
        outputs = {"predictions": predictions}
        if probabilities is not None:
            outputs["probabilities"] = probabilities
        assert call.v2 is not None
        if isinstance(call.payload, V2Body):
            return codec.encode_v2_rest(call.v2, outputs, self.name, model.version)
        return InferResponse(
            response_id=call.v2.id, model_name=self.name, model_version=model.version,
            infer_outputs=[InferOutput(name, list(a.shape), codec.datatype_of(a), data=a) for name, a in outputs.items()],
        )

    # ------------------------------------------------------------------------------ metadata
    def metadata_inputs(self) -> list[dict[str, Any]]:
        serving = self.serving
        if serving is None:
            return []
        names = serving.model.feature_names
        return [{"name": "input-0", "datatype": "FP64", "shape": [-1, len(names)],
                 "parameters": {"feature_names": ",".join(names)}}]

    def metadata_outputs(self) -> list[dict[str, Any]]:
        serving = self.serving
        if serving is None:
            return []
        outputs = [{"name": "predictions", "datatype": _class_datatype(serving.model), "shape": [-1]}]
        if serving.model.classes is not None:
            outputs.append({"name": "probabilities", "datatype": "FP64", "shape": [-1, len(serving.model.classes)]})
        return outputs

    def get_input_types(self) -> list[dict[str, Any]]:
        return self.metadata_inputs()

    def get_output_types(self) -> list[dict[str, Any]]:
        return self.metadata_outputs()


def _split(outputs: np.ndarray, model: registry.LoadedModel) -> tuple[np.ndarray, np.ndarray | None]:
    if model.classes is None:
        return np.asarray(outputs), None
    return model.classes[np.argmax(outputs, axis=1)], outputs


def _class_datatype(model: registry.LoadedModel) -> str:
    return codec.datatype_of(model.classes) if model.classes is not None else "FP64"


def _from_grpc(request: InferRequest, schema: codec.Schema) -> codec.V2Request:
    tensors = []
    for i, tensor in enumerate(request.inputs):
        try:
            array = tensor.as_numpy()
        except Exception as exc:  # kserve raises plain errors for malformed contents
            raise BadRequest(f"inputs[{i}] ({tensor.name}) cannot be read as {tensor.datatype}: {exc}") from exc
        if tensor.datatype == "BYTES":
            array = np.asarray([v.decode() if isinstance(v, bytes) else str(v) for v in array.reshape(-1)], dtype=object)
        expected = int(np.prod(tensor.shape)) if tensor.shape else 1
        if array.size != expected:
            raise BadRequest(f"inputs[{i}] ({tensor.name}) has shape {list(tensor.shape)} but carries {array.size} values")
        tensors.append(codec.Tensor(tensor.name, tensor.datatype, list(tensor.shape), array.reshape(-1)))
    if not tensors:
        raise BadRequest("the request has no inputs")
    import uuid

    return codec.V2Request(codec.rows_from_tensors(tensors, schema), request.id or str(uuid.uuid4()))
