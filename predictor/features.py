"""Online features by entity id, from Feast, behind a small interface the model calls.

Lookups batch like predictions: concurrent ``fetch`` calls that ask for the same features share one read of the
online store for the union of their ids (``feast_direct``: a SQLite store's table or a Redis store's hashes, read
without importing Feast; otherwise ``feast_online.OnlineReader``: the store's own ``online_read``), run and
decoded off the event loop (a small read of a local SQLite file excepted: ``INLINE_READ_MAX_IDS``). One lookup per
feature set is in flight at a time; the calls that arrive meanwhile form the next one, so under load each lookup
carries the ids of every request that arrived during the previous one (a read's cost is mostly per call, not per
id). Each call then takes its own ids from the shared answer, so an unknown id or a stale feature fails only the
request that named it. What can go wrong, and what the caller sees:

- an id with no stored row → ``EntityNotFound`` naming every missing id (never a partial answer);
- a stored feature that is null, or whose reading is older than the feature view's TTL → ``StaleFeatures``
  with policy ``"reject"``; with ``"fill"`` the caller's ``fill_values`` (the training means) are used and
  reported per id in ``FetchedFeatures.filled``;
- the online store cannot be reached (Redis down, SQLite file unreadable, a lookup over its timeout) →
  ``FeatureStoreUnavailable``.

An online store answers an unknown id with nothing (SQLite) or with unset values and a zero timestamp (Redis),
and never judges a value's age. So an id is missing when no value of it is set nor timestamped, a null is an
unset value, and staleness compares each row's event timestamp with the view's TTL.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np

from predictor import feast_direct
from predictor.errors import BadRequest, EntityNotFound, FeatureStoreUnavailable, PredictorError, StaleFeatures
from predictor.feast_direct import DirectRedisReader, DirectSqliteReader
from predictor.feast_online import Cells, OnlineReader
from predictor.metrics import Metrics
from predictor.protocol.schema import Column, coerce

if TYPE_CHECKING:
    from feast import FeatureStore, FeatureView

Policy = Literal["reject", "fill"]
POLICIES: tuple[Policy, ...] = ("reject", "fill")
log = logging.getLogger(__name__)
DEFAULT_FEATURE_VIEW = "equipment_telemetry"  # the demo's (feature_repo/definitions.py); --feature_view for others
PROBE_ID = "__readiness_probe__"
# A call with more ids than this reads them from the answer on the lookup pool, not on the event loop: 10,000 ids
# of ten features are 100,000 cells, tens of milliseconds no other request would be answered in.
DECODE_ON_LOOP_MAX_IDS = 256
# A SQLite online store is a file on local disk: reading a few ids (about 1 ms for 50) on the event loop costs less
# than handing the read to a thread, which on a busy process waits for the GIL between the store's steps (measured:
# by id 1 row @50, 1,300-1,400 req/s with the read on a thread, 1,800-2,100 on the loop). Larger reads, and every
# networked store (Redis: a round trip), stay on the lookup pool.
INLINE_READ_MAX_IDS = 64
INLINE_STORES = ("sqlite",)


class FeatureSource(Protocol):
    entity_key: str

    async def fetch(
        self, ids: Sequence[str], feature_names: Sequence[str], fill_values: Mapping[str, float] | None = None
    ) -> FetchedFeatures: ...

    async def check(self) -> None:
        """Raise ``FeatureStoreUnavailable`` when the online store cannot be reached."""
        ...


@dataclass(frozen=True)
class FetchedFeatures:
    #: ``[len(ids), len(feature_names)]``, columns in the order asked: float64 when every value is a number,
    #: else object holding each value as Feast types it (str, int, float, bool, bytes); the caller checks each
    #: against its column (``protocol.schema.coerce``)
    values: np.ndarray
    #: equipment id → names of the features filled by policy (only ids that had any)
    filled: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class _CacheEntry:
    cells: Cells
    at: float  # time.monotonic() when read from the store
    oldest: float  # the oldest event time among its values (epoch seconds; 0: none)


class FeatureCache:
    """Ids' stored features kept for ``max_age_s`` — and never past the feature view's TTL (an entry whose oldest
    value would be stale is read again, in case the store has a fresher one). Only ids the store knows are kept;
    at most ``max_entries``, the oldest dropped first. Used on the event loop's thread and the lookup pool's: one
    lock."""

    def __init__(self, max_age_s: float, ttl_s: float, metrics: Metrics, max_entries: int = 100_000) -> None:
        self._max_age_s, self._ttl_s, self._max_entries = max_age_s, ttl_s, max_entries
        self._entries: dict[tuple[tuple[str, ...], str], _CacheEntry] = {}
        self._lock = threading.Lock()
        self._hits = metrics.feature_cache_lookups.labels(result="hit")
        self._misses = metrics.feature_cache_lookups.labels(result="miss")
        self._age = metrics.feature_cache_age

    def take(self, names: tuple[str, ...], ids: Sequence[str]) -> tuple[dict[str, Cells], list[str]]:
        """The fresh entries of ``ids``, and the ids still to look up."""
        now, wall = time.monotonic(), time.time()
        hits: dict[str, Cells] = {}
        misses: list[str] = []
        with self._lock:
            for entity_id in dict.fromkeys(ids):
                entry = self._entries.get((names, entity_id))
                if entry is not None and now - entry.at <= self._max_age_s and self._within_ttl(entry, wall):
                    hits[entity_id] = entry.cells
                    self._age.observe(now - entry.at)
                else:
                    misses.append(entity_id)
        self._hits.inc(len(hits))
        self._misses.inc(len(misses))
        return hits, misses

    def put(self, names: tuple[str, ...], read: Mapping[str, Cells]) -> None:
        now = time.monotonic()
        with self._lock:
            for entity_id, cells in read.items():
                if all(cell is None for cell in cells):
                    continue  # an unknown id: asked again next time (it may be materialized meanwhile)
                stamps = [cell[1] for cell in cells if cell is not None and cell[1]]
                key = (names, entity_id)
                self._entries.pop(key, None)  # re-inserted last: the dict's order is the entries' age
                self._entries[key] = _CacheEntry(cells, now, min(stamps, default=0))
            while len(self._entries) > self._max_entries:
                del self._entries[next(iter(self._entries))]

    def _within_ttl(self, entry: _CacheEntry, wall: float) -> bool:
        return not self._ttl_s or not entry.oldest or wall - entry.oldest <= self._ttl_s


@dataclass
class _SharedLookup:
    """One read of the online store shared by the requests that joined it; its answer: each id's cells."""

    answer: asyncio.Future[dict[str, Cells]]
    ids: dict[str, None] = field(default_factory=dict)  # every id its callers named, once each, in order


@dataclass
class _Problems:
    """Null and stale features found in one response, per id."""

    null: dict[str, list[str]] = field(default_factory=dict)
    stale: dict[str, list[str]] = field(default_factory=dict)

    def add(self, reason: str, entity_id: str, feature: str) -> None:
        names = (self.null if reason == "null" else self.stale).setdefault(entity_id, [])
        if feature not in names:
            names.append(feature)

    def __bool__(self) -> bool:
        return bool(self.null or self.stale)


class FeastFeatureSource:
    """``FeatureSource`` over a Feast repo (whatever online store its ``feature_store.yaml`` names).

    Lookups run on the source's own small thread pool, so an online store that hangs (redis-py retries a
    refused connection for ~7-10 s by default) cannot starve the event loop's default executor. After a
    failed lookup, ``fetch`` fails fast for ``retry_after_s`` instead of queueing more threads; ``check``
    always probes and, on success, closes that breaker.
    """

    def __init__(
        self,
        repo_path: Path,
        metrics: Metrics,
        policy: Policy = "reject",
        fill_values: Mapping[str, float] | None = None,
        feature_view: str = DEFAULT_FEATURE_VIEW,
        timeout_s: float = 2.0,
        check_timeout_s: float = 1.0,
        retry_after_s: float = 1.0,
        cache_s: float = 0.0,
        record_dir: Path | None = None,
    ) -> None:
        """Load the repo's config and registry; the online store is first contacted by a lookup.

        ``timeout_s`` bounds one lookup and ``check_timeout_s`` one readiness probe, as seen by the caller
        (the thread finishes on its own: the store's socket timeouts bound it, see feature_store.redis.yaml).
        ``cache_s`` > 0 keeps each id's stored features that long (``FeatureCache``).
        ``record_dir`` (the local model cache): where a start records the view so that the next one reads a
        SQLite store without importing Feast (``feast_direct``).
        Raises ``FeatureStoreUnavailable`` if the repo, its registry or the feature view cannot be read.
        """
        if policy not in POLICIES:
            raise ValueError(f"feature policy must be one of {POLICIES}, not {policy!r}")
        self._metrics = metrics
        self._policy = policy
        self._fill_values = dict(fill_values or {})
        self._timeout_s = timeout_s
        self._check_timeout_s = check_timeout_s
        self._retry_after_s = retry_after_s
        self._reader: OnlineReader | DirectSqliteReader | DirectRedisReader
        direct = feast_direct.recorded(repo_path, feature_view, record_dir)
        if direct is not None:  # the repo is as a start that imported Feast recorded it: no Feast import
            self._reader, self.store_type = direct.reader(), direct.store
            self.feature_names: tuple[str, ...] = direct.features
            self._ttl_s = direct.ttl_s
            where = direct.db_path if direct.store == "sqlite" else "its Redis store"
            log.info("feature view %s: reading %s directly (as an earlier start recorded it)", feature_view, where)
        else:
            store, view = _open_store(repo_path, feature_view)
            described = feast_direct.record(store, view, repo_path, record_dir)
            self._reader = described.reader() if described is not None else OnlineReader(store, view)
            self.store_type = _store_label(store.config.online_store)
            self.feature_names = tuple(f.name for f in view.features)
            self._ttl_s = view.ttl.total_seconds() if isinstance(view.ttl, timedelta) else 0.0
        self._view = feature_view
        self.entity_key: str = self._reader.entity_key
        self._errors = _connection_errors(self.store_type)
        self._executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="feast-lookup")
        self._probe: asyncio.Future[dict[str, Cells]] | None = None
        self._failed: FeatureStoreUnavailable | None = None
        self._failed_at = 0.0
        # per feature set: the lookup gathering ids (not started yet), and the one in flight
        self._gathering: dict[tuple[str, ...], _SharedLookup] = {}
        self._in_flight: dict[tuple[str, ...], asyncio.Future[dict[str, Cells]]] = {}
        self._cache = FeatureCache(cache_s, self._ttl_s, metrics) if cache_s > 0 else None

    async def fetch(
        self, ids: Sequence[str], feature_names: Sequence[str], fill_values: Mapping[str, float] | None = None
    ) -> FetchedFeatures:
        """``fill_values`` (the serving model's training defaults) override the constructor's for this call."""
        unknown = [name for name in feature_names if name not in self.feature_names]
        if unknown:
            raise ValueError(f"feature view {self._view} has no features {unknown}")
        if not ids:
            return FetchedFeatures(np.empty((0, len(feature_names))), {})
        if self._failed is not None and time.monotonic() - self._failed_at < self._retry_after_s:
            raise FeatureStoreUnavailable(f"{self._failed} (retrying in under {self._retry_after_s:g} s)")
        names = tuple(feature_names)
        stored, wanted = self._cache.take(names, ids) if self._cache is not None else ({}, list(dict.fromkeys(ids)))
        defaults = self._fill_values if fill_values is None else {**self._fill_values, **fill_values}
        if wanted:
            # shielded: a caller that goes away must not cancel the lookup the others share (its deadline is the
            # lookup's own: _join)
            answer = await asyncio.shield(self._join(names, wanted).answer)
            stored.update((entity_id, answer[entity_id]) for entity_id in wanted)
        decode = partial(self._decode, stored, list(ids), list(names), defaults)
        if len(ids) <= DECODE_ON_LOOP_MAX_IDS:
            return decode()
        return await asyncio.get_running_loop().run_in_executor(self._executor, decode)

    def _join(self, names: tuple[str, ...], ids: Sequence[str]) -> _SharedLookup:
        """The lookup these ids go out with: the one gathering for this feature set, or a new one that starts
        as soon as the set's lookup in flight (if any) has returned."""
        shared = self._gathering.get(names)
        if shared is None:
            loop = asyncio.get_running_loop()
            shared = self._gathering[names] = _SharedLookup(loop.create_future())
            # One deadline per lookup, not one wait_for per caller (a tenth of a by-id request's CPU).
            deadline = loop.call_later(self._timeout_s, self._time_out, shared)
            shared.answer.add_done_callback(lambda _: deadline.cancel())
            previous = self._in_flight.get(names)
            if previous is None or previous.done():
                loop.call_soon(self._send, names, shared)  # after this turn's other calls have joined
            else:
                previous.add_done_callback(lambda _: self._send(names, shared))
                # A lookup that hangs past the timeout must not hold the next one back for good.
                loop.call_later(self._timeout_s, self._send, names, shared)
        shared.ids.update(dict.fromkeys(ids))
        return shared

    def _send(self, names: tuple[str, ...], shared: _SharedLookup) -> None:
        """Start the gathered lookup (once): one read for every id its callers named."""
        if self._gathering.get(names) is not shared:
            return  # sent already
        del self._gathering[names]
        started = time.perf_counter()
        try:
            lookup = self._start(names, list(shared.ids))
        except RuntimeError as exc:  # the lookup pool is shut down: the server is stopping
            shared.answer.set_exception(FeatureStoreUnavailable(f"feature store closed: {exc}"))
            return
        self._in_flight[names] = lookup

        def done(finished: asyncio.Future[dict[str, Cells]]) -> None:
            self._metrics.feature_lookup_latency.labels(store=self.store_type).observe(time.perf_counter() - started)
            if shared.answer.done():  # timed out already (_time_out): the late result or error is dropped
                _consume(finished)
            elif finished.cancelled():
                shared.answer.cancel()
            elif (error := finished.exception()) is not None:
                shared.answer.set_exception(self._translated(error))
            else:
                shared.answer.set_result(finished.result())

        lookup.add_done_callback(done)

    async def check(self) -> None:
        """Look up a dummy id, through the same path as ``fetch``; at most one probe runs at a time."""
        if self._probe is not None and not self._probe.done():
            raise FeatureStoreUnavailable(
                f"feature store unreachable: the previous {self.store_type} probe has not returned after "
                f"{self._check_timeout_s:g} s — check that the online store is up and reachable"
            )
        self._probe = self._start(self.feature_names[:1], [PROBE_ID])
        await self._lookup(self._probe, self._check_timeout_s)
        self._failed = None

    def close(self) -> None:
        """Stop the lookup threads (a lookup still waiting on the store is abandoned)."""
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _start(self, names: tuple[str, ...], ids: list[str]) -> asyncio.Future[dict[str, Cells]]:
        """One read of the online store for all ``ids``, decoded (and cached): on the lookup pool, or at once for a
        small read of a local store (``INLINE_READ_MAX_IDS``)."""
        loop = asyncio.get_running_loop()
        if self.store_type not in INLINE_STORES or len(ids) > INLINE_READ_MAX_IDS:
            return loop.run_in_executor(self._executor, self._read, names, ids)
        read: asyncio.Future[dict[str, Cells]] = loop.create_future()
        try:
            read.set_result(self._read(names, ids))
        except Exception as exc:  # handed to the caller as a thread's failure would be (_lookup)
            read.set_exception(exc)
        return read

    def _read(self, names: tuple[str, ...], ids: list[str]) -> dict[str, Cells]:
        cells = self._reader.read(ids, names)
        if self._cache is not None:
            self._cache.put(names, cells)
        return cells

    async def _lookup(self, future: asyncio.Future[dict[str, Cells]], timeout_s: float) -> dict[str, Cells]:
        """Await a started lookup; translate timeouts and connection errors (and remember the failure)."""
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout_s)
        except TimeoutError as exc:
            future.add_done_callback(_consume)  # the late result or error of the abandoned thread is dropped
            raise self._late(timeout_s) from exc
        except self._errors as exc:
            raise self._translated(exc) from exc

    def _time_out(self, shared: _SharedLookup) -> None:
        """A shared lookup's deadline: its callers get 503 (the read, if it ever returns, is dropped: ``_send``)."""
        if not shared.answer.done():
            shared.answer.set_exception(self._late(self._timeout_s))

    def _late(self, timeout_s: float) -> FeatureStoreUnavailable:
        return self._unavailable(
            f"the {self.store_type} online store did not answer within {timeout_s:g} s — check that it is "
            "up and reachable"
        )

    def _translated(self, error: BaseException) -> BaseException:
        """A connection error of the store as 503 (remembered: ``fetch`` fails fast for a while); others as is."""
        if not isinstance(error, self._errors):
            return error
        failure = self._unavailable(
            f"{type(error).__name__}: {error} — check the {self.store_type} online store named in the repo's "
            "feature_store.yaml (is it running, is the address right?)"
        )
        failure.__cause__ = error
        return failure

    def _unavailable(self, detail: str) -> FeatureStoreUnavailable:
        self._failed = FeatureStoreUnavailable(f"feature store unreachable: {detail}")
        self._failed_at = time.monotonic()
        return self._failed

    def _decode(
        self, stored: Mapping[str, Cells], ids: list[str], feature_names: list[str], fill_values: Mapping[str, float]
    ) -> FetchedFeatures:
        """This call's ``ids`` from their stored cells: unknown ids, nulls and staleness judged, the policy applied."""
        numbers = self._fresh_numbers(stored, ids)
        if numbers is not None:
            return FetchedFeatures(numbers, {})
        values = np.full((len(ids), len(feature_names)), None, dtype=object)
        found = [False] * len(ids)
        # no value: null, or not found for an id that has other features (a row written before a schema change)
        empty: list[tuple[int, int]] = []
        expired: list[tuple[int, int]] = []
        fresh_since = self._fresh_since()
        for row, entity_id in enumerate(ids):
            for column, cell in enumerate(stored[entity_id]):
                if cell is None:
                    empty.append((row, column))
                    continue
                typed, stamp = cell
                found[row] = True
                if typed is None:
                    empty.append((row, column))
                    continue
                values[row, column] = typed
                if _stale(stamp, fresh_since):
                    expired.append((row, column))
        missing = list(dict.fromkeys(entity_id for entity_id, hit in zip(ids, found, strict=True) if not hit))
        if missing:
            raise EntityNotFound(self.entity_key, missing)
        problems = _Problems()
        for row, column in empty:
            problems.add("null", ids[row], feature_names[column])
        for row, column in expired:
            problems.add("stale", ids[row], feature_names[column])
        filled: dict[str, list[str]] = {}
        if problems:
            self._count(problems)
            filled = self._fill(values, ids, feature_names, problems, fill_values)
        return FetchedFeatures(_numbers_as_float(values), filled)

    def _fresh_numbers(self, stored: Mapping[str, Cells], ids: list[str]) -> np.ndarray | None:
        """The usual answer in one pass (a third of ``_decode``'s cost): every cell a number within the TTL, as the
        float64 matrix; None when any cell is empty, stale, a bool or not a number (``_decode`` judges it)."""
        fresh_since = self._fresh_since()
        rows = []
        for entity_id in ids:
            row = []
            for cell in stored[entity_id]:
                if cell is None:
                    return None
                typed, stamp = cell
                if type(typed) is not float and type(typed) is not int:  # also None, and bool (an int's subclass)
                    return None
                if _stale(stamp, fresh_since):
                    return None
                row.append(typed)
            rows.append(row)
        return np.array(rows, dtype=np.float64)

    def _fresh_since(self) -> float | None:
        """The oldest event time still within the view's TTL (None: no TTL, nothing goes stale)."""
        return time.time() - self._ttl_s if self._ttl_s else None

    def _count(self, problems: _Problems) -> None:
        for reason, by_id in (("null", problems.null), ("stale", problems.stale)):
            for names in by_id.values():
                for name in names:
                    self._metrics.features_missing.labels(feature=name, reason=reason).inc()

    def _fill(
        self,
        values: np.ndarray,
        ids: list[str],
        feature_names: list[str],
        problems: _Problems,
        fill_values: Mapping[str, float],
    ) -> dict[str, list[str]]:
        """Apply the policy in place; return what was filled, or raise ``StaleFeatures``."""
        bad = {
            entity_id: problems.null.get(entity_id, []) + problems.stale.get(entity_id, [])
            for entity_id in dict.fromkeys(ids)
            if entity_id in problems.null or entity_id in problems.stale
        }
        no_default = sorted({name for names in bad.values() for name in names} - fill_values.keys())
        if self._policy == "reject" or no_default:
            raise StaleFeatures(self._stale_message(problems, no_default if self._policy == "fill" else []))
        column = {name: i for i, name in enumerate(feature_names)}
        for row, entity_id in enumerate(ids):
            for name in bad.get(entity_id, []):
                values[row, column[name]] = fill_values[name]
        return bad

    def _stale_message(self, problems: _Problems, no_default: list[str]) -> str:
        parts = [f"{entity_id} ({', '.join(names)}: null)" for entity_id, names in problems.null.items()]
        ttl = _duration(self._ttl_s)
        parts += [
            f"{entity_id} ({', '.join(names)}: older than the {ttl} TTL)" for entity_id, names in problems.stale.items()
        ]
        shown = "; ".join(parts[:20]) + (" …" if len(parts) > 20 else "")
        if no_default:
            return (
                f"stored features unusable for {self.entity_key} {shown}, and no fill value for "
                f"{', '.join(no_default)}: send these features in the request or re-materialize them"
            )
        return (
            f"stored features unusable for {self.entity_key} {shown}: send these features in the request, "
            "re-materialize fresh telemetry (`feast materialize`), or serve with the 'fill' feature policy"
        )


def as_columns(
    values: np.ndarray, columns: Sequence[Column], ids: Sequence[str], entity_key: str, matrix: bool
) -> np.ndarray:
    """Fetched values checked against the model's columns, as its rows hold them (float64 or typed objects).

    A stored value that does not fit its column (a string feature for a double column, 1.5 for a long) means the
    feature view and the model's signature disagree: a server-side fault (500) naming both, not the caller's."""
    if matrix and values.dtype == np.float64:
        return values  # the all-numeric fast path: nothing to convert
    out = np.empty(values.shape, dtype=np.float64 if matrix else object)
    for j, column in enumerate(columns):
        for i, value in enumerate(values[:, j].tolist()):
            try:
                out[i, j] = coerce(value, column, f"stored feature {column.name} of {entity_key} {ids[i]}")
            except BadRequest as exc:
                raise PredictorError(
                    f"{exc}: the feature view's type for {column.name} does not match the model's signature "
                    f"({column.type}); align the Feast schema with the model"
                ) from exc
    return out


def _stale(event_seconds: int, fresh_since: float | None) -> bool:
    """Older than the TTL allows (an event time of 0: unknown, never stale)."""
    return fresh_since is not None and 0 < event_seconds < fresh_since


def _consume(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


def _numbers_as_float(values: np.ndarray) -> np.ndarray:
    """float64 when every value is a number (the all-numeric fast path's matrix), else the typed values."""
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values.flat)
    return values.astype(np.float64) if numbers else values


def _duration(seconds: float) -> str:
    for unit, size in (("days", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g} {unit}"
    return f"{seconds:g} s"


# Importing Feast (feast.metrics) puts the whole process into prometheus-client's multiprocess mode by setting
# these variables; our metrics are not multiprocess unless --workers says so, so they are put back.
_FEAST_SETS = ("PROMETHEUS_MULTIPROC_DIR", "PROMETHEUS_MULTIPROCESS_DIR")


def import_feast() -> None:
    """Import Feast once, leaving the process's prometheus mode as it was, and without typeguard's instrumentation.

    Feast decorates its definition classes (``FeatureView``, ``Entity``, every data source) with typeguard's
    ``@typechecked``, which parses and recompiles each of their methods at import: 6.5 of the 9.5 s ``import feast``
    took on two cores (measured; 2.9 s without). typeguard documents the decorator as a development aid that does
    nothing under ``python -O``; the server imports Feast as an optimised interpreter would (the classes as
    written), and puts the decorator back for anything imported later. ``tests/test_features.py`` checks it against
    the installed Feast and typeguard.
    """
    import typeguard

    before = {name: os.environ.get(name) for name in _FEAST_SETS}
    instrument = typeguard.typechecked
    typeguard.typechecked = _as_written  # the -O behaviour, for Feast's import only
    try:
        import feast.metrics  # noqa: F401  # the module that sets them
    finally:
        typeguard.typechecked = instrument
    for name, value in before.items():
        if value is None:
            os.environ.pop(name, None)


def _as_written(target: Any = None, **_: Any) -> Any:
    """``typeguard.typechecked`` under ``python -O``: the class or function unchanged (also as ``@typechecked()``)."""
    return target if target is not None else _as_written


def _open_store(repo_path: Path, feature_view: str) -> tuple[FeatureStore, FeatureView]:
    """The repo's store and its ``feature_view``; unreadable → ``FeatureStoreUnavailable``."""
    import_feast()
    from feast import FeatureStore
    from feast.errors import FeastError
    from feast.repo_config import FeastConfigError

    try:
        store = FeatureStore(repo_path=str(repo_path))
        registry = store.config.registry
        if registry.registry_type == "file" and "://" not in registry.path:
            # Feast would create an empty registry here (writing into, say, the source tree): refuse instead.
            open(Path(repo_path) / registry.path, "rb").close()
        views = [view.name for view in store.list_feature_views()]
    except (FeastError, FeastConfigError, OSError, ValueError) as exc:
        raise FeatureStoreUnavailable(
            f"cannot open the Feast repo at {repo_path} ({type(exc).__name__}: {exc}) — prepare it with "
            "predictor.demo.feast_setup.prepare_feature_store (or `feast apply` there) and check --feature_store"
        ) from exc
    if feature_view not in views:
        raise FeatureStoreUnavailable(
            f"the Feast repo at {repo_path} has no feature view {feature_view!r}; it has {sorted(views)}: "
            "pass --feature_view with one of them (or `feast apply` the view there)"
        )
    return store, store.get_feature_view(feature_view)


def _store_label(config: Any) -> str:
    """``sqlite``, ``redis``, … for the metric label (a class path is shortened to its store name)."""
    kind = str(getattr(config, "type", "unknown"))
    return kind.rsplit(".", 1)[-1].lower().removesuffix("onlinestore") or "unknown"


def _connection_errors(store_type: str) -> tuple[type[BaseException], ...]:
    """The exceptions that mean "the online store cannot be reached" (Redis' for any store but SQLite, if it is
    installed: importing it costs a SQLite start 0.35 s)."""
    errors: list[type[BaseException]] = [sqlite3.Error, OSError]
    if store_type == "sqlite":
        return tuple(errors)
    try:
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError
    except ImportError:
        pass
    else:
        errors += [RedisConnectionError, RedisTimeoutError]
    return tuple(errors)
