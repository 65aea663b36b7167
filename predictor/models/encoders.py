"""A fitted ColumnTransformer read into NumPy blocks over typed rows, each computing what its step computes.

A block turns the object rows ``[N, F]`` (signature order, values already checked against their column) into
its float64 columns of the ColumnTransformer's output: ``OneHot`` by a dict lookup per value (scikit-learn
matches categories by equality too), ``Numbers`` by the same float64 operations, in the same order, as
StandardScaler (or none, for 'passthrough'). ``read_columns`` raises ``Unsupported`` for any step, column type
or setting it does not reproduce; ``pipeline.py`` then checks the whole against scikit-learn.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from predictor.protocol.schema import Column

DROPPED = -1  # the encoder's dropped category: a row of zeros, as a known value
# How pandas holds each column type (protocol/schema.py's frame), as NumPy sees it once stacked.
_HELD = {"double": np.float64, "float": np.float32, "long": np.int64, "integer": np.int32, "boolean": np.bool_}
_SCALABLE = frozenset({"double", "long", "integer", "boolean"})  # a float32 column is scaled in float32: not here


class Unsupported(Exception):
    """A step or setting not reproduced here exactly: the Pipeline stays."""


@dataclass(frozen=True)
class OneHot:
    """One input column of a OneHotEncoder."""

    column: int
    lookup: dict[Any, int]  # category -> output position in this block, or DROPPED
    width: int
    ignore_unknown: bool

    def encode(self, rows: np.ndarray) -> np.ndarray | None:
        out = np.zeros((rows.shape[0], self.width))
        for i, value in enumerate(rows[:, self.column]):
            position = self.lookup.get(value)
            if position is None and not self.ignore_unknown:
                return None  # the Pipeline raises its own error for it
            if position is not None and position != DROPPED:
                out[i, position] = 1.0
        return out


@dataclass(frozen=True)
class Numbers:
    """Columns passed through, or standardised as StandardScaler does (the same float64 operations)."""

    columns: tuple[int, ...]
    single: tuple[int, ...]  # positions within the block of float32 columns: rounded as pandas holds them
    mean: np.ndarray | None = None
    scale: np.ndarray | None = None

    def encode(self, rows: np.ndarray) -> np.ndarray:
        x = np.array(rows[:, self.columns], dtype=np.float64)
        if self.single:
            x[:, self.single] = x[:, self.single].astype(np.float32)
        return scaled(x, self.mean, self.scale)


def read_columns(transformer: Any, columns: tuple[Column, ...]) -> list[OneHot | Numbers]:
    """The blocks of a fitted ColumnTransformer, in its output order, reading ``columns`` (the signature)."""
    if transformer.transformer_weights or _output_config(transformer) != "default":
        raise Unsupported("transformer weights or a DataFrame output")
    names = getattr(transformer, "feature_names_in_", None)
    index = {c.name: j for j, c in enumerate(columns)}
    if names is None and transformer.n_features_in_ != len(columns):
        raise Unsupported("a ColumnTransformer fitted on another number of columns")
    blocks: list[OneHot | Numbers] = []
    dtypes = []
    for name, step, selection in transformer.transformers_:
        # scikit-learn's own record of each block's input columns (positions in what it was fitted on)
        picked = list(transformer._transformer_to_input_indices[name])
        if (isinstance(step, str) and step == "drop") or not picked:
            continue
        if np.isscalar(selection):  # one column selected as 1-D: not what these steps take
            raise Unsupported(f"{name} selects a single column as 1-D")
        try:
            positions = tuple(index[str(names[k])] if names is not None else int(k) for k in picked)
        except KeyError as exc:
            raise Unsupported(f"{name} reads a column the signature lacks: {exc}") from exc
        read, dtype = _read_block(step, positions, columns)
        blocks.extend(read)
        dtypes.append(dtype)
    # NumPy stacks the blocks in their common type, which the forest turns into float32. Here every value goes
    # through float64 first: the same float32 from a float or object (NumPy converts objects via a double)
    # array, but an int64 beyond 2**53 rounds differently straight to float32.
    if not dtypes or np.result_type(*dtypes).kind in "iu":
        raise Unsupported("the ColumnTransformer's output is integers")
    return blocks


def _read_block(step: Any, positions: tuple[int, ...], columns: tuple[Column, ...]) -> tuple[list[Any], Any]:
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

    types = [columns[j].type for j in positions]
    if type(step) is OneHotEncoder:
        return _one_hot(step, positions, columns), np.dtype(step.dtype)
    if type(step) is StandardScaler and set(types) <= _SCALABLE:
        mean, scale = scaler(step)
        return [Numbers(positions, (), mean, scale)], np.float64
    identity = type(step) is FunctionTransformer and step.func is None  # how 'passthrough' is kept once fitted
    if (identity or (isinstance(step, str) and step == "passthrough")) and set(types) <= set(_HELD):
        single = tuple(k for k, kind in enumerate(types) if kind == "float")
        mixed = "boolean" in types and len(set(types)) > 1  # pandas holds bool beside numbers as objects
        return [Numbers(positions, single)], object if mixed else np.result_type(*(_HELD[t] for t in types))
    raise Unsupported(f"a {type(step).__name__} on columns of types {types}")


def _one_hot(encoder: Any, positions: tuple[int, ...], columns: tuple[Column, ...]) -> list[OneHot]:
    if getattr(encoder, "_infrequent_enabled", True):
        raise Unsupported("a OneHotEncoder grouping infrequent categories")
    dropped = encoder.drop_idx_ if encoder.drop_idx_ is not None else [None] * len(positions)
    blocks = []
    for j, categories, drop in zip(positions, encoder.categories_, dropped, strict=True):
        if not _plain(categories, columns[j].type):
            raise Unsupported(f"categories of {columns[j].name} that a {columns[j].type} column cannot match")
        lookup = {}
        for k, category in enumerate(categories.tolist()):
            shifted = k if drop is None or k < drop else k - 1  # the columns after a dropped one move left
            lookup[category] = DROPPED if k == drop else shifted
        width = len(categories) - (drop is not None)
        # 'ignore', and 'infrequent_if_exist' / 'warn' without infrequent categories: unseen → zeros
        blocks.append(OneHot(j, lookup, width, encoder.handle_unknown != "error"))
    return blocks


def _plain(categories: np.ndarray, kind: str) -> bool:
    """Categories a dict lookup matches as scikit-learn does: strings for strings, finite numbers for numbers."""
    if kind == "string":
        return categories.dtype == object and all(isinstance(c, str) for c in categories)
    if kind in ("long", "integer", "boolean"):
        return categories.dtype.kind in "biu"
    return False


def scaler(step: Any) -> tuple[np.ndarray | None, np.ndarray | None]:
    return (step.mean_ if step.with_mean else None), (step.scale_ if step.with_std else None)


def scaled(x: np.ndarray, mean: np.ndarray | None, scale: np.ndarray | None) -> np.ndarray:
    # In place and in this order, as StandardScaler.transform does, so the floats round identically.
    if mean is not None:
        x -= mean
    if scale is not None:
        x /= scale
    return x


def _output_config(transformer: Any) -> str:
    from sklearn.utils._set_output import _get_output_config

    return str(_get_output_config("transform", transformer)["dense"])
