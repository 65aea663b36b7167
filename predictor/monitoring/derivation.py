"""Which input column each output column of a fitted scikit-learn preprocessing step comes from.

``derivation_matrix(step, input_columns)`` is a 0/1 matrix ``[outputs, inputs]`` with exactly one 1 per row,
so that attributions over the derived columns, multiplied by it, are summed back to the input columns.
Read from the fitted objects: a ``ColumnTransformer``'s ``transformers_`` column lists, a ``Pipeline``'s steps
in turn, a ``OneHotEncoder``'s categories (minus a dropped one, infrequent ones merged), one-to-one
transformers (scalers, ordinal encoders: scikit-learn's ``OneToOneFeatureMixin``, or any step whose
``get_feature_names_out`` gives its input names back) and any transformer of a single input column.
Anything else (PCA, PolynomialFeatures, …) mixes inputs and raises ``ExplanationNotSupported``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from predictor.errors import ExplanationNotSupported

Floats = npt.NDArray[np.float64]


def derivation_matrix(step: Any, input_columns: list[str]) -> Floats:
    from sklearn.base import OneToOneFeatureMixin
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    width = len(input_columns)
    if step is None or (isinstance(step, str) and step == "passthrough"):
        return np.eye(width)
    if isinstance(step, Pipeline):
        matrix, names = np.eye(width), list(input_columns)
        for _, inner in step.steps:
            matrix = derivation_matrix(inner, names) @ matrix
            names = _names_out(inner, names)
        return matrix
    if isinstance(step, ColumnTransformer):
        return _column_transformer(step, input_columns)
    if isinstance(step, OneHotEncoder):
        return _one_hot(step, width)
    if isinstance(step, OneToOneFeatureMixin):
        return np.eye(width)
    names_out = _names_out(step, input_columns)
    if names_out == list(input_columns):
        return np.eye(width)
    if width == 1:
        return np.ones((len(names_out), 1))
    raise ExplanationNotSupported(
        f"{type(step).__name__} mixes its {width} input columns: its outputs cannot be summed back to one input each"
    )


def _names_out(step: Any, names: list[str]) -> list[str]:
    if isinstance(step, str) or step is None:
        return list(names)
    try:
        return [str(n) for n in step.get_feature_names_out(names)]
    except (AttributeError, ValueError, TypeError) as exc:
        raise ExplanationNotSupported(
            f"{type(step).__name__} does not say which columns it outputs (get_feature_names_out)"
        ) from exc


def _one_hot(encoder: Any, width: int) -> Floats:
    counts = []
    infrequent = getattr(encoder, "infrequent_categories_", None)
    dropped = getattr(encoder, "drop_idx_", None)
    for i, categories in enumerate(encoder.categories_):
        count = len(categories)
        if infrequent is not None and infrequent[i] is not None:
            count -= len(infrequent[i]) - 1
        if dropped is not None and dropped[i] is not None:
            count -= 1
        counts.append(count)
    return np.repeat(np.eye(width), counts, axis=0)


def _column_transformer(transformer: Any, input_columns: list[str]) -> Floats:
    names_in = [str(n) for n in getattr(transformer, "feature_names_in_", input_columns)]
    position = {name: input_columns.index(name) for name in names_in}
    blocks: list[Floats] = []
    for _, inner, selection in transformer.transformers_:
        if isinstance(inner, str) and inner == "drop":
            continue
        chosen = _selected(selection, names_in)
        if not chosen:
            continue
        local = derivation_matrix(inner, chosen)
        block = np.zeros((local.shape[0], len(input_columns)))
        block[:, [position[name] for name in chosen]] = local
        blocks.append(block)
    return np.vstack(blocks) if blocks else np.zeros((0, len(input_columns)))


def _selected(selection: Any, names_in: list[str]) -> list[str]:
    """A ColumnTransformer's column selection (names, indices, slice or boolean mask) as names."""
    if isinstance(selection, str):
        return [selection]
    if isinstance(selection, int):
        return [names_in[selection]]
    if isinstance(selection, slice):
        return names_in[selection]
    items = list(selection)
    if items and all(isinstance(item, (bool, np.bool_)) for item in items):
        return [name for name, keep in zip(names_in, items, strict=True) if keep]
    return [names_in[int(item)] if isinstance(item, (int, np.integer)) else str(item) for item in items]
