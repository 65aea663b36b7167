"""Rows that name an entity id get the features their caller left out from the feature store.

A caller's own values win over stored ones; only the columns some row left empty are looked up. A fleet (thousands
of ids in one request) is looked up in chunks of ``FLEET_CHUNK`` ids, one after the other: each chunk is one lookup
shared with whatever other requests arrive meanwhile, so a fleet never holds the store, or the event loop, for long.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from predictor.errors import BadRequest, EntityNotFound
from predictor.features import as_columns
from predictor.protocol.rows import Rows

if TYPE_CHECKING:
    from collections.abc import Sequence

    from predictor.features import FeatureSource, FetchedFeatures
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
    # NaN (a float matrix: NumPy's own test, a tenth of pandas' cost per request) or None/NaN (typed rows)
    gaps = np.isnan(rows.values) if rows.values.dtype.kind == "f" else np.asarray(pd.isna(rows.values), dtype=bool)
    if model.optional_positions:
        gaps[:, model.optional_positions] = False  # an optional column may stay empty
    every_row = None not in rows.entity_ids  # the usual request: no fancy indexing (copies) needed
    positions = list(range(rows.count)) if every_row else [i for i, e in enumerate(rows.entity_ids) if e is not None]
    if not every_row and np.delete(gaps, positions, axis=0).any():
        raise BadRequest("a row without an entity id is missing features")
    ids = [entity for entity in rows.entity_ids if entity is not None]
    subset, holes = (rows.values, gaps) if every_row else (rows.values[positions], gaps[positions])
    # Ask only for what some caller left out: features the caller sent override the stored ones.
    if holes.all():  # the usual request: ids alone, every column looked up, no caller's value to keep
        fetched = await _fetch_in_chunks(features, ids, model.feature_names, model)
        subset[:] = as_columns(fetched.values, columns, ids, features.entity_key, model.matrix)
    else:
        needed = np.flatnonzero(holes.any(axis=0)).tolist()
        if not needed:
            return {}
        names = [columns[j].name for j in needed]
        fetched = await _fetch_in_chunks(features, ids, names, model)
        stored = as_columns(fetched.values, [columns[j] for j in needed], ids, features.entity_key, model.matrix)
        wanted = holes[:, needed]
        subset[:, needed] = stored if wanted.all() else np.where(wanted, stored, subset[:, needed])
    if not every_row:
        rows.values[positions] = subset
    return {positions[k]: found for k, entity in enumerate(ids) if (found := fetched.filled.get(entity))}


FLEET_CHUNK = 1000


async def _fetch_in_chunks(
    features: FeatureSource, ids: list[str], names: Sequence[str], model: LoadedModel
) -> FetchedFeatures:
    if len(ids) <= FLEET_CHUNK:
        return await features.fetch(ids, names, model.feature_defaults)
    from predictor.features import FetchedFeatures

    parts, missing = [], []
    for start in range(0, len(ids), FLEET_CHUNK):
        try:
            parts.append(await features.fetch(ids[start : start + FLEET_CHUNK], names, model.feature_defaults))
        except EntityNotFound as exc:  # every unknown id of the fleet is named, not only the first chunk's
            missing += exc.missing_ids
    if missing:
        raise EntityNotFound(features.entity_key, list(dict.fromkeys(missing)))
    filled = {entity: found for part in parts for entity, found in part.filled.items()}
    values = [part.values for part in parts]
    dtype = np.float64 if all(v.dtype == np.float64 for v in values) else object
    return FetchedFeatures(np.concatenate([v.astype(dtype) for v in values]), filled)
