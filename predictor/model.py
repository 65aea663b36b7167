"""A served model: rows in, named outputs out. It knows no wire format.

KServe's stages are the real ones: ``load`` resolves, loads and warms up a version; per request
``preprocess`` fills features from the store where a row names an entity id, ``predict`` runs the
micro-batcher (and, when asked, each column's contribution), ``postprocess`` hands the answer to the
monitoring taps and returns it named. ``infer`` runs the three; the doors (``serving/http.py``,
``serving/grpc_door.py``) decode before it and encode after it with the request's codec.

It orchestrates and does no I/O itself: the registry adapter loads, the feature fill looks up, the batcher
computes, the taps watch. ``self.serving`` is the version in use; a request keeps the ``Serving`` it started
with, so replacing the pointer (hot swap) never disturbs requests in flight.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from kserve.model import Model

from predictor.config import ModelSpec, Settings
from predictor.errors import BadRequest, ModelNotFoundError, ModelNotReadyError, PredictorError
from predictor.feature_fill import fill_from_store
from predictor.metrics import DriftMetrics, Metrics, VersionSeries
from predictor.models import registry
from predictor.models.batching import DirectPredictor, MicroBatcher
from predictor.models.cache import ModelCache
from predictor.models.flavors import PICKLE_FORMATS, Outputs, frame_preparation
from predictor.models.params import check as check_params
from predictor.monitoring.drift import DriftMonitor
from predictor.monitoring.explain import OnDemand
from predictor.monitoring.taps import Taps, predictions_of
from predictor.protocol.codec import Result
from predictor.protocol.rows import Rows
from predictor.protocol.schema import Schema

if TYPE_CHECKING:
    from predictor.features import FeatureSource
    from predictor.monitoring.challenger import Challenger
    from predictor.monitoring.prediction_log import PredictionLog
    from predictor.monitoring.tracing import SampledCall

log = logging.getLogger(__name__)

CONTRIBUTIONS = "contributions"  # the output a request may ask for: [N, 1 + F], base value then each column


@dataclass
class Serving:
    """One loaded model version and the batcher that feeds it."""

    model: registry.LoadedModel
    batcher: MicroBatcher | DirectPredictor
    schema: Schema  # what requests must match: built once per version, not per request
    explainer: OnDemand  # :explain and the "contributions" output (built on first use)
    series: VersionSeries
    drift: DriftMonitor | None = None  # None: the version was logged without a drift baseline

    @property
    def version(self) -> str:
        return self.model.version

    @property
    def outputs(self) -> tuple[str, ...]:
        """The outputs a request may name (the contributions only where a classifier can be explained)."""
        names = self.model.output_names
        return (*names, CONTRIBUTIONS) if self.model.classes is not None else names


@dataclass(slots=True)
class Call:
    """What the model is told of a request besides its rows: never how it was encoded."""

    protocol: str  # the codec's name, for monitoring
    request_id: str = ""
    contributions: bool = False  # also answer each column's contribution
    params: dict[str, Any] | None = None  # inference parameters as the request sent them (checked here)
    tracing: SampledCall | None = None  # kept by the sampler: its phases become spans


class PredictorModel(Model):
    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        features: FeatureSource | None = None,
        prediction_log: PredictionLog | None = None,
        drift_metrics: DriftMetrics | None = None,
        challenger: Challenger | None = None,
        spec: ModelSpec | None = None,
    ) -> None:
        """``spec``: which model (None: the one of --model_name and --model_uri)."""
        spec = spec or settings.model_specs[0]
        super().__init__(spec.name)
        self.uri = spec.uri
        self.settings = settings
        self.metrics = metrics
        self.features = features
        self.prediction_log = prediction_log
        self.drift_metrics = drift_metrics  # None: no drift monitoring at all
        self.challenger = challenger
        self.taps = Taps(spec.name, prediction_log, challenger)
        self.load_options = load_options_of(settings)
        self.cache = ModelCache(settings.model_cache_dir, settings.tracking_uri, spec.uri)
        self.serving: Serving | None = None
        self.previous: Serving | None = None  # kept loaded: rollback is a pointer flip
        self.ready = False
        self.load_failed: str | None = None  # why the last load failed, as a client may read it (the loader's)
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
            # That check imports MLflow's client (never imported on this path so far): after readiness, as a
            # scaled-to-zero service's first request waits for readiness, not for the registry.
            self.activate(self.prepare(cached))
            return False
        source = registry.resolve(self.uri, self.settings.tracking_uri)
        log.info("loading %s (version %s)", source.uri, source.version)
        self.adopt(registry.load(source, self.load_options))
        return True

    def adopt(self, loaded: registry.LoadedModel) -> None:
        """Remember a freshly loaded version for the next start, then check, warm up and serve it (a compiled
        forest on its arrays as the cache maps them: shared with every other worker serving it)."""
        self.activate(self.prepare(self.cache.put(loaded)))

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

    def unload(self) -> None:
        """Drop every version held (requests in flight keep the ``Serving`` they hold, and finish on it)."""
        held = [s for s in (self.serving, self.previous) if s is not None]
        self.serving = self.previous = None
        self.ready = False
        for serving in held:
            if serving.drift is not None:
                serving.drift.close()
            self.metrics.loaded.labels(self.name, serving.version).set(0)

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
                predictions_of=predictions_of,
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
                self.metrics.dropped_calls.labels(self.name).inc,
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
    def serving_for_request(self, version: str | None) -> Serving:
        """The version a request is served by (None: the current one), captured once: a swap mid-request
        changes nothing for it."""
        serving = self.held(version) if self.ready else None
        if serving is not None:
            return serving
        if version is not None and self.ready:
            raise ModelNotFoundError(
                f"version {version!r:.40} of {self.name} is not loaded; loaded: {', '.join(self.versions())}"
            )
        if self.load_failed is not None:
            raise ModelNotReadyError(
                f"model {self.name} {self.load_failed}; it is retried in the background: "
                f"GET /v2/models/{self.name}/ready says why"
            )
        raise ModelNotReadyError(
            f"model {self.name} is still loading or its registry is unreachable; "
            "retry shortly (GET /ready turns 200 when it can serve)"
        )

    async def infer(self, rows: Rows, serving: Serving, call: Call) -> Result:
        started = time.perf_counter()
        # Most calls name no entity id: no feature stage to await for them (one coroutine less per request).
        tracing = call.tracing
        filled: dict[int, list[str]] = {}
        if rows.entity_ids is not None:
            if tracing is None:
                filled = await self.preprocess(rows, serving)
            else:
                with tracing.span("feature lookup"):
                    filled = await self.preprocess(rows, serving)
        params = check_params(call.params, serving.model.params)
        outputs = await self.predict(rows, serving, call.contributions, params, tracing)
        result = self.postprocess(outputs, rows, serving, call, filled)
        serving.series.latency.observe(time.perf_counter() - started)
        serving.series.predictions.inc()
        return result

    async def explain(self, rows: Rows, serving: Serving) -> Result:  # type: ignore[override]
        """Per row, the predicted class, the base value and each input column's contribution."""
        await self.preprocess(rows, serving)
        frame = serving.schema.frame(rows.values)
        explanations = await asyncio.to_thread(serving.explainer.explain, frame)
        return Result(self.name, serving.version, explanations=explanations)

    # KServe's stages, with rows and outputs instead of its request types.
    async def preprocess(self, rows: Rows, serving: Serving) -> dict[int, list[str]]:  # type: ignore[override]
        """Features from the store for rows that name an entity id; returns the defaults used per row."""
        return await fill_from_store(rows, serving.model, self.features)

    async def predict(  # type: ignore[override]
        self,
        rows: Rows,
        serving: Serving,
        contributions: bool = False,
        params: dict[str, Any] | None = None,
        tracing: SampledCall | None = None,
    ) -> dict[str, np.ndarray]:
        """``params``: the request's checked inference parameters. A call with parameters is a model call of its
        own (on the same model thread): requests with other parameters cannot share it. ``tracing``: the wait for
        a batch and the model call that answered it become spans."""
        model = serving.model
        try:
            if tracing is not None and params is None:
                answer = await _traced_batch(serving, rows.values, tracing)
            elif params is None or model.predict_with_params is None:
                answer = await serving.batcher.predict(rows.values)
            else:
                with_params = functools.partial(model.predict_with_params, params=params)
                answer = await serving.batcher.predict_alone(with_params, rows.values)
            outputs = _named_outputs(answer, model)
        except ValueError as exc:  # the estimator's own input validation: the request, not the server
            raise BadRequest(f"the model rejected the input: {exc}") from exc
        except Exception as exc:  # a generic 500: the cause goes to the log, never to the caller
            log.exception("prediction failed")
            raise PredictorError(f"model {self.name} version {serving.version} failed to predict") from exc
        if contributions:
            outputs = {**outputs, CONTRIBUTIONS: await asyncio.to_thread(_contributions, serving, rows.values)}
        serving.series.rows.inc(rows.count)
        return outputs

    def postprocess(  # type: ignore[override]
        self,
        outputs: dict[str, np.ndarray],
        rows: Rows,
        serving: Serving,
        call: Call,
        filled: dict[int, list[str]],
    ) -> Result:
        trace_id = call.tracing.current_trace_id() if call.tracing is not None else None
        self.taps.record(serving.model, rows, outputs, filled, call.protocol, call.request_id, trace_id)
        model = serving.model
        frame_columns = model.output_names if model.frame_outputs else None
        return Result(self.name, model.version, outputs, filled, frame_columns, dict_answer=model.dict_outputs)

    def versions(self) -> list[str]:
        return [s.version for s in (self.serving, self.previous) if s is not None]

    def require_version(self, version: str | None) -> None:
        """404 unless ``version`` (when a request names one) is loaded."""
        if version is not None and self.held(version) is None:
            raise ModelNotFoundError(
                f"version {version!r:.40} of {self.name} is not loaded; "
                f"loaded: {', '.join(self.versions()) or 'none yet'}"
            )

    def count_error(self, error_type: str) -> None:
        """model_prediction_errors_total, labelled with the version serving now (``none`` before a load)."""
        serving = self.serving
        self.metrics.errors.labels(self.name, serving.version if serving else "none", error_type).inc()


def _named_outputs(outputs: Outputs, model: registry.LoadedModel) -> dict[str, np.ndarray]:
    """The model's answer, named: labels are ``classes[argmax]`` of the probabilities (one model pass)."""
    if isinstance(outputs, dict):
        return outputs
    if model.classes is None:
        return {model.output_names[0]: np.asarray(outputs)}  # "predictions", or the output schema's name
    return {"predictions": model.classes[np.argmax(outputs, axis=1)], "probabilities": outputs}


async def _traced_batch(serving: Serving, values: np.ndarray, tracing: SampledCall) -> Outputs:
    timing: list[int] = []
    queued = time.time_ns()
    answer = await serving.batcher.predict(values, timing)
    if timing:  # the rows' model call: what came before it was the wait for a batch
        began, ended, batch_rows = timing
        tracing.record("batch wait", queued, began)
        tracing.record("model call", began, ended, {"batch.rows": batch_rows})
    return answer


def _named_call(rows: np.ndarray, model: registry.LoadedModel) -> dict[str, np.ndarray]:
    return _named_outputs(model.predict_fn(rows), model)


def _contributions(serving: Serving, values: np.ndarray) -> np.ndarray:
    """[N, 1 + F]: each row's base value, then the contribution of each input column (signature order)."""
    explained = serving.explainer.explain(serving.schema.frame(values))
    names = serving.model.feature_names
    return np.array([[e["base_value"], *(e["contributions"][name] for name in names)] for e in explained])


def _described(model: registry.LoadedModel) -> list[str]:
    return [f"{c.name} ({c.type}{'' if c.required else ', optional'})" for c in model.columns]


def load_options_of(settings: Settings) -> registry.LoadOptions:
    """How this server loads every version, the challenger's included."""
    from predictor.monitoring.baseline import ARTIFACT_NAME

    return registry.LoadOptions(settings.tracking_uri, settings.compile_forest, settings.allow_pickle, ARTIFACT_NAME)
