"""The kserve.Model: load, then per request decode → features → predict → encode, for v1 and v2 over REST
and gRPC.

It orchestrates and does no I/O itself: the registry adapter loads, the protocol modules decode against
the typed schema, the feature source looks up, the batcher computes. ``self.serving`` is the version in
use; a request keeps the ``Serving`` it started with, so replacing the pointer (hot swap) never disturbs
requests in flight.

KServe's own ``preprocess``/``predict``/``postprocess`` hooks are not overridden: their declared types
(``dict | InferRequest``) cannot carry our decoded rows, so ``__call__`` runs our stages itself (which
also skips KServe's generic per-stage timing). Errors are counted where they are answered (the REST
handler and the gRPC interceptor), once, whichever stage raised them.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from kserve.model import InferenceVerb, Model
from kserve.protocol.infer_type import InferRequest

from predictor.config import Settings
from predictor.errors import BadRequest, ModelNotFoundError, ModelNotReadyError, PredictorError
from predictor.features import as_columns
from predictor.metrics import DriftMetrics, Metrics, VersionSeries
from predictor.models import registry
from predictor.models.batching import DirectPredictor, MicroBatcher
from predictor.models.cache import ModelCache
from predictor.models.flavors import PICKLE_FORMATS, Outputs, frame_preparation
from predictor.monitoring.drift import DriftMonitor
from predictor.monitoring.explain import OnDemand
from predictor.protocol import grpc, mlflow, v1, v2
from predictor.protocol.rows import Rows, V2Request, datatype_of
from predictor.protocol.schema import Schema

if TYPE_CHECKING:
    from predictor.features import FeatureSource
    from predictor.monitoring.challenger import Challenger
    from predictor.monitoring.prediction_log import PredictionLog

log = logging.getLogger(__name__)

CONTRIBUTIONS = "contributions"  # the v2 output a request may ask for: [N, 1 + F], base value then each column


@dataclass(frozen=True)
class V1Body:
    payload: Any  # parsed JSON


@dataclass(frozen=True)
class MlflowBody:
    payload: Any  # parsed JSON of MLflow's scoring protocol (/invocations)


@dataclass(frozen=True)
class V2Body:
    body: bytes
    header_length: str | None  # Inference-Header-Content-Length, when the binary extension is used


@dataclass
class Serving:
    """One loaded model version and the batcher that feeds it."""

    model: registry.LoadedModel
    batcher: MicroBatcher | DirectPredictor
    schema: Schema  # what requests must match: built once per version, not per request
    explainer: OnDemand  # :explain and the v2 "contributions" output (built on first use)
    series: VersionSeries
    drift: DriftMonitor | None = None  # None: the version was logged without a drift baseline

    @property
    def version(self) -> str:
        return self.model.version


@dataclass
class _Call:
    payload: V1Body | V2Body | MlflowBody | InferRequest
    serving: Serving
    rows: Rows | None = None
    v2: V2Request | None = None
    filled: dict[int, list[str]] = field(default_factory=dict)
    outputs: Outputs | None = None
    contributions: np.ndarray | None = None  # asked for as a v2 output


class PredictorModel(Model):
    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        features: FeatureSource | None = None,
        prediction_log: PredictionLog | None = None,
        drift_metrics: DriftMetrics | None = None,
        challenger: Challenger | None = None,
    ) -> None:
        super().__init__(settings.model_name)
        self.settings = settings
        self.metrics = metrics
        self.features = features
        self.prediction_log = prediction_log
        self.drift_metrics = drift_metrics  # None: no drift monitoring at all
        self.challenger = challenger
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
        if cached is not None and not self.settings.allow_pickle and cached.serialization in PICKLE_FORMATS:
            cached = None  # cached before --allow_pickle false: the registry's copy is refused the same way
        if cached is not None:
            log.info("serving version %s from the local model cache; checking the registry next", cached.version)
            # That check needs MLflow's client, never imported on this path so far: ~0.8 s of imports holding the
            # GIL, paid here, before readiness, rather than by the first requests' latency.
            registry.import_client()
            self.activate(self.prepare(cached))
            return False
        source = registry.resolve(self.settings.resolved_model_uri, self.settings.tracking_uri)
        log.info("loading %s (version %s)", source.uri, source.version)
        self.adopt(
            registry.load(source, self.settings.tracking_uri, self.settings.compile_forest, self.settings.allow_pickle)
        )
        return True

    def adopt(self, loaded: registry.LoadedModel) -> None:
        """Check, warm up and serve a freshly loaded version, and remember it for the next start."""
        self.activate(self.prepare(loaded))
        self.cache.put(loaded)

    def activate(self, serving: Serving) -> None:
        """Make ``serving`` current; the version it replaces stays loaded as ``previous``."""
        replaced, self.serving = self.serving, serving
        if replaced is not None and replaced.version != serving.version:
            dropped, self.previous = self.previous, replaced
            if dropped is not None and dropped.drift is not None and dropped not in (serving, replaced):
                dropped.drift.close()  # no longer loaded: its series go with it
            self.metrics.loaded.labels(self.name, replaced.version).set(0)
        self.metrics.loaded.labels(self.name, serving.version).set(1)
        model = serving.model
        self.metrics.model_format.labels(self.name, serving.version, model.flavor, model.serialization).set(1)
        self.ready = True
        log.info(
            "model %s version %s is serving (flavor %s, stored as %s, %s path)",
            self.name,
            serving.version,
            model.flavor,
            model.serialization,
            model.path,
        )

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
        if current is not None and loaded.columns != current.model.columns:
            raise PredictorError(
                f"version {loaded.version} expects columns {_described(loaded)}, but clients send "
                f"{_described(current.model)}: not swapping (deploy it under a new model name instead)"
            )
        serving = self._serving_for(loaded)
        self._warm_up(serving)
        return serving

    def _serving_for(self, loaded: registry.LoadedModel) -> Serving:
        schema = Schema(
            loaded.columns,
            self.features.entity_key if self.features else None,
            self.settings.max_instances,
            matrix=loaded.matrix,
            tensor=loaded.tensor,
        )
        what = f"model {self.name} version {loaded.version} ({loaded.flavor})"
        preparation = functools.partial(frame_preparation, flavor=loaded.flavor)
        explainer = OnDemand(loaded.the_estimator, loaded.feature_names, what, preparation)
        drift = None
        if self.drift_metrics is not None and self.settings.drift_window_rows > 0:
            window = self.settings.drift_window_rows
            drift = DriftMonitor.for_document(
                loaded.drift_baseline,
                self.name,
                loaded.version,
                self.drift_metrics,
                window_rows=window,
                input_columns=loaded.feature_names,
                predictions_of=_predictions,
            )
        # Drift sees each model call's rows and outputs (one hand-off per batch, not per request).
        observe = drift.observe if drift is not None else None
        record = self.metrics.batch_rows.labels(self.name).observe
        # Labels (classes[argmax]) once per model call, not once per request of a batch.
        predict = functools.partial(_named_call, model=loaded)
        if self.settings.max_batch_wait_ms > 0 and self.settings.max_batch_size > 1:
            batcher: MicroBatcher | DirectPredictor = MicroBatcher(
                predict,
                self.settings.max_batch_size,
                self.settings.max_batch_wait_ms / 1000,
                record,
                observe,
            )
        else:
            batcher = DirectPredictor(predict, record, observe)
        series = self.metrics.for_version(self.name, loaded.version)
        return Serving(loaded, batcher, schema, explainer, series, drift)

    @staticmethod
    def _warm_up(serving: Serving) -> None:
        """Readiness means a prediction has succeeded, not merely that a file was read."""
        model = serving.model
        # The logged example's values where there is one: a neutral '' is a category a strict encoder refuses.
        row = registry.warm_up_row(model.columns, model.feature_defaults, model.example, [])
        # A typed row was already predicted while loading (registry.build); this one checks the fast path.
        result = model.predict_fn(row.astype(np.float64) if model.matrix else row)
        count = len(next(iter(result.values()))) if isinstance(result, dict) else len(result)
        if count != 1:
            raise PredictorError(f"warm-up prediction returned {count} rows for 1")

    # ------------------------------------------------------------------------------ requests
    # KServe declares ``InferReturnType`` but its DataPlane unpacks ``(response, headers)``: we return what
    # it unpacks.
    async def __call__(  # type: ignore[override]
        self,
        body: V1Body | V2Body | MlflowBody | InferRequest,
        headers: dict[str, str] | None = None,
        verb: InferenceVerb = InferenceVerb.PREDICT,
        version: str | None = None,
    ) -> tuple[Any, dict[str, str]]:
        if verb == InferenceVerb.EXPLAIN:
            return await self.explanations(body, version), {}
        serving = self._serving_for_request(version)  # captured once: a swap mid-request changes nothing
        started = time.perf_counter()
        call = await self.decode(_Call(body, serving))
        await self.compute(call)
        response = self.encode(call, headers)
        serving.series.latency.observe(time.perf_counter() - started)
        serving.series.predictions.inc()
        return response, {}

    async def explanations(self, body: V1Body | V2Body | MlflowBody | InferRequest, version: str | None = None) -> Any:
        """``:explain``: per row, the predicted class, the base value and each input column's contribution."""
        serving = self._serving_for_request(version)
        call = await self.decode(_Call(body, serving))
        assert call.rows is not None
        frame = serving.schema.frame(call.rows.values)
        explanations = await asyncio.to_thread(serving.explainer.explain, frame)
        return {"explanations": explanations, "model_name": self.name, "model_version": serving.version}

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
        outputs = call.serving.model.output_names
        if call.serving.model.classes is not None:
            outputs = (*outputs, CONTRIBUTIONS)
        payload = call.payload
        if isinstance(payload, V1Body):
            call.rows = v1.decode(payload.payload, schema)
        elif isinstance(payload, MlflowBody):
            call.rows = mlflow.decode(payload.payload, schema)
        elif isinstance(payload, V2Body):
            call.v2 = v2.decode(payload.body, payload.header_length, schema, outputs)
            call.rows = call.v2.rows
        elif isinstance(payload, InferRequest):
            call.v2 = grpc.decode(payload, schema, outputs)
            call.rows = call.v2.rows
        else:
            raise BadRequest("unsupported request payload")
        if call.rows.entity_ids is not None:
            call.filled = await self._fill_from_store(call.rows, call.serving)
        return call

    async def _fill_from_store(self, rows: Rows, serving: Serving) -> dict[int, list[str]]:
        if self.features is None:
            raise BadRequest(
                "this server has no feature store: send all features, or start it with "
                "--feature_store PATH to look them up by id"
            )
        assert rows.entity_ids is not None
        columns = serving.model.columns
        gaps = np.asarray(pd.isna(rows.values), dtype=bool)  # NaN (matrix) or None (typed rows)
        gaps[:, [not c.required for c in columns]] = False  # an optional column may stay empty
        positions = [i for i, entity in enumerate(rows.entity_ids) if entity is not None]
        if len(positions) != rows.count and np.delete(gaps, positions, axis=0).any():
            raise BadRequest("a row without an entity id is missing features")
        ids = [entity for entity in rows.entity_ids if entity is not None]
        subset, holes = rows.values[positions], gaps[positions]
        # Ask only for what some caller left out: features the caller sent override the stored ones.
        needed = [j for j in range(subset.shape[1]) if holes[:, j].any()]
        if not needed:
            return {}
        names = [columns[j].name for j in needed]
        fetched = await self.features.fetch(ids, names, serving.model.feature_defaults)
        stored = as_columns(
            fetched.values, [columns[j] for j in needed], ids, self.features.entity_key, serving.model.matrix
        )
        block = subset[:, needed]
        subset[:, needed] = np.where(holes[:, needed], stored, block)
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
        if call.v2 is not None and CONTRIBUTIONS in call.v2.requested:
            call.contributions = await asyncio.to_thread(self._contributions, call.serving, call.rows.values)
        call.serving.series.rows.inc(call.rows.count)

    @staticmethod
    def _contributions(serving: Serving, values: np.ndarray) -> np.ndarray:
        """[N, 1 + F]: each row's base value, then the contribution of each input column (signature order)."""
        explained = serving.explainer.explain(serving.schema.frame(values))
        names = serving.model.feature_names
        return np.array([[e["base_value"], *(e["contributions"][name] for name in names)] for e in explained])

    def encode(self, call: _Call, headers: dict[str, str] | None) -> Any:
        model = call.serving.model
        assert call.outputs is not None
        outputs = _named_outputs(call.outputs, model)
        if call.contributions is not None:
            outputs = {**outputs, CONTRIBUTIONS: call.contributions}
        self._tap(call, outputs, headers)
        payload = call.payload
        if isinstance(payload, V1Body):
            return v1.encode(outputs, self.name, model.version, call.filled)
        if isinstance(payload, MlflowBody):
            return mlflow.encode(outputs, model.output_names if model.frame_outputs else None)
        assert call.v2 is not None
        if isinstance(payload, V2Body):
            return v2.encode(call.v2, outputs, self.name, model.version)
        return grpc.encode(call.v2, outputs, self.name, model.version)

    def _tap(self, call: _Call, outputs: dict[str, np.ndarray], headers: dict[str, str] | None) -> None:
        """What watches answers per request: the prediction log and the challenger (drift watches the batcher's
        calls). Each only enqueues (its own thread does the work), so none can delay or fail the response."""
        serving, rows = call.serving, call.rows
        assert rows is not None
        if self.prediction_log is None and self.challenger is None:
            return
        predictions = _predictions(outputs)
        if call.v2 is not None:
            request_id, protocol = call.v2.id, "grpc" if isinstance(call.payload, InferRequest) else "v2"
        else:
            protocol = "mlflow" if isinstance(call.payload, MlflowBody) else "v1"
            request_id = (headers or {}).get("x-request-id") or ""
            if not request_id and self.prediction_log is not None:
                request_id = uuid.uuid4().hex  # only the log's lines need one (drift and the challenger do not)
        probabilities = outputs.get("probabilities")
        if self.challenger is not None:
            model = serving.model
            self.challenger.submit(
                rows.values, model.columns, serving.version, predictions, probabilities, model.classes, request_id
            )
        if self.prediction_log is not None:
            self._log(call, request_id, protocol, predictions, probabilities)

    def _log(
        self, call: _Call, request_id: str, protocol: str, predictions: np.ndarray, probabilities: np.ndarray | None
    ) -> None:
        from predictor.monitoring.prediction_log import PredictionRecord

        assert call.rows is not None and self.prediction_log is not None
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
        """What v2 accepts: one [N, F] tensor when every column is numeric, one [N] tensor per column when
        not all are doubles (both when both fit)."""
        serving = self.serving
        if serving is None:
            return []
        schema = serving.schema
        inputs: list[dict[str, Any]] = []
        if schema.numeric:
            inputs.append(
                {
                    "name": "input-0",
                    "datatype": "FP64",
                    "shape": [-1, schema.width],
                    "parameters": {"feature_names": ",".join(schema.feature_names)},
                }
            )
        if not schema.tensor and not all(c.type == "double" for c in schema.columns):
            inputs += [
                {
                    "name": c.name,
                    "datatype": c.datatype,
                    "shape": [-1],
                    "parameters": {"type": c.type, "required": c.required},
                }
                for c in schema.columns
            ]
        return inputs

    def metadata_outputs(self) -> list[dict[str, Any]]:
        serving = self.serving
        if serving is None:
            return []
        model = serving.model
        types = model.output_types or {"predictions": _class_datatype(model), "probabilities": "FP64"}
        outputs: list[dict[str, Any]] = []
        for name in model.output_names:
            shape = [-1, len(model.classes)] if name == "probabilities" and model.classes is not None else [-1]
            outputs.append({"name": name, "datatype": types.get(name, "FP64"), "shape": shape})
        if model.classes is not None:  # only when a request names it in "outputs"
            columns = ",".join(("base_value", *model.feature_names))
            outputs.append(
                {
                    "name": CONTRIBUTIONS,
                    "datatype": "FP64",
                    "shape": [-1, 1 + len(model.columns)],
                    "parameters": {"columns": columns, "on_request": True},
                }
            )
        return outputs

    def get_input_types(self) -> list[dict[str, Any]]:
        return self.metadata_inputs()

    def get_output_types(self) -> list[dict[str, Any]]:
        return self.metadata_outputs()


def _named_outputs(outputs: Outputs, model: registry.LoadedModel) -> dict[str, np.ndarray]:
    """The model's answer, named: labels are ``classes[argmax]`` of the probabilities (one model pass)."""
    if isinstance(outputs, dict):
        return outputs
    if model.classes is None:
        return {"predictions": np.asarray(outputs)}
    return {"predictions": model.classes[np.argmax(outputs, axis=1)], "probabilities": outputs}


def _named_call(rows: np.ndarray, model: registry.LoadedModel) -> dict[str, np.ndarray]:
    return _named_outputs(model.predict_fn(rows), model)


def _predictions(outputs: dict[str, np.ndarray]) -> np.ndarray:
    """The predicted labels (or values) among named outputs (``_named_call``'s, which drift's worker bins)."""
    return outputs.get("predictions", next(iter(outputs.values())))


def _class_datatype(model: registry.LoadedModel) -> str:
    return datatype_of(model.classes) if model.classes is not None else "FP64"


def _described(model: registry.LoadedModel) -> list[str]:
    return [f"{c.name} ({c.type}{'' if c.required else ', optional'})" for c in model.columns]
