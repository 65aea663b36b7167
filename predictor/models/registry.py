"""Resolve an MLflow model URI to a registry version and load it; MLflow's errors become ours here.

``models:/NAME@alias``, ``models:/NAME/Stage`` and ``models:/NAME/latest`` are resolved to a concrete
version *once*, and that version is what the server reports everywhere. ``runs:/`` URIs and local paths
have no registry version: they report the run id (``run-<id8>``) or ``local``.
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from predictor.errors import ModelLoadError
from predictor.models import flavors
from predictor.models.flavors import Outputs
from predictor.models.imports import import_modules
from predictor.models.params import Param
from predictor.models.params import from_signature as params_of
from predictor.models.pipeline import CompiledPipeline, compile_pipeline
from predictor.protocol.rows import datatype_of
from predictor.protocol.schema import Column, Schema, from_signature

log = logging.getLogger(__name__)

FEATURE_DEFAULTS_KEY = "feature_defaults"


@dataclass(frozen=True)
class ModelSource:
    """Where a model comes from: the URI asked for, and what it resolved to."""

    uri: str
    version: str
    download_uri: str  # the URI pinned to ``version`` (so a moving alias cannot change what we load)
    registered_name: str | None = None


@dataclass(frozen=True)
class LoadedModel:
    """A model ready to call: on the matrix path the hot path never touches MLflow or pandas."""

    source: ModelSource
    columns: tuple[Column, ...]
    # rows [N, F] (float64 when ``matrix``, else typed objects) -> probabilities [N, C] for a classifier,
    # predictions [N] otherwise, or one array per output for a pyfunc answering a DataFrame
    predict_fn: Callable[[np.ndarray], Outputs]
    classes: np.ndarray | None
    feature_defaults: dict[str, Any] = field(default_factory=dict)
    estimator: Any = None  # the scikit-learn-API object, when there is one (what the local cache keeps)
    matrix: bool = True  # rows travel as a float64 matrix (see protocol/schema.py)
    tensor: bool = False  # the signature is one unnamed [N, F] tensor
    flavor: str = "sklearn"
    serialization: str = "unknown"  # skops / cloudpickle / pickle / native (...): what loading it trusted
    output_names: tuple[str, ...] = ("predictions",)
    frame_outputs: bool = False  # a pyfunc answered a DataFrame (or a dict): its columns are the outputs
    dict_outputs: bool = False  # ... a dict of columns, not a DataFrame
    output_types: dict[str, str] = field(default_factory=dict)  # output name -> v2 datatype (metadata)
    drift_baseline: Any = None  # the parsed drift_baseline.json logged with the model, if any
    example: dict[str, Any] | None = None  # the logged input example's first row: the warm-up row's values
    params: tuple[Param, ...] = ()  # the signature's inference parameters
    # rows, checked parameters -> outputs: a pyfunc that takes parameters (None: parameters change nothing)
    predict_with_params: Callable[..., Outputs] | None = None
    # When ``estimator`` is None but can be had (a cached compiled forest keeps it pickled): for :explain.
    load_estimator: Callable[[], Any] | None = None

    def the_estimator(self) -> Any:
        """The scikit-learn-API object (unpickled on first need for a cached forest), or None (a pyfunc)."""
        if self.estimator is None and self.load_estimator is not None:
            return self.load_estimator()
        return self.estimator

    @property
    def version(self) -> str:
        return self.source.version

    @property
    def path(self) -> str:
        """How rows reach the model, for the log."""
        if self.matrix:
            return "float64 matrix"
        return "compiled pipeline" if isinstance(self.predict_fn, CompiledPipeline) else "typed DataFrame"

    @cached_property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @cached_property
    def optional_positions(self) -> tuple[int, ...]:
        """The columns a row may leave empty (per model, not per request: the by-id fill asks on every one)."""
        return tuple(j for j, c in enumerate(self.columns) if not c.required)

    @property
    def has_probabilities(self) -> bool:
        return self.classes is not None


# Waits between failed loads (the served model's and the challenger's): the last one repeats.
LOAD_BACKOFF_S = (1, 2, 4, 8, 10)


def load_backoff_s(attempt: int) -> int:
    return LOAD_BACKOFF_S[min(attempt, len(LOAD_BACKOFF_S) - 1)]


def can_move(uri: str) -> bool:
    """An alias, a stage or ``latest`` can name another version later; a number, a run or a path cannot."""
    return uri.startswith("models:/") and not uri.rstrip("/").rsplit("/", 1)[-1].isdigit()


CLIENT_MODULES = ("mlflow", "mlflow.store.artifact.utils.models")
LOADER_MODULES = (*CLIENT_MODULES, "mlflow.artifacts", "mlflow.models")


def import_client() -> None:
    """Import what ``resolve`` needs (MLflow's client: ~0.8 s of CPU, holding the GIL while it runs)."""
    import_modules(*CLIENT_MODULES)


class RegistryError(Exception):
    """The registry could not say which version a URI names (unreachable, or an answer that is not MLflow's).
    Not a client's error class: a load that fails on it answers ``ModelLoadError`` (``serving/loading.py``)."""


class NotRegistered(RegistryError):
    """The registry answered: no such model, or no version holds that alias (not an outage)."""


def _not_registered(exc: Exception) -> bool:
    """MLflow's answer for a missing model (RESOURCE_DOES_NOT_EXIST) or alias (INVALID_PARAMETER_VALUE "Registered
    model alias … not found"), from a database store or a tracking server alike."""
    code, text = getattr(exc, "error_code", None), str(exc).lower()
    return code == "RESOURCE_DOES_NOT_EXIST" or (
        code == "INVALID_PARAMETER_VALUE" and "alias" in text and "not found" in text
    )


def resolve(uri: str, tracking_uri: str) -> ModelSource:
    """Ask the registry which version ``uri`` means right now."""
    import_client()
    from mlflow import MlflowClient
    from mlflow.store.artifact.utils.models import get_model_name_and_version

    if uri.startswith("models:/"):
        client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        try:
            name, version = get_model_name_and_version(client, uri)
        except Exception as exc:  # MlflowException, connection errors, a model without that alias…
            why = f"cannot resolve {uri} in the registry at {tracking_uri}: {_first_line(exc)}"
            raise (NotRegistered(why) if _not_registered(exc) else RegistryError(why)) from exc
        return ModelSource(uri, str(version), f"models:/{name}/{version}", registered_name=name)
    if uri.startswith("runs:/"):
        run_id = uri.removeprefix("runs:/").split("/", 1)[0]
        return ModelSource(uri, f"run-{run_id[:8]}", uri)
    path = Path(uri.removeprefix("file://"))
    if not (path / "MLmodel").exists():
        raise ModelLoadError(f"{uri} is neither a models:/ or runs:/ URI nor a directory holding an MLmodel file")
    return ModelSource(uri, "local", str(path.resolve()))


@dataclass(frozen=True)
class LoadOptions:
    """How every model version is loaded, the served one and the challenger alike (settings, once)."""

    tracking_uri: str
    #: evaluate random forests with ``predictor.models.forest``, and Pipelines of column encoders and a forest with
    #: ``predictor.models.pipeline`` (identical results, far fewer Python calls per prediction), instead of
    #: scikit-learn's per-tree loop
    compile_forest: bool = True
    #: False refuses models stored as pickle or cloudpickle (loading those runs whatever code the file names)
    allow_pickle: bool = True
    #: a JSON document logged beside the model to carry along (monitoring's drift baseline), if any
    baseline_document: str | None = None


def load(source: ModelSource, options: LoadOptions) -> LoadedModel:
    """Download (cached by MLflow) and load the model natively with its flavor (``flavors.py``)."""
    import_modules(*LOADER_MODULES)
    import mlflow
    from mlflow.models import Model

    tracking_uri, compile_forests, allow_pickle = options.tracking_uri, options.compile_forest, options.allow_pickle
    try:
        mlflow.set_tracking_uri(tracking_uri)
        mlflow.set_registry_uri(tracking_uri)
        local_dir = Path(mlflow.artifacts.download_artifacts(artifact_uri=source.download_uri))
        metadata = Model.load(str(local_dir))
    except Exception as exc:
        raise ModelLoadError(f"cannot download {source.download_uri}: {_first_line(exc)}") from exc
    serialization = flavors.serialization_format(metadata.flavors)
    log.info("version %s is stored as %s (flavors: %s)", source.version, serialization, ", ".join(metadata.flavors))
    if not allow_pickle and serialization in flavors.PICKLE_FORMATS:
        raise ModelLoadError(
            f"version {source.version} is stored as {serialization}, and --allow_pickle is false (loading a "
            "pickle runs any code it names). Re-log it with skops: mlflow.sklearn.log_model(model, ..., "
            'serialization_format="skops", skops_trusted_types=[...the types MLflow lists...])'
        )
    adapter = flavors.load(local_dir, metadata.flavors)
    example = _example_frame(metadata, local_dir)
    columns, tensor = _input_columns(metadata.signature, example, adapter, source)
    defaults = _feature_defaults(metadata)
    built = build(
        source,
        columns,
        tensor,
        defaults,
        adapter,
        compile_forests,
        _first_row(example),
        output_name(metadata.signature),
    )
    baseline = _read_document(local_dir / options.baseline_document) if options.baseline_document else None
    params = params_of(metadata.signature)
    with_params = _with_params(adapter, columns) if params else None
    return dataclasses.replace(built, drift_baseline=baseline, params=params, predict_with_params=with_params)


def _with_params(adapter: flavors.Adapter, columns: tuple[Column, ...]) -> Callable[..., Outputs] | None:
    predict_params = adapter.predict_params
    if predict_params is None:
        return None
    typed = Schema(columns, matrix=False)

    def predict(rows: np.ndarray, params: dict[str, Any]) -> Outputs:
        return predict_params(typed.frame(rows), params)

    return predict


def build(
    source: ModelSource,
    columns: tuple[Column, ...],
    tensor: bool,
    defaults: dict[str, Any],
    adapter: flavors.Adapter,
    compile_forests: bool = True,
    example: dict[str, Any] | None = None,
    named: str | None = None,
) -> LoadedModel:
    """Choose the matrix or the DataFrame path by trying both on a typed warm-up row, then wrap the model.
    ``named``: what the output schema calls a one-column answer (its v2 output's name; v1 says predictions)."""
    typed = Schema(columns, matrix=False)
    row = warm_up_row(columns, defaults, example, flavors.lightgbm_first_categories(adapter))
    try:
        # A probe, not traffic: scikit-learn's "X has feature names, but … was fitted without" (a model fitted on
        # arrays) is expected here, and the matrix path chosen below is what such a model is then served by.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            reference = adapter.predict_frame(typed.frame(row))
    except Exception as exc:
        raise ModelLoadError(
            f"the model cannot predict a typed warm-up row {row.tolist()}: {_first_line(exc)}"
        ) from exc
    names: tuple[str, ...] = tuple(reference) if isinstance(reference, dict) else (named or "predictions",)
    if adapter.classes is not None:
        names = ("predictions", "probabilities")
    matrix_fn = _matrix_path(adapter, typed, row, reference)
    predict: Callable[[np.ndarray], Outputs]
    if matrix_fn is not None:
        from predictor.models.forest import compile_forest

        compiled = compile_forest(adapter.estimator) if compile_forests and adapter.estimator is not None else None
        predict = compiled or matrix_fn
    else:
        if adapter.restore_names is not None:
            adapter.restore_names()

        def frame_predict(rows: np.ndarray) -> Outputs:
            return adapter.predict_frame(typed.frame(rows))  # one DataFrame per micro-batch

        piped = compile_pipeline(adapter.estimator, columns, frame_predict) if compile_forests else None
        predict = piped or frame_predict

    return LoadedModel(
        source,
        columns,
        predict,
        adapter.classes,
        feature_defaults=defaults,
        estimator=adapter.estimator,
        matrix=matrix_fn is not None,
        tensor=tensor,
        flavor=adapter.flavor,
        serialization=adapter.serialization,
        output_names=names,
        frame_outputs=isinstance(reference, dict),
        dict_outputs=isinstance(reference, flavors.DictAnswer),
        output_types=_output_types(reference, adapter.classes, names[0]),
        example=example,
    )


def _output_types(reference: Outputs, classes: np.ndarray | None, name: str) -> dict[str, str]:
    if isinstance(reference, dict):
        return {name: datatype_of(np.asarray(array)) for name, array in reference.items()}
    if classes is not None:
        return {"predictions": datatype_of(classes), "probabilities": "FP64"}
    return {name: datatype_of(np.asarray(reference))}


def output_name(signature: Any) -> str | None:
    """The name an output schema gives a one-column answer (``infer_signature(X, pd.Series(y, name=...))``), which
    v2 then uses for the output; None for a tensor, several columns, an unnamed one or no schema (``predictions``)."""
    outputs = getattr(signature, "outputs", None)
    if outputs is None or outputs.is_tensor_spec() or len(outputs.inputs) != 1:
        return None
    name = outputs.inputs[0].name
    return str(name) if name else None


def _matrix_path(
    adapter: flavors.Adapter, typed: Schema, row: np.ndarray, reference: Outputs
) -> Callable[[np.ndarray], Outputs] | None:
    """The float64 fast path, when every column is numeric and the model answers it exactly as a DataFrame."""
    if adapter.predict_matrix is None or not typed.numeric:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # e.g. "X does not have valid feature names": not on every call
            answer = adapter.predict_matrix(row.astype(np.float64))
    except Exception as exc:
        log.info("the model needs DataFrames (%s)", _first_line(exc))
        return None
    if isinstance(answer, dict) or isinstance(reference, dict) or not np.array_equal(answer, reference):
        return None
    return adapter.predict_matrix


def warm_up_row(
    columns: tuple[Column, ...], defaults: dict[str, Any], example: dict[str, Any] | None, categories: list[Any]
) -> np.ndarray:
    """One typed row (an all-float row fails for long and string columns): the logged input example where
    there is one, else the logged defaults, else a neutral value of each column's type."""
    neutral: dict[str, Any] = {
        "double": 0.0,
        "float": 0.0,
        "long": 0,
        "integer": 0,
        "boolean": False,
        "string": "",
        "datetime": np.datetime64("2000-01-01T00:00:00", "ns"),
        "binary": b"",
    }
    strings = iter(categories)
    row = np.empty((1, len(columns)), dtype=object)
    for j, column in enumerate(columns):
        value = (example or {}).get(column.name, defaults.get(column.name))
        if value is None and column.type == "string":
            value = next(strings, None)
        row[0, j] = neutral[column.type] if value is None else value
    return row


def _input_columns(
    signature: Any, example: pd.DataFrame | None, adapter: flavors.Adapter, source: ModelSource
) -> tuple[tuple[Column, ...], bool]:
    """The signature's columns; for a model logged without one (``mlflow models serve`` serves those too), the
    columns of its input example, else the names (or only the count) its estimator kept from training."""
    if signature is not None and signature.inputs is not None:
        return from_signature(signature)
    if example is not None:
        from mlflow.models import infer_signature

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # MLflow's notes on integer columns and missing values
            columns, tensor = from_signature(infer_signature(example))
        how = "its input example's columns"
    elif adapter.feature_names:
        columns, tensor = tuple(Column(name, "double") for name in adapter.feature_names), False
        how = f"the {len(columns)} column names its estimator kept, as numbers"
    elif adapter.feature_count:
        columns, tensor = tuple(Column(f"x{j}", "double") for j in range(adapter.feature_count)), True
        how = f"{adapter.feature_count} positional numbers (lists or one [N, {adapter.feature_count}] tensor)"
    else:
        raise ModelLoadError(
            f"{source.uri} (version {source.version}) has no signature, no input example, and its model does not "
            "say which columns it reads; log it with signature=mlflow.models.infer_signature(X_train_dataframe, ...)"
        )
    log.warning(
        "%s (version %s) was logged without a signature: serving it on %s; type checks beyond that are off "
        "(log it with signature=mlflow.models.infer_signature(X_train, ...) to have them)",
        source.uri,
        source.version,
        how,
    )
    return columns, tensor


def _example_frame(metadata: Any, local_dir: Path) -> pd.DataFrame | None:
    try:
        example = metadata.load_input_example(str(local_dir))
    except Exception:  # no example, or one this MLflow cannot read: the neutral row will do
        return None
    return example if isinstance(example, pd.DataFrame) and len(example) else None


def _first_row(example: pd.DataFrame | None) -> dict[str, Any] | None:
    if example is None:
        return None
    return {str(k): (None if pd.isna(v) else v) for k, v in example.iloc[0].items()}


def _feature_defaults(metadata: Any) -> dict[str, Any]:
    """Per-feature fill values logged with the model (``metadata={"feature_defaults": {...}}``), if any."""
    logged = (metadata.metadata or {}).get(FEATURE_DEFAULTS_KEY) or {}
    try:
        return {str(name): value if isinstance(value, str) else float(value) for name, value in logged.items()}
    except (AttributeError, TypeError, ValueError):
        log.warning("ignoring malformed %s in the model's metadata", FEATURE_DEFAULTS_KEY)
        return {}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _read_document(path: Path) -> Any:
    """A JSON document logged beside the model, or None when it has none or it cannot be read (logged): what
    it carries is optional and never stops a model from loading."""
    import json

    try:
        return json.loads(path.read_text()) if path.exists() else None
    except (OSError, ValueError) as exc:
        log.warning("unreadable %s (%s): loading the model without it", path, exc)
        return None


def registered_model_name(uri: str) -> str | None:
    """NAME of ``models:/NAME@alias``, ``models:/NAME/3`` or ``models:/NAME/Production``; None for other URIs."""
    if not uri.startswith("models:/"):
        return None
    return uri.removeprefix("models:/").split("@", 1)[0].split("/", 1)[0] or None
