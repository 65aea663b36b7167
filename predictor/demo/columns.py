"""The demo model's input schema: the one list of feature names and what they mean.

The demo data generator, the model signature logged to MLflow and the Feast feature view are all built
from ``FEATURES``. At serving time the server reads the names from the *loaded model's signature*, so a
user's own model with other features needs no change here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Feature:
    name: str
    description: str
    unit: str
    binary: bool = False


FEATURES: tuple[Feature, ...] = (
    Feature("temperature_c", "bearing temperature", "°C"),
    Feature("age_months", "equipment age", "months"),
    Feature("vibration_rms", "RMS vibration velocity", "in/s"),
    Feature("load_ratio", "load relative to rated capacity", "0..1"),
    Feature("pressure_delta_bar", "pressure drop across the unit", "bar"),
    Feature("runtime_khours", "hours since last overhaul", "thousand hours"),
    Feature("overheat_alarm", "an overheat alarm fired in the last 24 h", "0/1", binary=True),
    Feature("vibration_alarm", "a vibration alarm fired in the last 24 h", "0/1", binary=True),
    Feature("lubrication_overdue", "lubrication is past its schedule", "0/1", binary=True),
    Feature("recent_repair", "repaired in the last 30 days", "0/1", binary=True),
)

FEATURE_NAMES: tuple[str, ...] = tuple(feature.name for feature in FEATURES)

# Feast: the entity whose id a request may carry instead of features.
ENTITY_KEY = "equipment_id"
