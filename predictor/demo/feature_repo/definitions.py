"""Feast definitions for the demo: the ``equipment`` entity and the ``equipment_telemetry`` feature view.

The feature list is not repeated here: the view's schema is generated from ``predictor.demo.columns.FEATURES``
(all Float64), the same list the demo model's signature is built from.

Feast's CLI (``feast apply`` in this folder) picks up the module-level objects below;
``predictor.demo.feast_setup.prepare_feature_store`` calls :func:`build` instead, which lets it choose the TTL.
The TTL that serving honours is the one last applied to the registry (the server reads it from there).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from feast import Entity, FeatureView, Field, FileSource, ValueType
from feast.types import Float64

from predictor.demo.columns import ENTITY_KEY, FEATURES

FEATURE_VIEW = "equipment_telemetry"
#: How old a stored reading may be before serving treats it as stale (policy "reject" or "fill").
TTL = timedelta(days=2)
#: The offline source, relative to this repo; written by ``prepare_feature_store``.
DATA_FILE = Path("data") / "telemetry.parquet"
TIMESTAMP_FIELD = "event_timestamp"
CREATED_FIELD = "created"


def build(data_path: Path, ttl: timedelta = TTL) -> tuple[Entity, FeatureView]:
    """The entity and the feature view over the Parquet file at ``data_path``."""
    equipment = Entity(
        name="equipment",
        join_keys=[ENTITY_KEY],
        value_type=ValueType.STRING,
        description="A monitored pump, compressor, turbine or fan, e.g. pump-0017.",
    )
    source = FileSource(
        name=f"{FEATURE_VIEW}_source",
        path=str(data_path),
        timestamp_field=TIMESTAMP_FIELD,
        created_timestamp_column=CREATED_FIELD,
    )
    view = FeatureView(
        name=FEATURE_VIEW,
        entities=[equipment],
        ttl=ttl,
        schema=[Field(name=f.name, dtype=Float64, description=f"{f.description} ({f.unit})") for f in FEATURES],
        source=source,
        online=True,
        description="The latest telemetry reading per piece of equipment.",
    )
    return equipment, view


equipment, equipment_telemetry = build(Path(__file__).resolve().parent / DATA_FILE)
