"""The one place the server reads a Feast SQLite online store without importing Feast.

``import feast`` takes 5–7 s on two cores (any Feast module imports the whole package: dask, every offline source),
twice what the rest of a start costs, and a start with Feast is a user's first request when a service scales to
zero. So a start that imported Feast records what a read of its feature view needs (``DirectView``: the SQLite file
and table Feast's own functions name, the entity key, the features and their types, the TTL) in the local model
cache, under a fingerprint of the repo's files; a later start whose repo is unchanged reads the online store's table
directly, with the entity keys serialised and the stored ``Value`` messages decoded here, and never imports Feast.
What this module knows of Feast's storage format (key serialisation version 3, the ``Value`` message's scalar
fields, the table's columns) is checked against the installed Feast by ``tests/test_feast_direct.py``: the same
cells as ``OnlineReader`` (Feast's ``online_read``) for every case the server judges. Anything else (a Redis store,
list-typed features, another key version, a registry that is not a local file) keeps to ``OnlineReader``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import sqlite3
import struct
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from predictor.feast_online import Cell, Cells

if TYPE_CHECKING:
    from feast import FeatureStore, FeatureView

log = logging.getLogger(__name__)

RECORD_VERSION = 1
SUBDIR = "feast-views"  # under --model_cache_dir
# Feast's ValueType numbers for the key types serialised here (feast/protos/feast/types/Value.proto)
KEY_TYPES = {"STRING": 2, "INT32": 3, "INT64": 4}
# Feature types whose stored Value holds one scalar field (lists and maps keep to Feast's own read)
SCALAR_TYPES = frozenset({"BYTES", "STRING", "INT32", "INT64", "DOUBLE", "FLOAT", "BOOL", "UNIX_TIMESTAMP"})
_DOUBLE = struct.Struct("<d").unpack_from
# A fleet's chunk of 1,000 ids in one query where SQLite allows 32,766 bound parameters (3.32 on), else under 999
IDS_PER_QUERY = 1000 if sqlite3.sqlite_version_info >= (3, 32) else 900


@dataclass(frozen=True)
class DirectView:
    """What a direct read of one feature view needs; recorded from Feast's own objects."""

    fingerprint: str
    view: str
    entity_key: str
    key_type: str  # a KEY_TYPES name
    features: tuple[str, ...]
    ttl_s: float
    db_path: str
    table: str

    def reader(self) -> DirectSqliteReader:
        return DirectSqliteReader(self)


def fingerprint(repo_path: Path, feature_view: str) -> str | None:
    """A digest of everything a recorded view depends on, or None when it cannot be judged without Feast: a
    registry that is not a local file, or a configuration that reads the environment (``$VAR``)."""
    import yaml

    repo = Path(repo_path).resolve()
    try:
        config_bytes = (repo / "feature_store.yaml").read_bytes()
        config = yaml.safe_load(config_bytes)
    except (OSError, yaml.YAMLError):
        return None
    if not isinstance(config, dict) or b"$" in config_bytes:  # Feast expands variables: judged by Feast
        return None
    registry = config.get("registry", "data/registry.db")
    if isinstance(registry, dict):
        if registry.get("registry_type", "file") != "file":
            return None
        registry = registry.get("path")
    if not isinstance(registry, str) or "://" in registry:
        return None
    try:
        registry_bytes = (repo / registry).read_bytes()
    except OSError:
        return None
    digest = hashlib.sha256()
    for part in (str(RECORD_VERSION), metadata.version("feast"), str(repo), feature_view):
        digest.update(part.encode() + b"\0")
    digest.update(hashlib.sha256(config_bytes).digest())
    digest.update(hashlib.sha256(registry_bytes).digest())
    return digest.hexdigest()


def recorded(repo_path: Path, feature_view: str, cache_dir: Path | None) -> DirectView | None:
    """The view recorded for this repo as it is now, or None (never recorded, the repo changed, unreadable)."""
    if cache_dir is None:
        return None
    digest = fingerprint(repo_path, feature_view)
    if digest is None:
        return None
    try:
        fields = json.loads((cache_dir / SUBDIR / f"{digest}.json").read_text())
        view = DirectView(**{**fields, "features": tuple(fields["features"])})
    except (OSError, ValueError, TypeError, KeyError):
        return None
    return view if view.fingerprint == digest and Path(view.db_path).is_file() else None


def record(store: FeatureStore, view: FeatureView, repo_path: Path, cache_dir: Path | None) -> DirectView | None:
    """Record ``view`` for the next start (best effort: a cache that cannot be written only costs the next start
    its Feast import). None when the view is not one this module reads."""
    described = describe(store, view, repo_path)
    if described is None or cache_dir is None:
        return described
    target = cache_dir / SUBDIR / f"{described.fingerprint}.json"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(f".{os.getpid()}.tmp")
        partial.write_text(json.dumps(asdict(described), indent=1))
        partial.replace(target)  # appears whole
    except OSError as exc:
        log.warning("could not record the feature view for a fast start in %s: %s", target.parent, exc)
    return described


def describe(store: FeatureStore, view: FeatureView, repo_path: Path) -> DirectView | None:
    """The direct read's description of ``view``, from Feast's own objects and functions; None when this module
    cannot read it (not SQLite, a list-typed feature, a composite or non-scalar key, another key version)."""
    from feast.infra.online_stores.helpers import compute_table_id
    from feast.infra.online_stores.sqlite import SqliteOnlineStore

    config = store.config
    digest = fingerprint(repo_path, view.name)
    if digest is None or config.entity_key_serialization_version != 3:
        return None
    kind = str(config.online_store.type)
    if kind != "sqlite" and not kind.endswith(".SqliteOnlineStore"):
        return None
    if len(view.entity_columns) != 1:
        return None
    entity = view.entity_columns[0]
    key_type = entity.dtype.to_value_type().name
    types = [feature.dtype.to_value_type().name for feature in view.features]
    if key_type not in KEY_TYPES or any(kind not in SCALAR_TYPES for kind in types):
        return None
    versioned = bool(getattr(config.registry, "enable_online_feature_view_versioning", False))
    ttl = view.ttl.total_seconds() if view.ttl is not None else 0.0
    return DirectView(
        fingerprint=digest,
        view=view.name,
        entity_key=entity.name,
        key_type=key_type,
        features=tuple(feature.name for feature in view.features),
        ttl_s=ttl,
        db_path=str(Path(SqliteOnlineStore._get_db_path(config)).resolve()),  # Feast's own rule
        table=compute_table_id(config.project, view, versioned),
    )


class DirectSqliteReader:
    """Each id's cells for some features of the view, by one query per ``IDS_PER_QUERY`` ids of the store's table."""

    def __init__(self, view: DirectView) -> None:
        self.entity_key = view.entity_key
        self._view = view
        name = view.entity_key.encode()
        # version 3: the number of join keys, then each key's type, length and name, then each value's
        self._prefix = struct.pack("<III", 1, KEY_TYPES["STRING"], len(name)) + name
        self._key_type = view.key_type
        self._features = frozenset(view.features)
        self._local = threading.local()  # a connection per thread: SQLite's own locking, no shared cursor
        table = view.table.replace('"', '""')
        # every feature of an id is one row; asked for all of them (the usual by-id prediction), no name filter
        self._query = f'SELECT entity_key, feature_name, value, event_ts FROM "{table}" WHERE entity_key IN ({{keys}})'
        self._named_query = self._query + " AND feature_name IN ({names})"

    def read(self, ids: Sequence[str], names: Sequence[str]) -> dict[str, Cells]:
        """Raises ``sqlite3.Error`` when the store cannot be read (no file, no table: not materialised)."""
        keys = {self.key(entity_id): entity_id for entity_id in ids}
        column = {name: i for i, name in enumerate(names)}
        every = self._features.issubset(names)
        found: dict[str, list[Cell]] = {}
        connection = self._connection()
        listed = list(keys)
        for start in range(0, len(listed), IDS_PER_QUERY):
            chunk = listed[start : start + IDS_PER_QUERY]
            marks, named = ",".join("?" * len(chunk)), ",".join("?" * len(names))
            query = self._query.format(keys=marks) if every else self._named_query.format(keys=marks, names=named)
            for key, feature, value, stamp in connection.execute(query, chunk if every else (*chunk, *names)):
                position = column.get(feature)
                if position is None:  # a feature stored but not in the view (written before a schema change)
                    continue
                entity_id = keys[key]
                row = found.get(entity_id)
                if row is None:
                    row = found[entity_id] = [None] * len(names)
                # Feast writes the event time as epoch seconds (ISO text before 0.40: still read)
                seconds = stamp if type(stamp) is int else _epoch_seconds(stamp)
                # a double_val alone (field 5, 64-bit; the usual sensor reading), read here without a call
                if value is not None and len(value) == 9 and value[0] == 0x29:
                    number = _DOUBLE(value, 1)[0]
                    row[position] = (None if number != number else number, seconds)
                else:
                    row[position] = (decode_value(value), seconds)
        empty: Cells = (None,) * len(names)
        return {entity_id: tuple(found[entity_id]) if entity_id in found else empty for entity_id in ids}

    def key(self, entity_id: str) -> bytes:
        """Feast's serialisation (version 3) of a single-key ``EntityKey`` holding ``entity_id``."""
        if self._key_type == "STRING":
            value, kind = entity_id.encode(), KEY_TYPES["STRING"]
        else:
            try:
                number = int(entity_id)
            except ValueError:
                return b""  # not a number: stored under no key, so unknown
            packed = "<i" if self._key_type == "INT32" else "<q"
            try:
                value = struct.pack(packed, number)
            except struct.error:
                return b""  # out of the key type's range: no such id
            kind = KEY_TYPES[self._key_type]
        return self._prefix + struct.pack("<II", kind, len(value)) + value

    def _connection(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            # read-only and never created: a missing file is an error, not an empty store
            uri = Path(self._view.db_path).as_uri() + "?mode=ro"
            connection = self._local.connection = sqlite3.connect(uri, uri=True, check_same_thread=False)
        return connection


def decode_value(blob: bytes | None) -> Any:
    """A serialised Feast ``Value`` holding one scalar as the Python value (None: unset, null or NaN), as
    ``feast_online.as_python`` gives it."""
    if not blob:
        return None
    value: Any = None
    position = 0
    while position < len(blob):
        tag, position = _varint(blob, position)
        field, wire = tag >> 3, tag & 7
        if wire == 0:
            raw, position = _varint(blob, position)
            if field in (3, 4, 8):  # int32_val, int64_val, unix_timestamp_val: two's complement in 64 bits
                value = raw - (1 << 64) if raw >= 1 << 63 else raw
            elif field == 7:
                value = bool(raw)
            elif field == 19:  # null_val
                value = None
        elif wire == 1:
            if field == 5:
                value = _DOUBLE(blob, position)[0]
            position += 8
        elif wire == 5:
            if field == 6:  # float_val
                value = struct.unpack_from("<f", blob, position)[0]
            position += 4
        elif wire == 2:
            size, position = _varint(blob, position)
            data = blob[position : position + size]
            position += size
            if field == 1:
                value = bytes(data)
            elif field == 2:
                value = data.decode()
        else:
            raise ValueError(f"not a Feast scalar Value (wire type {wire})")
    return None if isinstance(value, float) and math.isnan(value) else value


def _epoch_seconds(stamp: object) -> int:
    """An event time stored as ISO text (naive: UTC, as Feast wrote it) or a number, as whole epoch seconds."""
    if isinstance(stamp, int | float):
        return int(stamp)
    if isinstance(stamp, bytes):
        stamp = stamp.decode()
    if not isinstance(stamp, str) or not stamp:
        return 0
    moment = datetime.fromisoformat(stamp)
    return int((moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp())


def _varint(blob: bytes, position: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = blob[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, position
        shift += 7
