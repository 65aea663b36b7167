"""A scikit-learn Pipeline of column encoders and a random forest, evaluated on typed rows with NumPy.

The typed path builds a DataFrame per micro-batch and calls the whole Pipeline: ~8 ms of CPU for one row of the
bench's ColumnTransformer(OneHotEncoder + passthrough) → RandomForest-100, whatever the batch size — the forest's
per-tree joblib loop ~60 %, the ColumnTransformer (selection by name, validation, hstack) ~20 %, the Pipeline's
own checks and the DataFrame the rest. Compiled, the encoders are a dict lookup per value and a few NumPy
operations on the object rows, and the forest is ``forest.py``'s packed arrays: ~0.15 ms for one row.

Only what is read exactly is compiled: a ColumnTransformer of OneHotEncoder, StandardScaler, 'passthrough' and
'drop', then StandardScaler or 'passthrough' steps, then a RandomForest / ExtraTrees classifier. Anything else,
and any difference from the Pipeline's own ``predict_proba`` on a few hundred generated rows (every category,
unseen ones, values either side of the forest's thresholds), leaves the Pipeline in charge. A batch the compiled
steps cannot read as the Pipeline would (an unknown category its encoder refuses, a null in an optional column)
goes to the Pipeline, so such a request is answered, or refused, exactly as before.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from predictor.models.encoders import Numbers, OneHot, Unsupported, read_columns, scaled, scaler
from predictor.models.flavors import Outputs
from predictor.models.forest import CHECK_ROWS, PackedForest, compile_forest, near_thresholds
from predictor.protocol.schema import Column

log = logging.getLogger(__name__)

UNSEEN = "\x00unseen category"  # a string no training set holds: exercises handle_unknown in the check
_LIMITS = {"long": 2.0**53, "integer": 2.0**31 - 1}


@dataclass(frozen=True)
class CompiledPipeline:
    """A drop-in for the typed path's predict (object rows [N, F] in signature order → probabilities)."""

    blocks: tuple[OneHot | Numbers, ...]  # the ColumnTransformer's outputs, in its order
    scalers: tuple[tuple[np.ndarray | None, np.ndarray | None], ...]  # later StandardScaler steps: (mean, scale)
    forest: PackedForest
    optional: tuple[int, ...]  # columns that may hold None
    pipeline: Callable[[np.ndarray], Outputs]  # the Pipeline on a DataFrame of the rows

    def __call__(self, rows: np.ndarray) -> Outputs:
        matrix = self.transform(rows)
        return self.pipeline(rows) if matrix is None else self.forest(matrix)

    def transform(self, rows: np.ndarray) -> np.ndarray | None:
        """The float64 matrix the forest sees, or None when only the Pipeline can say."""
        if self.optional and any(value is None for value in rows[:, self.optional].ravel()):
            return None
        parts = []
        for block in self.blocks:
            part = block.encode(rows)
            if part is None:
                return None
            parts.append(part)
        matrix = np.hstack(parts)
        for mean, scale in self.scalers:
            matrix = scaled(matrix, mean, scale)
        return matrix


def compile_pipeline(
    estimator: Any, columns: tuple[Column, ...], pipeline: Callable[[np.ndarray], Outputs]
) -> CompiledPipeline | None:
    """``pipeline`` compiled, when ``estimator`` is a Pipeline of the steps above and answers identically; else None."""
    from sklearn.pipeline import Pipeline

    if type(estimator) is not Pipeline or len(estimator.steps) < 2:
        return None
    try:
        blocks, scalers = _read_steps(estimator, columns)
    except Unsupported as exc:
        log.info("the pipeline stays in scikit-learn: %s", exc)
        return None
    except Exception:  # a scikit-learn release that keeps these objects otherwise: the Pipeline stays too
        log.warning("cannot read the pipeline's steps; using the Pipeline", exc_info=True)
        return None
    forest = compile_forest(estimator.steps[-1][1])
    if forest is None:
        return None
    optional = tuple(j for j, column in enumerate(columns) if not column.required)
    compiled = CompiledPipeline(tuple(blocks), tuple(scalers), forest, optional, pipeline)
    if not _agrees(compiled, columns):
        log.warning("compiled pipeline disagrees with scikit-learn; using the Pipeline")
        return None
    log.info(
        "pipeline compiled to NumPy: %d column blocks, then the forest (checked against scikit-learn)", len(blocks)
    )
    return compiled


def _read_steps(pipeline: Any, columns: tuple[Column, ...]) -> tuple[list[OneHot | Numbers], list[Any]]:
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import StandardScaler

    first, *middle = (step for _, step in pipeline.steps[:-1])
    if type(first) is not ColumnTransformer:
        raise Unsupported(f"the first step is a {type(first).__name__}, not a ColumnTransformer")
    blocks = read_columns(first, columns)
    scalers = []
    for step in middle:
        if step is None or step == "passthrough":
            continue
        if type(step) is not StandardScaler or first.sparse_output_:  # sparse input: scaled by 1 / scale_
            raise Unsupported(f"a {type(step).__name__} step after the ColumnTransformer")
        scalers.append(scaler(step))
    return blocks, scalers


# ------------------------------------------------------------------------------------ the load-time check


def _agrees(compiled: CompiledPipeline, columns: tuple[Column, ...]) -> bool:
    try:
        rows = _check_rows(columns, compiled)
        matrix = compiled.transform(rows)
        if matrix is None:  # the check rows are all readable: something else went wrong
            return False
        with warnings.catch_warnings():  # e.g. an unseen category encoded as zeros beside a dropped one
            warnings.simplefilter("ignore")
            expected = compiled.pipeline(rows)
        return isinstance(expected, np.ndarray) and bool(np.array_equal(compiled.forest(matrix), expected))
    except Exception:  # a shape we did not anticipate: the Pipeline stays in charge
        log.exception("compiled pipeline check failed")
        return False


def _check_rows(columns: tuple[Column, ...], compiled: CompiledPipeline) -> np.ndarray:
    """Rows of every column's categories (unseen ones where the encoder ignores them) and of values just
    around the thresholds the forest splits on, taken back through the scalers to the input columns."""
    rng = np.random.default_rng(0)
    rows = np.empty((CHECK_ROWS, len(columns)), dtype=object)
    pools: list[list[Any]] = [[] for _ in columns]
    offset = 0
    for block in compiled.blocks:
        if isinstance(block, OneHot):
            pools[block.column].extend(block.lookup)
            if block.ignore_unknown and columns[block.column].type != "boolean":
                pools[block.column].append(_unseen(columns[block.column].type, block.lookup))
            offset += block.width
            continue
        for k, j in enumerate(block.columns):
            cuts = compiled.forest.thresholds_on(offset + k)
            for mean, scale in reversed(compiled.scalers):  # undone last first
                cuts = _unscaled(cuts, mean, scale, offset + k)
            pools[j].extend(_around(_unscaled(cuts, block.mean, block.scale, k), columns[j], rng))
        offset += len(block.columns)
    for j, column in enumerate(columns):
        pool = pools[j] or _neutral(column, rng)
        rows[:, j] = [pool[i] for i in rng.integers(0, len(pool), CHECK_ROWS)]
    return rows


def _unscaled(cuts: np.ndarray, mean: np.ndarray | None, scale: np.ndarray | None, at: int) -> np.ndarray:
    cuts = cuts * (scale[at] if scale is not None else 1.0)
    return cuts + (mean[at] if mean is not None else 0.0)


def _around(cuts: np.ndarray, column: Column, rng: np.random.Generator) -> Sequence[Any]:
    if column.type == "boolean":
        return [False, True]
    if not cuts.size:
        return [float(v) for v in rng.normal(size=16)] if column.type in ("double", "float") else [-1, 0, 1, 2]
    near = near_thresholds(cuts, 64, rng)
    if column.type in _LIMITS:
        limit = _LIMITS[column.type]
        return [int(v) for v in np.clip(np.concatenate([np.floor(near), np.ceil(near)]), -limit, limit)]
    return [float(v) for v in np.clip(near, -1e30, 1e30)]


def _unseen(kind: str, known: dict[Any, int]) -> Any:
    return UNSEEN if kind == "string" else max(known, default=0) + 1


def _neutral(column: Column, rng: np.random.Generator) -> list[Any]:
    """Values for a column the compiled steps never read (dropped), of its type."""
    neutral: dict[str, Any] = {
        "string": "",
        "datetime": np.datetime64("2000-01-01T00:00:00", "ns"),
        "binary": b"",
        "boolean": False,
    }
    if column.type in neutral:
        return [neutral[column.type]]
    if column.type in ("double", "float"):
        return [float(v) for v in rng.normal(size=16)]
    return [int(v) for v in rng.integers(-3, 4, 16)]
