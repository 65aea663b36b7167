"""Rows that name an entity id get the features their caller left out from the feature store.

A caller's own values win over stored ones; only the columns some row left empty are looked up.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from predictor.errors import BadRequest
from predictor.features import as_columns
from predictor.protocol.rows import Rows

if TYPE_CHECKING:
    from predictor.features import FeatureSource
    from predictor.models.registry import LoadedModel


async def fill_from_store(rows: Rows, model: LoadedModel, features: FeatureSource | None) -> dict[int, list[str]]:
    """Fill ``rows.values`` in place; returns, per row, the features that fell back to defaults."""
    if rows.entity_ids is None:
        return {}
    if features is None:
        raise BadRequest(
            "this server has no feature store: send all features, or start it with "
            "--feature_store PATH to look them up by id"
        )
    columns = model.columns
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
    fetched = await features.fetch(ids, names, model.feature_defaults)
    stored = as_columns(fetched.values, [columns[j] for j in needed], ids, features.entity_key, model.matrix)
    block = subset[:, needed]
    subset[:, needed] = np.where(holes[:, needed], stored, block)
    rows.values[positions] = subset
    return {positions[k]: found for k, entity in enumerate(ids) if (found := fetched.filled.get(entity))}
