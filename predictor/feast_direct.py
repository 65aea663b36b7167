"""The one place the server reads a Feast online store (SQLite or Redis) without importing Feast.

``import feast`` takes 5–7 s on two cores (any Feast module imports the whole package: dask, every offline source),
twice what the rest of a start costs, and a start with Feast is a user's first request when a service scales to
zero. So a start that imported Feast records what a read of its feature view needs (``DirectView``: the SQLite file
and table Feast's own functions name, the entity key, the features and their types, the TTL) in the local model
cache, under a fingerprint of the repo's files; a later start whose repo is unchanged reads the online store's table
directly, with the entity keys serialised and the stored ``Value`` messages decoded here, and never imports Feast.
A Redis store is read the same way, and for speed as much as for the start: Feast's ``online_read`` of 50 ids costs
5 ms of CPU (an ``EntityKey`` message per id, a ``Value`` message per cell, a datetime per row), a pipeline of the
same HMGETs decoded here 1.3 ms. What this module knows of Feast's storage format (key serialisation version 3, the
``Value`` and ``Timestamp`` messages' scalar fields, SQLite's table, Redis' hash per entity key with a murmur3
field per feature that Feast's own function names at record time, the connection string's form) is checked against
the installed Feast by ``tests/test_feast_direct.py``: the same cells as ``OnlineReader`` (Feast's ``online_read``)
for every case the server judges, on both stores. Anything else (a Redis cluster or sentinel, list-typed features,
another key version, a registry that is not a local file) keeps to ``OnlineReader``.
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
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from predictor.feast_online import Cell, Cells

if TYPE_CHECKING:
    from feast import FeatureStore, FeatureView

log = logging.getLogger(__name__)

RECORD_VERSION = 2
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

    fingerprint: str  # "" when a later start could not judge the repo unchanged (never recorded)
    view: str
    entity_key: str
    key_type: str  # a KEY_TYPES name
    features: tuple[str, ...]
    ttl_s: float
    db_path: str = ""  # SQLite: the file and the table Feast's own functions name
    table: str = ""
    store: str = "sqlite"  # or "redis"
    key_suffix: str = ""  # Redis: the project's name, after each serialised entity key
    # Redis: each feature's hash field (hex: Feast's murmur3 of "view:feature"), then the event time's
    fields: tuple[str, ...] = ()
    # Redis: read from the repo's configuration at every start, never recorded (it may hold a password)
    connection_string: str = field(default="", repr=False)

    def reader(self) -> DirectSqliteReader | DirectRedisReader:
        return DirectRedisReader(self) if self.store == "redis" else DirectSqliteReader(self)


def configuration(repo_path: Path) -> dict[str, Any] | None:
    """The repo's ``feature_store.yaml`` as Feast loads it (``feast.repo_config.load_repo_config``: environment
    variables expanded, then YAML), or None when it cannot be read."""
    import yaml

    try:
        text = (Path(repo_path) / "feature_store.yaml").read_text()
        config = yaml.safe_load(os.path.expandvars(text))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    return config if isinstance(config, dict) else None


def fingerprint(repo_path: Path, feature_view: str, config: dict[str, Any] | None = None) -> str | None:
    """A digest of everything a recorded view depends on, or None when it cannot be judged without Feast (a registry
    that is not a local file). A Redis connection string is left out: it is read at every start, never recorded."""
    repo = Path(repo_path).resolve()
    config = configuration(repo) if config is None else config
    if config is None:
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
    online = config.get("online_store")
    if isinstance(online, dict):
        config = {**config, "online_store": {k: v for k, v in online.items() if k != "connection_string"}}
    digest = hashlib.sha256()
    for part in (str(RECORD_VERSION), metadata.version("feast"), str(repo), feature_view):
        digest.update(part.encode() + b"\0")
    digest.update(json.dumps(config, sort_keys=True, default=str).encode() + b"\0")
    digest.update(hashlib.sha256(registry_bytes).digest())
    return digest.hexdigest()


def recorded(repo_path: Path, feature_view: str, cache_dir: Path | None) -> DirectView | None:
    """The view recorded for this repo as it is now, or None (never recorded, the repo changed, unreadable)."""
    if cache_dir is None:
        return None
    config = configuration(repo_path)
    digest = fingerprint(repo_path, feature_view, config)
    if config is None or digest is None:
        return None
    try:
        fields = json.loads((cache_dir / SUBDIR / f"{digest}.json").read_text())
        view = DirectView(**{**fields, "features": tuple(fields["features"]), "fields": tuple(fields["fields"])})
    except (OSError, ValueError, TypeError, KeyError):
        return None
    if view.fingerprint != digest:
        return None
    if view.store == "redis":
        online = config.get("online_store")
        connection = online.get("connection_string") if isinstance(online, dict) else None
        if not isinstance(connection, str) or redis_arguments(connection) is None:
            return None  # Feast says what is wrong with it
        return replace(view, connection_string=connection)
    return view if Path(view.db_path).is_file() else None


def record(store: FeatureStore, view: FeatureView, repo_path: Path, cache_dir: Path | None) -> DirectView | None:
    """Record ``view`` for the next start (best effort: a cache that cannot be written only costs the next start
    its Feast import) and return it for this one. None when the view is not one this module reads; read directly
    but not recorded when the repo has no fingerprint (a registry that is not a local file)."""
    described = describe(store, view, repo_path)
    if described is None or cache_dir is None or not described.fingerprint:
        return described
    target = cache_dir / SUBDIR / f"{described.fingerprint}.json"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(f".{os.getpid()}.tmp")
        fields = {name: value for name, value in asdict(described).items() if name != "connection_string"}
        partial.write_text(json.dumps(fields, indent=1))
        partial.replace(target)  # appears whole
    except OSError as exc:
        log.warning("could not record the feature view for a fast start in %s: %s", target.parent, exc)
    return described


def describe(store: FeatureStore, view: FeatureView, repo_path: Path) -> DirectView | None:
    """The direct read's description of ``view``, from Feast's own objects and functions; None when this module
    cannot read it (neither SQLite nor a single Redis, a list-typed feature, a composite or non-scalar key, another
    key version)."""
    from feast.infra.online_stores.helpers import _mmh3, compute_table_id, compute_versioned_name

    config = store.config
    if config.entity_key_serialization_version != 3:
        return None
    kind = str(config.online_store.type)
    is_sqlite = kind == "sqlite" or kind.endswith(".SqliteOnlineStore")
    is_redis = (kind == "redis" or kind.endswith(".RedisOnlineStore")) and _single_redis(config.online_store)
    if not (is_sqlite or is_redis) or len(view.entity_columns) != 1:
        return None
    entity = view.entity_columns[0]
    key_type = entity.dtype.to_value_type().name
    types = [feature.dtype.to_value_type().name for feature in view.features]
    if key_type not in KEY_TYPES or any(kind not in SCALAR_TYPES for kind in types):
        return None
    versioned = bool(getattr(config.registry, "enable_online_feature_view_versioning", False))
    ttl = view.ttl.total_seconds() if view.ttl is not None else 0.0
    features = tuple(feature.name for feature in view.features)
    # A repo whose registry Feast reads some other way (a SQL registry, as in production) is still read directly by
    # this start, which imported Feast; only a later start cannot tell whether it changed: nothing is recorded.
    common = DirectView(
        fingerprint=fingerprint(repo_path, view.name) or "",
        view=view.name,
        entity_key=entity.name,
        key_type=key_type,
        features=features,
        ttl_s=ttl,
    )
    if is_redis:
        stored_as = compute_versioned_name(view, versioned)  # as Feast's RedisOnlineStore names its fields
        return replace(
            common,
            store="redis",
            key_suffix=config.project,
            fields=(*(_mmh3(f"{stored_as}:{name}").hex() for name in features), f"_ts:{stored_as}".encode().hex()),
            connection_string=config.online_store.connection_string,
        )
    from feast.infra.online_stores.sqlite import SqliteOnlineStore

    return replace(
        common,
        db_path=str(Path(SqliteOnlineStore._get_db_path(config)).resolve()),  # Feast's own rule
        table=compute_table_id(config.project, view, versioned),
    )


def _single_redis(online_store: Any) -> bool:
    """A single Redis (not a cluster nor a sentinel) whose connection string this module reads as Feast does."""
    from feast.infra.online_stores.redis import RedisOnlineStore

    if getattr(online_store, "redis_type", None) != "redis":
        return False
    connection = online_store.connection_string
    try:
        nodes, params = RedisOnlineStore._parse_connection_string(connection)
        feasts = (nodes[0]["host"], nodes[0]["port"], params)
    except (IndexError, KeyError, ValueError):
        return False
    return redis_arguments(connection) == feasts


def redis_arguments(connection_string: str) -> tuple[str, str, dict[str, Any]] | None:
    """Feast's Redis connection string (``host:port[,name=value...]``, each value JSON where it parses as JSON)
    as the host, port and keyword arguments Feast passes to redis-py's ``Redis``; None when it names no single
    ``host:port`` (Feast judges it)."""
    nodes = [part for part in connection_string.split(",") if "=" not in part]
    if len(nodes) != 1 or nodes[0].count(":") != 1:
        return None
    host, port = nodes[0].split(":")
    if not port.isdigit():
        return None
    params: dict[str, Any] = {}
    for part in connection_string.split(","):
        if "=" in part:
            name, text = part.split("=", 1)
            try:
                params[name] = json.loads(text)
            except json.JSONDecodeError:
                params[name] = text
    return host, port, params


class EntityKeys:
    """Feast's serialisation (version 3) of a single-key ``EntityKey`` from an id as a request names it."""

    def __init__(self, entity_key: str, key_type: str) -> None:
        name = entity_key.encode()
        # version 3: the number of join keys, then each key's type, length and name, then each value's
        self._prefix = struct.pack("<III", 1, KEY_TYPES["STRING"], len(name)) + name
        self._key_type = key_type

    def key(self, entity_id: str) -> bytes:
        """The serialised key; empty for an id that is no number of an integer key's type (stored under no key)."""
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


class DirectSqliteReader:
    """Each id's cells for some features of the view, by one query per ``IDS_PER_QUERY`` ids of the store's table."""

    def __init__(self, view: DirectView) -> None:
        self.entity_key = view.entity_key
        self._view = view
        self.key = EntityKeys(view.entity_key, view.key_type).key
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
                # decode_value's first case (a double_val alone), inlined: this loop is the hot path
                if value is not None and len(value) == 9 and value[0] == 0x29:
                    number = _DOUBLE(value, 1)[0]
                    row[position] = (None if number != number else number, seconds)
                else:
                    row[position] = (decode_value(value), seconds)
        empty: Cells = (None,) * len(names)
        return {entity_id: tuple(found[entity_id]) if entity_id in found else empty for entity_id in ids}

    def _connection(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            # read-only and never created: a missing file is an error, not an empty store
            uri = Path(self._view.db_path).as_uri() + "?mode=ro"
            connection = self._local.connection = sqlite3.connect(uri, uri=True, check_same_thread=False)
        return connection


class DirectRedisReader:
    """Each id's cells for some features of the view, by one pipeline of HMGETs (one per id) of the hash Feast writes
    per entity key: the asked features' fields and the event time's."""

    def __init__(self, view: DirectView) -> None:
        import redis  # a Redis store's start only

        arguments = redis_arguments(view.connection_string)
        if arguments is None:
            raise ValueError(f"not a Redis connection string Feast reads as one host:port: {view.connection_string!r}")
        host, port, params = arguments
        self.entity_key = view.entity_key
        self.key = EntityKeys(view.entity_key, view.key_type).key
        self._suffix = view.key_suffix.encode()
        *features, event_time = (bytes.fromhex(name) for name in view.fields)
        self._field = dict(zip(view.features, features, strict=True))
        self._event_time_field = event_time
        self._client = redis.Redis(host=host, port=int(port), **params)  # as Feast builds it; thread-safe (a pool)

    def read(self, ids: Sequence[str], names: Sequence[str]) -> dict[str, Cells]:
        """Raises redis-py's ``ConnectionError`` or ``TimeoutError`` when the store cannot be reached."""
        fields = [*(self._field[name] for name in names), self._event_time_field]
        keys = {entity_id: self.key(entity_id) for entity_id in ids}
        asked = [entity_id for entity_id, key in keys.items() if key]
        with self._client.pipeline(transaction=False) as pipe:
            for entity_id in asked:
                key = keys[entity_id] + self._suffix
                pipe.hmget(key, fields)  # type: ignore[arg-type]  # annotated str; any key's bytes are sent as they are
            replies = pipe.execute() if asked else []
        empty: Cells = (None,) * len(names)
        found: dict[str, Cells] = {}
        for entity_id, reply in zip(asked, replies, strict=True):
            *values, stamp = reply
            seconds = _timestamp_seconds(stamp) if stamp else 0
            row: list[Cell] = []
            for value in values:
                typed = decode_value(value)
                # no value nor time: an id Redis has no hash for (Feast reads it as every value unset, time zero)
                row.append(None if typed is None and not seconds else (typed, seconds))
            found[entity_id] = tuple(row)
        return {entity_id: found.get(entity_id, empty) for entity_id in ids}


def decode_value(blob: bytes | None) -> Any:
    """A serialised Feast ``Value`` holding one scalar as the Python value (None: unset, null or NaN), as
    ``feast_online.as_python`` gives it."""
    if not blob:
        return None
    if len(blob) == 9 and blob[0] == 0x29:  # a double_val alone (field 5, 64-bit): the usual sensor reading
        number = _DOUBLE(blob, 1)[0]
        return None if number != number else number
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


def _timestamp_seconds(blob: bytes) -> int:
    """A serialised ``google.protobuf.Timestamp``'s whole seconds (Feast writes microseconds at most in its nanos,
    so its own reading, a datetime's epoch seconds, is the same whole second)."""
    seconds = position = 0
    while position < len(blob):
        tag, position = _varint(blob, position)
        if tag & 7 != 0:
            raise ValueError(f"not a Timestamp (wire type {tag & 7})")
        raw, position = _varint(blob, position)
        if tag >> 3 == 1:
            seconds = raw - (1 << 64) if raw >= 1 << 63 else raw
    return seconds


def _varint(blob: bytes, position: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = blob[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, position
        shift += 7
