"""Who may call what: bearer tokens on inference and admin routes, a token bucket per client.

Probes never need a token (the kubelet has none); /metrics needs one only with --protect_metrics.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from starlette.requests import Request

from predictor.config import Settings
from predictor.errors import RateLimited
from predictor.serving.security import Authenticator, BearerTokens, RateLimiter, client_identity

Kind = Literal["inference", "admin", "metrics"]


class AccessControl:
    def __init__(
        self,
        authenticator: Authenticator,
        limiter: RateLimiter,
        protect_metrics: bool,
        trust_forwarded_for: bool,
        on_limited: Callable[[], None] = lambda: None,
    ) -> None:
        self.authenticator = authenticator
        self.limiter = limiter
        self.protect_metrics = protect_metrics
        self.trust_forwarded_for = trust_forwarded_for
        self.on_limited = on_limited

    @classmethod
    def from_settings(cls, settings: Settings, on_limited: Callable[[], None]) -> AccessControl:
        tokens = BearerTokens(settings.auth_token_file, settings.auth_tokens)  # ValueError: unusable token file
        return cls(
            Authenticator(tokens),
            RateLimiter(settings.rate_limit_rps, settings.rate_limit_burst),
            settings.protect_metrics,
            settings.trust_forwarded_for,
            on_limited,
        )

    @property
    def active(self) -> bool:
        return self.authenticator.enabled or self.limiter.enabled

    def check(self, request: Request, kind: Kind) -> None:
        """REST: raise ``Unauthorized`` or ``RateLimited``; return quietly when the call may proceed."""
        headers = request.headers
        self.check_call(
            kind,
            headers.get("authorization"),
            request.client.host if request.client else None,
            headers.get("x-forwarded-for"),
        )

    def check_call(
        self, kind: Kind, authorization: str | None, peer_host: str | None, forwarded_for: str | None
    ) -> None:
        """The one policy for every transport: REST passes its headers, gRPC its metadata and peer."""
        if kind == "metrics" and not self.protect_metrics:
            return
        identity = self.authenticator.authenticate(authorization)
        if kind == "metrics" or not self.limiter.enabled:
            return
        client = client_identity(identity, peer_host, forwarded_for, self.trust_forwarded_for)
        try:
            self.limiter.acquire(client)
        except RateLimited:
            self.on_limited()
            raise
