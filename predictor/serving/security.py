"""Bearer-token authentication and per-client rate limiting, as pure logic the HTTP layer calls.

Nothing here knows about HTTP frameworks or reads the environment: the caller passes in the token file path,
the token string from ``PREDICTOR_AUTH_TOKENS``, the ``Authorization`` header and the peer address, and turns
our ``Unauthorized`` (401) and ``RateLimited`` (429) into responses through ``errors.py``.

Secrets stay secret: tokens are never logged or echoed in errors, are compared in constant time, and a client
is named by a short hash of its token (``token:1a2b3c4d``) in rate-limit buckets and logs.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from predictor.errors import RateLimited, Unauthorized

log = logging.getLogger(__name__)

Clock = Callable[[], float]

#: seconds between two ``stat`` calls on the token file: rotation takes effect within this delay
RECHECK_S = 1.0
BEARER_HINT = "send Authorization: Bearer <token>"


def parse_token_lines(text: str) -> list[str]:
    """Tokens from a token file: one per line; blank lines and ``#`` comment lines are ignored."""
    lines = (line.strip() for line in text.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def parse_token_list(value: str) -> list[str]:
    """Tokens from a comma-separated string (an environment variable); empty items are ignored."""
    return [item.strip() for item in value.split(",") if item.strip()]


def _digest(token: str) -> bytes:
    # Comparing fixed-size digests instead of the raw tokens hides the tokens' lengths as well as their content.
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def _digests(tokens: Iterable[str]) -> frozenset[bytes]:
    return frozenset(_digest(token) for token in tokens)


class BearerTokens:
    """The accepted tokens: from a file, a comma-separated string, or both (the union).

    The file can be rotated without a restart: it is re-read when its mtime, size or inode changes, checked at
    most once per ``RECHECK_S`` with a ``stat``, cheap enough for the request path. ``stat`` follows symlinks,
    so a Kubernetes Secret volume (updated by swapping its ``..data`` symlink) is picked up too. If the file is
    briefly missing, unreadable or empty (a writer that truncates before writing), the last good set stays in
    force and one warning is logged — so emptying the file does not revoke every token; replace them instead.
    """

    def __init__(
        self, file: str | os.PathLike[str] | None = None, inline: str | None = None, *, clock: Clock = time.monotonic
    ) -> None:
        """Load the tokens now, so a wrong path or an empty file fails at startup instead of rejecting every call.

        Raises ``ValueError`` when the file cannot be read, or when it holds no token and ``inline`` none either.
        """
        self._path = Path(file) if file else None
        self._inline = _digests(parse_token_list(inline or ""))
        self._clock = clock
        self._lock = threading.Lock()
        self._accepted = self._inline
        self._stamp: tuple[int, int, int] | None = None
        self._checked_at = clock()
        self._failing = False
        if self._path is not None:
            self._load_at_startup(self._path)

    @property
    def enabled(self) -> bool:
        """False when no token source is configured: authentication is off and every request passes."""
        return self._path is not None or bool(self._inline)

    def verify(self, presented: str) -> bool:
        """True when ``presented`` is one of the accepted tokens.

        Every accepted token is compared, with no early exit, so the time taken says nothing about which token
        matched or how much of it; comparing digests keeps it independent of the tokens' lengths too.
        """
        candidate = _digest(presented)
        matched = False
        for known in self._current():
            matched |= hmac.compare_digest(candidate, known)
        return matched

    def identity(self, presented: str) -> str:
        """A short, non-reversible name for a token, safe for logs and rate-limit buckets."""
        return "token:" + hashlib.sha256(presented.encode("utf-8", "surrogatepass")).hexdigest()[:8]

    def _current(self) -> frozenset[bytes]:
        if self._path is not None and self._clock() - self._checked_at >= RECHECK_S:
            self._recheck(self._path)
        return self._accepted

    def _load_at_startup(self, path: Path) -> None:
        try:
            stamp, tokens = self._read(path)
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"cannot read the auth token file {path}: {exc}") from exc
        if not tokens and not self._inline:
            raise ValueError(f"the auth token file {path} holds no token: every request would be refused")
        self._install(stamp, tokens)

    def _recheck(self, path: Path) -> None:
        with self._lock:  # one thread re-reads; the others keep using the current set meanwhile
            now = self._clock()
            if now - self._checked_at < RECHECK_S:
                return
            self._checked_at = now
            try:
                if self._stamp_of(path) == self._stamp:
                    return
                stamp, tokens = self._read(path)
            except (OSError, UnicodeDecodeError) as exc:
                self._warn_once(f"cannot read the auth token file {path} ({exc}); keeping the previous tokens")
                return
            if not tokens:  # stamp not recorded: re-read on the next check, the writer may not have finished
                self._warn_once(f"the auth token file {path} holds no token; keeping the previous tokens")
                return
            self._install(stamp, tokens)
            log.info("reloaded %d auth token(s) from %s", len(tokens), path)

    @staticmethod
    def _stamp_of(path: Path) -> tuple[int, int, int]:
        info = path.stat()
        return info.st_mtime_ns, info.st_size, info.st_ino

    def _read(self, path: Path) -> tuple[tuple[int, int, int], frozenset[bytes]]:
        # stat before read: if the file changes in between, the next check sees a new stamp and reads again.
        stamp = self._stamp_of(path)
        return stamp, _digests(parse_token_lines(path.read_text(encoding="utf-8")))

    def _install(self, stamp: tuple[int, int, int], tokens: frozenset[bytes]) -> None:
        self._stamp = stamp
        self._accepted = tokens | self._inline  # one assignment: readers see the old set or the new one
        if self._failing:
            log.info("the auth token file %s is readable again", self._path)
        self._failing = False

    def _warn_once(self, message: str) -> None:
        """Warn on the first failed check of a streak, not every second until the file comes back."""
        if not self._failing:
            log.warning(message)
        self._failing = True


class Authenticator:
    """Turns an ``Authorization`` header into a client identity, or refuses it with 401."""

    def __init__(self, tokens: BearerTokens) -> None:
        self.tokens = tokens

    @property
    def enabled(self) -> bool:
        return self.tokens.enabled

    def authenticate(self, authorization_header: str | None) -> str | None:
        """The client's identity (``token:<hash>``), or None when authentication is off.

        Raises ``Unauthorized``; its message never repeats what the client sent, which may be a token.
        """
        if not self.tokens.enabled:
            return None
        scheme, _, credentials = (authorization_header or "").strip().partition(" ")
        if not scheme:
            raise Unauthorized(f"missing bearer token: {BEARER_HINT}")
        if scheme.lower() != "bearer":  # auth schemes are case-insensitive (RFC 9110 §11.1)
            raise Unauthorized(f"unsupported authorization scheme: {BEARER_HINT}")
        token = credentials.strip()
        if not token:
            raise Unauthorized(f"missing bearer token: {BEARER_HINT}")
        if not self.tokens.verify(token):
            raise Unauthorized("invalid bearer token")
        return self.tokens.identity(token)


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated_at: float


class RateLimiter:
    """A token bucket per client: ``burst`` requests at once, refilled at ``rate_per_s``.

    Memory is bounded: beyond ``max_clients`` identities the least recently seen bucket is dropped (that
    client starts again with a full bucket, the price of a bound an address-spraying client cannot blow).
    """

    def __init__(self, rate_per_s: float, burst: int, clock: Clock = time.monotonic, max_clients: int = 10_000) -> None:
        if rate_per_s > 0 and burst < 1:
            raise ValueError(f"rate limit burst must be at least 1, got {burst}")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._clock = clock
        self._max_clients = max(1, max_clients)
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        """False when ``rate_per_s`` is 0 (or less): every request passes and nothing is stored."""
        return self.rate_per_s > 0

    def acquire(self, identity: str, cost: float = 1.0) -> None:
        """Take ``cost`` tokens from the client's bucket, or raise ``RateLimited`` with the wait until they refill.

        A cost above ``burst`` could never be paid, so it is capped: such a request needs a full bucket.
        """
        if not self.enabled:
            return
        cost = min(cost, float(self.burst))
        with self._lock:
            bucket = self._bucket(identity, self._clock())
            if bucket.tokens >= cost:
                bucket.tokens -= cost
                return
            retry_after_s = (cost - bucket.tokens) / self.rate_per_s
        raise RateLimited(self._message(retry_after_s), retry_after_s)

    @property
    def clients(self) -> int:
        """How many clients hold a bucket (at most ``max_clients``)."""
        return len(self._buckets)

    def _bucket(self, identity: str, now: float) -> _Bucket:
        """The client's bucket, refilled up to ``now`` and marked most recently seen; the caller holds the lock."""
        bucket = self._buckets.pop(identity, None)
        if bucket is None:
            bucket = _Bucket(tokens=float(self.burst), updated_at=now)
        elapsed = max(0.0, now - bucket.updated_at)  # max: a clock that steps back must not drain the bucket
        bucket.tokens = min(float(self.burst), bucket.tokens + elapsed * self.rate_per_s)
        bucket.updated_at = now
        self._buckets[identity] = bucket
        while len(self._buckets) > self._max_clients:
            self._buckets.popitem(last=False)
        return bucket

    def _message(self, retry_after_s: float) -> str:
        return (
            f"rate limit of {self.rate_per_s:g} requests/s (burst {self.burst}) exceeded for this client; "
            f"retry after {_seconds(retry_after_s)} s or raise --rate_limit_rps"
        )


def _seconds(value: float) -> str:
    """``0.01``, ``2``, ``12.5``: readable, never ``0`` for a positive wait, never scientific notation."""
    return f"{max(value, 0.001):.3f}".rstrip("0").rstrip(".")


def client_identity(
    authenticated: str | None, peer_host: str | None, forwarded_for: str | None, trust_forwarded: bool
) -> str:
    """Who to rate-limit: the token identity when authenticated, else the client address (``addr:<ip>``).

    ``X-Forwarded-For`` is honoured only with ``trust_forwarded``, and then its first hop: any client can send
    the header, so trust it only behind a proxy that overwrites it rather than appending to it.
    """
    if authenticated:
        return authenticated
    if trust_forwarded and forwarded_for:
        first_hop = forwarded_for.split(",", 1)[0].strip()
        if first_hop:
            return f"addr:{first_hop}"
    return f"addr:{peer_host or 'unknown'}"
