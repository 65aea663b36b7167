"""Prepare a working Feast repository: copy the definitions, write telemetry, ``feast apply``, materialize.

The source repo (``predictor/demo/feature_repo``) is copied to ``target_dir`` so the source tree is never
written to; the bootstrap uses ``.data/feature_repo``. Idempotent: a second run re-applies (no change)
and re-materializes the same rows.

Choosing the online store is configuration: ``online_store=None`` keeps the repo's embedded default
(SQLite under ``target_dir/data``); a dict such as ``{"type": "redis", "connection_string": "host:6379"}``
replaces the ``online_store`` section of the prepared ``feature_store.yaml``. The server only needs the
prepared repo's path (``--feature_store``).
"""

from __future__ import annotations

import importlib.util
import shutil
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pandas as pd
import yaml

from predictor.demo.training import telemetry_with_ids

Progress = Callable[[str], object]

DEFINITIONS = "definitions.py"
CONFIG = "feature_store.yaml"
DEMO_EQUIPMENT = 200


def prepare_feature_store(
    repo_source: Path,
    target_dir: Path,
    telemetry: pd.DataFrame | None = None,
    online_store: Mapping[str, Any] | None = None,
    progress: Progress = print,
    ttl: timedelta | None = None,
) -> Path:
    """Build a ready-to-serve Feast repo in ``target_dir`` and return its path (for ``--feature_store``).

    ``telemetry`` has the entity key and the features; ``event_timestamp``/``created`` default to now.
    ``ttl`` overrides the feature view's TTL declared in the definitions (2 days).
    """
    from predictor.features import import_feast

    import_feast()
    from feast import FeatureStore

    target = target_dir.resolve()
    progress(f"feast: writing the feature repo to {target}")
    _copy_repo(repo_source, target, online_store)

    definitions = _load_definitions(target / DEFINITIONS)
    fields = (definitions.TIMESTAMP_FIELD, definitions.CREATED_FIELD)
    frame = _with_timestamps(telemetry_with_ids(DEMO_EQUIPMENT) if telemetry is None else telemetry, fields)
    data_path = target / definitions.DATA_FILE
    data_path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(data_path, index=False)
    progress(f"feast: wrote {len(frame)} telemetry rows to {data_path}")

    store = FeatureStore(repo_path=str(target))
    entity, view = definitions.build(data_path, ttl or definitions.TTL)
    progress(f"feast: apply (entity {entity.name}, feature view {view.name}, ttl {view.ttl})")
    store.apply([entity, view])

    # A full materialize over the data's own time range, not materialize_incremental: the latter starts at
    # now - ttl on its first run and would silently skip readings older than the TTL, which serving must
    # see (and report as stale) rather than treat as unknown equipment.
    stamps = frame[definitions.TIMESTAMP_FIELD]
    start, end = stamps.min() - timedelta(seconds=1), max(stamps.max(), _now()) + timedelta(seconds=1)
    progress(f"feast: materialize {start:%Y-%m-%d %H:%M:%S} .. {end:%Y-%m-%d %H:%M:%S} into {_store_type(store)}")
    store.materialize(start_date=start.to_pydatetime(), end_date=end.to_pydatetime())
    progress(f"feast: ready — serve with --feature_store {target}")
    return target


def _copy_repo(source: Path, target: Path, online_store: Mapping[str, Any] | None) -> None:
    """Copy the repo's files (not its ``data/``); rewrite ``feature_store.yaml`` if a store is chosen."""
    target.mkdir(parents=True, exist_ok=True)
    for path in source.iterdir():
        if path.is_file() and (path.suffix in {".py", ".yaml", ".yml"} or path.name == ".feastignore"):
            shutil.copyfile(path, target / path.name)
    if online_store is not None:
        config = yaml.safe_load((source / CONFIG).read_text())
        config["online_store"] = dict(online_store)
        header = f"# Written by predictor.demo.feast_setup from {source / CONFIG} with online_store overridden.\n"
        (target / CONFIG).write_text(header + yaml.safe_dump(config, sort_keys=False))


def _with_timestamps(telemetry: pd.DataFrame, columns: tuple[str, ...]) -> pd.DataFrame:
    """A copy with the timestamp ``columns`` in UTC (now, where absent)."""
    frame = telemetry.copy()
    now = _now()
    for column in columns:
        if column not in frame:
            frame[column] = now
        frame[column] = pd.to_datetime(frame[column], utc=True)
    return frame


def _load_definitions(path: Path) -> ModuleType:
    """Import the repo's definitions from the copy in the target (each target gets its own module)."""
    spec = importlib.util.spec_from_file_location(f"_feature_repo_{abs(hash(path))}", path)
    if spec is None or spec.loader is None:
        raise FileNotFoundError(f"no Feast definitions at {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _store_type(store: Any) -> str:
    return str(store.config.online_store.type)


def _now() -> pd.Timestamp:
    return pd.Timestamp(datetime.now(UTC))
