"""The model's life in process (``predictor.model.PredictorModel``), against a real MLflow registry in tmp_path
(SQLite) holding two real versions: loading, swapping, rolling back and forth, unloading, a restart from the local
model cache, what a request is told when the version it names is not there, and how the model's own failures reach
the caller. No server: the doors' end-to-end tests are elsewhere; this is the part they all share."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from predictor.config import load_settings
from predictor.demo.training import register_demo_model
from predictor.errors import BadRequest, ModelNotFoundError, ModelNotReadyError, PredictorError
from predictor.metrics import Metrics
from predictor.model import Call, PredictorModel, Serving, _named_outputs
from predictor.models import registry
from predictor.monitoring.prediction_log import PredictionLog
from predictor.protocol.rows import Rows
from predictor.protocol.schema import Column

NAME = "pm"
ROW = [70.0, 2.5, 120.0, 35.0, 1200.0, 30.0, 1.0, 0.0, 0.0, 18.0]  # a reading of the demo's ten columns


@pytest.fixture(scope="module")
def tracking_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = tmp_path_factory.mktemp("registry")
    uri = f"sqlite:///{root}/mlflow.db"
    register_demo_model(uri, NAME, artifact_root=root / "artifacts", n_estimators=5)  # version 1: a forest
    register_demo_model(uri, NAME, kind="logreg", artifact_root=root / "artifacts", force=True)  # 2: logistic
    return uri


class Scene:
    """A model of one name on its own metrics registry."""

    def __init__(self, tracking_uri: str, cache: Path | None, *flags: str, log: PredictionLog | None = None) -> None:
        self.registry = CollectorRegistry()
        cache_flag = ("--model_cache_dir", str(cache) if cache else "")
        settings = load_settings(
            [
                "--model_name",
                NAME,
                "--model_uri",
                f"models:/{NAME}/1",
                "--tracking_uri",
                tracking_uri,
                *cache_flag,
                *flags,
            ],
            {},
        )
        self.model = PredictorModel(settings, Metrics.create(self.registry), prediction_log=log)

    def version(self, number: str) -> registry.LoadedModel:
        options = self.model.load_options
        return registry.load(registry.resolve(f"models:/{NAME}/{number}", options.tracking_uri), options)

    def gauge(self, name: str, **labels: str) -> float | None:
        return self.registry.get_sample_value(name, {"model_name": NAME, **labels})

    def infer(self, serving: Serving, *rows: list[float]) -> dict[str, np.ndarray]:
        result = asyncio.run(self.model.infer(Rows(np.array(rows, dtype=np.float64)), serving, Call("v1")))
        assert (result.model_name, result.version) == (NAME, serving.version)
        return result.outputs


@pytest.fixture
def scene(tracking_uri: str, tmp_path: Path) -> Iterator[Scene]:
    made = Scene(tracking_uri, tmp_path / "cache")
    yield made
    made.model.unload()


# --- loading -------------------------------------------------------------------------------------------------


def test_before_a_load_a_request_is_told_to_retry_and_the_metric_says_none_is_loaded(scene: Scene) -> None:
    assert scene.gauge("model_loaded", model_version="none") == 0
    with pytest.raises(ModelNotReadyError) as caught:
        scene.model.serving_for_request(None)
    assert str(caught.value) == (
        f"model {NAME} is still loading or its registry is unreachable; retry shortly (GET /ready turns 200 when "
        "it can serve)"
    )
    scene.model.load_failed = "failed to load: the registry said no"
    with pytest.raises(ModelNotReadyError) as caught:
        scene.model.serving_for_request("1")
    assert str(caught.value) == (
        f"model {NAME} failed to load: the registry said no; it is retried in the background: "
        f"GET /v2/models/{NAME}/ready says why"
    )
    scene.model.count_error("not_ready")
    assert scene.gauge("model_prediction_errors_total", model_version="none", error_type="not_ready") == 1
    with pytest.raises(ModelNotFoundError, match="loaded: none yet"):
        scene.model.require_version("1")


def test_a_load_from_the_registry_serves_and_predicts(scene: Scene) -> None:
    assert scene.model.load() is True  # from the registry: nothing to revalidate
    serving = scene.model.serving_for_request(None)
    assert scene.model.ready and serving.version == "1" and scene.model.versions() == ["1"]
    assert scene.gauge("model_loaded", model_version="1") == 1
    assert scene.gauge("model_format_info", model_version="1", flavor="sklearn", serialization="skops") == 1
    outputs = scene.infer(serving, ROW, ROW)
    probabilities = outputs["probabilities"]
    assert probabilities.shape == (2, 2) and np.allclose(probabilities.sum(axis=1), 1)
    assert outputs["predictions"].tolist() == serving.model.classes[probabilities.argmax(axis=1)].tolist()
    assert scene.gauge("model_prediction_rows_total", model_version="1") == 2
    assert scene.gauge("model_predictions_total", model_version="1") == 1
    assert scene.gauge("model_prediction_latency_seconds_count", model_version="1") == 1


def test_a_restart_serves_the_cached_version_and_asks_the_registry_after(tracking_uri: str, tmp_path: Path) -> None:
    first = Scene(tracking_uri, tmp_path / "cache")
    assert first.model.load() is True
    again = Scene(tracking_uri, tmp_path / "cache")
    assert again.model.load() is False  # from the cache: the caller revalidates against the registry
    assert again.model.serving_for_request(None).version == "1"
    served = first.infer(first.model.serving_for_request(None), ROW)["probabilities"]
    assert again.infer(again.model.serving_for_request(None), ROW)["probabilities"].tolist() == served.tolist()
    without_cache = Scene(tracking_uri, None)
    assert without_cache.model.load() is True


def test_a_cached_pickle_is_not_served_once_pickles_are_refused(tracking_uri: str, tmp_path: Path) -> None:
    """A version cached while --allow_pickle was on is loaded from the registry again, and refused the same way."""
    cached = Scene(tracking_uri, tmp_path / "cache")
    loaded = cached.version("1")
    cached.model.cache.put(dataclasses.replace(loaded, serialization="cloudpickle"))
    strict = Scene(tracking_uri, tmp_path / "cache", "--allow_pickle", "false")
    assert strict.model.load() is True  # the registry's copy (skops): not the cached pickle
    assert strict.gauge("model_format_info", model_version="1", flavor="sklearn", serialization="skops") == 1


# --- versions ------------------------------------------------------------------------------------------------


def test_a_new_version_replaces_the_current_one_which_stays_loaded_for_rollback(scene: Scene) -> None:
    scene.model.load()
    first = scene.model.serving_for_request(None)
    scene.model.adopt(scene.version("2"))
    second = scene.model.serving_for_request(None)
    assert (second.version, scene.model.versions()) == ("2", ["2", "1"])
    assert scene.model.held("1") is first and scene.model.held(None) is second and scene.model.held("3") is None
    assert scene.model.serving_for_request("1") is first  # a request may still name the previous version
    assert (scene.gauge("model_loaded", model_version="1"), scene.gauge("model_loaded", model_version="2")) == (0, 1)

    assert scene.model.rollback() is first
    assert scene.model.versions() == ["1", "2"]
    assert (scene.gauge("model_loaded", model_version="1"), scene.gauge("model_loaded", model_version="2")) == (1, 0)
    assert scene.model.rollback() is second  # and forward again


def test_adopting_the_version_already_served_keeps_the_previous_one(scene: Scene) -> None:
    scene.model.load()
    scene.model.adopt(scene.version("2"))
    scene.model.adopt(scene.version("2"))  # the registry answered the same version again
    assert scene.model.versions() == ["2", "1"]
    assert scene.gauge("model_loaded", model_version="2") == 1


def test_without_a_previous_version_a_rollback_is_refused(scene: Scene) -> None:
    scene.model.load()
    with pytest.raises(BadRequest, match=r"^no previous version is loaded to roll back to$"):
        scene.model.rollback()
    assert scene.model.versions() == ["1"]


def test_a_version_not_loaded_is_404_naming_what_is(scene: Scene) -> None:
    scene.model.load()
    scene.model.adopt(scene.version("2"))
    for ask in (scene.model.require_version, scene.model.serving_for_request):
        with pytest.raises(ModelNotFoundError) as caught:
            ask("7")
        assert str(caught.value) == f"version '7' of {NAME} is not loaded; loaded: 2, 1"
    scene.model.require_version(None)
    scene.model.require_version("1")


def test_unloading_drops_every_version_and_turns_readiness_off(scene: Scene) -> None:
    scene.model.load()
    scene.model.adopt(scene.version("2"))
    scene.model.unload()
    assert not scene.model.ready and scene.model.versions() == []
    assert (scene.gauge("model_loaded", model_version="1"), scene.gauge("model_loaded", model_version="2")) == (0, 0)
    with pytest.raises(ModelNotReadyError):
        scene.model.serving_for_request(None)


def test_a_version_expecting_other_columns_is_refused_naming_both(scene: Scene) -> None:
    scene.model.load()
    fewer = scene.version("2")
    optional = Column(fewer.columns[2].name, fewer.columns[2].type, required=False)
    fewer = dataclasses.replace(fewer, columns=(*fewer.columns[:2], optional))
    with pytest.raises(PredictorError) as caught:
        scene.model.prepare(fewer)
    served = scene.model.serving_for_request(None).model.columns
    wanted = [f"{c.name} ({c.type})" for c in served[:2]] + [f"{served[2].name} ({served[2].type}, optional)"]
    assert str(caught.value) == (
        f"version 2 expects columns {wanted}, but clients send "
        f"{[f'{c.name} ({c.type})' for c in served]}: not swapping (deploy it under a new model name instead)"
    )
    assert scene.model.versions() == ["1"]


# --- the model's own failures --------------------------------------------------------------------------------


def test_a_warm_up_that_does_not_answer_one_row_fails_the_version(scene: Scene) -> None:
    loaded = scene.version("1")
    twice = dataclasses.replace(loaded, predict_fn=lambda rows: np.vstack([loaded.predict_fn(rows)] * 2))
    with pytest.raises(PredictorError, match=r"^warm-up prediction returned 2 rows for 1$"):
        scene.model.prepare(twice)


def test_the_models_own_input_check_is_the_callers_fault_anything_else_the_servers(scene: Scene) -> None:
    loaded = scene.version("1")
    scene.model.activate(scene.model.prepare(loaded))

    def refuses(rows: np.ndarray) -> np.ndarray:
        if len(rows) > 1:
            raise ValueError("X has 3 features, but the model expects 10")
        return loaded.predict_fn(rows)

    def breaks(rows: np.ndarray) -> np.ndarray:
        if len(rows) > 1:
            raise RuntimeError("out of memory")
        return loaded.predict_fn(rows)

    for predict_fn, error, message in (
        (refuses, BadRequest, "the model rejected the input: X has 3 features, but the model expects 10"),
        (breaks, PredictorError, f"model {NAME} version 1 failed to predict"),
    ):
        serving = scene.model.prepare(dataclasses.replace(loaded, predict_fn=predict_fn))
        with pytest.raises(error) as caught:
            scene.infer(serving, ROW, ROW)
        assert str(caught.value) == message and type(caught.value) is error
    assert scene.gauge("model_prediction_rows_total", model_version="1") == 0  # nothing counted as predicted


def test_outputs_are_named_as_the_model_answers_them(scene: Scene) -> None:
    classifier = scene.version("1")
    probabilities = np.array([[0.9, 0.1], [0.2, 0.8]])
    named = _named_outputs(probabilities, classifier)
    assert named["predictions"].tolist() == classifier.classes.tolist() and named["probabilities"] is probabilities
    regressor = dataclasses.replace(classifier, classes=None, output_names=("hours_left",))
    assert _named_outputs([3.5, 7.0], regressor)["hours_left"].tolist() == [3.5, 7.0]
    frame = {"score": np.array([1.0])}
    assert _named_outputs(frame, classifier) is frame


# --- explanations, ids and traces ------------------------------------------------------------------------------


def test_contributions_are_the_explanations_base_value_then_each_column(scene: Scene) -> None:
    scene.model.load()
    serving = scene.model.serving_for_request(None)
    result = asyncio.run(scene.model.explain(Rows(np.array([ROW])), serving))
    assert (result.model_name, result.version) == (NAME, "1")
    [explained] = result.explanations or []
    names = serving.model.feature_names
    assert set(explained["contributions"]) == set(names)
    call = Call("v1", contributions=True)

    async def asked_and_not() -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:  # one loop: the batcher's
        asked = await scene.model.infer(Rows(np.array([ROW, ROW])), serving, call)
        return asked.outputs, await scene.model.predict(Rows(np.array([ROW])), serving)

    outputs, plain = asyncio.run(asked_and_not())
    expected = [explained["base_value"], *(explained["contributions"][name] for name in names)]
    assert outputs["contributions"].shape == (2, 1 + len(names))
    assert np.allclose(outputs["contributions"][0], expected) and np.allclose(outputs["contributions"][1], expected)
    assert set(plain) == {"predictions", "probabilities"}  # none unless asked for


def test_rows_naming_ids_need_a_feature_store(scene: Scene) -> None:
    scene.model.load()
    serving = scene.model.serving_for_request(None)
    rows = Rows(np.full((1, len(ROW)), np.nan), entity_ids=["pump-0001"])
    with pytest.raises(BadRequest) as caught:
        asyncio.run(scene.model.infer(rows, serving, Call("v1")))
    assert str(caught.value) == (
        "this server has no feature store: send all features, or start it with --feature_store PATH to look them "
        "up by id"
    )


def test_a_sampled_call_records_its_wait_for_a_batch_and_the_model_call(
    scene: Scene, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With tracing on (the real SDK, spans kept in memory): the rows' batch wait and model call become spans."""
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from predictor.monitoring.tracing import Tracing

    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_on")
    exporter = InMemorySpanExporter()
    tracing = Tracing(exporter)
    scene.model.load()
    serving = scene.model.serving_for_request(None)
    with tracing.server_span("POST /v1/models/pm:predict", {}, "v1"):
        kept = tracing.sampled()
        assert kept is not None
        asyncio.run(scene.model.infer(Rows(np.array([ROW, ROW])), serving, Call("v1", tracing=kept)))
    tracing.shutdown()
    spans = {span.name: span for span in exporter.get_finished_spans()}
    assert {"batch wait", "model call"} <= spans.keys()
    assert spans["model call"].attributes is not None and spans["model call"].attributes["batch.rows"] == 2
    wait, call = spans["batch wait"], spans["model call"]
    assert wait.start_time is not None and wait.end_time is not None and call.start_time is not None
    assert wait.start_time <= wait.end_time == call.start_time <= (call.end_time or 0)  # queued, began, ended


def test_each_answer_is_logged_with_its_version_protocol_request_and_trace(
    tracking_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The taps get what the model served: the prediction log's lines (a real log, a file in tmp_path)."""
    import json

    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from predictor.monitoring.tracing import Tracing

    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_on")
    tracing = Tracing(InMemorySpanExporter())
    log = PredictionLog(str(tmp_path / "predictions.jsonl"), flush_interval_s=0)
    scene = Scene(tracking_uri, tmp_path / "cache", log=log)
    scene.model.load()
    serving = scene.model.serving_for_request(None)
    with tracing.server_span("POST /v1/models/pm:predict", {}, "v1"):
        kept = tracing.sampled()
        assert kept is not None
        trace_id = kept.current_trace_id()
        call = Call("grpc", request_id="req-7", tracing=kept)
        result = asyncio.run(scene.model.infer(Rows(np.array([ROW, ROW])), serving, call))
    tracing.shutdown()
    log.close()
    lines = [json.loads(line) for line in (tmp_path / "predictions.jsonl").read_text().splitlines()]
    assert [(line["row"], line["model_version"], line["protocol"], line["request_id"]) for line in lines] == [
        (0, "1", "grpc", "req-7"),
        (1, "1", "grpc", "req-7"),
    ]
    assert {line["trace_id"] for line in lines} == {trace_id}
    assert lines[0]["features"] == dict(zip(serving.model.feature_names, ROW, strict=True))
    assert result.filled == {} and result.frame_columns is None and result.dict_answer is False


def test_a_frame_answer_keeps_its_columns_and_errors_are_counted_against_the_version_serving(scene: Scene) -> None:
    scene.model.load()
    loaded = scene.model.serving_for_request(None).model
    framed = dataclasses.replace(loaded, frame_outputs=True, dict_outputs=True)
    serving = scene.model.prepare(framed)
    result = asyncio.run(scene.model.infer(Rows(np.array([ROW])), serving, Call("invocations")))
    assert result.frame_columns == loaded.output_names and result.dict_answer is True
    scene.model.count_error("bad_request")
    assert scene.gauge("model_prediction_errors_total", model_version="1", error_type="bad_request") == 1
