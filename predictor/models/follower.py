"""Follow one registry reference (an alias, a stage, ``latest``): when it names another version, hand that version
to the owner, which loads it and switches. The served model and the challenger are followed the same way.

The follower acts when the registry *moves*, not whenever it disagrees with what the owner holds: after an
operator's ``/admin/rollback`` the registry still names the version rolled back from, and adopting it again at
the next poll would silently undo the rollback. The owner stays rolled back until the reference moves again.
When the owner holds nothing (a challenger whose process died), the named version is adopted again.

A failed check (registry down, a version that does not load) keeps what the owner holds, is reported in
``last_error`` and retried with backoff, never later than the next poll.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from predictor.models import registry

log = logging.getLogger(__name__)


class AliasFollower:
    def __init__(
        self,
        uri: str,
        tracking_uri: str,
        *,
        held: Callable[[], str | None],
        adopt: Callable[[registry.ModelSource], None],
        interval_s: float,
        stopping: threading.Event,
        what: str = "model",
        absent: Callable[[], None] | None = None,
    ) -> None:
        """``held``: the version the owner holds now (None: nothing); ``adopt``: load and switch to a source
        (raising when it cannot: the owner keeps what it holds). ``absent``: the registry says the reference names
        nothing (an alias no version holds): the owner lets go of what it holds, and the reference is checked on
        every poll until it names a version again; without it, that is a failure like any other."""
        self.uri = uri
        self.tracking_uri = tracking_uri
        self.held = held
        self.adopt = adopt
        self.interval_s = interval_s
        self.stopping = stopping
        self.what = what  # for log lines
        self.last_error: str | None = None
        self.absent = absent
        self.absence: str | None = None  # why the reference names nothing, while it does not
        self._named: str | None = None  # the version the reference named at the last good check
        self._lock = threading.Lock()  # one check at a time (poll thread, admin reload, webhook)
        self._wake = threading.Event()

    @property
    def follows_a_moving_reference(self) -> bool:
        return registry.can_move(self.uri)

    def check(self) -> str | None:
        """Resolve the reference; adopt the version it names if it moved. Returns the version held after it
        (None when the check failed)."""
        with self._lock:
            try:
                source = registry.resolve(self.uri, self.tracking_uri)
                held = self.held()
                if held is not None and source.version in (held, self._named):
                    # in step, or the registry has not moved since an operator rolled back: keep what is held
                    self._named, self.last_error, self.absence = source.version, None, None
                    return held
                log.info("registry: %s now names version %s; loading the %s", source.uri, source.version, self.what)
                self.adopt(source)
                self._named, self.last_error, self.absence = source.version, None, None
                return source.version
            except registry.NotRegistered as exc:
                if self.absent is None:
                    self._failed(exc)
                    return None
                if self.absence is None:  # once, not every poll: most models have no challenger
                    log.info("registry: %s names no version; no %s", self.uri, self.what)
                self.absence, self.last_error, self._named = str(exc), None, None
                self.absent()
                return None
            except Exception as exc:  # what is held keeps serving
                self._failed(exc)
                return None

    def _failed(self, exc: Exception) -> None:
        self.last_error = str(exc)
        log.error("registry check for the %s failed, keeping version %s: %s", self.what, self.held(), exc)

    def wake(self) -> None:
        """Check now (admin reload, registry webhook) instead of at the next poll."""
        self._wake.set()

    def run(self, check_first: bool = True) -> None:
        """Check until stopped; a reference that cannot move is checked until it has been adopted once.
        ``check_first=False``: the owner has just loaded what the reference names; wait a poll first."""
        attempt = 0
        if not check_first:
            self._wake.wait(self.interval_s)
            self._wake.clear()
        while not self.stopping.is_set():
            if self.check() is not None or self.absence is not None:
                attempt = 0
                if not self.follows_a_moving_reference or self.interval_s <= 0:
                    return
                delay = self.interval_s
            else:
                delay = registry.load_backoff_s(attempt)
                if self.interval_s > 0:
                    delay = min(delay, self.interval_s)
                attempt += 1
            self._wake.wait(delay)
            self._wake.clear()
