"""The kserve.Model: load, then per request decode → features → predict → encode, for v1 and v2 over REST
and gRPC.

It orchestrates and does no I/O itself: the registry adapter loads, the codec decodes, the feature
source looks up, the batcher computes. ``self.serving`` is the version in use; a request keeps the
``Serving`` it started with, so replacing the pointer (hot swap) never disturbs requests in flight.

KServe's own ``preprocess``/``predict``/``postprocess`` hooks are not overridden: their declared types
(``dict | InferRequest``) cannot carry our decoded rows, so ``__call__`` runs our stages itself (which
also skips KServe's generic per-stage timing). Errors are counted where they are answered (the REST
handler and the gRPC interceptor), once, whichever stage raised them.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from kserve.model import InferenceVerb, Model
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

from predictor import codec
from predictor.config import Settings
from predictor.errors import BadRequest, ModelNotFoundError, ModelNotReadyError, PredictorError
from predictor.metrics import Metrics
from predictor.models import registry
from predictor.models.batching import DirectPredictor, MicroBatcher
from predictor.models.cache import ModelCache

if TYPE_CHECKING:
    from predictor.features import FeatureSource
    from predictor.monitoring.prediction_log import PredictionLog

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
    schema: codec.Schema  # what requests must match: built once per version, not per request

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
    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        features: FeatureSource | None = None,
        prediction_log: PredictionLog | None = None,
    ) -> None:
        super().__init__(settings.model_name)
        self.settings = settings
        self.metrics = metrics
        self.features = features
        self.prediction_log = prediction_log
        self.cache = ModelCache(settings.model_cache_dir, settings.tracking_uri, settings.resolved_model_uri)
        self.serving: Serving | None = None
        self.previous: Serving | None = None  # kept loaded: rollback is a pointer flip
        self.ready = False
        # A series from the start, so "model not loaded" alerts see a pod that never managed to load.
        metrics.loaded.labels(self.name, "none").set(0)

    # ---------------------------------------------------------------------------------- load
    def load(self) -> bool:
        """Resolve, load and warm up; blocking (the server calls it from a background thread).

        Returns False when it served the locally cached version, which the caller must then revalidate."""
        cached = self.cache.get(self.settings.compile_forest) if self.serving is None else None
        if cached is not None:
            log.info("serving version %s from the local model cache; checking the registry next", cached.version)
            self.activate(self.prepare(cached))
            return False
        source = registry.resolve(self.settings.resolved_model_uri, self.settings.tracking_uri)
        log.info("loading %s (version %s)", source.uri, source.version)
        self.adopt(registry.load(source, self.settings.tracking_uri, self.settings.compile_forest))
        return True

    def adopt(self, loaded: registry.LoadedModel) -> None:
        """Check, warm up and serve a freshly loaded version, and remember it for the next start."""
        self.activate(self.prepare(loaded))
        self.cache.put(loaded)

    def activate(self, serving: Serving) -> None:
        """Make ``serving`` current; the version it replaces stays loaded as ``previous``."""
        replaced, self.serving = self.serving, serving
        if replaced is not None and replaced.version != serving.version:
            self.previous = replaced
            self.metrics.loaded.labels(self.name, replaced.version).set(0)
        self.metrics.loaded.labels(self.name, serving.version).set(1)
        self.ready = True
        log.info("model %s version %s is serving", self.name, serving.version)

    def rollback(self) -> Serving:
        """Swap back to the previously served version (which becomes the one to roll forward to)."""
        if self.previous is None:
            raise BadRequest("no previous version is loaded to roll back to")
        previous = self.previous
        self.activate(previous)
        return previous

    def held(self, version: str | None) -> Serving | None:
        """The loaded ``Serving`` for ``version`` (None: the current one)."""
        for serving in (self.serving, self.previous):
            if serving is not None and (version is None or serving.version == version):
                return serving
        return None

    def prepare(self, loaded: registry.LoadedModel) -> Serving:
        """Build and warm up a ``Serving`` for a newly loaded version, refusing an incompatible signature."""
        current = self.serving
        if current is not None and loaded.feature_names != current.model.feature_names:
            raise PredictorError(
                f"version {loaded.version} expects features {list(loaded.feature_names)}, but clients send "
                f"{list(current.model.feature_names)}: not swapping (deploy it under a new model name instead)"
            )
        serving = self._serving_for(loaded)
        self._warm_up(serving)
        return serving

    def _serving_for(self, loaded: registry.LoadedModel) -> Serving:
        record = self.metrics.batch_rows.labels(self.name).observe
        if self.settings.max_batch_wait_ms > 0 and self.settings.max_batch_size > 1:
            batcher: MicroBatcher | DirectPredictor = MicroBatcher(
                loaded.predict_fn, self.settings.max_batch_size, self.settings.max_batch_wait_ms / 1000, record
            )
        else:
            batcher = DirectPredictor(loaded.predict_fn, record)
        schema = codec.Schema(
            loaded.feature_names, self.features.entity_key if self.features else None, self.settings.max_instances
        )
        return Serving(loaded, batcher, schema)

    @staticmethod
    def _warm_up(serving: Serving) -> None:
        """Readiness means a prediction has succeeded, not merely that a file was read."""
        defaults = serving.model.feature_defaults
        row = np.array([[defaults.get(name, 0.0) for name in serving.model.feature_names]])
        result = serving.model.predict_fn(row)
        if len(result) != 1:
            raise PredictorError(f"warm-up prediction returned {len(result)} rows for 1")

    # ------------------------------------------------------------------------------ requests
    # KServe declares ``InferReturnType`` but its DataPlane unpacks ``(response, headers)``: we return what
    # it unpacks.
    async def __call__(  # type: ignore[override]
        self,
        body: V1Body | V2Body | InferRequest,
        headers: dict[str, str] | None = None,
        verb: InferenceVerb = InferenceVerb.PREDICT,
        version: str | None = None,
    ) -> tuple[Any, dict[str, str]]:
        if verb != InferenceVerb.PREDICT:
            raise BadRequest(f"{verb.value} is not supported by this server: use predict")
        serving = self._serving_for_request(version)  # captured once: a swap mid-request changes nothing
        started = time.perf_counter()
        call = await self.decode(_Call(body, serving))
        await self.compute(call)
        response = self.encode(call, headers)
        labels = (self.name, serving.version)
        self.metrics.latency.labels(*labels).observe(time.perf_counter() - started)
        self.metrics.predictions.labels(*labels).inc()
        return response, {}

    def _serving_for_request(self, version: str | None) -> Serving:
        serving = self.held(version) if self.ready else None
        if serving is not None:
            return serving
        if version is not None and self.ready:
            raise ModelNotFoundError(
                f"version {version!r:.40} of {self.name} is not loaded; loaded: {', '.join(self.versions())}"
            )
        raise ModelNotReadyError(
            f"model {self.name} is still loading or its registry is unreachable; "
            "retry shortly (GET /ready turns 200 when it can serve)"
        )

    def versions(self) -> list[str]:
        return [s.version for s in (self.serving, self.previous) if s is not None]

    def count_error(self, error_type: str) -> None:
        """model_prediction_errors_total, labelled with the version serving now (``none`` before a load)."""
        serving = self.serving
        self.metrics.errors.labels(self.name, serving.version if serving else "none", error_type).inc()

    async def decode(self, call: _Call) -> _Call:
        schema = call.serving.schema
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
            raise BadRequest(
                "this server has no feature store: send all features, or start it with "
                "--feature_store PATH to look them up by id"
            )
        assert rows.entity_ids is not None
        positions = [i for i, entity in enumerate(rows.entity_ids) if entity is not None]
        if len(positions) != rows.count and np.isnan(np.delete(rows.values, positions, axis=0)).any():
            raise BadRequest("a row without an entity id is missing features")
        ids = [entity for entity in rows.entity_ids if entity is not None]
        subset = rows.values[positions]
        # Ask only for what some caller left out: features the caller sent override the stored ones.
        needed = [j for j in range(subset.shape[1]) if np.isnan(subset[:, j]).any()]
        if not needed:
            return {}
        names = [serving.model.feature_names[j] for j in needed]
        fetched = await self.features.fetch(ids, names, serving.model.feature_defaults)
        block = subset[:, needed]
        subset[:, needed] = np.where(np.isnan(block), fetched.values, block)
        rows.values[positions] = subset
        return {positions[k]: found for k, entity in enumerate(ids) if (found := fetched.filled.get(entity))}

    async def compute(self, call: _Call) -> None:
        assert call.rows is not None
        try:
            call.outputs = await call.serving.batcher.predict(call.rows.values)
        except ValueError as exc:  # the estimator's own input validation: the request, not the server
            raise BadRequest(f"the model rejected the input: {exc}") from exc
        except Exception as exc:  # answered as a JSON 500 on a connection that stays open
            log.exception("prediction failed")
            raise PredictorError(f"prediction failed: {type(exc).__name__}: {exc}") from exc
        self.metrics.rows.labels(self.name, call.serving.version).inc(call.rows.count)

    def encode(self, call: _Call, headers: dict[str, str] | None) -> Any:
        model = call.serving.model
        assert call.outputs is not None
        predictions, probabilities = _split(call.outputs, model)
        if self.prediction_log is not None:
            self._log(call, predictions, probabilities, headers)
        if isinstance(call.payload, V1Body):
            return codec.encode_v1(predictions, probabilities, self.name, model.version, call.filled)
        outputs = {"predictions": predictions}
        if probabilities is not None:
            outputs["probabilities"] = probabilities
        assert call.v2 is not None
        if isinstance(call.payload, V2Body):
            return codec.encode_v2_rest(call.v2, outputs, self.name, model.version)
        return InferResponse(
            response_id=call.v2.id,
            model_name=self.name,
            model_version=model.version,
            infer_outputs=[
                InferOutput(name, list(a.shape), codec.datatype_of(a), data=a) for name, a in outputs.items()
            ],
        )

    def _log(
        self, call: _Call, predictions: np.ndarray, probabilities: np.ndarray | None, headers: dict[str, str] | None
    ) -> None:
        from predictor.monitoring.prediction_log import PredictionRecord

        assert call.rows is not None and self.prediction_log is not None
        if call.v2 is not None:
            request_id, protocol = call.v2.id, "grpc" if isinstance(call.payload, InferRequest) else "v2"
        else:
            request_id, protocol = (headers or {}).get("x-request-id") or uuid.uuid4().hex, "v1"
        self.prediction_log.record(
            PredictionRecord(
                request_id=request_id,
                timestamp=time.time(),
                model_name=self.name,
                model_version=call.serving.version,
                protocol=protocol,
                feature_names=call.serving.model.feature_names,
                features=call.rows.values,
                predictions=predictions,
                probabilities=probabilities,
                entity_ids=call.rows.entity_ids,
                filled=call.filled,
            )
        )

    # ------------------------------------------------------------------------------ metadata
    def metadata_inputs(self) -> list[dict[str, Any]]:
        serving = self.serving
        if serving is None:
            return []
        names = serving.model.feature_names
        return [
            {
                "name": "input-0",
                "datatype": "FP64",
                "shape": [-1, len(names)],
                "parameters": {"feature_names": ",".join(names)},
            }
        ]

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
            array = np.asarray(
                [v.decode() if isinstance(v, bytes) else str(v) for v in array.reshape(-1)], dtype=object
            )
        expected = int(np.prod(tensor.shape)) if tensor.shape else 1
        if array.size != expected:
            raise BadRequest(
                f"inputs[{i}] ({tensor.name}) has shape {list(tensor.shape)} but carries {array.size} values"
            )
        tensors.append(codec.Tensor(tensor.name, tensor.datatype, list(tensor.shape), array.reshape(-1)))
    if not tensors:
        raise BadRequest("the request has no inputs")
    return codec.V2Request(codec.rows_from_tensors(tensors, schema), request.id or str(uuid.uuid4()))
