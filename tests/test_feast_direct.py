"""The Feast-free read (``predictor.feast_direct``) against the installed Feast, on a real repo in tmp_path.

What the module knows of Feast's storage format is checked here, not assumed: the entity keys it serialises equal
Feast's ``serialize_entity_key``, every scalar ``Value`` it decodes equals Feast's own message read as the server
reads it, and on the demo repo (SQLite, and Redis on a real redis-server, materialized by Feast) it answers exactly
what ``OnlineReader`` (Feast's ``online_read``) answers for a known id, an unknown one, a stored null and a stale
reading. A recorded view is used only while the repo's files are unchanged; what it cannot read (a Redis cluster)
keeps to Feast.
"""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from predictor import feast_direct
from predictor.demo.columns import FEATURE_NAMES
from predictor.demo.feast_setup import prepare_feature_store
from predictor.feast_direct import DirectRedisReader, DirectView, decode_value, record, recorded, redis_arguments
from predictor.feast_online import OnlineReader, as_python
from predictor.features import import_feast
from tests.feast_helpers import NULL_FEATURE, NULL_ID, REPO_SOURCE, STALE_ID, RedisProcess, demo_telemetry, redis_server

VIEW = "equipment_telemetry"


@pytest.fixture(scope="module", autouse=True)
def _feast_imported() -> None:
    import_feast()  # the server's way: without typeguard's recompiling (6 s of a plain `import feast`)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("feast-direct")
    return prepare_feature_store(REPO_SOURCE, target, demo_telemetry(30), progress=lambda message: None)


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisProcess]:
    with redis_server() as server:
        yield server


@pytest.fixture(scope="module")
def redis_repo(redis: RedisProcess, tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("feast-direct-redis")
    online = {"type": "redis", "connection_string": redis.connection_string}
    return prepare_feature_store(REPO_SOURCE, target, demo_telemetry(30), online_store=online, progress=lambda m: None)


def _store_and_view(repo: Path) -> tuple[Any, Any]:
    from feast import FeatureStore

    store = FeatureStore(repo_path=str(repo))
    return store, store.get_feature_view(VIEW)


@pytest.mark.parametrize("store", ["sqlite", "redis"])
def test_the_direct_read_answers_what_feasts_online_read_answers(
    store: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    repo: Path = request.getfixturevalue("repo" if store == "sqlite" else "redis_repo")
    feast_store, view = _store_and_view(repo)
    direct_view = record(feast_store, view, repo, tmp_path)
    assert direct_view is not None and direct_view.store == store
    direct, feast = direct_view.reader(), OnlineReader(feast_store, view)
    assert isinstance(direct, DirectRedisReader) == (store == "redis")
    known = list(demo_telemetry(30)["equipment_id"].unique()[:5])
    ids = [*known, NULL_ID, STALE_ID, "no-such-pump"]
    names = list(FEATURE_NAMES)

    answer = direct.read(ids, names)

    assert answer == feast.read(ids, names)
    assert direct.entity_key == feast.entity_key == "equipment_id"
    assert answer["no-such-pump"] == (None,) * len(names)
    null_cell = answer[NULL_ID][names.index(NULL_FEATURE)]
    assert null_cell is not None and null_cell[0] is None and null_cell[1] > 0
    stale, fresh = answer[STALE_ID][0], answer[known[0]][0]
    assert stale is not None and fresh is not None and stale[1] < fresh[1]
    assert direct.read(known[:1], names[::-1])[known[0]] == answer[known[0]][::-1]  # a subset, in the order asked
    many = [f"{kind}-{i:04d}" for kind in ("pump", "fan") for i in range(1000)]  # more than one SQLite query's ids
    assert direct.read(many, names[:3]) == feast.read(many, names[:3])
    assert direct.read([], names) == {}


def test_a_recorded_view_serves_until_the_repo_changes(repo: Path, tmp_path: Path) -> None:
    copy = tmp_path / "repo"
    shutil.copytree(repo, copy)
    cache = tmp_path / "cache"
    store, view = _store_and_view(copy)
    assert recorded(copy, VIEW, cache) is None  # nothing recorded yet
    written = record(store, view, copy, cache)
    again = recorded(copy, VIEW, cache)
    assert again == written and isinstance(again, DirectView)
    assert again.ttl_s == 2 * 86400 and again.features == tuple(FEATURE_NAMES)
    assert recorded(copy, VIEW, None) is None and recorded(copy, "another_view", cache) is None
    registry = copy / "data" / "registry.db"
    registry.write_bytes(registry.read_bytes() + b"\0")  # what `feast apply` does: another registry
    assert recorded(copy, VIEW, cache) is None


def test_a_redis_record_holds_no_connection_string_and_a_restart_reads_todays(
    redis_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The connection string may carry a password: it is read from the repo's configuration at every start (with
    the environment expanded, as Feast does), never written into the model cache, and changing it alone keeps the
    record."""
    yaml = (redis_repo / "feature_store.yaml").read_text()
    [connection] = [line.split(":", 1)[1].strip() for line in yaml.splitlines() if "connection_string:" in line]
    monkeypatch.setenv("FEAST_TEST_REDIS", connection)
    copy = _copy_of(redis_repo, tmp_path / "repo", yaml.replace(connection, "${FEAST_TEST_REDIS}"))
    cache = tmp_path / "cache"
    written = record(*_store_and_view(copy), copy, cache)
    assert written is not None and written.connection_string == connection
    [file] = (cache / feast_direct.SUBDIR).iterdir()
    assert "connection_string" not in file.read_text() and connection not in file.read_text()
    assert connection not in repr(written)
    again = recorded(copy, VIEW, cache)
    assert again == written and again is not None and again.connection_string == connection
    monkeypatch.setenv("FEAST_TEST_REDIS", connection + ",db=0")
    moved = recorded(copy, VIEW, cache)
    assert moved is not None and moved.connection_string == connection + ",db=0"
    assert moved.reader().read(["pump-0001"], ["temperature_c"])["pump-0001"][0] is not None
    monkeypatch.setenv("FEAST_TEST_REDIS", "redis-a:6379,redis-b:6379")  # not one host:port: Feast judges
    assert recorded(copy, VIEW, cache) is None


def test_a_store_it_cannot_read_keeps_to_feast(repo: Path, tmp_path: Path) -> None:
    """A Redis cluster or sentinel is read through Feast's online_read: nothing is recorded for it."""
    for kind in ("redis_cluster", "redis_sentinel"):
        copy = tmp_path / kind
        shutil.copytree(repo, copy)
        config = copy / "feature_store.yaml"
        config.write_text(
            config.read_text()
            .replace("type: sqlite", f"type: redis\n  redis_type: {kind}\n  connection_string: 127.0.0.1:1")
            .replace("  path: data/online_store.db\n", "")
        )
        store, view = _store_and_view(copy)
        assert store.config.online_store.type == "redis"
        assert record(store, view, copy, tmp_path / "cache") is None
        assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize(
    "connection",
    [
        "localhost:6379",
        "redis.feast:6379,db=0,password=s3cret,retry=null,socket_timeout=0.5,socket_connect_timeout=0.5",
        "10.0.0.7:7000,ssl=true,username=feast,password=a=b",
        "host:6379,client_name=not json",
    ],
)
def test_a_connection_string_is_read_as_feast_reads_it(connection: str) -> None:
    from feast.infra.online_stores.redis import RedisOnlineStore

    nodes, params = RedisOnlineStore._parse_connection_string(connection)
    assert redis_arguments(connection) == (nodes[0]["host"], nodes[0]["port"], params)


def test_a_connection_string_naming_no_single_host_and_port_is_left_to_feast() -> None:
    for connection in ("redis-a:6379,redis-b:6379", "redis", "db=0", "host:port", "[::1]:6379"):
        assert redis_arguments(connection) is None, connection


def test_an_unreachable_redis_raises_redis_pys_error(redis_repo: Path) -> None:
    """What the server turns into 503 and readiness off, as for Feast's own read."""
    import redis as redis_py

    described = record(*_store_and_view(redis_repo), redis_repo, None)
    assert described is not None
    gone = DirectView(
        **{**described.__dict__, "connection_string": "127.0.0.1:1,retry=null,socket_connect_timeout=0.5"}
    )
    with pytest.raises(redis_py.exceptions.ConnectionError):
        gone.reader().read(["pump-0000"], ["temperature_c"])


def test_an_event_time_decodes_as_feasts_timestamp() -> None:
    from google.protobuf.timestamp_pb2 import Timestamp

    for seconds, nanos in ((1_700_000_000, 0), (1_700_000_000, 999_999_000), (0, 5), (-86_400, 0), (2**40, 1)):
        blob = Timestamp(seconds=seconds, nanos=nanos).SerializeToString()
        assert feast_direct._timestamp_seconds(blob) == seconds, (seconds, nanos)


def test_an_unreadable_store_raises_sqlites_error(repo: Path, tmp_path: Path) -> None:
    """What the server turns into 503 and readiness off; the file is never created by the read."""
    store, view = _store_and_view(repo)
    described = record(store, view, repo, None)
    assert described is not None
    missing = DirectView(**{**described.__dict__, "db_path": str(tmp_path / "gone.db")})
    with pytest.raises(sqlite3.Error):
        missing.reader().read(["pump-0000"], ["temperature_c"])
    assert not (tmp_path / "gone.db").exists()


@pytest.mark.parametrize("key_type", ["STRING", "INT64", "INT32"])
def test_entity_keys_are_serialised_as_feast_serialises_them(key_type: str) -> None:
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    view = DirectView("f", VIEW, "machine_id", key_type, ("x",), 0.0, "/nowhere.db", "t")
    reader = view.reader()
    samples = ["pump-0001", "", "ünïcode"] if key_type == "STRING" else ["0", "7", "-3", "2147483647"]
    for sample in samples:
        if key_type == "STRING":
            value = Value(string_val=sample)
        elif key_type == "INT64":
            value = Value(int64_val=int(sample))
        else:
            value = Value(int32_val=int(sample))
        expected = serialize_entity_key(EntityKey(join_keys=["machine_id"], entity_values=[value]), 3)
        assert reader.key(sample) == expected, sample
    if key_type != "STRING":  # an id that is no number of the key's type is stored under no key
        assert reader.key("pump-1") == b"" and reader.key(str(2**70)) == b""


def test_every_scalar_value_decodes_as_feast_reads_it() -> None:
    from feast.protos.feast.types.Value_pb2 import Null, Value

    values = [
        Value(double_val=71.25),
        Value(double_val=0.0),
        Value(double_val=-1e300),
        Value(double_val=float("nan")),
        Value(float_val=0.5),
        Value(float_val=float("nan")),
        Value(int64_val=-(2**63)),
        Value(int64_val=2**63 - 1),
        Value(int64_val=0),
        Value(int32_val=-7),
        Value(int32_val=300),
        Value(bool_val=True),
        Value(bool_val=False),
        Value(string_val="Bochum plant ⚙"),
        Value(string_val=""),
        Value(bytes_val=b"\x00\xff"),
        Value(unix_timestamp_val=1_700_000_000),
        Value(null_val=Null.NULL),
        Value(),
    ]
    for value in values:
        expected, got = as_python(value), decode_value(value.SerializeToString())
        assert got == expected and type(got) is type(expected), value


def test_an_event_time_stored_as_iso_text_is_read_as_the_same_moment(repo: Path, tmp_path: Path) -> None:
    """Feast before 0.40 wrote the event time as ISO text; 0.67 writes epoch seconds. Both read the same."""
    store, view = _store_and_view(repo)
    described = record(store, view, repo, None)
    assert described is not None
    copy = tmp_path / "online.db"
    shutil.copyfile(described.db_path, copy)
    as_text = DirectView(**{**described.__dict__, "db_path": str(copy)})
    names = list(FEATURE_NAMES)
    before = as_text.reader().read(["pump-0001"], names)
    with sqlite3.connect(copy) as connection:
        table = described.table.replace('"', '""')
        connection.execute(f"UPDATE \"{table}\" SET event_ts = datetime(event_ts, 'unixepoch')")
        assert connection.execute(f'SELECT typeof(event_ts) FROM "{table}" LIMIT 1').fetchone() == ("text",)
    assert as_text.reader().read(["pump-0001"], names) == before


def _copy_of(repo: Path, where: Path, yaml: str | None = None) -> Path:
    copy = Path(shutil.copytree(repo, where))
    if yaml is not None:
        (copy / "feature_store.yaml").write_text(yaml)
    return copy


def test_the_fingerprint_follows_what_a_recorded_view_depends_on(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same files at the same place: the same digest. Another place, view, record version, registry or
    configuration (environment variables expanded): another. A registry Feast reads some other way: no digest."""
    plain = "project: demo\nprovider: local\nonline_store: {type: sqlite, path: data/online_store.db}\n"
    base = _copy_of(repo, tmp_path / "base", plain + "registry: data/registry.db\n")
    digest = feast_direct.fingerprint(base, VIEW)
    assert digest is not None and digest == feast_direct.fingerprint(base, VIEW)
    assert digest != feast_direct.fingerprint(_copy_of(base, tmp_path / "elsewhere"), VIEW)  # the repo's path
    assert digest != feast_direct.fingerprint(base, "another_view")
    # the registry's default path, and its long form, are read as Feast reads them
    assert feast_direct.fingerprint(_copy_of(base, tmp_path / "default", plain), VIEW) is not None
    long_form = plain + "registry: {registry_type: file, path: data/registry.db}\n"
    assert feast_direct.fingerprint(_copy_of(base, tmp_path / "long", long_form), VIEW) is not None
    for unjudged in ("registry: {registry_type: sql, path: 'postgresql://feast@db/feast'}\n",
                     "registry: s3://bucket/registry.pb\n", "registry: {registry_type: file}\n"):  # fmt: skip
        assert feast_direct.fingerprint(_copy_of(base, tmp_path / str(hash(unjudged)), plain + unjudged), VIEW) is None
    # a configuration that reads the environment is judged as Feast reads it: with the variables expanded
    environment = plain.replace("data/online_store.db", "${ONLINE_DB}") + "registry: data/registry.db\n"
    from_environment = _copy_of(base, tmp_path / "env", environment)
    monkeypatch.setenv("ONLINE_DB", "data/online_store.db")
    expanded = feast_direct.fingerprint(from_environment, VIEW)
    monkeypatch.setenv("ONLINE_DB", "data/elsewhere.db")
    assert expanded is not None and feast_direct.fingerprint(from_environment, VIEW) not in (None, expanded)
    # a changed registry file, and a new record format, each give another digest
    (base / "data" / "registry.db").write_bytes((base / "data" / "registry.db").read_bytes() + b"\0")
    changed = feast_direct.fingerprint(base, VIEW)
    assert changed not in (None, digest)
    monkeypatch.setattr(feast_direct, "RECORD_VERSION", feast_direct.RECORD_VERSION + 1)
    assert feast_direct.fingerprint(base, VIEW) not in (None, changed)


def test_a_repo_without_a_fingerprint_is_read_directly_but_never_recorded(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Production's SQL registry (PostgreSQL, see manifests/components/feast) cannot be fingerprinted without Feast:
    the start that imported Feast still reads the store directly; only the next one cannot skip Feast. (The registry
    is stood in for by fingerprint's answer for it, None, which the test above checks for such registries.)"""
    store, view = _store_and_view(repo)
    monkeypatch.setattr(feast_direct, "fingerprint", lambda *args, **kwargs: None)
    described = record(store, view, repo, tmp_path / "cache")
    assert described is not None and described.fingerprint == ""
    names = list(FEATURE_NAMES)
    assert described.reader().read(["pump-0001", "no-such-pump"], names) == OnlineReader(store, view).read(
        ["pump-0001", "no-such-pump"], names
    )
    assert not (tmp_path / "cache").exists()


def test_a_record_whose_store_file_is_gone_is_not_used(repo: Path, tmp_path: Path) -> None:
    copy = _copy_of(repo, tmp_path / "repo")
    store, view = _store_and_view(copy)
    assert record(store, view, copy, tmp_path / "cache") is not None
    assert recorded(copy, VIEW, tmp_path / "cache") is not None
    (copy / "data" / "online_store.db").unlink()
    assert recorded(copy, VIEW, tmp_path / "cache") is None  # Feast says what is wrong, not a direct read


def test_a_cache_it_cannot_write_costs_only_the_next_start_and_says_where(
    repo: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocked = tmp_path / "cache"
    blocked.write_text("a file where the cache directory should be")
    store, view = _store_and_view(repo)
    with caplog.at_level("WARNING", logger="predictor.feast_direct"):
        described = record(store, view, repo, blocked)
    assert described is not None and recorded(repo, VIEW, blocked) is None
    [warning] = [r for r in caplog.records if r.name == "predictor.feast_direct"]
    assert warning.getMessage().startswith(f"could not record the feature view for a fast start in {blocked}/")
    assert "Errno" in warning.getMessage()


def test_a_sqlite_store_named_by_its_class_is_read_directly_too(repo: Path, tmp_path: Path) -> None:
    """Feast accepts an online store's full class path for its type: the same SQLite store, the same record."""
    yaml = (repo / "feature_store.yaml").read_text()
    assert "  type: sqlite\n" in yaml
    by_class = yaml.replace("  type: sqlite\n", "  type: feast.infra.online_stores.sqlite.SqliteOnlineStore\n")
    copy = _copy_of(repo, tmp_path / "repo", by_class)
    described = feast_direct.describe(*_store_and_view(copy), copy)
    plain = feast_direct.describe(*_store_and_view(repo), repo)
    assert described is not None and plain is not None
    assert (described.table, described.features, described.key_type) == (plain.table, plain.features, plain.key_type)
    assert described.db_path == str((copy / "data" / "online_store.db").resolve())
